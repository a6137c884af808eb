//! Every tiny export's graphs, and Kokoro's, classified for ONNX Runtime's CUDA provider:
//! every weight Vortex hands a session is classified, and what was found is written down here
//! (a change in the graphs or in the classifier that moves a weight or a node fails the test).
//!
//! Found: every external initializer of every tiny export (CLIP tiny and tiny-f16; FLUX tiny,
//! tiny_q4 and tiny-f16; LivePortrait tiny and tiny-f16) is read on the device only, and no
//! node of theirs falls back to the CPU.
//! Their shape computations (Shape → Gather → Unsqueeze → Concat → Reshape chains) move to
//! the CPU by ONNX Runtime's own choice, counted below; none reads a weight. (Those that
//! survive constant folding would trip `session.disable_cpu_ep_fallback`.) Kokoro's int8
//! graph, were it put on the CUDA provider, would read 182 of its 242 weights on the host (the
//! ConvInteger, MatMulInteger and DynamicQuantizeLSTM weights, their nodes having no CUDA
//! kernel for these types) and fall back on 382 nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use vortex_runtime::onnx::{Model, Placement};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vortex-models")
        .join(rel)
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tensor names in a safetensors file's header.
fn safetensors_names(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).expect("a header");
    header
        .as_object()
        .expect("an object")
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect()
}

/// The weights Vortex hands the graph: its initializers whose bytes are outside the file.
fn externals(model: &Model) -> BTreeSet<String> {
    model
        .graph
        .initializers
        .iter()
        .filter(|t| t.external)
        .map(|t| t.name.clone())
        .collect()
}

/// One graph's classification, summarised.
#[derive(Debug, Default, PartialEq)]
struct Found {
    device: usize,
    host: usize,
    both: usize,
    /// Fallback nodes by (domain.)op.
    fallbacks: BTreeMap<String, usize>,
    /// Nodes ONNX Runtime prefers on the CPU as shape computations.
    shape_nodes: usize,
    /// The ops that read a host weight, with the input slot.
    host_readers: BTreeSet<String>,
}

fn classify(model: &Model) -> Found {
    let names = externals(model);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let c = model.classify(&names).expect("classified");
    assert_eq!(
        c.initializers.len(),
        names.len(),
        "every weight is classified"
    );
    assert_eq!(
        c.with(Placement::Unread).count(),
        0,
        "{}: unread weights",
        model.file().display()
    );
    let mut found = Found {
        device: c.with(Placement::Device).count(),
        host: c.with(Placement::Host).count(),
        both: c.with(Placement::Both).count(),
        shape_nodes: c.cpu_nodes.len() - c.fallbacks().count(),
        ..Found::default()
    };
    for n in c.fallbacks() {
        let op = if n.node.domain.is_empty() {
            n.node.op_type.clone()
        } else {
            format!("{}.{}", n.node.domain, n.node.op_type)
        };
        *found.fallbacks.entry(op).or_default() += 1;
    }
    for i in c
        .initializers
        .iter()
        .filter(|i| i.placement != Placement::Device)
    {
        for r in &i.reads {
            found
                .host_readers
                .insert(format!("{}[{}]", r.node.op_type, r.input));
        }
    }
    found
}

/// All on the device, no fallback, `shape_nodes` shape computations on the CPU.
fn all_device(weights: usize, shape_nodes: usize) -> Found {
    Found {
        device: weights,
        shape_nodes,
        ..Found::default()
    }
}

#[test]
fn clip_tiny() {
    clip("tests/data/clip/tiny");
}

/// `export_clip.py --config tiny --dtype f16`: the f32 graph's placement, in half precision.
#[test]
fn clip_tiny_f16() {
    clip("tests/data/clip/tiny-f16");
}

fn clip(rel: &str) {
    let dir = data(rel);
    let manifest = json(&dir.join("clip.json"));
    let weights = safetensors_names(&dir.join(manifest["weights"].as_str().expect("weights")));
    for (graph, expected) in [
        ("vision", all_device(40, 123)),
        ("text", all_device(21, 86)),
    ] {
        let file = dir.join(manifest["graphs"][graph].as_str().expect("a graph file"));
        let model = Model::read(&file).expect("a model");
        assert!(
            externals(&model).is_subset(&weights),
            "{graph}: weights the export lacks"
        );
        assert_eq!(classify(&model), expected, "{graph}");
    }
}

