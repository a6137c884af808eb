//! FLUX.1 for real at a tiny config: the export in `tests/data/flux/tiny/` (written by
//! `data/flux/export_flux.py --config tiny`) run by the actor stage's network against
//! diffusers' `FluxPipeline` (`tests/data/flux/make_golden.py`): the ids, both encoders, the
//! seed's noise, the latents after each of schnell's 4 steps, and the decoded image.

mod common;

use std::path::{Path, PathBuf};
use vortex_runtime::SessionConfig;

use common::{floats, ints, loaded, loaded_within, max_diff};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;
use vortex_models::adapter::Flux;
use vortex_models::clip_text::clip_tokenizer;
use vortex_models::compute::StageImpl;
use vortex_models::export::{Export, ExportedNetwork, T5Ids};
use vortex_models::flux::network::{FluxNetwork, T5Tokenizer, noise, pack, unpack};
use vortex_models::layout::WeightDtype;
use vortex_models::stage::Stage;
use vortex_models::weights::resident_bytes;
use vortex_registry::{Model, ModelRegistry};
use vortex_runtime::{Runtime, fetch};
use vortex_vram::{OwnerId, Purpose, Vram};

fn dir() -> PathBuf {
    common::data("flux")
}

fn golden() -> Value {
    common::golden("flux")
}

struct Rig {
    vram: Vram,
    registry: ModelRegistry,
    owner: OwnerId,
    network: FluxNetwork,
}

fn rig(export: &str) -> Rig {
    rig_at(&dir().join(export))
}

/// The export in `dir` loaded, and the actor stage's network over it.
fn rig_at(dir: &Path) -> Rig {
    rig_loaded(loaded(Stage::Actor, dir, 64 << 20))
}

/// The actor stage's network over a loaded export.
fn rig_loaded((export, vram, registry): (Export, Vram, ModelRegistry)) -> Rig {
    let weights = registry.get::<Flux>().unwrap().weights().unwrap();
    let network = FluxNetwork::new(
        Runtime::get(None).unwrap(),
        &export,
        vram.arena(),
        weights,
        clip_tokenizer(&fetch::cache_dir()).unwrap(),
        &SessionConfig::cpu(2),
    )
    .unwrap();
    let owner = vram.owner("flux").unwrap();
    Rig {
        vram,
        registry,
        owner,
        network,
    }
}

#[test]
fn the_export_loads_what_its_graphs_read_and_leaves_the_vae_encoder() {
    let export = Export::open(&dir().join("tiny")).unwrap();
    let all = export.layout();
    let resident = export.resident_layout();
    assert!(all.get("vae.encoder.conv_in.weight").is_some());
    assert!(resident.get("vae.encoder.conv_in.weight").is_none());
    assert!(resident.get("vae.decoder.conv_in.weight").is_some());
    assert_eq!(all.tensors.len() - resident.tensors.len(), 72);
    vortex_models::weights::WeightFile::open(&export.weights(), &all).unwrap();
}

#[test]
fn the_seeds_noise_and_the_packing_are_the_pipelines() {
    let golden = golden();
    let seed = golden["seed"].as_u64().unwrap();
    let l = &golden["latents"];
    let (c, h, w) = (
        l["latent_channels"].as_u64().unwrap() as usize,
        l["latent_height"].as_u64().unwrap() as usize,
        l["latent_width"].as_u64().unwrap() as usize,
    );
    let packed = pack(&noise(seed, c * h * w), c, h, w);
    let want = floats(&golden["cases"][0]["initial_latents_packed"]);
    assert_eq!(packed, want, "bit for bit");
    assert_eq!(unpack(&packed, c, h, w), noise(seed, c * h * w));
}

#[test]
fn the_actor_image_is_diffusers_flux_pipelines_step_for_step() {
    same_as_golden("tiny", &golden());
}

