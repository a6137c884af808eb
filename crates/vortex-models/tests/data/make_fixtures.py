#!/usr/bin/env python3
"""Writes the weight fixtures of vortex-models with Python's safetensors package (an
implementation other than the Rust crate Vortex reads with), plus the corpus of bad files.

Run from this folder after `cargo test -p vortex-models --test weights` has written the
*.layout.json files (VORTEX_WRITE_LAYOUTS=1). Needs: pip install safetensors numpy.
Byte k of the tensor at index t of a layout is (7*k + 13*t) % 256, whatever its dtype.
"""
import json
import os
import struct

import numpy as np
from safetensors import TensorSpec, serialize_file

DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "U8": "uint8", "I64": "int64"}
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I64": 8}


def pattern(t, nbytes):
    k = np.arange(nbytes, dtype=np.uint64)
    return ((7 * k + 13 * t) % 256).astype(np.uint8)


def write_good(layout_path, out_path):
    layout = json.load(open(layout_path))
    keep, specs = [], {}
    for t, tensor in enumerate(layout["tensors"]):
        numel = int(np.prod(tensor["shape"])) if tensor["shape"] else 1
        data = pattern(t, numel * SIZES[tensor["dtype"]])
        keep.append(data)
        specs[tensor["name"]] = TensorSpec(
            dtype=DTYPES[tensor["dtype"]],
            shape=tensor["shape"],
            data_ptr=data.ctypes.data,
            data_len=data.nbytes,
        )
    serialize_file(specs, out_path, None)


def raw(path, header, data=b""):
    """A file from a header object (or raw header bytes) and a data section."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(body)) + body + data)


def read(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def write_bad(good_path):
    header, data = read(good_path)
    names = [k for k in header if k != "__metadata__"]
    names.sort(key=lambda k: header[k]["data_offsets"][0])
    first, second, last = names[0], names[1], names[-1]
    bad = "bad"
    blob = open(good_path, "rb").read()
    open(f"{bad}/truncated.safetensors", "wb").write(blob[: len(blob) // 2])
    open(f"{bad}/empty.safetensors", "wb").write(b"")
    open(f"{bad}/header_past_end.safetensors", "wb").write(struct.pack("<Q", 1 << 20) + b"{}")
    open(f"{bad}/header_too_large.safetensors", "wb").write(struct.pack("<Q", 1 << 40) + b"{}")
    raw(f"{bad}/not_json.safetensors", b"{this is not json", data)
    raw(f"{bad}/not_utf8.safetensors", b'{"\xff\xfe": 1}', data)
    h = json.loads(json.dumps(header))
    h[second]["data_offsets"] = [0, h[second]["data_offsets"][1] - h[second]["data_offsets"][0]]
    raw(f"{bad}/overlapping_offsets.safetensors", h, data)
    h = json.loads(json.dumps(header))
    start, end = h[last]["data_offsets"]
    h[last]["data_offsets"] = [start, end + 4096]
    raw(f"{bad}/offsets_past_end.safetensors", h, data)
    # Same bytes, other dtype: F16 [a, b] read as U8 [a, 2b].
    h = json.loads(json.dumps(header))
    shape = h[first]["shape"]
    h[first]["dtype"] = "U8"
    h[first]["shape"] = shape[:-1] + [shape[-1] * 2] if shape else [2]
    raw(f"{bad}/wrong_dtype.safetensors", h, data)
    h = json.loads(json.dumps(header))
    h[first]["shape"] = list(reversed(h[first]["shape"])) + [1]
    raw(f"{bad}/wrong_shape.safetensors", h, data)
    # The same name twice: the header text repeats the first entry under the second's key.
    text = json.dumps(header)
    dup = text.replace(f'"{second}":', f'"{first}":', 1)
    raw(f"{bad}/duplicate_name.safetensors", dup.encode(), data)
    # A tensor missing: drop the last one and its bytes.
    h = json.loads(json.dumps(header))
    s, e = h.pop(last)["data_offsets"]
    raw(f"{bad}/missing_tensor.safetensors", h, data[:s])
    h = json.loads(json.dumps(header))
    h["extra.weight"] = {"dtype": "U8", "shape": [4], "data_offsets": [len(data), len(data) + 4]}
    raw(f"{bad}/unexpected_tensor.safetensors", h, data + b"\0\0\0\0")


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs("bad", exist_ok=True)
    for name in sorted(os.listdir(".")):
        if name.endswith(".layout.json"):
            write_good(name, name.replace(".layout.json", ".safetensors"))
    write_bad("tiny_clip.safetensors")
