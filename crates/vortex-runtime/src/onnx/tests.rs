//! The reader on hand-built and broken bytes, and the classifier on tiny models written here
//! with a protobuf writer of the tests' own.

use std::path::Path;

use super::*;

/// Protobuf writing, as much as the tests need.
mod pb {
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
        varint(u64::from(field) << 3 | u64::from(wire), out);
    }

    pub fn int(field: u32, v: i64, out: &mut Vec<u8>) {
        key(field, 0, out);
        varint(v as u64, out);
    }

    pub fn bytes(field: u32, data: &[u8], out: &mut Vec<u8>) {
        key(field, 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    pub fn string(field: u32, s: &str, out: &mut Vec<u8>) {
        bytes(field, s.as_bytes(), out);
    }
}

const FLOAT: i32 = data_type::FLOAT;
const INT64: i32 = data_type::INT64;

/// A TensorProto (no data).
fn tensor(name: &str, elem_type: i32, dims: &[i64]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        pb::int(1, d, &mut t);
    }
    pb::int(2, i64::from(elem_type), &mut t);
    pb::string(8, name, &mut t);
    t
}

/// A ValueInfoProto of a tensor.
fn value(name: &str, elem_type: i32) -> Vec<u8> {
    let mut tensor_type = Vec::new();
    pb::int(1, i64::from(elem_type), &mut tensor_type);
    let mut type_proto = Vec::new();
    pb::bytes(1, &tensor_type, &mut type_proto);
    let mut v = Vec::new();
    pb::string(1, name, &mut v);
    pb::bytes(2, &type_proto, &mut v);
    v
}

/// An AttributeProto.
enum Attr<'a> {
    Int(&'a str, i64),
    Ints(&'a str, &'a [i64]),
    Str(&'a str, &'a str),
    Graph(&'a str, Vec<u8>),
    Tensor(&'a str, Vec<u8>),
}

fn attribute(a: &Attr<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    match a {
        Attr::Int(name, v) => {
            pb::string(1, name, &mut out);
            pb::int(3, *v, &mut out);
            pb::int(20, 2, &mut out);
        }
        Attr::Ints(name, vs) => {
            pb::string(1, name, &mut out);
            for &v in *vs {
                pb::int(8, v, &mut out);
            }
            pb::int(20, 7, &mut out);
        }
        Attr::Str(name, s) => {
            pb::string(1, name, &mut out);
            pb::string(4, s, &mut out);
            pb::int(20, 3, &mut out);
        }
        Attr::Graph(name, g) => {
            pb::string(1, name, &mut out);
            pb::bytes(6, g, &mut out);
            pb::int(20, 5, &mut out);
        }
        Attr::Tensor(name, t) => {
            pb::string(1, name, &mut out);
            pb::bytes(5, t, &mut out);
            pb::int(20, 4, &mut out);
        }
    }
    out
}

/// A NodeProto.
fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
    node_in("", op, inputs, outputs, &[])
}

fn node_in(
    domain: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[Attr<'_>],
) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        pb::string(1, i, &mut n);
    }
    for o in outputs {
        pb::string(2, o, &mut n);
    }
    pb::string(
        3,
        &format!("{op}_{}", outputs.first().unwrap_or(&"")),
        &mut n,
    );
    pb::string(4, op, &mut n);
    for a in attrs {
        pb::bytes(5, &attribute(a), &mut n);
    }
    if !domain.is_empty() {
        pb::string(7, domain, &mut n);
    }
    n
}

/// A GraphProto.
fn graph(
    nodes: &[Vec<u8>],
    initializers: &[Vec<u8>],
    inputs: &[Vec<u8>],
    outputs: &[Vec<u8>],
) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        pb::bytes(1, n, &mut g);
    }
    pb::string(2, "g", &mut g);
    for t in initializers {
        pb::bytes(5, t, &mut g);
    }
    for v in inputs {
        pb::bytes(11, v, &mut g);
    }
    for v in outputs {
        pb::bytes(12, v, &mut g);
    }
    g
}

/// A ModelProto importing ai.onnx 20 and com.microsoft 1.
fn model(graph: &[u8]) -> Vec<u8> {
    model_at(graph, 20)
}

fn model_at(graph: &[u8], opset: i64) -> Vec<u8> {
    let mut m = Vec::new();
    pb::int(1, 9, &mut m);
    for (domain, version) in [("", opset), ("com.microsoft", 1)] {
        let mut o = Vec::new();
        pb::string(1, domain, &mut o);
        pb::int(2, version, &mut o);
        pb::bytes(8, &o, &mut m);
    }
    pb::bytes(7, graph, &mut m);
    m
}

