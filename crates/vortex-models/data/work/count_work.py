#!/usr/bin/env python3
"""Counts the work of one call of an ONNX graph: multiply-adds, elementwise operations and the
weight bytes it reads, at given input shapes, from onnx's own shape inference.

Pinned versions (tested): Python 3.11.7, onnx==1.23.2, numpy==2.4.6 (onnxruntime==1.31.1 only
for observed_shapes(), which runs a graph to learn the shapes its data decides).

Usage:
  python count_work.py GRAPH.onnx [--input NAME=1x3x256x256 ...] [--dim SYMBOL=N ...]
                       [--manifest MANIFEST.json --graph NAME] [--scopes DEPTH]
  prints {"graph", "inputs", "macs", "elementwise", "weight_bytes", "per_op_type",
          "per_scope", "uncounted", "conventions"} as JSON.

  --input   a graph input's dims, 'x'-separated (replaces its symbolic and fixed dims)
  --dim     the value of a symbolic dimension (batch, seq, ...) wherever it appears
  --manifest/--graph  an export's manifest (liveportrait.json, clip.json, flux.json): graph
            inputs it names as weights (a weightless graph's parameters) count as weight bytes
            (initializers always do: external data is counted from its dims, never read)
  --scopes  also sum per node-name scope (TorchScript names nodes "/module/sub/op"): the
            first DEPTH path components (LivePortrait's warping_spade.onnx at 1 splits
            warping_module from spade_generator)

What counts (CONVENTIONS below, also written into the output):
  MACs (one multiply and one add = 1 MAC; a FLOP count is 2x):
    Conv, ConvInteger, QLinearConv  N * Cout * prod(out spatial) * Cin/group * prod(kernel)
    ConvTranspose                   N * Cin * prod(in spatial) * Cout/group * prod(kernel)
    MatMul, MatMulInteger, QLinearMatMul, com.microsoft FusedMatMul
                                    prod(broadcast batch dims) * M * K * N
    Gemm                            M * K * N (transA / transB read)
    com.microsoft MatMulNBits       prod(A's dims but the last) * K * N (its K, N attributes)
    Einsum                          prod of every index's size when some index is summed
                                    (else it is a product: counted as elementwise, output)
    com.microsoft Attention         input projection B*S*Din*(Q+K+V widths) + 2*B*S*L*D
    com.microsoft MultiHeadAttention, GroupQueryAttention   2 * B * S * L * D (scores and
                                    the weighted sum; D = heads * head size of Q/K)
    LSTM, GRU, RNN, com.microsoft DynamicQuantizeLSTM
                                    dirs * seq * batch * gates*H * (input + H)
    GridSample                      per output element (each channel): bilinear 4 (2-D) or
                                    8 (5-D, trilinear) MACs, bicubic 16, nearest 0
    STFT, DFT                       counted as a direct DFT: frames * bins * frame length
  elementwise ops (not MACs; one op per element touched):
    elementwise arithmetic, activations, Where/Clip/Cast-free math: the output's elements;
    normalizations (BatchNormalization, InstanceNormalization, LayerNormalization,
    GroupNormalization, com.microsoft SkipLayerNormalization, ...), Softmax, LogSoftmax and
    reductions: the input's elements; pooling: output elements * kernel size; Resize /
    Upsample: the output's elements; DequantizeLinear / QuantizeLinear /
    DynamicQuantizeLinear: the input's elements. The bias additions of Conv and Gemm and
    GridSample's per-location weights are not counted (<= 1/K of their MACs).
  not counted: data movement and shape arithmetic (Reshape, Transpose, Concat, Slice, Gather,
    Shape, Cast, Expand, Tile, Pad, Constant, ...): they read and write bytes but compute
    nothing.
  weight bytes: every initializer's bytes from its dims and type (external ones too), plus the
    graph inputs the manifest names as weights; each counted once per call; a table that only
    Gather reads (axis 0: token embeddings) counts only the rows gathered.
A node whose shapes stay unknown after inference is listed under "uncounted" (op, name,
which shape), never guessed.
"""
import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

