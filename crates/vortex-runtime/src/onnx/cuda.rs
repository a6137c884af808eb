//! ONNX Runtime's CUDA provider, as a table: which ops it has kernels for (by domain and the
//! first opset version it registers), which inputs a kernel reads from host memory
//! (`.InputMemoryType(OrtMemTypeCPUInput, i)`), which outputs it writes there
//! (`.OutputMemoryType(.., i)`), and the checks its `GetCapability` makes before taking a node.
//!
//! Sources, all in microsoft/onnxruntime (paths below are under
//! `onnxruntime/core/providers/cuda/` unless they start with `contrib_ops/`):
//! - The op list: `docs/OperatorKernels.md`, "Operators implemented by CUDAExecutionProvider"
//!   (generated from the registered kernels; the stored copy read is commit 001d12d2, not
//!   confirmed to be rel-1.31), plus NonMaxSuppression, which that copy omits but
//!   `object_detection/non_max_suppression.cc` registers. Ops added later (GroupNormalization,
//!   LpNormalization, DeformConv have kernel files in newer trees) are left out: a node of
//!   theirs is predicted to fall back.
//! - Host slots: the kernel file cited on each entry.
//! - The checks: `cuda_execution_provider.cc`, `GetCapability` (RNN-family attributes,
//!   ConvTranspose padding, Cast to string).
//!
//! Version ranges are kept only where they change a slot or end a kernel (Scan's
//! `sequence_lens` is opset 8 only; Upsample and Scatter stop at 9 and 10); otherwise an op is
//! taken to have kernels for every version from its first, as the registrations read do.

use super::data_type;
use super::{AttributeValue, Node};

/// One op's CUDA kernels over a range of opset versions.
#[derive(Debug)]
pub(super) struct Kernel {
    /// Domain (`""` for `ai.onnx`).
    pub domain: &'static str,
    /// Operator.
    pub op: &'static str,
    /// First opset version of the range.
    pub since: i64,
    /// Last opset version of the range.
    pub until: i64,
    /// Inputs read from host memory.
    pub cpu_inputs: &'static [usize],
    /// Outputs written to host memory.
    pub cpu_outputs: &'static [usize],
}

const OPEN: i64 = i64::MAX;

const fn op(domain: &'static str, op: &'static str, since: i64) -> Kernel {
    Kernel {
        domain,
        op,
        since,
        until: OPEN,
        cpu_inputs: &[],
        cpu_outputs: &[],
    }
}

const fn onnx(name: &'static str, since: i64) -> Kernel {
    op("", name, since)
}

const fn ms(name: &'static str) -> Kernel {
    op("com.microsoft", name, 1)
}

const fn host(mut k: Kernel, cpu_inputs: &'static [usize]) -> Kernel {
    k.cpu_inputs = cpu_inputs;
    k
}

const fn until(mut k: Kernel, last: i64) -> Kernel {
    k.until = last;
    k
}