/// `y = x + w`, `w` an f32 initializer of 4 values (its data in the graph).
pub(crate) fn added_weight_model() -> Vec<u8> {
    let mut w = tensor("w", FLOAT, &[4]);
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    pb::bytes(9, &data, &mut w);
    model(&graph(
        &[node("Add", &["x", "w"], &["y"])],
        &[w],
        &[value("x", FLOAT)],
        &[value("y", FLOAT)],
    ))
}

/// `y = x + x` over f32 tensors of any shape: a graph whose only allocation is its output.
pub(crate) fn doubling_model() -> Vec<u8> {
    model(&graph(
        &[node("Add", &["x", "x"], &["y"])],
        &[],
        &[value("x", FLOAT)],
        &[value("y", FLOAT)],
    ))
}

fn file() -> &'static Path {
    Path::new("test.onnx")
}

fn classified(bytes: &[u8], names: &[&str]) -> Classification {
    classify(file(), bytes, names).expect("classified")
}

/// The placement of each name, as the test reads it.
fn check(bytes: &[u8], expected: &[(&str, Placement)]) -> Classification {
    let names: Vec<&str> = expected.iter().map(|(n, _)| *n).collect();
    let c = classified(bytes, &names);
    let got: Vec<(&str, Placement)> = c
        .initializers
        .iter()
        .map(|i| (i.name.as_str(), i.placement))
        .collect();
    assert_eq!(got, expected, "{c:#?}");
    c
}

// The reader.

#[test]
fn a_model_is_read_with_its_nodes_initializers_and_opsets() {
    let mut weight = tensor("w", FLOAT, &[8, 3, 3, 3]);
    pb::int(14, 1, &mut weight); // data_location = EXTERNAL
    // An unknown field of every wire type, which the reader skips.
    let mut conv = node_in(
        "",
        "Conv",
        &["x", "w"],
        &["y"],
        &[Attr::Ints("pads", &[1, 1, 1, 1])],
    );
    pb::int(99, 5, &mut conv);
    pb::key(98, 1, &mut conv);
    conv.extend_from_slice(&[0; 8]);
    pb::bytes(97, b"skipped", &mut conv);
    pb::key(96, 5, &mut conv);
    conv.extend_from_slice(&[0; 4]);
    let g = graph(
        &[conv],
        &[weight],
        &[value("x", FLOAT)],
        &[value("y", FLOAT)],
    );
    let m = Model::parse(file(), &model(&g)).expect("a model");
    assert_eq!(m.ir_version, 9);
    assert_eq!(m.opset(""), Some(20));
    assert_eq!(m.opset("ai.onnx"), Some(20));
    assert_eq!(m.opset("com.microsoft"), Some(1));
    assert_eq!(m.file(), file());
    let node = &m.graph.nodes[0];
    assert_eq!(
        (node.op_type.as_str(), node.name.as_str()),
        ("Conv", "Conv_y")
    );
    assert_eq!(
        (node.inputs.clone(), node.outputs.clone()),
        (vec!["x".into(), "w".into()], vec!["y".into()])
    );
    assert_eq!(
        node.attribute("pads"),
        Some(&AttributeValue::Ints(vec![1, 1, 1, 1]))
    );
    assert_eq!(
        m.graph.initializers,
        vec![Tensor {
            name: "w".into(),
            data_type: FLOAT,
            dims: vec![8, 3, 3, 3],
            external: true
        }]
    );
    assert_eq!(m.graph.initializers[0].elements(), 216);
    assert_eq!(m.graph.inputs[0].elem_type, Some(FLOAT));
}

/// What reading `bytes` gives: the problem, and the message a user sees.
fn refused(bytes: &[u8]) -> (Problem, String) {
    match Model::parse(file(), bytes) {
        Ok(m) => panic!("read as a model: {m:?}"),
        Err(e @ OnnxError::NotOnnx { problem, .. }) => (problem, e.to_string()),
        Err(e) => panic!("not a refusal of the bytes: {e}"),
    }
}