/// The 4-bit export (`quantize_nbits.py --out`: the transformer's and T5's Linear weights as
/// MatMulNBits in blocks of 16) against Python onnxruntime running the same graphs through the
/// same loop (`tiny_q4_golden.json`, which also records how far 4 bits moved it from the
/// float golden).
#[test]
fn the_4_bit_export_is_python_onnxruntimes_step_for_step() {
    let path = dir().join("tiny_q4_golden.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let export = Export::open(&dir().join("tiny_q4")).unwrap();
    let resident = export.resident_layout();
    // The packed tensors are what is loaded; the float weights they replace are not there.
    let name = "transformer.transformer_blocks.0.attn.to_q.weight";
    assert!(resident.get(name).is_none());
    let q = resident.get(&format!("{name}.qweight")).unwrap();
    assert_eq!(q.dtype, WeightDtype::U8);
    assert_eq!(q.shape, [32, 2, 8]);
    let ExportedNetwork::Flux(manifest) = export.network() else {
        panic!("a FLUX export")
    };
    assert_eq!(manifest.quantization.as_ref().unwrap().block_size, 16);
    same_as_golden("tiny_q4", &golden);
    // 4 bits moved the image away from the float one: the golden says how far, and so do we.
    let float = common::golden("flux");
    let a = ints(&golden["cases"][0]["image_u8"]);
    let b = ints(&float["cases"][0]["image_u8"]);
    let most = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).max().unwrap();
    let recorded = golden["vs_float_golden_max_abs_diff"]["image_u8_max_abs_diff"]
        .as_i64()
        .unwrap();
    assert!(most > 0 && most <= recorded, "{most} vs at most {recorded}");
}

