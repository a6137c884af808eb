//! Exported networks in the pipeline: both CLIP verification stages on the tiny CLIP export
//! (`vortex-models/tests/data/clip/tiny/`, seeded weights), scored against the prompt and
//! reported in the result and the manifest; the actor stage on the tiny FLUX export; nothing
//! kept between slots.

mod common;

use std::path::Path;

use common::Shipped;
use vortex_pipeline::config::Config;
use vortex_pipeline::{Recipe, Stage, Verdict, VortexPipeline};
use vortex_vram::Purpose;

fn tiny_export() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vortex-models/tests/data/clip/tiny");
    format!("{:?}", dir.canonicalize().unwrap().to_str().unwrap())
}

fn config(threshold: &str) -> Config {
    let export = tiny_export();
    Shipped::small_slot()
        .with(&[
            ("models.clip_b.weights", &export),
            ("models.clip_l.weights", &export),
            ("buffers.image_size", "64"),
            ("buffers.seconds", "2"),
            ("buffers.sample_rate", "800"),
            ("buffers.staging_frames", "3"),
            ("timing.verified_frames", "4"),
            ("timing.cost_profile", "\"zero\""),
            ("runtime.threads", "2"),
            ("verify.threshold", threshold),
        ])
        .config()
}

fn recipe(slot_id: u64, prompt: &str) -> Recipe {
    Recipe {
        slot_id,
        seed: 7,
        prompt: prompt.to_owned(),
        script: "good evening".to_owned(),
        ..Recipe::default()
    }
}

#[tokio::test]
async fn both_clip_stages_score_the_frames_against_the_prompt() {
    let mut pipeline = VortexPipeline::new(config("-1.0")).unwrap();
    for stage in [Stage::ClipB, Stage::ClipL] {
        let implementation = &pipeline.implementations()[stage];
        assert!(!implementation.is_reference(), "{implementation}");
        assert!(implementation.detail.contains("CLIP"), "{implementation}");
    }
    let baseline = pipeline.vram().tracker().allocated();

    let first = pipeline
        .generate_slot(&recipe(1, "a presenter at a desk"))
        .await
        .unwrap()
        .to_owned_result();
    let scores = first.clip_scores;
    let (b, l) = (scores.clip_b.unwrap(), scores.clip_l.unwrap());
    assert!(
        (-1.0..=1.0).contains(&b) && (-1.0..=1.0).contains(&l),
        "{scores:?}"
    );
    // The same export under both names: the same similarity, and so the same ensemble.
    assert_eq!(b, l);
    assert!((scores.ensemble.unwrap() - b).abs() < 1e-6, "{scores:?}");
    assert_eq!(scores.passed, Some(true), "threshold -1 passes everything");
    assert_eq!(scores.verdict(), Verdict::Pass);
    // The embedding is normalized and 8 wide (the tiny export's projection).
    assert_eq!(first.clip_b.len(), 8);
    let norm: f32 = first.clip_b.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    assert_eq!(
        pipeline
            .vram()
            .tracker()
            .purpose_bytes(Purpose::Activations),
        0
    );

    // The same recipe again: the same scores (nothing carried over but the prompt's cached
    // embedding, which is the same).
    let again = pipeline
        .generate_slot(&recipe(2, "a presenter at a desk"))
        .await
        .unwrap()
        .to_owned_result();
    assert_eq!(again.clip_scores, scores);
    assert_eq!(again.clip_b, first.clip_b);

    // Another prompt (another actor image, so other frames) scores differently.
    let other = pipeline
        .generate_slot(&recipe(3, "a bowl of fruit on a table"))
        .await
        .unwrap()
        .to_owned_result();
    assert_ne!(other.clip_scores.clip_b, scores.clip_b);

    // No prompt: embedded, not scored, and the slot still succeeds.
    let unscored = pipeline
        .generate_slot(&recipe(4, ""))
        .await
        .unwrap()
        .clip_scores;
    assert_eq!(unscored.clip_b, None);
    assert_eq!(unscored.ensemble, None);
    assert_eq!(unscored.verdict(), Verdict::Unscored);

    // A prompt over 77 tokens is cut (and logged), not refused.
    let long = "a presenter at a desk ".repeat(30);
    let cut = pipeline
        .generate_slot(&recipe(5, &long))
        .await
        .unwrap()
        .clip_scores;
    assert!(cut.clip_b.is_some());
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
}