#[test]
fn bad_bytes_are_refused_with_the_file_named() {
    let g = graph(&[node("Relu", &["x"], &["y"])], &[], &[], &[]);
    let good = model(&g);
    let mut bad_utf8 = Vec::new();
    pb::bytes(
        7,
        &{
            let mut g = Vec::new();
            pb::bytes(2, &[0xff, 0xfe], &mut g);
            g
        },
        &mut bad_utf8,
    );
    let mut graph_as_varint = Vec::new();
    pb::int(7, 3, &mut graph_as_varint);
    for (bytes, problem) in [
        (Vec::new(), Problem::NoGraph),
        (vec![0x3a, 0x10, 1, 2], Problem::Truncated),
        (good[..good.len() - 1].to_vec(), Problem::Truncated),
        (vec![0x3b], Problem::BadWireType(3)),
        (vec![0x00], Problem::BadFieldNumber),
        ([&[0x08][..], &[0xff; 11]].concat(), Problem::VarintTooLong),
        (bad_utf8, Problem::NotUtf8("GraphProto.name")),
        (graph_as_varint, Problem::WrongWireType("GraphProto")),
    ] {
        let (got, message) = refused(&bytes);
        assert_eq!(got, problem, "{bytes:?}");
        assert!(
            message.starts_with("test.onnx is not an ONNX model: "),
            "{message}"
        );
    }
    // Text is not a model either, whatever its bytes happen to decode to.
    refused(b"hello, this is text, not a graph");
}

#[test]
fn subgraphs_nested_past_the_limit_are_refused_without_exhausting_the_stack() {
    let mut g = graph(&[node("Relu", &["x"], &["y"])], &[], &[], &[]);
    for _ in 0..10_000 {
        g = graph(
            &[node_in(
                "",
                "If",
                &["c"],
                &["y"],
                &[Attr::Graph("then_branch", g)],
            )],
            &[],
            &[],
            &[],
        );
    }
    assert_eq!(refused(&model(&g)).0, Problem::TooDeep);
    // Up to the limit reads.
    let mut g = graph(&[node("Relu", &["x"], &["y"])], &[], &[], &[]);
    for _ in 0..MAX_DEPTH {
        g = graph(
            &[node_in(
                "",
                "If",
                &["c"],
                &["y"],
                &[Attr::Graph("then_branch", g)],
            )],
            &[],
            &[],
            &[],
        );
    }
    Model::parse(file(), &model(&g)).expect("nested to the limit");
}

/// A real export graph (LivePortrait's tiny stitching MLP), from vortex-models' test data.
fn real_graph() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vortex-models/tests/data/liveportrait/tiny/stitching.onnx");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_truncation_of_a_real_graph_is_read_or_refused_never_a_panic() {
    let bytes = real_graph();
    let full = Model::parse(file(), &bytes).expect("the whole graph");
    assert_eq!(full.graph.initializers.len(), 8);
    let mut refusals = 0;
    for len in 0..bytes.len() {
        match Model::parse(file(), &bytes[..len]) {
            Ok(m) => assert_ne!(m, full, "a truncation read as the whole graph"),
            Err(OnnxError::NotOnnx { .. }) => refusals += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // Cut anywhere inside the graph field, the model is refused.
    assert!(
        refusals > bytes.len() * 9 / 10,
        "{refusals} of {}",
        bytes.len()
    );
}

proptest::proptest! {
    #[test]
    fn random_bytes_are_read_or_refused_never_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = Model::parse(file(), &bytes);
    }

    #[test]
    fn a_real_graph_with_bytes_changed_is_read_or_refused(
        at in 0usize..4096,
        byte in proptest::prelude::any::<u8>(),
        len in 0usize..4096,
    ) {
        let mut bytes = real_graph();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(len.max(at + 1));
        if let Ok(m) = Model::parse(file(), &bytes) {
            // Whatever reads also classifies.
            let _ = m.classify(&[]);
        }
    }
}

// The classifier.

#[test]
fn a_conv_weight_is_read_on_the_device() {
    let g = graph(
        &[node("Conv", &["x", "w", "b"], &["y"])],
        &[tensor("w", FLOAT, &[8, 3, 3, 3]), tensor("b", FLOAT, &[8])],
        &[value("x", FLOAT)],
        &[value("y", FLOAT)],
    );
    let c = check(
        &model(&g),
        &[("w", Placement::Device), ("b", Placement::Device)],
    );
    assert!(c.cpu_nodes.is_empty(), "{:?}", c.cpu_nodes);
    assert_eq!(
        c.initializers[0].reads[0].node.to_string(),
        "Conv \"Conv_y\" in main"
    );
}

