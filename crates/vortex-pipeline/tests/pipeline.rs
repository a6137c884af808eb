//! The pipeline on the host backend under tokio's paused clock: concurrency, deadlines,
//! cancellation, zero growth, and the same frames whatever the video's placement.

mod common;

use std::time::Duration;

use common::Shipped;
use vortex_pipeline::config::Config;
use vortex_pipeline::{Recipe, SlotError, Stage, VortexPipeline};
use vortex_vram::Purpose;

/// The shipped config with slot shapes small enough to run thousands of slots.
fn config(profile: &str, deadline: &str, placement: &str) -> Config {
    Shipped::small_slot()
        .with(&[
            // Two seconds at 800 Hz: 8 frames, three staged and four verified.
            ("buffers.seconds", "2"),
            ("buffers.sample_rate", "800"),
            ("buffers.staging_frames", "3"),
            ("timing.verified_frames", "4"),
            ("buffers.video_placement", &format!("\"{placement}\"")),
            ("timing.cost_profile", &format!("\"{profile}\"")),
            ("timing.deadline", &format!("\"{deadline}\"")),
            // The seed's figures exactly: the timings below are asserted to the millisecond.
            ("timing.time_scale", "1.0"),
        ])
        .config()
}

fn recipe(slot_id: u64) -> Recipe {
    Recipe {
        slot_id,
        seed: 42,
        prompt: "a presenter".to_owned(),
        script: "good evening".to_owned(),
        ..Recipe::default()
    }
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(start_paused = true)]
async fn a_slot_takes_the_critical_path_not_the_sum() {
    let mut pipeline = VortexPipeline::new(config("seed-targets", "20s", "pinned_host")).unwrap();
    let result = pipeline.generate_slot(&recipe(1)).await.unwrap();
    // seed-targets with 2 s, 8 frames, 4 verified: audio 2 s and actor 12 s together, video
    // 0.5 s + 8 × 1.5 ms, then clip_b 50 + 4 × 5 ms and clip_l 100 + 4 × 10 ms together.
    let s = result.stages;
    assert_eq!(
        s.into_values(),
        [MS(2000), MS(12_000), MS(512), MS(70), MS(140)]
    );
    assert_eq!(result.generation_time_ms, 12_000.0 + 512.0 + 140.0);
    let sum = 2000.0 + 12_000.0 + 512.0 + 70.0 + 140.0;
    assert!(result.generation_time_ms < sum);
    assert_eq!(result.video_frames.len(), 8 * 16 * 16 * 3);
    assert_eq!(result.audio_waveform.len(), 1600);
    assert_eq!(
        (
            result.clip_embedding.clip_b.len(),
            result.clip_embedding.clip_l.len()
        ),
        (512, 768)
    );
}