#[tokio::test]
async fn a_score_below_the_threshold_fails_verification_and_the_manifest_says_so() {
    let mut pipeline = VortexPipeline::new(config("1.0")).unwrap();
    let dir = std::env::temp_dir().join(format!("vortex-clip-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let buffers = pipeline.config().buffers;
    let mut sink = vortex_pipeline::SlotFiles::with_format(
        &dir.join("slot-0001"),
        &buffers,
        vortex_pipeline::VideoFormat::Y4m,
    );
    let result = pipeline
        .generate_slot_into(&recipe(1, "a presenter"), &mut sink)
        .await
        .unwrap();
    assert_eq!(result.clip_scores.passed, Some(false));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("slot-0001/manifest.json")).unwrap(),
    )
    .unwrap();
    let verification = &manifest["verification"];
    assert_eq!(verification["passed"], false, "{verification}");
    assert_eq!(verification["threshold"], 1.0, "{verification}");
    assert!(verification["clip_b"].is_number(), "{verification}");
    assert!(verification["ensemble"].is_number(), "{verification}");
    assert_eq!(manifest["implementations"]["clip_l"]["kind"], "network");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_verify_table_that_cannot_decide_is_refused() {
    let export = tiny_export();
    for (key, value, expected) in [
        ("verify.threshold", "1.5", "from -1 to 1"),
        ("verify.clip_b_weight", "-1", "from 0 to 1000"),
    ] {
        let text = Shipped::new()
            .with(&[("models.clip_b.weights", export.as_str()), (key, value)])
            .text();
        let err = Config::parse(&text, &common::shipped_path())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(expected), "{err}");
    }
    let text = Shipped::new()
        .with(&[("verify.clip_b_weight", "0"), ("verify.clip_l_weight", "0")])
        .text();
    let err = Config::parse(&text, &common::shipped_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("both weights are 0"), "{err}");
}

/// A slot dropped at any point — during the verification on the blocking pool included —
/// leaves the next slot whole: the same scores as a clean one, nothing kept.
#[tokio::test]
async fn a_slot_dropped_at_any_point_leaves_the_next_one_whole() {
    let mut pipeline = VortexPipeline::new(config("-1.0")).unwrap();
    let baseline = pipeline.vram().tracker().allocated();
    let clean = pipeline
        .generate_slot(&recipe(1, "a presenter"))
        .await
        .unwrap()
        .clip_scores;
    let mut cut = std::time::Duration::ZERO;
    let mut finished = false;
    for attempt in 2..400 {
        let slot = recipe(attempt, "a presenter");
        finished = tokio::time::timeout(cut, pipeline.generate_slot(&slot))
            .await
            .is_ok();
        let next = pipeline.generate_slot(&slot).await.unwrap().clip_scores;
        assert_eq!(next, clean, "after a slot dropped at {cut:?}");
        assert_eq!(pipeline.vram().tracker().allocated(), baseline);
        if finished {
            break;
        }
        cut += std::time::Duration::from_micros(250);
    }
    assert!(finished, "some cut let the slot finish");
}