#[test]
fn a_reshape_shape_is_read_on_the_host() {
    let g = graph(
        &[node("Reshape", &["x", "shape"], &["y"])],
        &[tensor("shape", INT64, &[2])],
        &[value("x", FLOAT)],
        &[value("y", FLOAT)],
    );
    let c = check(&model(&g), &[("shape", Placement::Host)]);
    assert_eq!(c.initializers[0].reads[0].side, Side::HostInput);
    assert!(
        c.cpu_nodes.is_empty(),
        "the Reshape stays on the device: {:?}",
        c.cpu_nodes
    );
}

#[test]
fn host_slots_of_other_kernels() {
    // Each op reads `k` at the slot given on the host, and `w` (slot 0) on the device.
    for (op, slot) in [
        ("Expand", 1),
        ("Tile", 1),
        ("Slice", 1),
        ("Slice", 4),
        ("Resize", 2),
        ("Pad", 1),
        ("Unsqueeze", 1),
        ("Squeeze", 1),
        ("ReduceMean", 1),
        ("ReduceSum", 1),
        ("Split", 1),
        ("TopK", 1),
        ("CumSum", 1),
        ("Clip", 2),
        ("Trilu", 1),
    ] {
        let mut inputs = vec!["w"; slot + 1];
        inputs[slot] = "k";
        for i in inputs.iter_mut().take(slot).skip(1) {
            *i = "";
        }
        let g = graph(
            &[node(op, &inputs, &["y"])],
            &[tensor("w", FLOAT, &[1000]), tensor("k", INT64, &[1])],
            &[value("x", FLOAT)],
            &[value("y", FLOAT)],
        );
        let c = classified(&model(&g), &["w", "k"]);
        assert_eq!(c.placement("k"), Some(Placement::Host), "{op}");
        assert_eq!(c.placement("w"), Some(Placement::Device), "{op}: {c:#?}");
    }
    // ConstantOfShape's only input, Range's three.
    let g = graph(
        &[
            node("ConstantOfShape", &["s"], &["y"]),
            node("Range", &["a", "b", "d"], &["r"]),
        ],
        &[
            tensor("s", INT64, &[2]),
            tensor("a", INT64, &[]),
            tensor("b", INT64, &[]),
            tensor("d", INT64, &[]),
        ],
        &[],
        &[],
    );
    check(
        &model(&g),
        &[
            ("s", Placement::Host),
            ("a", Placement::Host),
            ("b", Placement::Host),
            ("d", Placement::Host),
        ],
    );
}

#[test]
fn an_initializer_read_by_a_matmul_and_a_reshape_is_read_on_both_sides() {
    let g = graph(
        &[
            node("MatMul", &["x", "t"], &["m"]),
            node("Reshape", &["m", "t"], &["y"]),
        ],
        &[tensor("t", INT64, &[2, 2])],
        &[value("x", INT64)],
        &[value("y", INT64)],
    );
    let c = check(&model(&g), &[("t", Placement::Both)]);
    let sides: Vec<&Side> = c.initializers[0].reads.iter().map(|r| &r.side).collect();
    assert_eq!(sides, vec![&Side::Device, &Side::HostInput]);
    assert_eq!(c.with(Placement::Both).collect::<Vec<_>>(), vec!["t"]);
}

#[test]
fn a_conv_integer_weight_is_read_on_the_host_and_the_node_named_as_a_fallback() {
    let g = graph(
        &[
            node("DynamicQuantizeLinear", &["x"], &["xq", "xs", "xz"]),
            node("ConvInteger", &["xq", "wq", "xz"], &["y"]),
        ],
        &[tensor("wq", data_type::INT8, &[8, 3, 3, 3])],
        &[value("x", FLOAT)],
        &[value("y", data_type::INT32)],
    );
    let c = check(&model(&g), &[("wq", Placement::Host)]);
    assert_eq!(
        c.initializers[0].reads[0].side,
        Side::CpuNode(CpuReason::NoCudaKernel)
    );
    let fallbacks: Vec<String> = c.fallbacks().map(|n| n.node.to_string()).collect();
    assert_eq!(
        fallbacks,
        vec![
            "DynamicQuantizeLinear \"DynamicQuantizeLinear_xq\" in main",
            "ConvInteger \"ConvInteger_y\" in main"
        ]
    );
}

