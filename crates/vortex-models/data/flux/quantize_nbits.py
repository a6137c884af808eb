#!/usr/bin/env python3
"""Block-quantize a FLUX export's Linear weights to 4 bits for ONNX Runtime's
com.microsoft.MatMulNBits (a new, self-contained export), and compute the full-size byte
figures.

Pinned versions (tested): as export_flux.py (torch==2.15.0, diffusers==0.36.0,
transformers==4.57.6, onnx==1.23.2, onnxruntime==1.31.1, safetensors==0.8.0, numpy==2.4.6).

Usage:
    python quantize_nbits.py --export SRC --out DST [--graphs transformer,t5]
                             [--block-size 64] [--check]
    python quantize_nbits.py --sizes [--json PATH]   (full_size_bytes.json beside this script
                                                     is its output)

--export SRC --out DST  reads the float export SRC (written by export_flux.py: flux.json, the
    four graphs, weights.safetensors; for the full-size model run export_flux.py --checkpoint
    on the official bf16 checkpoint first, so this is done once, offline) and writes DST, a
    complete FLUX export that loads like SRC:
      DST/<graph>_q4.onnx   for each graph of --graphs (default transformer,t5; any graph of
                            the manifest may be named): the same graph with every
                            Gemm(x, W, b, transB=1) (b optional, [N]) whose W is a parameter
                            replaced by
                                MatMulNBits(x, W.qweight, W.scales, W.zero_points, "", b)
                            (domain com.microsoft, bits=4, block_size, K, N); the float W is
                            no longer referenced and its initializer is dropped
      DST/<graph>.onnx      every other graph (CLIP text and the VAE decoder by default),
                            unchanged but for its initializers' external-data offsets
      DST/weights.safetensors  ONE file holding exactly the tensors the four graphs read: the
                            float parameters they still read (same names, dtypes, bytes) and,
                            for each replaced W, "<W>.qweight" U8 [N, k_blocks, block_size/2],
                            "<W>.scales" [N, k_blocks] in W's float type, "<W>.zero_points"
                            U8 [N, ceil(k_blocks/2)] (W keeps its component prefix, e.g.
                            "transformer.x.y.weight.qweight"). Left out: the replaced float
                            weights and what no graph reads (SRC's unread_parameters: the VAE
                            encoder, quant_conv). Written as export_flux.py writes
                            weights.safetensors (deterministic, aligned; SRC's metadata plus
                            "quantization"); every initializer of every DST graph that is one
                            of its tensors points at its bytes there as external data
                            (location "weights.safetensors", offset 8 + header_len +
                            data_offsets[0], length), so the graphs run file-backed or with
                            every tensor handed over by name. Any other initializer stays
                            inline and must be < 4 KiB (else it fails).
      DST/flux.json         SRC's manifest with graphs.<g>.file (and .parameters: the tensors
                            of the weights file the graph reads) updated, unread_parameters
                            removed, and
                              "quantization": {"op": "com.microsoft.MatMulNBits", "bits": 4,
                                "block_size": B, "symmetric": false, "scales_dtype":
                                "float32" | "float16" (W's float type; "mixed" when both occur,
                                with "scales_dtypes" counting each), "graphs": [...],
                                "source": SRC's "source", "quantized_weights": count,
                                "bytes": {"quantized_float": the replaced float weights,
                                "q4": their qweight + scales + zero_points}}
                            Everything else as in SRC; a tokenizer file SRC's manifest names
                            (tokenizers.*.file) is copied.
    DST must differ from SRC and be absent, empty, or an earlier output of this mode (then
    the files its flux.json names are replaced). The output is byte-identical on every run.
    Memory: SRC's weights are memory-mapped, and each weight's 4-bit tensors are computed as
    they are written (Lazy4Bit: the header first, from shapes alone; two quantize() calls per
    weight, counted on the tiny export: 70 for 35 weights), so only one weight's quantize()
    temporaries are in memory at once beside the map: a few times its f32 bytes (the largest,
    single_blocks.*.linear1 [21504, 3072], is 264 MB: ~1.5 GB by reading the code, not
    measured at full size).
    The layout is MatMulNBits' as ONNX Runtime 1.31 documents it (and as its own
    matmul_nbits_quantizer writes it): B uint8 [N, k_blocks, blob_size], k_blocks =
    ceil(K / block_size), blob_size = block_size * 4 / 8; within a blob, element 2i in the low
    nibble and 2i+1 in the high nibble of byte i; scales [N, k_blocks] of A's type;
    zero_points packed the same way, [N, ceil(k_blocks / 2)]; dequantized
    W[n, k] = (q[n, k] - zp[n, k / block_size]) * scale[n, k / block_size]; Y = A W^T + bias.
    Quantization (asymmetric, per block of block_size consecutive k of one row n, the row
    zero-padded to k_blocks * block_size), in float32 as ONNX Runtime's MLAS does it:
        lo = min(0, min(block)), hi = max(0, max(block))
        scale = (hi - lo) / 15                       (stored in the graph's float type)
        zp = clamp(roundf(0 - lo / scale), 0, 15)    (0 when scale == 0)
        q = clamp(roundf(w * (1 / scale') + zp), 0, 15)  (scale' = the stored scale read back
                                                      as float32; 1/scale' = 0 when it is 0)
    roundf rounds halves away from zero; an odd k_blocks leaves 8 in the last zero-point byte's
    high nibble. This is bit for bit what onnxruntime's BlockwiseQuantizer does (its
    quantize_matmul_4bits, used by its matmul_nbits_quantizer); --check asserts it.
    --block-size: a power of two >= 16 (MatMulNBits' rule).
    --check then compares DST with SRC through ONNX Runtime (CPU provider, prepacking off):
    the numpy quantizer against onnxruntime's own C++ one (quantize_matmul_4bits; float32
    weights), byte for byte; each unquantized DST graph against SRC's, bit for bit; each
    quantized graph (a) against SRC's float graph fed the dequantized weights by name (the
    layout is right when these agree to float rounding) and (b) against SRC's float graph
    itself (the quantization error), for one call (random inputs) and, for the transformer,
    for 4 Euler steps.

--sizes  counts the parameters of the full-size FLUX.1-schnell components (export_flux.SCHNELL,
    the official configs, built on torch's meta device: no memory, no weights) and prints the
    bytes of: the transformer with MatMulNBits 4-bit (block 64, fp16 scales, packed uint8 zero
    points) on every Linear weight and every other parameter in 16 bits, against
    bitsandbytes NF4 (block 64; absmax fp32, or double-quantized), and bf16; the same for
    T5-XXL's encoder, CLIP-L's text tower and the VAE (decoder alone and whole). --json PATH
    writes the figures.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import export_flux  # noqa: E402

BITS = 4
SMALL = export_flux.SMALL
QSUFFIXES = (".qweight", ".scales", ".zero_points")
OP = "com.microsoft.MatMulNBits"
NP_TO_ONNX = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.float32): TensorProto.FLOAT,
              np.dtype(np.float16): TensorProto.FLOAT16}
FLOAT_NAME = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16"}


# --- quantization -------------------------------------------------------------------------

def round_away(x):
    """C's roundf (halves away from zero), exactly, on float32."""
    x = np.asarray(x, np.float32)
    r = np.trunc(x)
    frac = np.abs(x - r)  # exact for |x| < 2^23
    return (r + np.sign(x) * (frac >= np.float32(0.5))).astype(np.float32)