CONVENTIONS = (
    "MACs: multiply-adds (1 MAC = 2 FLOP) of Conv/ConvTranspose/MatMul/Gemm/MatMulNBits/Einsum/"
    "attention/RNN/GridSample (bilinear 4 per output element and channel in 2-D, trilinear 8 "
    "in 5-D)/STFT (as a direct DFT); elementwise: one op per element touched (outputs of "
    "elementwise ops and activations, inputs of normalizations, softmax and reductions, pools "
    "x kernel); data movement not counted; bias adds not counted; weight bytes: initializers "
    "(dims x item size) + manifest-named weight inputs, once per call (a table only Gather "
    "reads: the rows gathered)")

ITEMSIZE = {
    TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2,
    TensorProto.DOUBLE: 8, TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.INT16: 2,
    TensorProto.UINT16: 2, TensorProto.INT32: 4, TensorProto.UINT32: 4, TensorProto.INT64: 8,
    TensorProto.UINT64: 8, TensorProto.BOOL: 1, TensorProto.INT4: 0.5, TensorProto.UINT4: 0.5,
    TensorProto.FLOAT8E4M3FN: 1, TensorProto.FLOAT8E5M2: 1,
}

# ops whose cost is their output's elements
ELEMENTWISE_OUT = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "Tanh",
    "Softplus", "Softsign", "Gelu", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan",
    "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round", "Sign", "Mod",
    "Min", "Max", "Mean", "Sum", "Clip", "Where", "Equal", "Less", "LessOrEqual", "Greater",
    "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf", "HardSwish", "Mish",
    "ThresholdedRelu", "BitShift", "Resize", "Upsample", "CumSum",
    # com.microsoft
    "FastGelu", "BiasGelu", "QuickGelu", "Gelu", "BiasAdd", "BiasSplitGelu",
}
# ops whose cost is their (first) input's elements
ELEMENTWISE_IN = {
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "LpNormalization", "MeanVarianceNormalization", "RMSNormalization",
    "SkipLayerNormalization", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
    "Softmax", "LogSoftmax", "Hardmax",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
    "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear",
}
POOLS = {"AveragePool", "MaxPool", "LpPool"}
GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}
# compute nothing (data movement, shapes, control of shapes)
MOVEMENT = {
    "Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements", "GatherND",
    "Scatter", "ScatterElements", "ScatterND", "Shape", "Size", "Cast", "CastLike", "Expand",
    "Tile", "Pad", "Constant", "ConstantOfShape", "Identity", "Squeeze", "Unsqueeze",
    "Flatten", "Split", "Range", "NonZero", "DepthToSpace", "SpaceToDepth", "Dropout",
    "EyeLike", "OneHot", "Trilu", "TopK", "Compress", "ReverseSequence", "Optional",
}
MAC_OPS = {
    "Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "MatMul", "MatMulInteger",
    "QLinearMatMul", "FusedMatMul", "Gemm", "MatMulNBits", "Einsum", "Attention",
    "MultiHeadAttention", "GroupQueryAttention", "LSTM", "GRU", "RNN", "DynamicQuantizeLSTM",
    "GridSample", "STFT", "DFT",
}


def parse_dims(text):
    return [int(d) for d in text.lower().split("x")] if text else []


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def prod(dims):
    return int(np.prod(dims, dtype=np.int64)) if dims else 1


def known(shape):
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


# ------------------------------------------------------------------------- shapes

def _dims_of(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in t.shape.dim]


