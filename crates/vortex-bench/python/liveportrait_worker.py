#!/usr/bin/env python3
"""The Python baseline of `benches/liveportrait.rs`: LivePortrait's warping + SPADE graph
(one frame) on Python onnxruntime, the same graph file, its weights read from the export's
weights.safetensors (the graph's external data), the same inputs as Vortex's frame (INPUTS_DIR
holds NAME.f32 for each graph input: little-endian float32, the manifest's shape), CPU
provider, 2 intra-op threads, 1 inter-op, prepacking off, no spinning, and either
  - Vortex's settings (`same`, the default): ORT_ENABLE_EXTENDED without the optimizers
    that make new weight tensors (ConstantFolding, ConvBNFusion, ConvAddFusion,
    ConvMulFusion, TransposeOptimizer; runtime::Optimization::NoWeightCopies), denormals
    as zero, or
  - onnxruntime's default for a Python user (`all`): ORT_ENABLE_ALL, denormals computed.

Pinned: onnxruntime==1.31.1 (installed by the bench into target/vortex-bench/py), numpy.

Usage: liveportrait_worker.py EXPORT_DIR INPUTS_DIR [same|all]
Then one line per run on stdin ("run"); answers "done 1" after each frame.
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

directory, inputs = sys.argv[1], sys.argv[2]
manifest = json.load(open(os.path.join(directory, "liveportrait.json")))
graph = manifest["graphs"]["warping_spade"]
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
mode = sys.argv[3] if len(sys.argv) > 3 else "same"
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
if mode == "same":
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
session = ort.InferenceSession(os.path.join(directory, graph["file"]), so,
                               providers=["CPUExecutionProvider"],
                               disabled_optimizers=disabled)
feed = {i["name"]: np.fromfile(os.path.join(inputs, i["name"] + ".f32"), dtype="<f4")
        .reshape(i["shape"]) for i in graph["inputs"]}
session.run(None, feed)
print("ready", ort.__version__, mode, flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    session.run(None, feed)
    print("done 1", flush=True)