/// The table. Entries with host slots cite the kernel file the slots were read in.
static KERNELS: &[Kernel] = &[
    onnx("Abs", 6),
    onnx("Add", 7),
    onnx("Affine", 1),
    onnx("And", 7),
    onnx("ArgMax", 1),
    onnx("ArgMin", 1),
    onnx("Attention", 23),
    onnx("AveragePool", 7),
    onnx("BatchNormalization", 7),
    onnx("Cast", 6),
    onnx("Ceil", 6),
    // math/clip.cc: min, max (opset 11+; attributes before).
    host(onnx("Clip", 6), &[1, 2]),
    onnx("Compress", 9),
    onnx("Concat", 4),
    onnx("ConcatFromSequence", 11),
    // generator/constant_of_shape.cc: the shape.
    host(onnx("ConstantOfShape", 9), &[0]),
    onnx("Conv", 1),
    onnx("ConvTranspose", 1),
    onnx("Cos", 7),
    onnx("Crop", 1),
    // math/cumsum.cc: axis.
    host(onnx("CumSum", 11), &[1]),
    onnx("DepthToSpace", 1),
    onnx("DequantizeLinear", 10),
    onnx("Div", 7),
    // nn/dropout.cc: ratio, training_mode (opset 12+).
    host(onnx("Dropout", 7), &[1, 2]),
    onnx("DynamicSlice", 1),
    onnx("Einsum", 12),
    onnx("Elu", 6),
    onnx("Equal", 7),
    onnx("Erf", 9),
    onnx("Exp", 6),
    // tensor/expand.cc: the shape.
    host(onnx("Expand", 8), &[1]),
    onnx("EyeLike", 9),
    onnx("Flatten", 1),
    onnx("Floor", 6),
    // rnn/gru.cc: sequence_lens.
    host(onnx("GRU", 7), &[4]),
    onnx("Gather", 1),
    onnx("GatherElements", 11),
    onnx("GatherND", 11),
    onnx("Gelu", 20),
    onnx("Gemm", 7),
    onnx("GlobalAveragePool", 1),
    onnx("GlobalMaxPool", 1),
    onnx("Greater", 7),
    onnx("GreaterOrEqual", 12),
    onnx("GridSample", 16),
    onnx("HardSigmoid", 6),
    onnx("HardSwish", 14),
    onnx("Identity", 1),
    // controlflow/if.cc: cond.
    host(onnx("If", 1), &[0]),
    onnx("ImageScaler", 1),
    onnx("InstanceNormalization", 6),
    onnx("IsInf", 10),
    onnx("IsNaN", 9),
    onnx("LRN", 1),
    // rnn/lstm.cc: sequence_lens.
    host(onnx("LSTM", 7), &[4]),
    onnx("LayerNormalization", 1),
    onnx("LeakyRelu", 6),
    onnx("Less", 7),
    onnx("LessOrEqual", 12),
    onnx("Log", 6),
    onnx("LogSoftmax", 1),
    // controlflow/loop.cc: M, cond.
    host(onnx("Loop", 1), &[0, 1]),
    onnx("MatMul", 1),
    // math/matmul_integer.cc: a_zero_point, b_zero_point (int8 A and B only: see
    // `unsupported_type`).
    host(onnx("MatMulInteger", 10), &[2, 3]),
    onnx("Max", 6),
    onnx("MaxPool", 1),
    // cuda_execution_provider.cc: the copy nodes ONNX Runtime inserts.
    host(onnx("MemcpyFromHost", 1), &[0]),
    Kernel {
        cpu_outputs: &[0],
        ..onnx("MemcpyToHost", 1)
    },
    onnx("Min", 6),
    onnx("Mod", 10),
    onnx("Mul", 7),
    onnx("Neg", 6),
    // object_detection/non_max_suppression.cc: max_output_boxes_per_class, iou_threshold,
    // score_threshold.
    host(onnx("NonMaxSuppression", 10), &[2, 3, 4]),
    onnx("NonZero", 9),
    onnx("Not", 1),
    // tensor/onehot.cc: depth, values.
    host(onnx("OneHot", 11), &[1, 2]),
    onnx("Or", 7),
    onnx("PRelu", 7),
    // tensor/pad.cc: pads, constant_value (11+), axes (18+).
    host(onnx("Pad", 2), &[1, 2, 3]),
    onnx("ParametricSoftplus", 1),
    onnx("Pow", 7),
    onnx("QuantizeLinear", 10),
    onnx("RMSNormalization", 23),
    // rnn/rnn.cc: sequence_lens.
    host(onnx("RNN", 7), &[4]),
    onnx("RandomNormal", 1),
    onnx("RandomNormalLike", 1),
    onnx("RandomUniform", 1),
    onnx("RandomUniformLike", 1),
    // generator/range.cc: start, limit, delta.
    host(onnx("Range", 11), &[0, 1, 2]),
    onnx("Reciprocal", 6),
    // reduction/reduction_ops.cc: axes, an input from ReduceSum-13 and the others' opset 18.
    host(onnx("ReduceL1", 1), &[1]),
    host(onnx("ReduceL2", 1), &[1]),
    host(onnx("ReduceLogSum", 1), &[1]),
    host(onnx("ReduceLogSumExp", 1), &[1]),
    host(onnx("ReduceMax", 1), &[1]),
    host(onnx("ReduceMean", 1), &[1]),
    host(onnx("ReduceMin", 1), &[1]),
    host(onnx("ReduceProd", 1), &[1]),
    host(onnx("ReduceSum", 1), &[1]),
    host(onnx("ReduceSumSquare", 1), &[1]),
    onnx("Relu", 6),
    // tensor/reshape.cc: the shape (opset 5+).
    host(onnx("Reshape", 1), &[1]),
    // tensor/resize.cc: scales (10); roi, scales, sizes (11+).
    host(onnx("Resize", 10), &[1, 2, 3]),
    onnx("ReverseSequence", 10),
    onnx("RoiAlign", 10),
    onnx("RotaryEmbedding", 23),
    onnx("Round", 11),
    onnx("ScaledTanh", 1),
    // controlflow/scan.cc: sequence_lens, Scan-8's first input only.
    until(host(onnx("Scan", 8), &[0]), 8),
    onnx("Scan", 9),
    until(onnx("Scatter", 9), 10),
    onnx("ScatterElements", 11),
    onnx("ScatterND", 11),
    onnx("Selu", 6),
    onnx("SequenceAt", 11),
    onnx("SequenceConstruct", 11),
    onnx("SequenceEmpty", 11),
    onnx("SequenceErase", 11),
    onnx("SequenceInsert", 11),
    onnx("SequenceLength", 11),
    // tensor/shape_op.cc: the shape is written to host memory.
    Kernel {
        cpu_outputs: &[0],
        ..onnx("Shape", 1)
    },
    onnx("Shrink", 9),
    onnx("Sigmoid", 6),
    onnx("Sign", 13),
    onnx("SimplifiedLayerNormalization", 1),
    onnx("Sin", 7),
    // tensor/size.cc: the size is written to host memory.
    Kernel {
        cpu_outputs: &[0],
        ..onnx("Size", 1)
    },
    // tensor/slice.cc: starts, ends, axes, steps (opset 10+).
    host(onnx("Slice", 1), &[1, 2, 3, 4]),
    onnx("Softmax", 1),
    onnx("Softplus", 1),
    onnx("Softsign", 1),
    onnx("SpaceToDepth", 1),
    // tensor/split.cc: split (opset 13+).
    host(onnx("Split", 2), &[1]),
    onnx("Sqrt", 6),
    // tensor/squeeze.cc: axes (opset 13+).
    host(onnx("Squeeze", 1), &[1]),
    onnx("Sub", 7),
    onnx("Sum", 6),
    onnx("Tanh", 6),
    onnx("TensorScatter", 24),
    onnx("ThresholdedRelu", 1),
    // tensor/tile.cc: repeats.
    host(onnx("Tile", 6), &[1]),
    // math/topk.cc: K (opset 10+).
    host(onnx("TopK", 1), &[1]),
    onnx("Transpose", 1),
    // tensor/trilu.cc: k.
    host(onnx("Trilu", 14), &[1]),
    // tensor/unsqueeze.cc: axes (opset 13+).
    host(onnx("Unsqueeze", 1), &[1]),
    // tensor/upsample.cc: scales (opset 9); no kernel after Upsample's deprecation in 10.
    until(host(onnx("Upsample", 7), &[1]), 9),
    onnx("Where", 9),
    onnx("Xor", 7),
    // com.microsoft. Host slots were read only for the entries that cite a file; the other
    // contrib kernels' inputs are taken to be device-side (unverified).
    ms("Attention"),
    ms("BeamSearch"),
    ms("BiasAdd"),
    ms("BiasDropout"),
    ms("BiasGelu"),
    ms("BiasSoftmax"),
    ms("BiasSplitGelu"),
    ms("BitmaskBiasDropout"),
    ms("BitmaskDropout"),
    ms("ComplexMul"),
    ms("ComplexMulConj"),
    ms("ConvTransposeWithDynamicPads"),
    ms("DecoderAttention"),
    ms("DecoderMaskedMultiHeadAttention"),
    ms("DecoderMaskedSelfAttention"),
    ms("DequantizeLinear"),
    ms("DequantizeWithOrder"),
    ms("DynamicTimeWarping"),
    ms("EmbedLayerNormalization"),
    ms("FastGelu"),
    ms("FusedConv"),
    ms("FusedMatMul"),
    ms("GatedRelativePositionBias"),
    ms("GatherBlockQuantized"),
    ms("Gelu"),
    ms("GemmFloat8"),
    ms("GemmaRotaryEmbedding"),
    ms("GreedySearch"),
    ms("GridSample"),
    ms("GroupNorm"),
    // contrib_ops/cuda/bert/group_query_attention.cc: total_sequence_length.
    host(ms("GroupQueryAttention"), &[6]),
    ms("Inverse"),
    ms("Irfft"),
    ms("LongformerAttention"),
    ms("MatMulBnb4"),
    // contrib_ops/cuda/quantization/matmul_nbits.cc: no host inputs.
    ms("MatMulNBits"),
    ms("MoE"),
    ms("MultiHeadAttention"),
    ms("NGramRepeatBlock"),
    ms("NhwcConv"),
    ms("PackedAttention"),
    ms("PackedMultiHeadAttention"),
    ms("PagedAttention"),
    // contrib_ops/cuda/quantization/attention_quantization.cc: input_scale, weight_scale,
    // input_zero_point, weight_zero_point.
    host(ms("QAttention"), &[3, 4, 6, 7]),
    ms("QMoE"),
    ms("QOrderedAttention"),
    ms("QOrderedGelu"),
    ms("QOrderedLayerNormalization"),
    ms("QOrderedLongformerAttention"),
    ms("QOrderedMatMul"),
    ms("QuantizeLinear"),
    ms("QuantizeWithOrder"),
    ms("QuickGelu"),
    ms("RelativePositionBias"),
    ms("RemovePadding"),
    ms("RestorePadding"),
    ms("Rfft"),
    ms("RotaryEmbedding"),
    ms("Sampling"),
    ms("SkipGroupNorm"),
    ms("SkipLayerNormalization"),
    ms("SkipSimplifiedLayerNormalization"),
    ms("SparseAttention"),
    ms("TransposeMatMul"),
    ms("Trilu"),
    ms("UnfoldTensor"),
    ms("WhisperBeamSearch"),
];