def set_shapes(model, inputs=None, dims=None):
    """A copy of `model` whose graph inputs have the given dims (`inputs`: name -> list) and
    whose symbolic dimensions named in `dims` (symbol -> int) are set everywhere."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inputs, dims = dict(inputs or {}), dict(dims or {})
    names = {i.name for i in m.graph.input}
    for name in inputs:
        if name not in names:
            raise SystemExit(f"--input {name}: the graph has no such input ({sorted(names)})")
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        t = vi.type.tensor_type
        if vi.name in inputs:
            want = inputs[vi.name]
            if t.HasField("shape") and len(t.shape.dim) not in (0, len(want)):
                raise SystemExit(f"--input {vi.name}: rank {len(want)}, the graph's is "
                                 f"{len(t.shape.dim)}")
            t.shape.ClearField("dim")
            for d in want:
                t.shape.dim.add().dim_value = int(d)
            continue
        if t.HasField("shape"):
            for d in t.shape.dim:
                if d.HasField("dim_param") and d.dim_param in dims:
                    d.dim_value = int(dims[d.dim_param])
    return m


def _matmul_shape(a, b):
    a, b = list(a), list(b)
    if len(a) == 1:
        a = [1] + a
        squeeze_a = True
    else:
        squeeze_a = False
    squeeze_b = len(b) == 1
    if squeeze_b:
        b = b + [1]
    batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    out = list(batch) + [a[-2], b[-1]]
    if squeeze_a:
        out.pop(-2)
    if squeeze_b:
        out.pop(-1)
    return out


def contrib_output_shapes(node, shape_of):
    """Output shapes of the com.microsoft ops onnx's inference does not know, from their
    inputs' shapes; None where they cannot be told."""
    op, a = node.op_type, attrs(node)
    ins = [shape_of(i) if i else None for i in node.input]
    x = ins[0] if ins else None
    if not known(x):
        return None
    if op == "MatMulNBits":
        return [x[:-1] + [int(a["N"])]]
    if op in ("FastGelu", "BiasGelu", "QuickGelu", "Gelu", "BiasAdd"):
        return [x]
    if op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
        return [x, None, None, x][:len(node.output)]
    if op in ("LayerNormalization", "SimplifiedLayerNormalization"):
        return [x] + [None] * (len(node.output) - 1)
    if op == "FusedMatMul":
        b = ins[1]
        if not known(b):
            return None
        aa, bb = list(x), list(b)
        if a.get("transA", 0) and len(aa) >= 2:
            aa[-1], aa[-2] = aa[-2], aa[-1]
        if a.get("transB", 0) and len(bb) >= 2:
            bb[-1], bb[-2] = bb[-2], bb[-1]
        return [_matmul_shape(aa, bb)]
    if op == "DynamicQuantizeLSTM":
        w = ins[1]  # [dirs, input, 4H] (pre-transposed)
        if not known(w):
            return None
        dirs, hidden = w[0], int(a["hidden_size"])
        seq, batch = x[0], x[1]
        return [[seq, dirs, batch, hidden], [dirs, batch, hidden], [dirs, batch, hidden]]
    if op == "MultiHeadAttention":
        v = ins[2] if len(ins) > 2 else None
        if len(x) == 3 and known(v) and len(v) == 3:
            return [[x[0], x[1], v[2]]] + [None] * (len(node.output) - 1)
        return None
    if op == "Attention":
        w = ins[1]
        if not known(w):
            return None
        qkv = a.get("qkv_hidden_sizes")
        vw = int(qkv[2]) if qkv else w[1] // 3
        return [[x[0], x[1], vw]] + [None] * (len(node.output) - 1)
    return None


SMALL_VALUE = 4096  # elements: values at most this big are computed (shape arithmetic)


def _infer_once(m, observed):
    inferred = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    g = inferred.graph
    shapes = {}
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        d = _dims_of(vi)
        if d is not None and (vi.name not in shapes or not known(shapes[vi.name])):
            shapes[vi.name] = d
    for n in g.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value":
                    shapes[n.output[0]] = list(at.t.dims)
    for k, v in (observed or {}).items():
        if k not in shapes or not known(shapes[k]):
            shapes[k] = list(v)
    elem = {vi.name: vi.type.tensor_type.elem_type
            for vi in list(g.input) + list(g.value_info) + list(g.output)}
    return shapes, elem


def _small_values(m):
    """name -> numpy value of the graph's small inline initializers and Constant nodes."""
    vals = {}
    for t in m.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL and prod(list(t.dims)) <= SMALL_VALUE:
            vals[t.name] = onnx.numpy_helper.to_array(t)
    for n in m.graph.node:
        if n.op_type == "Constant" and n.output:
            try:
                from onnx.reference import ReferenceEvaluator
                v = ReferenceEvaluator(n).run(None, {})[0]
            except Exception:
                continue
            if np.asarray(v).size <= SMALL_VALUE:
                vals[n.output[0]] = np.asarray(v)
    return vals


