#!/usr/bin/env python3
"""The Python baseline of `benches/kokoro.rs`: Kokoro-82M's int8 graph on Python onnxruntime,
the same graph file, tokens, voice and session settings as Vortex (CPU provider, 2 intra-op
threads, 1 inter-op, prepacking off, no spinning, denormals as zero).

Pinned: onnxruntime==1.31.1 (the wheel Vortex pins, installed by the bench into
target/vortex-bench/py with `pip install --target`), numpy from PyPI.

Usage: kokoro_ort_worker.py GRAPH VOICES_NPZ VOICE TOKENS_JSON
Then one line per run on stdin ("run"); answers "done SAMPLES" after each run.
"""
import json
import sys
import zipfile
import io

import numpy as np
import onnxruntime as ort

graph, voices_npz, voice, tokens_json = sys.argv[1:5]
tokens = json.loads(tokens_json)
with zipfile.ZipFile(voices_npz) as z:
    table = np.load(io.BytesIO(z.read(voice + ".npy")))
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.add_session_config_entry("session.disable_prepacking", "1")
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
so.add_session_config_entry("session.set_denormal_as_zero", "1")
session = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
n = len(tokens)
feed = {
    "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
    "style": table[min(n, 510) - 1].reshape(1, 256).astype(np.float32),
    "speed": np.array([1.0], dtype=np.float32),
}
print("ready", ort.__version__, flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    audio = session.run(["audio"], feed)[0]
    print("done", audio.shape[-1], flush=True)