/// The kernel for `op` in `domain` at opset `version`, if the CUDA provider has one.
pub(super) fn kernel(domain: &str, op: &str, version: i64) -> Option<&'static Kernel> {
    KERNELS
        .iter()
        .find(|k| k.domain == domain && k.op == op && k.since <= version && version <= k.until)
}

/// An input whose element type no CUDA kernel of the op takes, when the type is known:
/// ONNX Runtime's kernel lookup matches type constraints, so such a node has no kernel.
/// Only the constraints that decide Vortex's graphs are modelled.
pub(super) fn unsupported_type(
    node: &Node,
    types: impl Fn(&str) -> Option<i32>,
) -> Option<(usize, i32)> {
    let only = |slot: usize, allowed: i32| {
        let name = node.inputs.get(slot).filter(|n| !n.is_empty())?;
        let t = types(name)?;
        (t != allowed).then_some((slot, t))
    };
    match (node.domain.as_str(), node.op_type.as_str()) {
        // math/matmul_integer.cc: T1 and T2 are int8 only (uint8 activations, as
        // DynamicQuantizeLinear writes, find no kernel).
        ("", "MatMulInteger") => only(0, data_type::INT8).or_else(|| only(1, data_type::INT8)),
        // tensor/grid_sample.cc: float only (an fp16 GridSample falls back).
        ("", "GridSample") | ("com.microsoft", "GridSample") => only(0, data_type::FLOAT),
        _ => None,
    }
}