def _evaluate(node, vals, shapes):
    """The node's output values when they are shape arithmetic that can be computed here
    (every input's value known, small), else None."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None
    if op in ("Shape", "Size"):
        s = shapes.get(node.input[0])
        if not known(s):
            return None
        if op == "Size":
            return [np.array(prod(s), dtype=np.int64)]
        a = attrs(node)
        r = len(s)
        start, end = a.get("start", 0), a.get("end", r)
        start, end = max(0, start + r if start < 0 else start), min(r, end + r if end < 0 else end)
        return [np.array(s[start:end], dtype=np.int64)]
    if op in MAC_OPS or op == "Constant":
        return None
    ins = [i for i in node.input]
    if not all((not i) or i in vals for i in ins):
        return None
    if op in ("ConstantOfShape", "Expand", "Tile", "Range"):
        try:
            if op == "ConstantOfShape":
                size = prod([int(v) for v in vals[ins[0]].reshape(-1)])
            elif op == "Expand":
                size = prod(list(np.broadcast_shapes(vals[ins[0]].shape,
                                                     tuple(int(v) for v in vals[ins[1]]))))
            elif op == "Tile":
                size = vals[ins[0]].size * prod([int(v) for v in vals[ins[1]]])
            else:
                st, li, de = (float(vals[i]) for i in ins)
                size = max(0, math.ceil((li - st) / de))
        except Exception:
            return None
        if size > SMALL_VALUE:
            return None
    from onnx.reference import ReferenceEvaluator
    try:
        feeds = {i: vals[i] for i in ins if i}
        out = ReferenceEvaluator(node).run(None, feeds)
    except Exception:
        return None
    out = [np.asarray(o) for o in out]
    if any(o.size > SMALL_VALUE or o.dtype == object for o in out):
        return None
    return out


def fold(m, shapes, vals):
    """Computes the graph's shape arithmetic (Shape of a known shape, Gather/Concat/... of
    known values) and replaces each computed node by an initializer holding its value, so
    onnx's inference sees constant shapes (what its data propagation alone misses).
    Returns the number of nodes folded."""
    graph_outs = {o.name for o in m.graph.output}
    keep, folded = [], 0
    for n in m.graph.node:
        outs = None
        if n.op_type != "Constant" and not any(o in graph_outs for o in n.output):
            outs = _evaluate(n, vals, shapes)
        if outs is None or len(outs) != len([o for o in n.output if o]):
            keep.append(n)
            continue
        for name, v in zip([o for o in n.output if o], outs):
            vals[name] = v
            shapes[name] = list(v.shape)
            m.graph.initializer.append(onnx.numpy_helper.from_array(v, name))
        folded += 1
    if folded:
        del m.graph.node[:]
        m.graph.node.extend(keep)
        names = {t.name for t in m.graph.initializer}
        keep_vi = [vi for vi in m.graph.value_info if vi.name not in names]
        del m.graph.value_info[:]
        m.graph.value_info.extend(keep_vi)
    return folded


def infer(model, observed=None, rounds=64):
    """(shapes, model): every value's shape (name -> list of ints / symbols / None) after
    onnx's inference (data_prop=True), repeated with the graph's shape arithmetic folded into
    constants (fold) and the shapes of com.microsoft ops (contrib_output_shapes) and
    `observed` ones (name -> shape, from a run) added, while that finds more; and the folded
    model the shapes belong to."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    vals = _small_values(m)
    shapes = {}
    for _ in range(rounds):
        shapes, elem = _infer_once(m, observed)
        progress = fold(m, shapes, vals)
        for n in m.graph.node:
            outs = None
            if n.domain not in ("", "ai.onnx"):
                outs = contrib_output_shapes(n, shapes.get)
            for i, name in enumerate(n.output):
                if not name or known(shapes.get(name)):
                    continue
                s = None
                if outs is not None and i < len(outs) and known(outs[i]):
                    s = outs[i]
                elif observed and name in observed:
                    s = list(observed[name])
                if s is None:
                    continue
                et = elem.get(name) or (elem.get(n.input[0]) if n.input else 0) or \
                    TensorProto.FLOAT
                stale = [vi for vi in m.graph.value_info if vi.name == name]
                for vi in stale:  # a declared shape with unknown dims
                    m.graph.value_info.remove(vi)
                m.graph.value_info.append(helper.make_tensor_value_info(name, et, s))
                shapes[name] = s
                progress += 1
        if not progress:
            break
    return shapes, m