def quantize(w, block_size, scale_dtype=np.float32):
    """w float [N, K] -> (qweight uint8 [N, kb, block/2], scales [N, kb] of scale_dtype,
    zero points uint8 [N, ceil(kb/2)]), bit for bit as onnxruntime's BlockwiseQuantizer
    (what its quantize_matmul_4bits and matmul_nbits_quantizer use) computes them; see the
    module docstring."""
    w = np.asarray(w, np.float32)
    n, k = w.shape
    kb = -(-k // block_size)
    pad = np.zeros((n, kb * block_size), np.float32)
    pad[:, :k] = w
    blocks = pad.reshape(n, kb, block_size)
    lo = np.minimum(blocks.min(axis=2), np.float32(0))
    hi = np.maximum(blocks.max(axis=2), np.float32(0))
    scale_f = ((hi - lo) / np.float32(15)).astype(np.float32)
    nz = scale_f != 0
    safe = np.where(nz, scale_f, np.float32(1)).astype(np.float32)
    zp_fp = np.where(nz, np.float32(0) - (lo / safe).astype(np.float32), lo).astype(np.float32)
    zp = np.clip(round_away(zp_fp), 0, 15).astype(np.float32)
    scales = scale_f.astype(scale_dtype)            # stored (f16 for half graphs)
    used = scales.astype(np.float32)                # what the values are quantized with
    recip = np.where(used != 0, np.float32(1) / np.where(used != 0, used, np.float32(1)),
                     np.float32(0)).astype(np.float32)
    v = ((blocks * recip[..., None]).astype(np.float32) + zp[..., None]).astype(np.float32)
    q = np.clip(round_away(v), 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    zq = zp.astype(np.uint8)
    if kb % 2:  # the unused nibble holds 8, as onnxruntime leaves it
        zq = np.concatenate([zq, np.full((n, 1), 8, np.uint8)], axis=1)
    zpacked = (zq[:, 0::2] | (zq[:, 1::2] << 4)).astype(np.uint8)
    return packed, scales, zpacked


def dequantize(packed, scales, zpacked, k, block_size):
    n, kb, _ = packed.shape
    q = np.empty((n, kb, block_size), np.float32)
    q[..., 0::2] = packed & 0x0F
    q[..., 1::2] = packed >> 4
    zp = np.empty((n, zpacked.shape[1] * 2), np.float32)
    zp[:, 0::2] = zpacked & 0x0F
    zp[:, 1::2] = zpacked >> 4
    zp = zp[:, :kb]
    w = (q - zp[..., None]) * scales.astype(np.float32)[..., None]
    return w.reshape(n, kb * block_size)[:, :k]


def ort_quantize(w, block_size):
    """onnxruntime's own C++ quantizer (what its matmul_nbits_quantizer uses), for --check."""
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits
    wt = np.ascontiguousarray(np.asarray(w, np.float32).T)  # [K, N], MatMul's B
    k, n = wt.shape
    kb = -(-k // block_size)
    padded = np.zeros((kb * block_size, n), np.float32)
    padded[:k] = wt
    packed = np.zeros((n, kb, block_size // 2), np.uint8)
    zp = np.zeros((n, (kb + 1) // 2), np.uint8)
    scales = np.zeros((n, kb), np.float32)
    quantize_matmul_4bits(packed, padded, scales, zp, block_size, n, kb * block_size, False)
    return packed, scales, zp


class Lazy4Bit:
    """One of a weight's three 4-bit tensors (qweight, scales, zero_points), computed when it is
    written: shape, dtype and bytes are known from [N, K] and the block size alone, so the
    weights file's header is written first and the 4-bit arrays never sit in memory all at
    once (at full size they are ~10 GB for an f32 export). The three come from one quantize()
    call, cached for the weight last asked for: write_safetensors writes tensors grouped by
    item size then by name, so a weight's scales (in the float group) and its qweight and
    zero_points (adjacent in the uint8 group) cost two calls per weight, never more."""

    _cache = (None, None)

    def __init__(self, name, w, block_size, scale_dtype, part):
        n, k = w.shape
        kb = -(-k // block_size)
        self.name, self.w, self.block_size, self.scale_dtype = name, w, block_size, scale_dtype
        self.part = part
        self.dtype, self.shape = {
            "qweight": (np.dtype(np.uint8), (n, kb, block_size // 2)),
            "scales": (np.dtype(scale_dtype), (n, kb)),
            "zero_points": (np.dtype(np.uint8), (n, (kb + 1) // 2)),
        }[part]
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

    def __array__(self, dtype=None, copy=None):
        key, parts = Lazy4Bit._cache
        if key != self.name:
            parts = quantize(np.asarray(self.w, np.float32), self.block_size, self.scale_dtype)
            Lazy4Bit._cache = (self.name, parts)
        a = parts[("qweight", "scales", "zero_points").index(self.part)]
        assert a.shape == self.shape and a.dtype == self.dtype, (self.name, self.part)
        return a if dtype is None else a.astype(dtype, copy=False)


# --- graph rewrite ------------------------------------------------------------------------

def quantize_graph(proto, params, block_size, graph):
    """Rewrites proto in place: every Gemm(x, W, b, transB=1) over a parameter W ->
    MatMulNBits over W's 4-bit tensors (new initializers, no data yet: see point_at); the
    float W's initializer is dropped. Returns ({name: array}, [per-weight summary])."""
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    arrays, quantized, new_nodes = {}, [], []
    for node in g.node:
        w = node.input[1] if node.op_type == "Gemm" and len(node.input) > 1 else None
        if w is None or w not in params:
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transB", 0) != 1 or attrs.get("transA", 0) or \
                attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise SystemExit(f"{graph}: {node.name}: Gemm with {attrs}, not (x, W^T, b)")
        t = inits[w]
        wf = params[w]
        n, k = wf.shape
        if tuple(t.dims) != (n, k) or t.data_type not in FLOAT_NAME or \
                helper.tensor_dtype_to_np_dtype(t.data_type) != wf.dtype:
            raise SystemExit(f"{graph}: {w}: initializer {list(t.dims)} type {t.data_type} is "
                             f"not the parameter ({wf.shape}, {wf.dtype})")
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        if bias and not (bias in inits and list(inits[bias].dims) == [n]):
            raise SystemExit(f"{graph}: {node.name}: bias {bias} is not an [N] initializer")
        if w + ".qweight" not in arrays:  # a weight read by two Gemms is quantized once
            sdtype = np.float16 if t.data_type == TensorProto.FLOAT16 else np.float32
            parts = {part: Lazy4Bit(w, wf, block_size, sdtype, part)
                     for part in ("qweight", "scales", "zero_points")}
            for part, lazy in parts.items():
                arrays[f"{w}.{part}"] = lazy
            quantized.append({"name": w, "graph": graph, "N": n, "K": k,
                              "k_blocks": parts["qweight"].shape[1],
                              "scales_dtype": FLOAT_NAME[t.data_type],
                              "float_bytes": int(wf.nbytes),
                              "q4_bytes": sum(a.nbytes for a in parts.values())})
        inputs = [node.input[0], w + ".qweight", w + ".scales", w + ".zero_points"]
        if bias:
            inputs += ["", bias]
        new_nodes.append(helper.make_node(
            "MatMulNBits", inputs, list(node.output), name=node.name + "_Q4",
            domain="com.microsoft", K=k, N=n, bits=BITS, block_size=block_size))
    if not quantized:
        raise SystemExit(f"{graph}: no Gemm over a parameter found")
    del g.node[:]
    g.node.extend(new_nodes)
    # the float weights are no longer read: drop their initializers
    read = {i for nd in g.node for i in nd.input}
    keep = [t for t in g.initializer if t.name in read]
    dropped = [t.name for t in g.initializer if t.name not in read]
    if sorted(dropped) != sorted(q["name"] for q in quantized):
        raise SystemExit(f"{graph}: dropped {sorted(dropped)[:8]}, quantized "
                         f"{sorted(q['name'] for q in quantized)[:8]}: a quantized weight is "
                         "read by something else, or an initializer was never read")
    del g.initializer[:]
    g.initializer.extend(keep)
    for name, a in arrays.items():
        t = g.initializer.add()
        t.name = name
        t.data_type = NP_TO_ONNX[a.dtype]
        t.dims.extend(a.shape)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return arrays, quantized


def point_at(proto, offsets, graph):
    """Every initializer that is a tensor of the weights file -> external data at its bytes
    there; any other must be small and inline. Returns how many point into the file."""
    problems, n = [], 0
    for t in proto.graph.initializer:
        if t.name in offsets:
            start, length = offsets[t.name]
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            del t.external_data[:]
            for key, v in (("location", export_flux.WEIGHTS), ("offset", str(start)),
                           ("length", str(length))):
                e = t.external_data.add()
                e.key, e.value = key, v
            n += 1
        elif t.data_location == TensorProto.EXTERNAL:
            problems.append(f"{graph}: {t.name} is external data but not in the weights")
        else:
            nbytes = int(np.prod(t.dims)) * helper.tensor_dtype_to_np_dtype(
                t.data_type).itemsize
            if nbytes >= SMALL:
                problems.append(f"{graph}: non-parameter initializer {t.name} of {nbytes} bytes")
    if problems:
        raise SystemExit("\n".join(problems))
    return n


def read_metadata(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


def prepare_out(src, dst):
    if os.path.realpath(src) == os.path.realpath(dst):
        raise SystemExit("--out must not be --export: the float export is read, not rewritten")
    if os.path.isdir(dst) and os.listdir(dst):
        mpath = os.path.join(dst, "flux.json")
        try:
            with open(mpath) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if not old or "quantization" not in old:
            raise SystemExit(f"{dst} is not empty and not an earlier quantize_nbits.py --out")
        files = [g["file"] for g in old["graphs"].values()] + [old["weights"], "flux.json"]
        files += [t["file"] for t in old.get("tokenizers", {}).values() if t.get("file")]
        for fname in files:
            if os.path.basename(fname) == fname and os.path.isfile(os.path.join(dst, fname)):
                os.remove(os.path.join(dst, fname))
        if os.listdir(dst):
            raise SystemExit(f"{dst} holds files its flux.json does not name: "
                             f"{sorted(os.listdir(dst))[:8]}")
    os.makedirs(dst, exist_ok=True)


def quantize_export(src, dst, graphs, block_size):
    with open(os.path.join(src, "flux.json")) as f:
        manifest = json.load(f)
    if "quantization" in manifest:
        raise SystemExit(f"{src} is already quantized: give the float export")
    unknown = [g for g in graphs if g not in manifest["graphs"]]
    if unknown or not graphs:
        raise SystemExit(f"--graphs {graphs}: the export's graphs are {list(manifest['graphs'])}")
    graphs = [g for g in manifest["graphs"] if g in graphs]  # manifest order
    wsrc = os.path.join(src, manifest["weights"])
    params = export_flux.mmap_safetensors(wsrc)

    protos, arrays, quantized, reads = {}, {}, [], {}
    for graph, info in manifest["graphs"].items():
        proto = onnx.load(os.path.join(src, info["file"]), load_external_data=False)
        for t in proto.graph.initializer:
            loc = {e.key: e.value for e in t.external_data}.get("location")
            if t.data_location == TensorProto.EXTERNAL and (
                    t.name not in params or loc != manifest["weights"]):
                raise SystemExit(f"{graph}: {t.name} is external data outside the weights")
        if graph in graphs:
            a, q = quantize_graph(proto, params, block_size, graph)
            clash = set(a) & (set(params) | set(arrays))
            if clash:
                raise SystemExit(f"{graph}: tensor names taken: {sorted(clash)[:4]}")
            arrays.update(a)
            quantized += q
        protos[graph] = proto
        reads[graph] = sorted(t.name for t in proto.graph.initializer
                              if t.name in params or t.name in arrays)
    tensors = {}
    for names in reads.values():
        for name in names:
            tensors[name] = arrays[name] if name in arrays else params[name]

    prepare_out(src, dst)
    meta = dict(read_metadata(wsrc))
    meta["quantization"] = (f"{OP} bits={BITS} block_size={block_size} asymmetric; graphs "
                            + ",".join(graphs))
    wdst = os.path.join(dst, export_flux.WEIGHTS)
    export_flux.write_safetensors(wdst, tensors, meta)
    offsets = export_flux.safetensors_offsets(wdst)
    assert set(offsets) == set(tensors)

    out = json.loads(json.dumps(manifest))
    out["weights"] = export_flux.WEIGHTS
    out.pop("unread_parameters", None)
    for graph, proto in protos.items():
        fname = graph + "_q4.onnx" if graph in graphs else manifest["graphs"][graph]["file"]
        n = point_at(proto, offsets, graph)
        path = os.path.join(dst, fname)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString(deterministic=True))
        # full_check runs shape inference, which knows no com.microsoft op
        onnx.checker.check_model(path, full_check=graph not in graphs)
        out["graphs"][graph]["file"] = fname
        out["graphs"][graph]["parameters"] = n
        print(f"{fname}: {os.path.getsize(path)} bytes, {n} tensors of {export_flux.WEIGHTS}"
              + (f", {sum(q['graph'] == graph for q in quantized)} Gemm -> MatMulNBits"
                 if graph in graphs else ""))
    for tok in out.get("tokenizers", {}).values():
        if tok.get("file"):
            shutil.copyfile(os.path.join(src, tok["file"]), os.path.join(dst, tok["file"]))

    kinds = sorted({q["scales_dtype"] for q in quantized})
    quant = {"op": OP, "bits": BITS, "block_size": block_size, "symmetric": False,
             "scales_dtype": kinds[0] if len(kinds) == 1 else "mixed"}
    if len(kinds) > 1:
        quant["scales_dtypes"] = {k: sum(q["scales_dtype"] == k for q in quantized)
                                  for k in kinds}
    quant.update({
        "graphs": graphs, "source": manifest["source"], "quantized_weights": len(quantized),
        "bytes": {"quantized_float": sum(q["float_bytes"] for q in quantized),
                  "q4": sum(q["q4_bytes"] for q in quantized)}})
    out["quantization"] = quant
    with open(os.path.join(dst, "flux.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    ks = {}
    for q in quantized:
        ks.setdefault((q["K"], q["k_blocks"]), []).append(q["graph"])
    unread = sorted(set(params) - set(tensors) - {q["name"] for q in quantized})
    print(f"{export_flux.WEIGHTS}: {os.path.getsize(wdst)} bytes, {len(tensors)} tensors; "
          f"{len(quantized)} weights quantized ({quant['bytes']['quantized_float']} float bytes "
          f"-> {quant['bytes']['q4']}); {len(unread)} unread parameters left out")
    print("  (K, k_blocks): " + ", ".join(
        f"({k}, {kb}) x{len(v)} {'/'.join(sorted(set(v)))}" for (k, kb), v in sorted(ks.items())))
    return out, quantized


# --- check --------------------------------------------------------------------------------

def example_feeds(graph, m, rng):
    """Random inputs for one call of a FLUX graph, from the manifest."""
    comps, lat = m["components"], m["latents"]
    txt = m["tokenizers"]["t5"]["max_length"]
    if graph == "clip_text":
        return {"input_ids": rng.integers(0, comps["text_encoder"]["vocab_size"], (1, 77))
                .astype(np.int64)}
    if graph == "t5":
        return {"input_ids": rng.integers(0, comps["text_encoder_2"]["vocab_size"], (1, txt))
                .astype(np.int64)}
    if graph == "vae_decoder":
        h = lat["latent_height"]
        return {"latents": rng.standard_normal((1, lat["latent_channels"], h, h), np.float32)}
    tr = comps["transformer"]
    side = lat["latent_height"] // 2
    return {
        "hidden_states": rng.standard_normal((1, lat["packed_tokens"], tr["in_channels"]),
                                             np.float32),
        "encoder_hidden_states": rng.standard_normal((1, txt, tr["joint_attention_dim"]),
                                                     np.float32),
        "pooled_projections": rng.standard_normal((1, tr["pooled_projection_dim"]), np.float32),
        "timestep": np.array([1.0], np.float32),
        "img_ids": export_flux.latent_image_ids(side, side),
        "txt_ids": np.zeros((txt, 3), np.float32),
    }


def err(a, b):
    return {"max_abs": float(np.abs(a - b).max()),
            "rel_max": float(np.abs(a - b).max() / np.abs(b).max()),
            "rel_rms": float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))}


def check(src, dst, quantized, seed=0):
    from safetensors.numpy import load_file
    with open(os.path.join(src, "flux.json")) as f:
        m = json.load(f)
    with open(os.path.join(dst, "flux.json")) as f:
        mq = json.load(f)
    block = mq["quantization"]["block_size"]
    params = export_flux.mmap_safetensors(os.path.join(src, m["weights"]))
    qarrays = load_file(os.path.join(dst, mq["weights"]))
    # (1) the numpy quantizer against onnxruntime's C++ one
    codes = total = 0
    for q in quantized:
        w = params[q["name"]]
        mine = tuple(qarrays[q["name"] + s] for s in QSUFFIXES)
        if w.dtype != np.float32:
            continue  # onnxruntime's binding quantizes float32 with float32 scales only
        theirs = ort_quantize(w, block)
        for x, y in zip(mine, theirs):
            codes += int((x.view(np.uint8) != y.view(np.uint8)).sum())
        total += w.size
    print(f"numpy quantizer vs onnxruntime quantize_matmul_4bits ({total} weights): "
          f"{codes} bytes differ")
    if codes:
        raise SystemExit("the quantizer is not onnxruntime's")
    # the float parameters DST keeps are SRC's, byte for byte
    for name, a in qarrays.items():
        if name in params:
            assert a.dtype == params[name].dtype and np.array_equal(a, params[name]), name

    # (2) ORT, graph by graph
    deq = {}
    for q in quantized:
        deq[q["name"]] = dequantize(*(qarrays[q["name"] + s] for s in QSUFFIXES), q["K"],
                                    block).astype(params[q["name"]].dtype)
    rng = np.random.default_rng(seed + 5)
    report = {"block_size": block, "numpy_vs_ort_quantizer_bytes_differing": codes}
    for graph, info in m["graphs"].items():
        fpath = os.path.join(src, info["file"])
        qpath = os.path.join(dst, mq["graphs"][graph]["file"])
        feeds = example_feeds(graph, m, rng)
        s_float, s_dst = export_flux.session(fpath), export_flux.session(qpath)
        ref, got = s_float.run(None, feeds)[0], s_dst.run(None, feeds)[0]
        if graph not in mq["quantization"]["graphs"]:
            if not np.array_equal(ref, got):
                raise SystemExit(f"{graph}: DST's copy differs from SRC's graph")
            report[graph] = "identical to the float graph"
            continue
        own = export_flux.graph_params(fpath, dict(params, **deq))
        s_deq = export_flux.session(fpath, initializers=own)
        d = s_deq.run(None, feeds)[0]
        r = {"one_call": {"q4_vs_float_with_dequantized_weights": err(got, d),
                          "q4_vs_float": err(got, ref), "scale": float(np.abs(ref).max())}}
        if graph == "transformer":
            sig = np.asarray(m["scheduler"]["sigmas"], np.float32)
            xs = {}
            for label, s in (("float", s_float), ("deq", s_deq), ("q4", s_dst)):
                x = feeds["hidden_states"]
                for i in range(len(sig) - 1):
                    v = s.run(None, dict(feeds, hidden_states=x,
                                         timestep=np.array([sig[i]], np.float32)))[0]
                    x = (x + (np.float32(sig[i + 1] - sig[i]) * v).astype(np.float32)
                         ).astype(np.float32)
                xs[label] = x
            r["four_steps"] = {"q4_vs_float_with_dequantized_weights": err(xs["q4"], xs["deq"]),
                               "q4_vs_float": err(xs["q4"], xs["float"])}
        report[graph] = r
        lay = r["one_call"]["q4_vs_float_with_dequantized_weights"]["rel_max"]
        if not lay < (5e-3 if mq["quantization"]["scales_dtype"] != "float32" else 1e-4):
            raise SystemExit(f"{graph}: MatMulNBits disagrees with the dequantized weights "
                             f"({lay}): layout")
    print(json.dumps(report, indent=1))
    return report


# --- full-size figures --------------------------------------------------------------------

def linear_weights(model):
    import torch.nn as nn
    out = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            out.add(f"{name}.weight")
    return out


def nbits_bytes(n, k, block=64, scale_bytes=2, zero_points=True):
    kb = -(-k // block)
    b = n * kb * (block * BITS // 8) + n * kb * scale_bytes
    if zero_points:
        b += n * ((kb + 1) // 2)
    return b


def nf4_bytes(numel, block=64, double_quant=False):
    """bitsandbytes 4-bit (NF4) storage of one weight: packed codes + its quant state
    (absmax per block in fp32; double quant: absmax as uint8 + one fp32 per 256 blocks, the
    256-entry fp32 code of the nested quantization and its fp32 offset) + the 16-entry fp32
    NF4 code. The small JSON quant_state blob saved beside each weight is not counted."""
    blocks = -(-numel // block)
    b = -(-numel // 2) + 16 * 4
    if double_quant:
        b += blocks * 1 + (-(-blocks // 256)) * 4 + 256 * 4 + 4
    else:
        b += blocks * 4
    return b


def component_figures(model, quantize_linear):
    lin = linear_weights(model) if quantize_linear else set()
    total = qn = 0
    other = 0
    f = {"nbits_b64_fp16_scales_zp": 0, "nbits_b64_fp16_scales_sym": 0,
         "nbits_b32_fp16_scales_zp": 0, "nf4_b64_fp32_absmax": 0, "nf4_b64_double_quant": 0}
    for name, p in model.named_parameters():
        numel = p.numel()
        total += numel
        if name in lin:
            n, k = p.shape
            qn += numel
            f["nbits_b64_fp16_scales_zp"] += nbits_bytes(n, k, 64)
            f["nbits_b64_fp16_scales_sym"] += nbits_bytes(n, k, 64, zero_points=False)
            f["nbits_b32_fp16_scales_zp"] += nbits_bytes(n, k, 32)
            f["nf4_b64_fp32_absmax"] += nf4_bytes(numel, 64)
            f["nf4_b64_double_quant"] += nf4_bytes(numel, 64, True)
        else:
            other += numel
    out = {"parameters": total, "linear_weight_parameters": qn,
           "other_parameters": other, "bf16_bytes": 2 * total}
    if quantize_linear:
        for k, v in f.items():
            out[k + "_bytes"] = v + 2 * other  # non-quantized parameters in 16 bits
        out["quantized_part"] = f
        out["other_params_16bit"] = 2 * other
    return out


def sizes():
    import torch
    spec = dict(export_flux.SCHNELL)
    models = export_flux.build_components(spec, device="meta")
    fig = {
        "transformer": component_figures(models["transformer"], True),
        "text_encoder_2 (T5-XXL encoder)": component_figures(models["text_encoder_2"], True),
        "text_encoder (CLIP-L text)": component_figures(models["text_encoder"], True),
        "vae (whole)": component_figures(models["vae"], False),
        "vae decoder only": component_figures(models["vae"].decoder, False),
    }
    del torch
    tr, t5 = fig["transformer"], fig["text_encoder_2 (T5-XXL encoder)"]
    clip, dec = fig["text_encoder (CLIP-L text)"], fig["vae decoder only"]
    q = "nbits_b64_fp16_scales_zp_bytes"
    fig["actor_totals"] = {
        "transformer_nbits + t5_nbits + clip_16bit + vae_decoder_16bit":
            tr[q] + t5[q] + clip["bf16_bytes"] + dec["bf16_bytes"],
        "transformer_nbits + t5_16bit + clip_16bit + vae_decoder_16bit":
            tr[q] + t5["bf16_bytes"] + clip["bf16_bytes"] + dec["bf16_bytes"],
        "transformer_nbits + clip_16bit + vae_decoder_16bit (t5 on the CPU)":
            tr[q] + clip["bf16_bytes"] + dec["bf16_bytes"],
        "transformer_nf4_double_quant + t5_nf4_double_quant + clip_16bit + vae_decoder_16bit":
            tr["nf4_b64_double_quant_bytes"] + t5["nf4_b64_double_quant_bytes"]
            + clip["bf16_bytes"] + dec["bf16_bytes"],
    }
    fig["notes"] = {
        "nbits": "MatMulNBits bits=4: ceil(K/block) blocks per output row, block/2 bytes "
                 "each, one fp16 scale per block, zero points 4-bit packed (ceil(blocks/2) "
                 "bytes per row; _sym: none, zero point 8 implied); every other parameter "
                 "(biases, norms, embeddings) in 16 bits",
        "nf4": "bitsandbytes NF4 blocksize 64: 4-bit codes + absmax (fp32 per block, or "
               "double-quantized: uint8 per block + fp32 per 256 blocks + 256-entry fp32 "
               "code + fp32 offset) + 16-entry fp32 code per weight; other parameters in 16 "
               "bits",
        "t5": "T5's Linear weights quantized the same way; its token embedding (shared.weight "
              "32128 x 4096) stays 16-bit here (a Gather, not a MatMul)",
        "plan_now": "DESIGN.md's seed table: transformer alone 5.95 GB in NF4",
        "units": "bytes; GB = 1e9",
    }
    return fig


def print_sizes(fig):
    for comp, f in fig.items():
        if comp == "notes":
            continue
        if comp == "actor_totals":
            print("actor totals (weights only):")
            for k, v in f.items():
                print(f"    {v:>16,d} bytes = {v / 1e9:7.3f} GB  {k}")
            continue
        print(f"{comp}: {f['parameters']:,} parameters ({f['linear_weight_parameters']:,} in "
              f"Linear weights)")
        for k, v in f.items():
            if k.endswith("_bytes"):
                print(f"    {k:36s} {v:>16,d} bytes = {v / 1e9:7.3f} GB")


# --- main ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--export", metavar="SRC")
    mode.add_argument("--sizes", action="store_true")
    ap.add_argument("--out", metavar="DST")
    ap.add_argument("--graphs", default="transformer,t5")
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.sizes:
        fig = sizes()
        print_sizes(fig)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(fig, f, indent=1)
                f.write("\n")
        return
    if not args.out:
        ap.error("--export needs --out DST")
    if args.block_size < 16 or args.block_size & (args.block_size - 1):
        ap.error("--block-size must be a power of two >= 16")
    graphs = [g for g in args.graphs.split(",") if g]
    _, quantized = quantize_export(args.export, args.out, graphs, args.block_size)
    if args.check:
        check(args.export, args.out, quantized)


if __name__ == "__main__":
    main()