#[tokio::test(start_paused = true)]
async fn a_missed_deadline_keeps_nothing_and_the_next_slot_succeeds() {
    let mut pipeline = VortexPipeline::new(config("seed-targets", "11s", "pinned_host")).unwrap();
    let baseline = pipeline.vram().tracker().allocated();
    let err = pipeline.generate_slot(&recipe(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            SlotError::DeadlineMissed {
                slot_id: 1,
                stage: Stage::Actor,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Raise timing.deadline"), "{err}");
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    pipeline.set_deadline(Duration::from_secs(13));
    let ok = pipeline.generate_slot(&recipe(2)).await.unwrap();
    assert_eq!(ok.slot_id, 2);
    assert_eq!(pipeline.slots(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancellation_at_any_point_leaks_nothing_and_the_next_slot_succeeds() {
    let mut pipeline = VortexPipeline::new(config("seed-targets", "20s", "pinned_host")).unwrap();
    let reference: Vec<u8> = pipeline
        .generate_slot(&recipe(1))
        .await
        .unwrap()
        .video_frames
        .to_vec();
    let baseline = pipeline.vram().tracker().allocated();
    for cut in [
        0, 1, 1999, 2001, 11_999, 12_001, 12_300, 12_511, 12_513, 12_580, 12_651,
    ] {
        let cancelled = tokio::time::timeout(MS(cut), pipeline.generate_slot(&recipe(1))).await;
        assert!(cancelled.is_err(), "a slot cut at {cut} ms finished");
        assert_eq!(
            pipeline.vram().tracker().allocated(),
            baseline,
            "cut at {cut} ms"
        );
        assert_eq!(pipeline.vram().tracker().purpose_bytes(Purpose::Scratch), 0);
        let again = pipeline.generate_slot(&recipe(1)).await.unwrap();
        assert_eq!(
            again.video_frames,
            &reference[..],
            "the slot after a cut at {cut} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_slots_do_not_grow_vram() {
    let mut pipeline = VortexPipeline::new(config("zero", "1s", "pinned_host")).unwrap();
    let tracker = pipeline.vram().tracker().clone();
    let (allocated, reserved) = (tracker.allocated(), tracker.reserved());
    let stats = pipeline.vram().arena().stats();
    for slot in 0..1000 {
        pipeline
            .generate_slot(&Recipe {
                seed: slot,
                ..recipe(slot)
            })
            .await
            .unwrap();
    }
    assert_eq!(
        (tracker.allocated(), tracker.reserved()),
        (allocated, reserved)
    );
    assert_eq!(pipeline.vram().arena().stats(), stats);
    assert_eq!(tracker.hard_limit_violations(), 0);
    assert_eq!(pipeline.slots(), 1000);
}

#[tokio::test(start_paused = true)]
async fn the_video_is_the_same_whether_it_lives_on_the_device_or_the_host() {
    let mut on_host = VortexPipeline::new(config("zero", "1s", "pinned_host")).unwrap();
    let mut on_device = VortexPipeline::new(config("zero", "1s", "device")).unwrap();
    let a = on_host.generate_slot(&recipe(3)).await.unwrap();
    let b = on_device.generate_slot(&recipe(3)).await.unwrap();
    assert_eq!(a.video_frames, b.video_frames);
    assert_eq!(a.audio_waveform, b.audio_waveform);
    assert_eq!(a.clip_embedding, b.clip_embedding);
    // The ring holds 3 frames on the device; the full video is only in host memory.
    let ring = on_host.vram().tracker().purpose_bytes(Purpose::Staging);
    assert_eq!(ring, (3 * 16 * 16 * 3u64).next_multiple_of(256));
}

#[tokio::test(start_paused = true)]
async fn results_are_deterministic_from_the_seed() {
    let mut pipeline = VortexPipeline::new(config("zero", "1s", "pinned_host")).unwrap();
    let first = pipeline
        .generate_slot(&recipe(1))
        .await
        .unwrap()
        .video_frames
        .to_vec();
    let again = pipeline
        .generate_slot(&recipe(1))
        .await
        .unwrap()
        .video_frames
        .to_vec();
    let other = pipeline
        .generate_slot(&Recipe {
            seed: 7,
            ..recipe(1)
        })
        .await
        .unwrap()
        .video_frames
        .to_vec();
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[tokio::test(start_paused = true)]
async fn a_lost_device_is_remembered_and_refuses_every_later_slot() {
    let config = config("zero", "20s", "pinned_host");
    let host = std::sync::Arc::new(vortex_vram::HostBackend::new(
        vortex_vram::HostConfig::rtx3060_12gb(),
    ));
    let mut pipeline = VortexPipeline::with_backend(config, host.clone()).unwrap();
    pipeline.generate_slot(&recipe(1)).await.unwrap();
    assert_eq!(pipeline.vram().device_lost(), None);

    host.faults().set_device_lost(true);
    let err = pipeline.generate_slot(&recipe(2)).await.unwrap_err();
    assert!(
        matches!(&err, SlotError::DeviceLost { slot_id: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("restart the process"), "{err}");
    assert!(pipeline.vram().device_lost().is_some());

    // The driver answers again, but nothing on a lost device can be trusted: still refused,
    // before any device call.
    host.faults().set_device_lost(false);
    let err = pipeline.generate_slot(&recipe(3)).await.unwrap_err();
    assert!(
        matches!(&err, SlotError::DeviceLost { slot_id: 3, .. }),
        "{err}"
    );
}

/// A sink that refuses frame `fail_at` and counts what it was given.
#[derive(Default)]
struct Refusing {
    fail_at: u64,
    frames: u64,
    actor: bool,
    audio: bool,
    aborted: bool,
    finished: bool,
}

impl vortex_pipeline::output::MediaSink for Refusing {
    fn actor(&mut self, image: &[u8]) -> std::io::Result<()> {
        self.actor = !image.is_empty();
        Ok(())
    }
    fn audio(&mut self, samples: &[f32]) -> std::io::Result<()> {
        self.audio = !samples.is_empty();
        Ok(())
    }
    fn frame(&mut self, index: u64, _: &[u8]) -> std::io::Result<()> {
        assert_eq!(index, self.frames, "frames arrive in order");
        if index == self.fail_at {
            return Err(std::io::Error::other("disk full"));
        }
        self.frames += 1;
        Ok(())
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.finished = true;
        Ok(())
    }
    fn abort(&mut self) {
        self.aborted = true;
    }
}

#[tokio::test(start_paused = true)]
async fn the_sink_gets_media_as_it_is_made_and_a_refusing_sink_fails_the_slot_cleanly() {
    for placement in ["pinned_host", "device"] {
        let mut pipeline = VortexPipeline::new(config("zero", "20s", placement)).unwrap();
        let baseline = pipeline.vram().tracker().allocated();
        let mut all = Refusing {
            fail_at: u64::MAX,
            ..Refusing::default()
        };
        pipeline
            .generate_slot_into(&recipe(1), &mut all)
            .await
            .unwrap();
        assert!(all.actor && all.audio && all.finished && !all.aborted);
        assert_eq!(all.frames, 8, "{placement}: every frame, once");

        let mut refusing = Refusing {
            fail_at: 3,
            ..Refusing::default()
        };
        let err = pipeline
            .generate_slot_into(&recipe(2), &mut refusing)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SlotError::Output { slot_id: 2, .. }),
            "{placement}: {err}"
        );
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(refusing.aborted && !refusing.finished, "{placement}");
        assert_eq!(pipeline.vram().tracker().allocated(), baseline);
        assert_eq!(pipeline.vram().tracker().purpose_bytes(Purpose::Scratch), 0);
        pipeline.generate_slot(&recipe(3)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn slot_files_appear_only_when_the_slot_finishes() {
    use vortex_pipeline::output::SlotFiles;
    let dir = std::env::temp_dir().join(format!("vortex-sink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = config("seed-targets", "20s", "pinned_host");
    let buffers = config.buffers;
    let mut pipeline = VortexPipeline::new(config).unwrap();
    let slot = dir.join("slot-0001");
    let mut files = SlotFiles::new(&slot, &buffers);
    pipeline
        .generate_slot_into(&recipe(1), &mut files)
        .await
        .unwrap();
    for name in ["actor.png", "audio.wav", "video.y4m"] {
        assert!(slot.join(name).is_file(), "{name}");
    }
    let y4m = std::fs::read(slot.join("video.y4m")).unwrap();
    assert_eq!(y4m.windows(6).filter(|w| w == b"FRAME\n").count(), 8);

    // A slot that misses its deadline leaves no folder behind.
    pipeline.set_deadline(Duration::from_secs(12));
    let failed = dir.join("slot-0002");
    let mut files = SlotFiles::new(&failed, &buffers);
    let err = pipeline
        .generate_slot_into(&recipe(2), &mut files)
        .await
        .unwrap_err();
    assert!(matches!(err, SlotError::DeadlineMissed { .. }), "{err}");
    drop(files);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["slot-0001"], "nothing of the failed slot");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped shapes for a short slot, with the real Kokoro network.
fn spoken(seconds: &str) -> Config {
    Shipped::new()
        .with(&[
            ("buffers.image_size", "16"),
            ("buffers.seconds", seconds),
            ("buffers.fps", "2"),
            ("buffers.staging_frames", "2"),
            ("timing.verified_frames", "1"),
            ("timing.cost_profile", "\"zero\""),
            ("runtime.threads", "2"),
        ])
        .config()
}

#[tokio::test]
async fn the_audio_stage_speaks_the_script_with_kokoro() {
    let mut pipeline = VortexPipeline::new(spoken("3")).unwrap();
    let audio = &pipeline.implementations()[Stage::Audio];
    assert!(!audio.is_reference(), "{audio}");
    assert!(audio.detail.contains("Kokoro-82M"), "{audio}");
    let baseline = pipeline.vram().tracker().allocated();
    let recipe = Recipe {
        slot_id: 1,
        script: "Hello world.".to_owned(),
        ..Recipe::default()
    };
    let result = pipeline.generate_slot(&recipe).await.unwrap();
    let wave = result.audio_waveform;
    assert_eq!(wave.len(), 3 * 24_000);
    // "Hello world." is 1.65 s of speech (39,600 samples, as Python says), then silence.
    let loud = |s: &[f32]| (s.iter().map(|v| v * v).sum::<f32>() / s.len() as f32).sqrt();
    assert!(loud(&wave[..39_600]) > 0.05, "speech first");
    assert!(wave[39_600..].iter().all(|&v| v == 0.0), "silence after it");
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    assert_eq!(
        pipeline
            .vram()
            .tracker()
            .purpose_bytes(Purpose::Activations),
        0
    );

    // A script longer than the slot is refused with the figure, and the next slot is fine.
    let long = Recipe {
        slot_id: 2,
        script: "Hello world. Hello world. Hello world.".to_owned(),
        ..Recipe::default()
    };
    let err = pipeline.generate_slot(&long).await.unwrap_err().to_string();
    assert!(err.contains("more than the slot's 3 s"), "{err}");
    let voice = Recipe {
        slot_id: 3,
        script: "Hello.".to_owned(),
        voice: "nobody".to_owned(),
        ..Recipe::default()
    };
    let err = pipeline
        .generate_slot(&voice)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown voice \"nobody\"") && err.contains("jm_kumo"),
        "{err}"
    );
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    pipeline.generate_slot(&recipe).await.unwrap();
}

#[test]
fn a_budget_below_weights_plus_the_profiled_activations_is_refused() {
    // 95 MB holds the 90.5 MB of int8 weights (so the plan passes) but not the ~61 MB the
    // profile run measures on top of them.
    let config = Shipped::new()
        .with(&[("models.kokoro.budget", "\"95MB\"")])
        .config();
    let err = VortexPipeline::new(config).unwrap_err().to_string();
    assert!(
        err.contains("models.kokoro.budget is 95000000 bytes") && err.contains("raise the budget"),
        "{err}"
    );
}

/// On the real clock: the deadline fires while the network computes (compute runs off the
/// runtime's threads), the run is terminated and waited for, nothing is kept, and the next
/// slot is the same as a clean one.
#[tokio::test]
async fn a_deadline_or_a_cancellation_stops_the_network_mid_run_and_keeps_nothing() {
    let mut pipeline = VortexPipeline::new(spoken("6")).unwrap();
    let baseline = pipeline.vram().tracker().allocated();
    let fox = Recipe {
        slot_id: 1,
        script: "The quick brown fox jumps over the lazy dog.".to_owned(),
        ..Recipe::default()
    };
    let started = std::time::Instant::now();
    let clean = pipeline
        .generate_slot(&fox)
        .await
        .unwrap()
        .audio_waveform
        .to_vec();
    let whole = started.elapsed();

    // A deadline at a quarter of what the slot takes fires mid-run, naming the audio stage.
    pipeline.set_deadline(whole / 4);
    let started = std::time::Instant::now();
    let err = pipeline.generate_slot(&fox).await.unwrap_err();
    let failed_after = started.elapsed();
    assert!(
        matches!(
            err,
            SlotError::DeadlineMissed {
                stage: Stage::Audio,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        failed_after < whole * 3 / 4,
        "the deadline fired at {failed_after:?}, not after the whole run ({whole:?})"
    );
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    assert_eq!(
        pipeline
            .vram()
            .tracker()
            .purpose_bytes(Purpose::Activations),
        0
    );

    // A caller that drops the slot mid-run.
    pipeline.set_deadline(Duration::from_secs(60));
    let started = std::time::Instant::now();
    let cut = tokio::time::timeout(whole / 4, pipeline.generate_slot(&fox)).await;
    let cancelled_after = started.elapsed();
    assert!(cut.is_err(), "cancelled");
    assert!(
        cancelled_after < whole * 3 / 4,
        "the dropped slot stopped the run and returned after {cancelled_after:?}, not after the whole run ({whole:?})"
    );
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    assert_eq!(
        pipeline
            .vram()
            .tracker()
            .purpose_bytes(Purpose::Activations),
        0
    );

    let again = pipeline.generate_slot(&fox).await.unwrap();
    assert_eq!(
        again.audio_waveform,
        &clean[..],
        "the next slot is a clean one"
    );
}

/// On the real clock, with no emulated latency: a deadline shorter than the video's own
/// compute fails the slot on time, naming the stage, instead of returning `Ok` late.
#[tokio::test]
async fn a_deadline_shorter_than_the_compute_fires_on_time() {
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "128"),
            ("buffers.seconds", "20"),
            ("buffers.fps", "24"),
            ("buffers.staging_frames", "4"),
            ("timing.cost_profile", "\"zero\""),
            ("timing.deadline", "\"10s\""),
        ])
        .config();
    let mut pipeline = VortexPipeline::new(config).unwrap();
    let baseline = pipeline.vram().tracker().allocated();
    let started = std::time::Instant::now();
    pipeline.generate_slot(&recipe(1)).await.unwrap();
    let whole = started.elapsed();
    // The slot's compute (480 frames of 128²) against a deadline a fifth of it.
    pipeline.set_deadline(whole / 5);
    let started = std::time::Instant::now();
    let err = pipeline.generate_slot(&recipe(2)).await.unwrap_err();
    let after = started.elapsed();
    assert!(
        matches!(err, SlotError::DeadlineMissed { slot_id: 2, .. }),
        "{err}"
    );
    assert!(
        after < whole * 3 / 5,
        "failed after {after:?}: the deadline was {:?}, the whole slot takes {whole:?}",
        whole / 5
    );
    assert_eq!(pipeline.vram().tracker().allocated(), baseline);
    pipeline.set_deadline(Duration::from_secs(10));
    pipeline.generate_slot(&recipe(3)).await.unwrap();
}

#[test]
fn a_scratch_region_too_small_for_a_stage_is_refused_at_start() {
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("vram.scratch", "\"1KiB\""),
        ])
        .config();
    let err = VortexPipeline::new(config).unwrap_err().to_string();
    assert!(
        err.contains("vram.scratch is 1024 bytes") && err.contains("set vram.scratch to at least"),
        "{err}"
    );
}

#[test]
fn buffers_no_stage_can_write_are_refused_at_start_with_advice_config_accepts() {
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.video_dtype", "\"f16\""),
        ])
        .config();
    let err = VortexPipeline::new(config).unwrap_err().to_string();
    assert!(err.contains("set buffers.video_dtype = \"u8\""), "{err}");
    // The advice is a value config.toml accepts.
    Shipped::new()
        .with(&[("buffers.video_dtype", "\"u8\"")])
        .config();
    // The real audio network needs 24 kHz.
    let config = Shipped::new()
        .with(&[("buffers.sample_rate", "16000")])
        .config();
    let err = VortexPipeline::new(config).unwrap_err().to_string();
    assert!(err.contains("set buffers.sample_rate = 24000"), "{err}");
}