#[test]
fn a_matmul_integer_over_uint8_activations_has_no_cuda_kernel() {
    let g = graph(
        &[
            node("DynamicQuantizeLinear", &["x"], &["xq", "xs", "xz"]),
            node("MatMulInteger", &["xq", "wq", "xz", "wz"], &["y"]),
            node("MatMulInteger", &["a8", "wq"], &["z"]),
        ],
        &[
            tensor("wq", data_type::INT8, &[4, 4]),
            tensor("wz", data_type::INT8, &[]),
        ],
        &[value("x", FLOAT), value("a8", data_type::INT8)],
        &[],
    );
    let c = check(
        &model(&g),
        &[("wq", Placement::Both), ("wz", Placement::Host)],
    );
    assert_eq!(
        c.cpu_nodes[1].reason,
        CpuReason::UnsupportedType {
            input: 0,
            elem_type: data_type::UINT8
        }
    );
    // The int8 one runs on the device (its zero points would be host inputs).
    assert_eq!(c.cpu_nodes.len(), 2, "{:?}", c.cpu_nodes);
}

#[test]
fn initializers_used_inside_an_if_are_classified_where_the_branch_reads_them() {
    let then_branch = graph(
        &[node("Conv", &["x", "w"], &["t"])],
        &[],
        &[],
        &[value("t", FLOAT)],
    );
    // The else branch shadows `w` with a value of its own, and reads `shape` on the host.
    let else_branch = graph(
        &[
            node("Relu", &["x"], &["w"]),
            node("Reshape", &["w", "shape"], &["e"]),
        ],
        &[],
        &[],
        &[value("e", FLOAT)],
    );
    let g = graph(
        &[node_in(
            "",
            "If",
            &["cond"],
            &["y"],
            &[
                Attr::Graph("then_branch", then_branch),
                Attr::Graph("else_branch", else_branch),
            ],
        )],
        &[
            tensor("w", FLOAT, &[8, 3, 3, 3]),
            tensor("shape", INT64, &[4]),
        ],
        &[value("cond", 9 /* bool */), value("x", FLOAT)],
        &[value("y", FLOAT)],
    );
    let c = check(
        &model(&g),
        &[("w", Placement::Device), ("shape", Placement::Host)],
    );
    assert_eq!(
        c.initializers[0].reads.len(),
        1,
        "the else branch's `w` is its own"
    );
    assert_eq!(
        c.initializers[0].reads[0].node.graph,
        "main/If_y.then_branch"
    );
    assert_eq!(
        c.initializers[1].reads[0].node.graph,
        "main/If_y.else_branch"
    );
}

#[test]
fn shape_computations_move_to_the_cpu_with_the_small_initializers_they_read() {
    // x -> Shape -> Gather(idx) -> Mul(k) -> Concat(Constant) -> Reshape(x, ·): the chain from
    // Shape to Concat runs on the CPU; `k` (small) is read there. `big` is not small, so the
    // Add reading it with the shape stays on the device.
    let minus_one = {
        let mut t = tensor("", INT64, &[1]);
        pb::int(7, -1, &mut t);
        t
    };
    let g = graph(
        &[
            node("Shape", &["x"], &["s"]),
            node("Gather", &["s", "idx"], &["d"]),
            node("Mul", &["d", "k"], &["d2"]),
            node_in(
                "",
                "Constant",
                &[],
                &["m1"],
                &[Attr::Tensor("value", minus_one)],
            ),
            node("Concat", &["d2", "m1"], &["shape"]),
            node("Reshape", &["x", "shape"], &["y"]),
            node("Add", &["s", "big"], &["z"]),
        ],
        &[
            tensor("idx", INT64, &[1]),
            tensor("k", INT64, &[1]),
            tensor("big", INT64, &[101]),
        ],
        &[value("x", FLOAT)],
        &[value("y", FLOAT)],
    );
    let c = check(
        &model(&g),
        &[
            ("k", Placement::Host),
            ("idx", Placement::Host),
            ("big", Placement::Device),
        ],
    );
    let shape: Vec<&str> = c
        .cpu_nodes
        .iter()
        .map(|n| n.node.op_type.as_str())
        .collect();
    assert_eq!(shape, vec!["Gather", "Mul", "Concat"]);
    assert!(
        c.cpu_nodes
            .iter()
            .all(|n| n.reason == CpuReason::ShapeComputation)
    );
    assert_eq!(c.fallbacks().count(), 0);
}

#[test]
fn a_half_precision_input_keeps_a_shape_node_on_the_device() {
    let g = graph(
        &[
            node("Shape", &["x"], &["s"]),
            node("Mul", &["s", "h"], &["y"]),
        ],
        &[tensor("h", data_type::FLOAT16, &[1])],
        &[value("x", FLOAT)],
        &[],
    );
    let c = check(&model(&g), &[("h", Placement::Device)]);
    assert!(c.cpu_nodes.is_empty());
}

