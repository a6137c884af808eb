#!/usr/bin/env python3
"""Block-quantize the FLUX transformer's Linear weights to 4 bits for ONNX Runtime's
com.microsoft.MatMulNBits, and compute the full-size byte figures.

Pinned versions (tested): as export_flux.py (torch==2.15.0, diffusers==0.36.0,
transformers==4.57.6, onnx==1.23.2, onnxruntime==1.31.1, safetensors==0.8.0, numpy==2.4.6).

Usage:
    python quantize_nbits.py --export DIR [--block-size 64] [--check]
    python quantize_nbits.py --sizes [--json PATH]   (full_size_bytes.json beside this script
                                                     is its output)

--export DIR  reads DIR/transformer.onnx and DIR/weights.safetensors (written by
    export_flux.py; for the full-size model run export_flux.py --checkpoint on the official
    bf16 checkpoint first, so this is done once, offline) and writes
      DIR/transformer_q4.onnx          the same graph with every Gemm(x, W, b, transB=1) whose
                                       W is a parameter replaced by
                                       MatMulNBits(x, W.qweight, W.scales, W.zero_points, "", b)
                                       (domain com.microsoft, bits=4, block_size, K, N); the
                                       float W is no longer referenced; every other parameter
                                       still points into weights.safetensors
      DIR/transformer_q4.safetensors   "<W>.qweight" U8 [N, k_blocks, block_size/2],
                                       "<W>.scales" F32/F16 (the graph's float type)
                                       [N, k_blocks], "<W>.zero_points" U8
                                       [N, ceil(k_blocks/2)], written as export_flux.py writes
                                       weights.safetensors (deterministic, aligned), and
                                       referenced by the graph as external data (offset
                                       8 + header_len + data_offsets[0]); the graph holds no
                                       weight bytes (asserted; any other initializer >= 4 KiB
                                       fails)
      DIR/transformer_q4.json          bits, block size, each quantized weight (N, K, k_blocks,
                                       bytes), totals.
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
    --check compares it with onnxruntime's own C++ quantizer (quantize_matmul_4bits) and
    runs ONNX Runtime: the quantized graph against the float graph fed the dequantized weights
    by name (the layout is right when these agree to float rounding), and against the float
    graph itself (the quantization error), for one transformer call and for 4 Euler steps.

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


# --- graph rewrite ------------------------------------------------------------------------

def rewrite(directory, block_size, out_stem="transformer_q4"):
    from safetensors import safe_open
    gpath = os.path.join(directory, "transformer.onnx")
    wpath = os.path.join(directory, export_flux.WEIGHTS)
    proto = onnx.load(gpath, load_external_data=False)
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    f = safe_open(wpath, "numpy")
    params = set(f.keys())
    quantized, arrays, new_nodes, float_type = [], {}, [], None
    for node in g.node:
        w = node.input[1] if node.op_type == "Gemm" and len(node.input) > 1 else None
        if w is None or w not in params:
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transB", 0) != 1 or attrs.get("transA", 0) or \
                attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise SystemExit(f"{node.name}: Gemm with {attrs}, not (x, W^T, b)")
        t = inits[w]
        dtype = t.data_type
        if float_type is None:
            float_type = dtype
        elif float_type != dtype:
            raise SystemExit(f"{w}: mixed float types in the transformer graph")
        wf = f.get_tensor(w)
        n, k = wf.shape
        sdtype = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
        packed, scales, zp = quantize(wf.astype(np.float32), block_size, sdtype)
        arrays[w + ".qweight"] = packed
        arrays[w + ".scales"] = scales
        arrays[w + ".zero_points"] = zp
        inputs = [node.input[0], w + ".qweight", w + ".scales", w + ".zero_points"]
        if len(node.input) > 2 and node.input[2]:
            inputs += ["", node.input[2]]
        new_nodes.append(helper.make_node(
            "MatMulNBits", inputs, list(node.output), name=node.name + "_Q4",
            domain="com.microsoft", K=k, N=n, bits=BITS, block_size=block_size))
        kb = packed.shape[1]
        quantized.append({"name": w, "N": n, "K": k, "k_blocks": kb,
                          "float_bytes": int(wf.nbytes),
                          "q4_bytes": int(packed.nbytes + arrays[w + ".scales"].nbytes
                                          + zp.nbytes)})
    if not quantized:
        raise SystemExit("no Gemm over a parameter found")
    del g.node[:]
    g.node.extend(new_nodes)
    # the float weights are no longer read: drop their initializers
    read = {i for nd in g.node for i in nd.input}
    keep = [t for t in g.initializer if t.name in read]
    dropped = [t.name for t in g.initializer if t.name not in read]
    assert sorted(dropped) == sorted(q["name"] for q in quantized), dropped
    del g.initializer[:]
    g.initializer.extend(keep)

    qpath = os.path.join(directory, out_stem + ".safetensors")
    export_flux.write_safetensors(qpath, arrays, {
        "format": "onnxruntime MatMulNBits", "bits": str(BITS),
        "block_size": str(block_size), "source": os.path.basename(wpath)})
    offsets = export_flux.safetensors_offsets(qpath)
    for name, a in arrays.items():
        start, length = offsets[name]
        t = g.initializer.add()
        t.name = name
        t.data_type = {np.dtype(np.uint8): TensorProto.UINT8,
                       np.dtype(np.float32): TensorProto.FLOAT,
                       np.dtype(np.float16): TensorProto.FLOAT16}[a.dtype]
        t.dims.extend(a.shape)
        t.data_location = TensorProto.EXTERNAL
        for key, v in (("location", out_stem + ".safetensors"), ("offset", str(start)),
                       ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = key, v
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    # every initializer: a parameter (-> weights.safetensors), a quantized tensor (-> q4 file),
    # or small and inline
    problems = []
    for t in g.initializer:
        if t.name in params or t.name in arrays:
            loc = {e.key: e.value for e in t.external_data}.get("location")
            want = export_flux.WEIGHTS if t.name in params else out_stem + ".safetensors"
            if t.data_location != TensorProto.EXTERNAL or loc != want or t.HasField("raw_data"):
                problems.append(f"{t.name}: not external in {want}")
        else:
            nbytes = int(np.prod(t.dims)) * helper.tensor_dtype_to_np_dtype(
                t.data_type).itemsize
            if nbytes >= SMALL:
                problems.append(f"non-parameter initializer {t.name} of {nbytes} bytes")
    if problems:
        raise SystemExit("\n".join(problems))
    gout = os.path.join(directory, out_stem + ".onnx")
    with open(gout, "wb") as fo:
        fo.write(proto.SerializeToString(deterministic=True))
    onnx.checker.check_model(gout)
    summary = {
        "graph": out_stem + ".onnx", "weights": out_stem + ".safetensors",
        "float_weights": export_flux.WEIGHTS, "op": "com.microsoft.MatMulNBits",
        "bits": BITS, "block_size": block_size, "symmetric": False,
        "scales_dtype": "float16" if float_type == TensorProto.FLOAT16 else "float32",
        "layout": {"qweight": "uint8 [N, k_blocks, block_size/2], low nibble first",
                   "scales": "[N, k_blocks]", "zero_points": "uint8 [N, ceil(k_blocks/2)], "
                   "low nibble first"},
        "quantized": quantized,
        "float_bytes": sum(q["float_bytes"] for q in quantized),
        "q4_bytes": sum(q["q4_bytes"] for q in quantized),
        "graph_io": export_flux.graph_io(proto),
    }
    with open(os.path.join(directory, out_stem + ".json"), "w") as fo:
        json.dump(summary, fo, indent=1)
        fo.write("\n")
    print(f"{out_stem}.onnx: {os.path.getsize(gout)} bytes, {len(quantized)} Gemm -> "
          f"MatMulNBits (block {block_size}); {out_stem}.safetensors "
          f"{os.path.getsize(qpath)} bytes; the float weights they replace: "
          f"{summary['float_bytes']} bytes")
    return summary


# --- check --------------------------------------------------------------------------------

def check(directory, summary, seed=0):
    from safetensors.numpy import load_file
    block = summary["block_size"]
    params = load_file(os.path.join(directory, export_flux.WEIGHTS))
    qarrays = load_file(os.path.join(directory, summary["weights"]))
    # (1) the numpy quantizer against onnxruntime's C++ one
    codes = total = 0
    for q in summary["quantized"]:
        w = params[q["name"]]
        mine = (qarrays[q["name"] + ".qweight"], qarrays[q["name"] + ".scales"],
                qarrays[q["name"] + ".zero_points"])
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

    # (2) ORT: q4 graph vs float graph (a) with dequantized weights (b) with the originals
    deq = dict(params)
    for q in summary["quantized"]:
        deq[q["name"]] = dequantize(qarrays[q["name"] + ".qweight"],
                                    qarrays[q["name"] + ".scales"],
                                    qarrays[q["name"] + ".zero_points"], q["K"],
                                    block).astype(params[q["name"]].dtype)
    fpath = os.path.join(directory, "transformer.onnx")
    qpath = os.path.join(directory, summary["graph"])
    s_float = export_flux.session(fpath)
    s_deq = export_flux.session(fpath, initializers=export_flux.graph_params(fpath, deq))
    s_q4 = export_flux.session(qpath)
    with open(os.path.join(directory, "flux.json")) as fo:
        m = json.load(fo)
    tr = m["components"]["transformer"]
    lat = m["latents"]
    rng = np.random.default_rng(seed + 5)
    tokens, txt = lat["packed_tokens"], m["tokenizers"]["t5"]["max_length"]
    side = lat["latent_height"] // 2
    cond = {
        "encoder_hidden_states": rng.standard_normal((1, txt, tr["joint_attention_dim"]),
                                                     np.float32),
        "pooled_projections": rng.standard_normal((1, tr["pooled_projection_dim"]), np.float32),
        "img_ids": export_flux.latent_image_ids(side, side),
        "txt_ids": np.zeros((txt, 3), np.float32),
    }
    x0 = rng.standard_normal((1, tokens, tr["in_channels"]), np.float32)
    sig = np.asarray(m["scheduler"]["sigmas"], np.float32)
    report = {"block_size": block, "numpy_vs_ort_quantizer_bytes_differing": codes,
              "one_call": {}, "four_steps": {}}

    def call(s, x, t):
        return s.run(None, dict(cond, hidden_states=x,
                                timestep=np.array([t], np.float32)))[0]
    ref, d, q = (call(s, x0, 1.0) for s in (s_float, s_deq, s_q4))
    scale = float(np.abs(ref).max())

    def err(a, b):
        return {"max_abs": float(np.abs(a - b).max()),
                "rel_max": float(np.abs(a - b).max() / np.abs(b).max()),
                "rel_rms": float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b ** 2)))}
    report["one_call"] = {"q4_vs_float_with_dequantized_weights": err(q, d),
                          "q4_vs_float": err(q, ref), "scale": scale}
    xs = {}
    for label, s in (("float", s_float), ("deq", s_deq), ("q4", s_q4)):
        x = x0
        for i in range(len(sig) - 1):
            v = call(s, x, float(sig[i]))
            x = (x + (np.float32(sig[i + 1] - sig[i]) * v).astype(np.float32)).astype(np.float32)
        xs[label] = x
    report["four_steps"] = {"q4_vs_float_with_dequantized_weights": err(xs["q4"], xs["deq"]),
                            "q4_vs_float": err(xs["q4"], xs["float"])}
    print(json.dumps(report, indent=1))
    lay = report["one_call"]["q4_vs_float_with_dequantized_weights"]["rel_max"]
    if not lay < (5e-3 if summary["scales_dtype"] == "float16" else 1e-4):
        raise SystemExit(f"MatMulNBits disagrees with the dequantized weights ({lay}): layout")
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
    mode.add_argument("--export")
    mode.add_argument("--sizes", action="store_true")
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
    if args.block_size < 16 or args.block_size & (args.block_size - 1):
        ap.error("--block-size must be a power of two >= 16")
    summary = rewrite(args.export, args.block_size)
    if args.check:
        check(args.export, summary)


if __name__ == "__main__":
    main()