#[test]
fn flux_tiny_tiny_q4_and_tiny_f16() {
    for (export, graphs) in [
        (
            // `export_flux.py --config tiny --dtype f16`: as the f32 export (traced in half
            // precision, the transformer and the VAE have 10 and 5 shape nodes fewer).
            "tiny-f16",
            [
                ("clip_text", all_device(20, 79)),
                ("t5", all_device(12, 67)),
                ("transformer", all_device(62, 255)),
                ("vae_decoder", all_device(104, 57)),
            ],
        ),
        (
            "tiny",
            [
                ("clip_text", all_device(20, 79)),
                ("t5", all_device(12, 67)),
                ("transformer", all_device(62, 265)),
                ("vae_decoder", all_device(104, 62)),
            ],
        ),
        (
            // MatMulNBits has CUDA kernels: the packed weights and scales are device reads.
            "tiny_q4",
            [
                ("clip_text", all_device(20, 79)),
                ("t5", all_device(26, 67)),
                ("transformer", all_device(118, 265)),
                ("vae_decoder", all_device(104, 62)),
            ],
        ),
    ] {
        let dir = data(&format!("tests/data/flux/{export}"));
        let manifest = json(&dir.join("flux.json"));
        let weights = safetensors_names(&dir.join(manifest["weights"].as_str().expect("weights")));
        for (graph, expected) in graphs {
            let file = dir.join(
                manifest["graphs"][graph]["file"]
                    .as_str()
                    .expect("a graph file"),
            );
            let model = Model::read(&file).expect("a model");
            assert!(
                externals(&model).is_subset(&weights),
                "{export}/{graph}: weights the export lacks"
            );
            assert_eq!(classify(&model), expected, "{export}/{graph}");
        }
    }
}

/// Each LivePortrait graph of the export in `rel`, classified.
fn liveportrait(rel: &str) -> BTreeMap<String, Found> {
    let dir = data(rel);
    let manifest = json(&dir.join("liveportrait.json"));
    let graphs = manifest["graphs"].as_object().expect("graphs");
    let mut found = BTreeMap::new();
    for (name, graph) in graphs {
        let model =
            Model::read(&dir.join(graph["file"].as_str().expect("a file"))).expect("a model");
        let listed: BTreeSet<String> = graph["external_initializers"]
            .as_array()
            .expect("external_initializers")
            .iter()
            .map(|n| n.as_str().expect("a name").to_owned())
            .collect();
        assert_eq!(
            externals(&model),
            listed,
            "{name}: the manifest lists the graph's weights"
        );
        found.insert(name.clone(), classify(&model));
    }
    found
}

#[test]
fn liveportrait_tiny() {
    assert_eq!(
        liveportrait("tests/data/liveportrait/tiny"),
        liveportrait_expected()
    );
}

/// What each LivePortrait tiny export's graphs classify as (f32 and f16 alike).
fn liveportrait_expected() -> BTreeMap<String, Found> {
    [
        ("appearance_feature_extractor", all_device(44, 0)),
        ("motion_extractor", all_device(82, 0)),
        // The GridSample warp's coordinate grids are built from shapes.
        ("warping_spade", all_device(242, 121)),
        ("stitching", all_device(8, 0)),
        ("retarget_eye", all_device(12, 0)),
        ("retarget_lip", all_device(8, 0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The f16 export (`export_liveportrait.py --dtype f16`): the same weights, all still read on
/// the device (the CUDA kernels of every op it converted have f16 types; GridSample and the
/// normalizations stay float32 between Casts), nothing falls back, and the shape nodes are
/// the f32 graph's.
#[test]
fn liveportrait_tiny_f16() {
    assert_eq!(
        liveportrait("tests/data/liveportrait/tiny-f16"),
        liveportrait_expected()
    );
}

#[test]
fn kokoro_int8_graph() {
    let dir = data("data/kokoro");
    let model = Model::read(&dir.join("kokoro.graph.onnx")).expect("a model");
    let manifest = json(&dir.join("kokoro.manifest.json"));
    let listed: BTreeSet<String> = manifest["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| t["name"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(
        externals(&model),
        listed,
        "the manifest lists the graph's weights"
    );
    let found = classify(&model);
    let expected = Found {
        // Float weights of nodes with CUDA kernels: embeddings (Gather), the dequantizing
        // Mul/Add scales and biases, FastGelu's bias, ConvTranspose, the last Conv.
        device: 60,
        // The int8 weights, read only by nodes without a CUDA kernel (none by a kernel's
        // host-side input).
        host: 182,
        both: 0,
        fallbacks: BTreeMap::from([
            ("Atan".to_owned(), 1),
            ("ConvInteger".to_owned(), 87),
            ("DynamicQuantizeLinear".to_owned(), 139),
            // DynamicQuantizeLinear writes uint8: the CUDA MatMulInteger takes int8 only.
            ("MatMulInteger".to_owned(), 148),
            ("STFT".to_owned(), 1),
            ("com.microsoft.DynamicQuantizeLSTM".to_owned(), 6),
        ]),
        shape_nodes: 363,
        host_readers: BTreeSet::from(
            [
                "ConvInteger[1]",
                "DynamicQuantizeLSTM[1]",
                "DynamicQuantizeLSTM[2]",
                "DynamicQuantizeLSTM[3]",
                "MatMulInteger[1]",
            ]
            .map(str::to_owned),
        ),
    };
    assert_eq!(found, expected);
}