#[test]
fn kernels_follow_the_opset() {
    // Upsample has CUDA kernels up to opset 9 only; Gelu from 20.
    let g = graph(
        &[
            node("Upsample", &["x", "scales"], &["y"]),
            node("Gelu", &["x"], &["z"]),
        ],
        &[tensor("scales", FLOAT, &[4])],
        &[value("x", FLOAT)],
        &[],
    );
    let at_9 = check(&model_at(&g, 9), &[("scales", Placement::Host)]);
    assert_eq!(at_9.initializers[0].reads[0].side, Side::HostInput);
    let ops: Vec<&str> = at_9.fallbacks().map(|n| n.node.op_type.as_str()).collect();
    assert_eq!(ops, vec!["Gelu"]);
    let at_20 = check(&model_at(&g, 20), &[("scales", Placement::Host)]);
    assert_eq!(
        at_20.initializers[0].reads[0].side,
        Side::CpuNode(CpuReason::NoCudaKernel)
    );
    let ops: Vec<&str> = at_20.fallbacks().map(|n| n.node.op_type.as_str()).collect();
    assert_eq!(ops, vec!["Upsample"]);
}

#[test]
fn refused_attributes_send_a_node_to_the_cpu() {
    let g = graph(
        &[
            node_in(
                "",
                "ConvTranspose",
                &["x", "w"],
                &["y"],
                &[Attr::Ints("pads", &[0, 0, 1, 1])],
            ),
            node_in(
                "",
                "ConvTranspose",
                &["x", "v"],
                &["z"],
                &[Attr::Ints("pads", &[1, 1, 1, 1])],
            ),
            node_in(
                "",
                "ConvTranspose",
                &["x", "u"],
                &["t"],
                &[Attr::Str("auto_pad", "SAME_UPPER")],
            ),
            node_in(
                "",
                "LSTM",
                &["x", "r", "r"],
                &["l"],
                &[Attr::Int("input_forget", 1)],
            ),
        ],
        &[
            tensor("w", FLOAT, &[4, 4, 3, 3]),
            tensor("v", FLOAT, &[4, 4, 3, 3]),
            tensor("u", FLOAT, &[4, 4, 3, 3]),
            tensor("r", FLOAT, &[1, 16, 4]),
        ],
        &[value("x", FLOAT)],
        &[],
    );
    check(
        &model(&g),
        &[
            ("w", Placement::Host),
            ("v", Placement::Device),
            ("u", Placement::Host),
            ("r", Placement::Host),
        ],
    );
}

#[test]
fn unread_and_unknown_names() {
    let g = graph(
        &[node("Relu", &["x"], &["y"])],
        &[tensor("spare", FLOAT, &[3])],
        &[value("x", FLOAT)],
        &[],
    );
    check(&model(&g), &[("spare", Placement::Unread)]);
    let err = classify(file(), &model(&g), &["missing"]).expect_err("no such initializer");
    assert!(matches!(err, OnnxError::NoSuchInitializer { ref name, .. } if name == "missing"));
    assert!(
        err.to_string()
            .starts_with("test.onnx has no initializer named \"missing\""),
        "{err}"
    );
}

#[test]
fn ops_without_a_kernel_in_any_domain_fall_back() {
    let g = graph(
        &[
            node_in(
                "com.microsoft",
                "DynamicQuantizeLSTM",
                &["x", "w"],
                &["y"],
                &[],
            ),
            node("STFT", &["x", "step"], &["s"]),
            node("Atan", &["x"], &["a"]),
            node_in(
                "com.microsoft",
                "MatMulNBits",
                &["x", "q", "scales"],
                &["m"],
                &[],
            ),
        ],
        &[
            tensor("w", data_type::INT8, &[1, 4, 16]),
            tensor("step", INT64, &[]),
            tensor("q", data_type::UINT8, &[4, 1, 8]),
            tensor("scales", FLOAT, &[4]),
        ],
        &[value("x", FLOAT)],
        &[],
    );
    let c = check(
        &model(&g),
        &[
            ("w", Placement::Host),
            ("step", Placement::Host),
            ("q", Placement::Device),
            ("scales", Placement::Device),
        ],
    );
    let ops: Vec<&str> = c.fallbacks().map(|n| n.node.op_type.as_str()).collect();
    assert_eq!(ops, vec!["DynamicQuantizeLSTM", "STFT", "Atan"]);
}