fn same_as_golden(export: &str, golden: &Value) {
    let mut rig = rig(export);
    let arena = rig.vram.arena().clone();
    let before = rig.vram.tracker().allocated();
    let seed = golden["seed"].as_u64().unwrap();
    let size = golden["image_size"][0].as_u64().unwrap() as usize;
    for case in golden["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let cond = rig.network.condition(&arena, rig.owner, prompt).unwrap();
        assert_eq!(cond.clip_ids, ints(&case["clip_input_ids"]), "{prompt}");
        assert_eq!(cond.t5_ids, ints(&case["t5_input_ids"]), "{prompt}");
        let d = max_diff(&cond.pooled, &floats(&case["pooled_projections"]));
        assert!(d < 1e-5, "{prompt}: pooled {d}");
        let d = max_diff(&cond.prompt_embeds, &floats(&case["prompt_embeds"]));
        assert!(d < 1e-4, "{prompt}: T5 {d}");
        let steps: Vec<Vec<f32>> = case["latents_after_step"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let mut seen = 0;
        let image = rig
            .network
            .generate(&arena, rig.owner, prompt, seed, size, &mut |i, x| {
                let d = max_diff(x, &steps[i]);
                assert!(d < 1e-4, "{prompt}: step {i}: {d}");
                seen += 1;
            })
            .unwrap();
        assert_eq!(seen, 4, "schnell's 4 steps");
        let want: Vec<u8> = ints(&case["image_u8"]).iter().map(|&v| v as u8).collect();
        assert_eq!(image.len(), want.len());
        let off: Vec<i32> = image
            .iter()
            .zip(&want)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .filter(|&d| d > 0)
            .collect();
        assert!(
            off.iter().all(|&d| d <= 1) && off.len() <= 4,
            "{export}: {prompt}: {} values differ, by at most {:?}",
            off.len(),
            off.iter().max()
        );
        // The same recipe gives the same image.
        let again = rig
            .network
            .generate(&arena, rig.owner, prompt, seed, size, &mut |_, _| {})
            .unwrap();
        assert_eq!(again, image);
    }
    assert_eq!(rig.vram.tracker().allocated(), before);
    assert_eq!(rig.vram.tracker().purpose_bytes(Purpose::Activations), 0);
    // An empty prompt is refused saying what to write.
    let err = rig
        .network
        .generate(&arena, rig.owner, "  ", 1, size, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt is empty"), "{err}");
    let _ = &rig.registry;
}

/// An actor budget too small for T5: the adapter puts T5's encoder in host memory (a line of
/// the plan, not counted by the tracker), the arena holds the rest, and the network reads T5
/// from the export there: the same embeddings and image as with T5 on the device.
#[test]
fn t5_runs_from_host_memory_when_the_actor_budget_cannot_hold_it() {
    let dir = dir().join("tiny_q4");
    let export = Export::open(&dir).unwrap();
    let resident = export.resident_layout();
    let all = resident_bytes(&resident);
    let t5 = resident_bytes(&resident.select(&["text_encoder_2."]));
    assert!(t5 > 0);
    let mut small = rig_loaded(loaded_within(Stage::Actor, &dir, 64 << 20, all - t5));
    let flux = small.registry.get::<Flux>().unwrap();
    let cpu = flux.cpu_weights().expect("T5 in host memory");
    assert_eq!(cpu.bytes, t5);
    assert!(cpu.what.contains("T5"), "{}", cpu.what);
    let on_device = flux.weights().unwrap();
    assert!(
        on_device
            .layout
            .select(&["text_encoder_2."])
            .tensors
            .is_empty()
    );
    assert_eq!(resident_bytes(&on_device.layout), all - t5);
    assert_eq!(
        small.vram.tracker().purpose_bytes(Purpose::ModelWeights),
        all - t5
    );
    let detail = small.network.implementation().detail;
    assert!(detail.contains("T5 from host memory"), "{detail}");
    let mut whole = rig("tiny_q4");
    let prompt = "a lighthouse at dusk";
    let (a_arena, b_arena) = (small.vram.arena().clone(), whole.vram.arena().clone());
    let a = small
        .network
        .condition(&a_arena, small.owner, prompt)
        .unwrap();
    let b = whole
        .network
        .condition(&b_arena, whole.owner, prompt)
        .unwrap();
    assert_eq!(a.prompt_embeds, b.prompt_embeds, "bit for bit");
    let image = |rig: &mut Rig, arena| {
        rig.network
            .generate(arena, rig.owner, prompt, 7, 32, &mut |_, _| {})
            .unwrap()
    };
    assert_eq!(image(&mut small, &a_arena), image(&mut whole, &b_arena));
}

/// Why `Export::open` refuses a copy of the tiny export whose manifest `edit` changed.
fn refused_manifest(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let tiny = dir().join("tiny");
    let manifest = std::fs::read_to_string(tiny.join("flux.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&manifest).unwrap();
    edit(&mut doc);
    let to = broken_copy(
        &tiny,
        name,
        "flux.json",
        serde_json::to_string(&doc).unwrap().as_bytes(),
    );
    let err = Export::open(&to).unwrap_err().to_string();
    std::fs::remove_dir_all(to).unwrap();
    err
}

/// The plan finds T5 by its component's name: a manifest that names it otherwise is refused.
#[test]
fn a_manifest_naming_a_component_otherwise_is_refused() {
    let err = refused_manifest("t5-component", |doc| {
        doc["graphs"]["t5"]["component"] = "t5_encoder".into();
    });
    assert!(
        err.contains("graphs.t5.component \"t5_encoder\"") && err.contains("\"text_encoder_2\""),
        "{err}"
    );
}

/// A copy of an export with one file replaced by `bytes`.
fn broken_copy(from: &Path, name: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let to = std::env::temp_dir().join(format!("vortex-broken-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    std::fs::write(to.join(file), bytes).unwrap();
    to
}

#[test]
fn a_bad_graph_file_is_refused_at_start_naming_it_and_nothing_is_kept() {
    let tiny = dir().join("tiny");
    let graph = std::fs::read(tiny.join("transformer.onnx")).unwrap();
    for (name, bytes) in [
        ("cut", &graph[..graph.len() / 2]),
        ("garbage", &b"not a graph at all"[..]),
    ] {
        let broken = broken_copy(&tiny, name, "transformer.onnx", bytes);
        let (export, vram, registry) = loaded(Stage::Actor, &broken, 16 << 20);
        let weights = registry.get::<Flux>().unwrap().weights().unwrap();
        let before = vram.tracker().allocated();
        let err = FluxNetwork::new(
            Runtime::get(None).unwrap(),
            &export,
            vram.arena(),
            weights,
            clip_tokenizer(&fetch::cache_dir()).unwrap(),
            &SessionConfig::cpu(1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("transformer.onnx"), "{name}: {err}");
        assert_eq!(vram.tracker().allocated(), before, "{name}");
        std::fs::remove_dir_all(broken).unwrap();
    }
}

/// A copy of the tiny export whose weights file holds every f32 tensor as `f`'s image of it.
fn converted_copy(name: &str, f: impl Fn(f32) -> (Dtype, Vec<u8>)) -> PathBuf {
    let tiny = dir().join("tiny");
    let bytes = std::fs::read(tiny.join("weights.safetensors")).unwrap();
    let to = broken_copy(&tiny, name, "weights.safetensors", &bytes);
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (tensor, view) in file.tensors() {
        assert_eq!(view.dtype(), Dtype::F32, "{tensor}");
        let mut dtype = Dtype::F32;
        let mut data = Vec::with_capacity(view.data().len());
        for b in view.data().chunks_exact(4) {
            let (d, out) = f(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            dtype = d;
            data.extend(out);
        }
        tensors.push((tensor, dtype, view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, data)| (n.clone(), TensorView::new(*d, s.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &to.join("weights.safetensors")).unwrap();
    to
}

#[test]
fn a_bf16_weights_file_loads_converted_to_the_f32_its_graphs_run() {
    // The official checkpoints are bf16. A weights file in bf16 loads converted (by `half`)
    // into exactly the f32 bytes of an f32 file holding the same rounded values, and draws
    // exactly the same image.
    let bf16 = converted_copy("bf16", |v| {
        (Dtype::BF16, half::bf16::from_f32(v).to_le_bytes().to_vec())
    });
    let rounded = converted_copy("rounded", |v| {
        let r = half::bf16::from_f32(v).to_f32();
        (Dtype::F32, r.to_le_bytes().to_vec())
    });
    let export = Export::open(&bf16).unwrap();
    let stored = export.layout();
    let name = "transformer.x_embedder.weight";
    assert_eq!(stored.get(name).unwrap().dtype, WeightDtype::BF16);
    assert_eq!(
        export.resident_layout().get(name).unwrap().dtype,
        WeightDtype::F32
    );
    let case = &golden()["cases"][0];
    let prompt = case["prompt"].as_str().unwrap();
    let seed = golden()["seed"].as_u64().unwrap();
    let size = golden()["image_size"][0].as_u64().unwrap() as usize;
    let mut images = Vec::new();
    let mut arenas = Vec::new();
    for dir in [&bf16, &rounded] {
        let mut rig = rig_at(dir);
        let weights = rig.registry.get::<Flux>().unwrap().weights().unwrap();
        let mut bytes = Vec::new();
        for t in &weights.layout.tensors {
            let mut b = vec![0u8; t.bytes() as usize];
            rig.vram
                .arena()
                .download(&weights.region, weights.offset(&t.name).unwrap(), &mut b)
                .unwrap();
            bytes.push((t.name.clone(), t.dtype, b));
        }
        arenas.push(bytes);
        let arena = rig.vram.arena().clone();
        images.push(
            rig.network
                .generate(&arena, rig.owner, prompt, seed, size, &mut |_, _| {})
                .unwrap(),
        );
    }
    assert_eq!(arenas[0], arenas[1]);
    assert_eq!(images[0], images[1]);
    // And the rounding is bf16's: the image is near the f32 golden, not equal to it.
    let want: Vec<u8> = ints(&case["image_u8"]).iter().map(|&v| v as u8).collect();
    let worst = images[0]
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 16, "bf16 weights moved a pixel by {worst}");
    for dir in [bf16, rounded] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_quantization_vortex_does_not_run_is_refused_when_the_export_is_opened() {
    let q4 = dir().join("tiny_q4");
    let manifest = std::fs::read_to_string(q4.join("flux.json")).unwrap();
    for (name, from, to, says) in [
        ("bits", "\"bits\": 4", "\"bits\": 3", "4 bits"),
        (
            "block",
            "\"block_size\": 16",
            "\"block_size\": 24",
            "power of two",
        ),
        ("graph", "\"t5\",", "\"unet\",", "\"unet\""),
    ] {
        assert!(manifest.contains(from), "{from}");
        let bad = manifest.replacen(from, to, 1);
        let broken = broken_copy(&q4, name, "flux.json", bad.as_bytes());
        let err = Export::open(&broken).unwrap_err().to_string();
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            err.contains("quantize_nbits.py") || err.contains("export_flux.py"),
            "{err}"
        );
        std::fs::remove_dir_all(broken).unwrap();
    }
}

/// `tests/data/flux/t5_tokenizer/`: a T5 tokenizer made as T5's own (a SentencePiece unigram
/// model through transformers' converter; `make_t5_tokenizer.py`) and the ids
/// `T5TokenizerFast` gives, called as `FluxPipeline` calls it.
fn t5_fixture() -> (PathBuf, Value) {
    let dir = dir().join("t5_tokenizer");
    let golden =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    (dir, golden)
}

#[test]
fn t5_ids_from_a_checkpoints_tokenizer_json_are_t5_tokenizer_fasts() {
    let (dir, golden) = t5_fixture();
    let ids = T5Ids {
        kind: "tokenizer.json".to_owned(),
        file: Some("tokenizer.json".to_owned()),
        max_length: golden["max_length"].as_u64().unwrap() as usize,
        pad: 0,
        eos: 1,
    };
    let tokenizer = T5Tokenizer::open(&dir, &ids).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 18);
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(
            tokenizer.ids(prompt).unwrap(),
            ints(&case["ids"]),
            "{prompt:?}"
        );
    }
    // A tokenizer file that is not one, or without the padding id, is refused naming it.
    let broken = broken_copy(&dir, "t5", "tokenizer.json", b"{\"not\": \"a tokenizer\"}");
    let err = T5Tokenizer::open(&broken, &ids).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("not a tokenizers file"),
        "{err}"
    );
    std::fs::remove_dir_all(broken).unwrap();
    let far = T5Ids {
        pad: 100_000,
        ..ids
    };
    let err = T5Tokenizer::open(&dir, &far).unwrap_err().to_string();
    assert!(err.contains("padding id 100000"), "{err}");
}

#[test]
fn an_export_with_a_tokenizer_json_feeds_its_ids_to_t5() {
    // The tiny export with the fixture's tokenizer copied in and named by its manifest, as
    // export_flux.py --checkpoint writes it: T5 reads those ids (the tiny T5's 384-entry
    // embedding holds the fixture's 270).
    let (t5_dir, golden) = t5_fixture();
    let tiny = dir().join("tiny");
    let manifest = std::fs::read_to_string(tiny.join("flux.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&manifest).unwrap();
    doc["tokenizers"]["t5"]["kind"] = "tokenizer.json".into();
    doc["tokenizers"]["t5"]["file"] = "t5_tokenizer.json".into();
    let to = broken_copy(
        &tiny,
        "t5-json",
        "flux.json",
        serde_json::to_string(&doc).unwrap().as_bytes(),
    );
    std::fs::copy(t5_dir.join("tokenizer.json"), to.join("t5_tokenizer.json")).unwrap();
    let mut rig = rig_at(&to);
    let case = &golden["cases"][0];
    let prompt = case["prompt"].as_str().unwrap();
    let arena = rig.vram.arena().clone();
    let cond = rig.network.condition(&arena, rig.owner, prompt).unwrap();
    assert_eq!(cond.t5_ids, ints(&case["ids"]));
    assert_eq!(
        cond.prompt_embeds.len(),
        32 * 16,
        "32 ids of the tiny T5's width 16"
    );
    // Without the file the export is refused when opened.
    std::fs::remove_file(to.join("t5_tokenizer.json")).unwrap();
    let err = Export::open(&to).unwrap_err().to_string();
    assert!(err.contains("t5_tokenizer.json is missing"), "{err}");
    std::fs::remove_dir_all(to).unwrap();
    // A manifest that names a file for ByT5's ids (which read none) says which to change.
    let err = refused_manifest("t5-byt5-file", |doc| {
        doc["tokenizers"]["t5"]["file"] = "t5_tokenizer.json".into();
    });
    assert!(
        err.contains("\"byt5\" reads no file") && err.contains("drop the file"),
        "{err}"
    );
}
