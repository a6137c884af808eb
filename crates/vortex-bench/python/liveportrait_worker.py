#!/usr/bin/env python3
"""The Python baseline of `benches/liveportrait.rs`: LivePortrait's warping + SPADE graph
(one frame) on Python onnxruntime, the same graph file, its weights read from the export's
weights.safetensors (the graph's external data), CPU provider, 2 intra-op threads, 1
inter-op, prepacking off, no spinning, and either
  - Vortex's optimizations (`same`, the default): ORT_ENABLE_EXTENDED without the
    optimizers that make new weight tensors (ConstantFolding, ConvBNFusion, ConvAddFusion,
    ConvMulFusion, TransposeOptimizer; runtime::Optimization::NoWeightCopies), or
  - onnxruntime's default for a Python user (`all`): ORT_ENABLE_ALL.

Pinned: onnxruntime==1.31.1 (installed by the bench into target/vortex-bench/py), numpy.

Usage: liveportrait_worker.py EXPORT_DIR [same|all]
Then one line per run on stdin ("run"); answers "done 1" after each frame.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

directory = sys.argv[1]
manifest = json.load(open(os.path.join(directory, "liveportrait.json")))
graph = manifest["graphs"]["warping_spade"]
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
mode = sys.argv[2] if len(sys.argv) > 2 else "same"
if mode not in ("same", "all"):
    raise SystemExit(f"mode {mode!r}: use same or all")
disabled = None
if mode == "all":
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
else:
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    disabled = ["ConstantFolding", "ConvBNFusion", "ConvAddFusion", "ConvMulFusion",
                "TransposeOptimizer"]
so.add_session_config_entry("session.disable_prepacking", "1")
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(os.path.join(directory, graph["file"]), so,
                               providers=["CPUExecutionProvider"],
                               disabled_optimizers=disabled)
rng = np.random.default_rng(0)
feed = {i["name"]: (rng.standard_normal(i["shape"]) * 0.1).astype(np.float32)
        for i in graph["inputs"]}
session.run(None, feed)
print("ready", ort.__version__, mode, flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    session.run(None, feed)
    print("done 1", flush=True)