/// FLUX's tiny export as the actor stage: the actor image comes from the network, the same
/// recipe gives the same image, a prompt-less recipe is refused saying why, nothing is kept.
#[tokio::test]
async fn the_actor_stage_draws_with_flux_when_its_export_is_there() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vortex-models/tests/data/flux/tiny");
    let export = format!("{:?}", dir.canonicalize().unwrap().to_str().unwrap());
    let config = Shipped::small_slot()
        .with(&[
            ("models.flux.weights", &export),
            ("buffers.image_size", "64"),
            ("buffers.seconds", "2"),
            ("buffers.sample_rate", "800"),
            ("buffers.staging_frames", "3"),
            ("timing.verified_frames", "4"),
            ("timing.cost_profile", "\"zero\""),
            ("runtime.threads", "2"),
        ])
        .config();
    let mut pipeline = VortexPipeline::new(config).unwrap();
    let actor = &pipeline.implementations()[Stage::Actor];
    assert!(
        !actor.is_reference() && actor.detail.contains("FLUX"),
        "{actor}"
    );
    let baseline = pipeline.vram().tracker().allocated();
    let first = pipeline
        .generate_slot(&recipe(1, "a presenter"))
        .await
        .unwrap()
        .to_owned_result();
    assert_eq!(first.actor_image.len(), 64 * 64 * 3);
    assert!(
        first.speech.is_empty(),
        "the reference audio times no sounds"
    );
    let again = pipeline
        .generate_slot(&recipe(2, "a presenter"))
        .await
        .unwrap()
        .to_owned_result();
    assert_eq!(again.actor_image, first.actor_image, "same prompt and seed");
    let other = pipeline
        .generate_slot(&Recipe {
            seed: 8,
            ..recipe(3, "a presenter")
        })
        .await
        .unwrap()
        .to_owned_result();
    assert_ne!(other.actor_image, first.actor_image, "the seed matters");
    let err = pipeline
        .generate_slot(&recipe(4, ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt is empty"), "{err}");
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
}

/// LivePortrait's tiny export as the video stage: every frame drawn by the network from the
/// actor image, moving over the slot, the same recipe giving the same video, nothing kept.
#[tokio::test]
async fn the_video_stage_animates_the_actor_with_liveportrait_when_its_export_is_there() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vortex-models/tests/data/liveportrait/tiny");
    let export = format!("{:?}", dir.canonicalize().unwrap().to_str().unwrap());
    let config = |size: &str| {
        Shipped::new()
            .with(&[
                ("models.liveportrait.weights", &export),
                ("buffers.image_size", size),
                ("buffers.seconds", "2"),
                ("buffers.fps", "4"),
                ("buffers.staging_frames", "3"),
                ("timing.verified_frames", "2"),
                ("timing.cost_profile", "\"zero\""),
                ("runtime.threads", "2"),
            ])
            .config()
    };
    // Frames the network cannot draw are refused at start, saying which side it draws.
    let err = VortexPipeline::new(config("64")).unwrap_err().to_string();
    assert!(err.contains("set it to 128"), "{err}");

    let mut pipeline = VortexPipeline::new(config("128")).unwrap();
    let video = &pipeline.implementations()[Stage::Video];
    assert!(
        !video.is_reference() && video.detail.contains("LivePortrait"),
        "{video}"
    );
    let baseline = pipeline.vram().tracker().allocated();
    let slot = Recipe {
        slot_id: 1,
        seed: 3,
        prompt: "a presenter".to_owned(),
        script: "Good evening.".to_owned(),
        ..Recipe::default()
    };
    let first = pipeline
        .generate_slot(&slot)
        .await
        .unwrap()
        .to_owned_result();
    // Kokoro (the shipped audio) timed each sound of the script, and the pipeline handed that
    // to the video stage, whose mouth followed it; the result carries it.
    let sounds: String = first.speech.sounds.iter().map(|s| s.symbol).collect();
    assert!(sounds.contains('ɡ') || sounds.contains('g'), "{sounds}");
    let spoken = first.speech.sounds.last().unwrap().end;
    assert!(spoken <= first.audio_waveform.len() as u64);
    let frame = 128 * 128 * 3;
    assert_eq!(first.video_frames.len(), 8 * frame);
    let frames: Vec<&[u8]> = first.video_frames.chunks_exact(frame).collect();
    assert!(
        frames.windows(2).any(|w| w[0] != w[1]),
        "the actor moves over the slot"
    );
    let again = pipeline
        .generate_slot(&slot)
        .await
        .unwrap()
        .to_owned_result();
    assert_eq!(
        again.video_frames, first.video_frames,
        "same recipe, same video"
    );
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
}

/// `vortex plan` says which stages run networks before anything loads: every exported one.
#[test]
fn the_plan_names_every_exported_stage_a_network() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vortex-models/tests/data");
    let export = |name: &str| {
        let dir = data.join(name).join("tiny").canonicalize().unwrap();
        format!("{:?}", dir.to_str().unwrap())
    };
    let (clip, flux, lp) = (export("clip"), export("flux"), export("liveportrait"));
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("models.flux.weights", &flux),
            ("models.liveportrait.weights", &lp),
            ("models.clip_b.weights", &clip),
            ("models.clip_l.weights", &clip),
        ])
        .config();
    let planned = vortex_models::choose::StageSet::planned(&config.weight_sources());
    assert!(planned[Stage::Audio].is_reference());
    for stage in [Stage::Actor, Stage::Video, Stage::ClipB, Stage::ClipL] {
        let i = &planned[stage];
        assert!(
            !i.is_reference() && i.detail.contains("exported in"),
            "{stage}: {i}"
        );
    }
}

/// A LivePortrait slot longer than its deadline: the deadline fires while the network draws
/// (it runs on the blocking pool), the drawing is stopped and waited for, nothing is kept.
#[tokio::test]
async fn a_deadline_stops_the_video_network_mid_slot_and_keeps_nothing() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vortex-models/tests/data/liveportrait/tiny");
    let export = format!("{:?}", dir.canonicalize().unwrap().to_str().unwrap());
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("models.liveportrait.weights", &export),
            ("buffers.image_size", "128"),
            ("buffers.seconds", "60"),
            ("buffers.sample_rate", "800"),
            ("buffers.staging_frames", "3"),
            ("timing.verified_frames", "2"),
            ("timing.cost_profile", "\"zero\""),
            ("timing.deadline", "\"1500ms\""),
            ("runtime.threads", "2"),
        ])
        .config();
    let mut pipeline = VortexPipeline::new(config).unwrap();
    let baseline = pipeline.vram().tracker().allocated();
    let started = std::time::Instant::now();
    let err = pipeline
        .generate_slot(&recipe(1, "a presenter"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            vortex_pipeline::SlotError::DeadlineMissed {
                stage: Stage::Video,
                ..
            }
        ),
        "{err}"
    );
    // 1,440 frames would take far longer; the slot ends at its deadline plus at most the
    // frame being drawn.
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    assert_eq!(
        pipeline
            .vram()
            .tracker()
            .purpose_bytes(Purpose::Activations),
        0
    );
}
