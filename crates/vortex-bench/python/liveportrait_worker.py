#!/usr/bin/env python3
"""The Python baseline of `benches/liveportrait.rs`: LivePortrait's warping + SPADE graph
(one frame) on Python onnxruntime, the same graph file and session settings as Vortex (CPU
provider, 2 intra-op threads, 1 inter-op, ENABLE_ALL, prepacking off, no spinning), its
weights read from the export's weights.safetensors (the graph's external data).

Pinned: onnxruntime==1.31.1 (installed by the bench into target/vortex-bench/py), numpy.

Usage: liveportrait_worker.py EXPORT_DIR
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
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.add_session_config_entry("session.disable_prepacking", "1")
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
session = ort.InferenceSession(os.path.join(directory, graph["file"]), so,
                               providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feed = {i["name"]: (rng.standard_normal(i["shape"]) * 0.1).astype(np.float32)
        for i in graph["inputs"]}
session.run(None, feed)
print("ready", ort.__version__, flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    session.run(None, feed)
    print("done 1", flush=True)