def observed_shapes(path, feeds, only=None, threads=2):
    """Every value's shape in a real run of the graph at `path` on ONNX Runtime (its weights
    beside it): for shapes the graph's data decides (Kokoro's decoder length). `only`: the
    value names to observe (default: all)."""
    import onnxruntime as ort
    m = onnx.load(path, load_external_data=False)
    graph_outs = {o.name for o in m.graph.output}
    names = [o for n in m.graph.node for o in n.output if o and o not in graph_outs]
    if only is not None:
        names = [n for n in names if n in only]
    for name in names:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    d = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(suffix=".onnx", dir=d, delete=True) as f:
        f.write(m.SerializeToString())
        f.flush()
        sess = ort.InferenceSession(f.name, so, providers=["CPUExecutionProvider"])
        out_names = [o.name for o in sess.get_outputs()]
        got = sess.run(out_names, feeds)
    return {n: list(v.shape) for n, v in zip(out_names, got) if hasattr(v, "shape")}


# ------------------------------------------------------------------------- counting

def node_work(node, shape_of, value_of=None):
    """(macs, elementwise, missing) of one node: missing names the shape that was unknown."""
    op, a = node.op_type, attrs(node)

    def need(name):
        s = shape_of(name) if name else None
        if not known(s):
            raise LookupError(name)
        return s

    try:
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            w = need(node.input[3 if op == "QLinearConv" else 1])  # [Cout, Cin/group, k...]
            y = need(node.output[0])
            return prod(y) * w[1] * prod(w[2:]), 0, None
        if op == "ConvTranspose":
            x = need(node.input[0])
            w = need(node.input[1])  # [Cin, Cout/group, k...]
            return prod(x) * w[1] * prod(w[2:]), 0, None
        if op in ("MatMul", "MatMulInteger", "FusedMatMul", "QLinearMatMul"):
            bi = 3 if op == "QLinearMatMul" else 1
            x, w = list(need(node.input[0])), list(need(node.input[bi]))
            if op == "FusedMatMul":
                if a.get("transA", 0) and len(x) >= 2:
                    x[-1], x[-2] = x[-2], x[-1]
                if a.get("transB", 0) and len(w) >= 2:
                    w[-1], w[-2] = w[-2], w[-1]
            k = x[-1]
            y = _matmul_shape(x, w)
            return prod(y) * k, 0, None
        if op == "Gemm":
            x = need(node.input[0])
            w = need(node.input[1])
            m_ = x[1] if a.get("transA", 0) else x[0]
            k = x[0] if a.get("transA", 0) else x[1]
            n_ = w[0] if a.get("transB", 0) else w[1]
            return m_ * k * n_, 0, None
        if op == "MatMulNBits":
            x = need(node.input[0])
            return prod(x[:-1]) * int(a["K"]) * int(a["N"]), 0, None
        if op == "Einsum":
            eq = a["equation"]
            eq = eq.decode() if isinstance(eq, bytes) else eq
            lhs, _, rhs = eq.replace(" ", "").partition("->")
            terms = lhs.split(",")
            size = {}
            for t, name in zip(terms, node.input):
                s = need(name)
                if "..." in t:
                    pre, post = t.split("...")
                    nell = len(s) - len(pre) - len(post)
                    letters = list(pre) + [f"_{i}" for i in range(nell)] + list(post)
                    # right-aligned ellipsis dims
                    ell = s[len(pre):len(pre) + nell]
                    for i, d in enumerate(ell):
                        key = f"_{nell - 1 - i}r"
                        size[key] = max(size.get(key, 1), d)
                    letters = list(pre) + [f"_{nell - 1 - i}r" for i in range(nell)] + list(post)
                    s = list(s[:len(pre)]) + list(ell) + list(s[len(pre) + nell:])
                else:
                    letters = list(t)
                for l, d in zip(letters, s):
                    size[l] = max(size.get(l, 1), d)
            total = prod(list(size.values()))
            out_letters = set(rhs.replace("...", "")) if "->" in eq else None
            summed = out_letters is not None and any(
                l for l in size if not l.startswith("_") and l not in out_letters)
            if summed:
                return total, 0, None
            return 0, total, None
        if op == "Attention":
            x = need(node.input[0])
            w = need(node.input[1])
            heads = int(a["num_heads"])
            qkv = a.get("qkv_hidden_sizes")
            qw, kw, vw = (int(v) for v in qkv) if qkv else (w[1] // 3,) * 3
            b_, s_ = x[0], x[1]
            proj = b_ * s_ * x[2] * (qw + kw + vw)
            attn = b_ * s_ * s_ * qw + b_ * s_ * s_ * vw
            return proj + attn, b_ * heads * s_ * s_, None
        if op in ("MultiHeadAttention", "GroupQueryAttention"):
            q = need(node.input[0])
            k = need(node.input[1]) if len(node.input) > 1 and node.input[1] else None
            heads = int(a["num_heads"])
            if k is None or len(q) != 3 or len(k) != 3:
                raise LookupError(node.input[1] if len(node.input) > 1 else node.input[0])
            v = need(node.input[2])
            b_, s_, d = q
            l_ = k[1]
            return b_ * s_ * l_ * d + b_ * s_ * l_ * v[2], b_ * heads * s_ * l_, None
        if op in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
            x = need(node.input[0])
            w = need(node.input[1])
            hidden = int(a["hidden_size"])
            gates = {"LSTM": 4, "GRU": 3, "RNN": 1, "DynamicQuantizeLSTM": 4}[op]
            layout = int(a.get("layout", 0))
            seq, batch = (x[1], x[0]) if layout else (x[0], x[1])
            dirs = w[0]
            macs = dirs * seq * batch * gates * hidden * (x[2] + hidden)
            return macs, dirs * seq * batch * hidden * (gates + 3), None
        if op == "GridSample":
            y = need(node.output[0])
            mode = a.get("mode", b"bilinear")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            spatial = len(y) - 2
            taps = {"bilinear": 2 ** spatial, "linear": 2 ** spatial,
                    "bicubic": 4 ** spatial, "cubic": 4 ** spatial,
                    "nearest": 0}[mode]
            if taps == 0:
                return 0, prod(y), None
            return prod(y) * taps, 0, None
        if op == "STFT":
            x = need(node.input[0])  # [batch, signal, 1|2]
            y = need(node.output[0])  # [batch, frames, bins, 2]
            length = None
            if len(node.input) > 3 and node.input[3]:
                length = (value_of(node.input[3]) if value_of else None)
            if length is None and len(node.input) > 2 and node.input[2]:
                length = need(node.input[2])[0]
            if length is None:
                raise LookupError(node.input[3] if len(node.input) > 3 else node.input[0])
            return y[0] * y[1] * y[2] * int(length) * (x[2] if len(x) > 2 else 1), 0, None
        if op == "DFT":
            x = need(node.input[0])
            y = need(node.output[0])
            axis = int(a.get("axis", 1))
            n = x[axis]
            return prod(y[:-1]) * n, 0, None
        if op in ELEMENTWISE_OUT:
            return 0, prod(need(node.output[0])), None
        if op in ELEMENTWISE_IN:
            return 0, prod(need(node.input[0])), None
        if op in POOLS:
            y = need(node.output[0])
            return 0, prod(y) * prod(a.get("kernel_shape", [1])), None
        if op in GLOBAL_POOLS:
            return 0, prod(need(node.input[0])), None
        return 0, 0, None
    except LookupError as e:
        return 0, 0, str(e.args[0])


def count(model, inputs=None, dims=None, weight_names=(), observed=None, scopes=0):
    """The work of one call of `model` (a ModelProto or a path; weights never loaded): a dict
    with macs, elementwise, weight_bytes, per_op_type, per_scope (scopes > 0), uncounted."""
    if isinstance(model, str):
        model = onnx.load(model, load_external_data=False)
    m0 = set_shapes(model, inputs, dims)
    shapes, m = infer(m0, observed)
    consts = {}
    for t in m.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL and prod(list(t.dims)) <= 16:
            consts[t.name] = onnx.numpy_helper.to_array(t)
    for n in m.graph.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value" and prod(list(at.t.dims)) <= 16:
                    consts[n.output[0]] = onnx.numpy_helper.to_array(at.t)

    def value_of(name):
        v = consts.get(name)
        return None if v is None else int(np.asarray(v).reshape(-1)[0])

    per_op, per_scope, uncounted = {}, {}, []
    macs = elementwise = 0
    subgraphs = 0
    for n in m.graph.node:
        if any(at.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for at in n.attribute):
            subgraphs += 1
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        mac, ew, missing = node_work(n, shapes.get, value_of)
        if missing is not None:
            uncounted.append({"op": key, "node": n.name, "unknown_shape": missing})
            continue
        if not mac and not ew:
            if n.op_type not in MOVEMENT and n.op_type not in MAC_OPS and \
                    n.op_type not in ELEMENTWISE_OUT | ELEMENTWISE_IN | POOLS | GLOBAL_POOLS:
                per_op.setdefault(key, {"nodes": 0, "macs": 0, "elementwise": 0,
                                        "not_modelled": True})["nodes"] += 1
            continue
        macs += mac
        elementwise += ew
        e = per_op.setdefault(key, {"nodes": 0, "macs": 0, "elementwise": 0})
        e["nodes"] += 1
        e["macs"] += mac
        e["elementwise"] += ew
        if scopes:
            parts = [p for p in n.name.split("/") if p][:-1][:scopes]
            sc = "/".join(parts) or "(top)"
            s = per_scope.setdefault(sc, {"macs": 0, "elementwise": 0})
            s["macs"] += mac
            s["elementwise"] += ew

    # a table only Gather reads (token embeddings) is read at the rows gathered
    readers = {}
    for n in m0.graph.node:
        for i, name in enumerate(n.input):
            readers.setdefault(name, []).append((n, i))

    def bytes_read(name, dims, itemsize):
        full = prod(dims) * itemsize
        uses = readers.get(name, [])
        if uses and dims and all(n.op_type == "Gather" and i == 0 and
                                 attrs(n).get("axis", 0) == 0 for n, i in uses):
            rows = [shapes.get(n.input[1]) for n, _ in uses]
            if all(known(r) for r in rows):
                full = min(full, sum(prod(r) for r in rows) * (full // dims[0]))
        return full

    init_bytes = 0
    for t in m0.graph.initializer:
        init_bytes += bytes_read(t.name, list(t.dims), ITEMSIZE.get(t.data_type, 4))
    named = 0
    weight_names = set(weight_names or ())
    inits = {t.name for t in m0.graph.initializer}
    for vi in m0.graph.input:
        if vi.name in weight_names and vi.name not in inits:
            s = shapes.get(vi.name)
            if not known(s):
                uncounted.append({"op": "weight", "node": vi.name, "unknown_shape": vi.name})
                continue
            named += bytes_read(vi.name, s, ITEMSIZE.get(vi.type.tensor_type.elem_type, 4))
    dtypes = sorted({TensorProto.DataType.Name(t.data_type) for t in m0.graph.initializer
                     if prod(list(t.dims)) * ITEMSIZE.get(t.data_type, 4) >= 4096})
    out = {
        "inputs": {i.name: shapes.get(i.name) for i in m0.graph.input
                   if i.name not in inits and i.name not in weight_names},
        "macs": int(macs),
        "elementwise": int(elementwise),
        "weight_bytes": int(init_bytes + named),
        "weight_dtypes": dtypes,
        "per_op_type": dict(sorted(per_op.items(), key=lambda kv: -kv[1]["macs"])),
        "uncounted": uncounted,
    }
    if scopes:
        out["per_scope"] = dict(sorted(per_scope.items(), key=lambda kv: -kv[1]["macs"]))
    if subgraphs:
        out["subgraph_nodes_not_counted"] = subgraphs
    return out


def manifest_weights(manifest, graph):
    """Names an export's manifest gives as the weights of `graph` (LivePortrait's
    external_initializers; FLUX's / CLIP's parameters), for weightless graphs."""
    g = manifest.get("graphs", {}).get(graph, {})
    for key in ("external_initializers", "parameters", "weights"):
        if isinstance(g.get(key), list):
            return [x if isinstance(x, str) else x.get("name") for x in g[key]]
    return []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("graph")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=DIMS")
    ap.add_argument("--dim", action="append", default=[], metavar="SYMBOL=N")
    ap.add_argument("--manifest")
    ap.add_argument("--graph", dest="graph_name",
                    help="the graph's name in the manifest (default: the file's stem)")
    ap.add_argument("--scopes", type=int, default=0)
    a = ap.parse_args(argv)
    inputs = {k: parse_dims(v) for k, v in (s.split("=", 1) for s in a.input)}
    dims = {k: int(v) for k, v in (s.split("=", 1) for s in a.dim)}
    names = []
    if a.manifest:
        with open(a.manifest) as f:
            man = json.load(f)
        names = manifest_weights(man, a.graph_name or a.graph.rsplit("/", 1)[-1]
                                 .removesuffix(".onnx"))
    r = count(a.graph, inputs, dims, names, scopes=a.scopes)
    r = {"graph": a.graph, **r, "conventions": CONVENTIONS}
    json.dump(r, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    sys.exit(main())
