#!/usr/bin/env python3
"""Adds `source_offset` (where each external tensor's bytes start in the assembled
kokoro.onnx) to the manifest split_kokoro.py wrote, so Vortex can build kokoro.safetensors
from the four PyPI parts without parsing protobuf, and records the SHA-256 of the
kokoro.safetensors split_kokoro.py wrote (Vortex's copy must be byte-identical).

Pinned: Python 3.11, stdlib only. Inputs are split_kokoro.py's (onnx==1.23.2) outputs.
Usage: python make_manifest.py kokoro.onnx out/kokoro.manifest.json out/kokoro.safetensors
"""
import hashlib
import json
import sys

onnx_path, manifest_path, safetensors_path = sys.argv[1:4]
blob = open(onnx_path, "rb").read()
manifest = json.load(open(manifest_path))
for t in manifest["tensors"]:
    st = open(safetensors_path, "rb")
    st.seek(t["offset"])
    data = st.read(t["length"])
    assert hashlib.sha256(data).hexdigest() == t["sha256"], t["name"]
    at = blob.find(data)
    assert at >= 0, t["name"]
    # Any occurrence holds the same bytes; the first is used.
    t["source_offset"] = at
manifest["safetensors_sha256"] = hashlib.sha256(open(safetensors_path, "rb").read()).hexdigest()
manifest["graph_sha256"] = hashlib.sha256(
    open(manifest_path.replace("kokoro.manifest.json", "kokoro.graph.onnx"), "rb").read()
).hexdigest()
with open("kokoro.manifest.json", "w") as f:
    json.dump(manifest, f, indent=1)
    f.write("\n")
print(len(manifest["tensors"]), "tensors; safetensors", manifest["safetensors_sha256"])
