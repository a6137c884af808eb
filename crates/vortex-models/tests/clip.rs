//! CLIP for real: the export directory's checks, and (with the tiny export in
//! `tests/data/clip/tiny/`, written by `data/clip/export_clip.py`) both towers against goldens
//! from `transformers` (`tests/data/clip/make_golden.py`).

mod common;

use std::path::{Path, PathBuf};

use vortex_models::export::Export;

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/clip/tiny")
}

/// A copy of the tiny export with its manifest edited by `edit`.
fn edited_export(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vortex-clip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("clip.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).unwrap();
    dir
}

#[test]
fn the_tiny_export_opens_and_its_layout_is_every_clip_tensor() {
    let export = Export::open(&tiny_dir()).unwrap();
    let layout = export.layout();
    assert!(layout.get("visual_projection.weight").is_some());
    assert!(layout.get("text_projection.weight").is_some());
    assert!(
        layout
            .get("text_model.embeddings.token_embedding.weight")
            .is_some_and(|t| t.shape == [49_408, 8])
    );
    // The weights file holds exactly these tensors, with these shapes and dtypes.
    vortex_models::weights::WeightFile::open(&export.weights(), &layout).unwrap();
}

#[test]
fn weights_that_do_not_match_the_manifest_are_refused_naming_the_tensor() {
    let dir = edited_export("width", |m| m["projection_dim"] = 9.into());
    let export = Export::open(&dir).unwrap();
    let err = vortex_models::weights::WeightFile::open(&export.weights(), &export.layout())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("text_projection.weight") || err.contains("visual_projection.weight"),
        "{err}"
    );
    assert!(err.contains("expected [9, "), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// An edit of a manifest.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

#[test]
fn a_bad_export_is_refused_saying_what_is_wrong() {
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "kind",
            Box::new(|m| m["kind"] = "flux".into()),
            "not a CLIP export",
        ),
        (
            "dtype",
            Box::new(|m| m["dtype"] = "bf16".into()),
            "export with --dtype f32 or --dtype f16",
        ),
        (
            "heads",
            Box::new(|m| m["vision"]["heads"] = 3.into()),
            "multiple of its heads",
        ),
        (
            "patch",
            Box::new(|m| m["vision"]["patch"] = 5.into()),
            "not a multiple of vision.patch",
        ),
        (
            "vocab",
            Box::new(|m| m["text"]["vocab"] = 64.into()),
            "49408 and 77",
        ),
        (
            "escape",
            Box::new(|m| m["graphs"]["vision"] = "../vision.onnx".into()),
            "plain names",
        ),
        (
            "missing",
            Box::new(|m| m["weights"] = "nothing.safetensors".into()),
            "nothing.safetensors is missing",
        ),
        (
            "std",
            Box::new(|m| m["image_std"] = serde_json::json!([0.0, 1.0, 1.0])),
            "image_std must be positive",
        ),
        (
            "shape",
            Box::new(|m| m["projection_dim"] = "wide".into()),
            "not a CLIP manifest",
        ),
    ];
    for (name, edit, expected) in cases {
        let dir = edited_export(name, edit);
        let err = Export::open(&dir).unwrap_err().to_string();
        assert!(err.contains(expected), "{name}: {err}");
        assert!(err.contains("export_clip.py"), "{name}: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
    let err = Export::open(Path::new("/nonexistent/clip"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("clip.json"), "{err}");
}

mod network {
    use serde_json::Value;
    use vortex_models::adapter::ClipB;
    use vortex_models::clip::image::ImagePrep;
    use vortex_models::clip::network::ClipNetwork;
    use vortex_models::clip_text::clip_tokenizer;
    use vortex_models::compute::ComputeError;
    use vortex_models::stage::Stage;
    use vortex_registry::ModelRegistry;
    use vortex_runtime::{Runtime, SessionConfig, fetch};
    use vortex_vram::{OwnerId, Purpose, Vram};

    use super::common::{floats, loaded, max_diff};

    fn golden() -> Value {
        super::common::golden("clip")
    }

    /// The golden's frame formula, recomputed.
    fn frame(width: usize, height: usize, k: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    rgb.push(((x * 7 + y * 13 + c * 50 + k * 31 + (x * y) % 17) % 256) as u8);
                }
            }
        }
        rgb
    }

    struct Rig {
        vram: Vram,
        _registry: ModelRegistry,
        owner: OwnerId,
        network: ClipNetwork,
    }

    fn rig(scratch: u64) -> Rig {
        let (export, vram, registry) = loaded(Stage::ClipB, &super::tiny_dir(), scratch);
        let weights = registry.get::<ClipB>().unwrap().weights().unwrap();
        let tokenizer = clip_tokenizer(&fetch::cache_dir()).unwrap();
        let network = ClipNetwork::new(
            Runtime::get(None).unwrap(),
            "clip_b",
            &export,
            vram.arena(),
            weights,
            tokenizer,
            &SessionConfig::cpu(2),
        )
        .unwrap();
        let owner = vram.owner("clip_b").unwrap();
        Rig {
            vram,
            _registry: registry,
            owner,
            network,
        }
    }

    #[test]
    fn frames_are_prepared_as_clips_image_processor_prepares_them() {
        let golden = golden();
        let size = golden["image_size"].as_u64().unwrap() as u32;
        let mean: Vec<f32> = floats(&golden["image_processor"]["image_mean"]);
        let std: Vec<f32> = floats(&golden["image_processor"]["image_std"]);
        let mut prep = ImagePrep::new(size, [mean[0], mean[1], mean[2]], [std[0], std[1], std[2]]);
        let mut out = vec![0.0; prep.values()];
        for f in golden["frames"].as_array().unwrap() {
            let (w, h, k) = (
                f["width"].as_u64().unwrap() as usize,
                f["height"].as_u64().unwrap() as usize,
                f["k"].as_u64().unwrap() as usize,
            );
            prep.prepare(&frame(w, h, k), w as u32, h as u32, &mut out)
                .unwrap();
            let want = floats(&f["pixel_values"]);
            // PIL's resize exactly (the same bytes), then the same arithmetic in f32.
            let diff = max_diff(&out, &want);
            assert!(diff < 1e-5, "frame {k} ({w}×{h}): max |diff| {diff}");
        }
    }

    #[test]
    fn both_towers_match_transformers_and_the_similarity_follows() {
        let golden = golden();
        let mut rig = rig(64 << 20);
        let arena = rig.vram.arena().clone();
        let before = rig.vram.tracker().allocated();
        // The image tower on transformers' own pixels: each frame, then the two 512×512
        // frames in one batch.
        let frames = golden["frames"].as_array().unwrap();
        for f in frames {
            let embeds = rig
                .network
                .image_embeddings(&arena, rig.owner, &floats(&f["pixel_values"]))
                .unwrap();
            let want = floats(&f["image_embeds"]);
            let diff = max_diff(embeds, &want);
            assert!(diff < 1e-4, "frame {}: max |diff| {diff}", f["k"]);
        }
        let batch: Vec<f32> = golden["batch_512"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|k| floats(&frames[k.as_u64().unwrap() as usize]["pixel_values"]))
            .collect();
        let embeds = rig
            .network
            .image_embeddings(&arena, rig.owner, &batch)
            .unwrap()
            .to_vec();
        let diff = max_diff(&embeds, &floats(&golden["batch_512"]["image_embeds"]));
        assert!(diff < 1e-4, "batch: max |diff| {diff}");
        // The slot's embedding as the stage makes it, from the batch.
        let mut image = vec![0.0f32; 8];
        for e in embeds.chunks_exact(8) {
            let n = e.iter().map(|v| v * v).sum::<f32>().sqrt();
            image.iter_mut().zip(e).for_each(|(o, v)| *o += v / n);
        }
        let n = image.iter().map(|v| v * v).sum::<f32>().sqrt();
        image.iter_mut().for_each(|v| *v /= n);
        // The text tower on the prompts: ids from Vortex's tokenizer equal transformers', and
        // the embeddings and similarities match.
        for p in golden["prompts"].as_array().unwrap() {
            let prompt = p["prompt"].as_str().unwrap();
            let want_ids: Vec<i64> = p["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let text = rig
                .network
                .prompt_embedding(&arena, rig.owner, prompt)
                .unwrap()
                .to_vec();
            let direct = rig
                .network
                .text_embedding(&arena, rig.owner, &want_ids)
                .unwrap();
            assert_eq!(
                text, direct,
                "{prompt:?}: the tokenizer's ids are transformers'"
            );
            let mut want = floats(&p["text_embeds"]);
            let n = want.iter().map(|v| v * v).sum::<f32>().sqrt();
            want.iter_mut().for_each(|v| *v /= n);
            let diff = max_diff(&text, &want);
            assert!(diff < 1e-4, "{prompt:?}: max |diff| {diff}");
            let similarity: f32 = text.iter().zip(&image).map(|(t, i)| t * i).sum();
            let golden_similarity = p["similarity"].as_f64().unwrap() as f32;
            assert!(
                (similarity - golden_similarity).abs() < 1e-4,
                "{prompt:?}: {similarity} vs {golden_similarity}"
            );
        }
        // Nothing kept: activations went back to scratch after every run.
        assert_eq!(rig.vram.tracker().allocated(), before);
        assert_eq!(rig.vram.tracker().purpose_bytes(Purpose::Activations), 0);
    }

    #[test]
    fn the_sessions_read_the_weights_where_they_are_in_the_arena() {
        let golden = golden();
        let mut rig = rig(64 << 20);
        let arena = rig.vram.arena().clone();
        let pixels = floats(&golden["frames"][0]["pixel_values"]);
        let before = rig
            .network
            .image_embeddings(&arena, rig.owner, &pixels)
            .unwrap()
            .to_vec();
        // Change one weight of the projection in the arena: the embedding changes.
        let registry = &rig._registry;
        let weights = registry.get::<ClipB>().unwrap().weights().unwrap();
        let offset = weights.offset("visual_projection.weight").unwrap();
        arena
            .upload(&weights.region, offset, &2.5f32.to_le_bytes())
            .unwrap();
        let after = rig
            .network
            .image_embeddings(&arena, rig.owner, &pixels)
            .unwrap()
            .to_vec();
        assert_ne!(before, after);
        assert_eq!(
            before[1..],
            after[1..],
            "only the first output reads that weight"
        );
    }

    #[test]
    fn activations_that_do_not_fit_scratch_fail_the_run_and_keep_nothing() {
        let golden = golden();
        let mut rig = rig(64 << 10);
        let arena = rig.vram.arena().clone();
        let before = rig.vram.tracker().allocated();
        let pixels: Vec<f32> = (0..8)
            .flat_map(|_| floats(&golden["frames"][0]["pixel_values"]))
            .collect();
        let err = rig
            .network
            .image_embeddings(&arena, rig.owner, &pixels)
            .unwrap_err();
        assert!(
            matches!(err, ComputeError::Runtime(_)) && err.to_string().contains("did not fit"),
            "{err}"
        );
        assert_eq!(rig.vram.tracker().allocated(), before);
        // The next run with room works.
        rig.network
            .image_embeddings(&arena, rig.owner, &pixels[..pixels.len() / 8])
            .unwrap();
    }
}