/// Why `GetCapability` (`cuda_execution_provider.cc`) refuses a node it has a kernel for.
pub(super) fn unsupported_attributes(node: &Node) -> Option<&'static str> {
    if node.domain.is_empty() {
        match node.op_type.as_str() {
            "LSTM" => return rnn_unsupported(node, &["sigmoid", "tanh", "tanh"]),
            "GRU" => return rnn_unsupported(node, &["sigmoid", "tanh"]),
            "RNN" => return rnn_unsupported(node, &["tanh"]),
            "ConvTranspose" => return conv_transpose_unsupported(node),
            "Cast" => {
                if let Some(AttributeValue::Int(to)) = node.attribute("to")
                    && *to == i64::from(data_type::STRING)
                {
                    return Some("a Cast to string");
                }
            }
            _ => {}
        }
    }
    None
}

/// `RNNNeedFallbackToCPU`: cuDNN's RNNs take only the default activations, no alpha, beta or
/// clip, no LSTM `input_forget` or peephole, and GRU only with `linear_before_reset = 1`.
fn rnn_unsupported(node: &Node, per_direction: &[&str]) -> Option<&'static str> {
    for a in &node.attributes {
        match (a.name.as_str(), &a.value) {
            ("activation_alpha" | "activation_beta" | "clip", _) => {
                return Some("activation_alpha, activation_beta or clip, which cuDNN's RNNs lack");
            }
            ("activations", AttributeValue::Strings(given)) => {
                let supported = per_direction.iter().chain(per_direction.iter());
                let differs = given.len() > per_direction.len() * 2
                    || given
                        .iter()
                        .zip(supported)
                        .any(|(g, s)| !g.eq_ignore_ascii_case(s.as_bytes()));
                if differs {
                    return Some("activations other than cuDNN's defaults");
                }
            }
            ("input_forget", AttributeValue::Int(v)) if node.op_type == "LSTM" && *v != 0 => {
                return Some("LSTM input_forget, which cuDNN lacks");
            }
            ("linear_before_reset", AttributeValue::Int(v)) if node.op_type == "GRU" && *v != 1 => {
                return Some("GRU linear_before_reset = 0, which cuDNN lacks");
            }
            _ => {}
        }
    }
    if node.op_type == "LSTM" && node.inputs.get(7).is_some_and(|p| !p.is_empty()) {
        return Some("an LSTM peephole, which cuDNN lacks");
    }
    None
}

/// `ConvTransposeNeedFallbackToCPU`: cuDNN pads symmetrically only.
fn conv_transpose_unsupported(node: &Node) -> Option<&'static str> {
    if let Some(AttributeValue::Ints(pads)) = node.attribute("pads") {
        let rank = pads.len() / 2;
        if (0..rank).any(|i| pads[i] != pads[i + rank]) {
            return Some("asymmetric ConvTranspose padding, which cuDNN lacks");
        }
    }
    if let Some(AttributeValue::String(auto_pad)) = node.attribute("auto_pad")
        && (auto_pad == b"SAME_UPPER" || auto_pad == b"SAME_LOWER")
    {
        return Some("ConvTranspose auto_pad SAME_*, which may pad asymmetrically");
    }
    None
}
