//! The reference implementations: shapes, dtypes, determinism from the seed, data flowing from
//! actor and audio into the video and from the video into the embeddings.

use std::sync::Arc;

use vortex_models::compute::{
    ComputeError, FrameSelection, FrameTarget, Recipe, SpeechTiming, VideoInputs,
};
use vortex_models::reference::{
    EmbeddingProjection, read_device_frame, reference_actor, reference_audio, reference_embedding,
    reference_video,
};
use vortex_registry::{Dtype, OutputBuffers, Placement};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Purpose, StaticRegion, Vram, VramConfig};

const BUFFERS: OutputBuffers = OutputBuffers {
    image_size: 32,
    channels: 3,
    actor_dtype: Dtype::U8,
    seconds: 2,
    sample_rate: 8000,
    audio_dtype: Dtype::F32,
    fps: 4,
    video_dtype: Dtype::U8,
    video_placement: Placement::Device,
};

struct Slot {
    actor: Vec<u8>,
    audio: Vec<u8>,
    video: Vec<u8>,
    clip_b: Vec<f32>,
    clip_l: Vec<f32>,
}

struct Rig {
    vram: Vram,
    actor: StaticRegion,
    audio: StaticRegion,
    video: StaticRegion,
    staging: Vec<u8>,
}

fn rig() -> Rig {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20))).unwrap();
    let arena = vram.arena();
    let region = |name: &str, bytes| {
        let owner = vram.owner(name).unwrap();
        arena
            .alloc_static(owner, Purpose::OutputBuffer, bytes)
            .unwrap()
    };
    let (actor, audio, video) = (
        region("actor_buffer", BUFFERS.actor_bytes()),
        region("audio_buffer", BUFFERS.audio_bytes()),
        region("video_buffer", BUFFERS.video_bytes()),
    );
    Rig {
        vram,
        actor,
        audio,
        video,
        staging: Vec::new(),
    }
}

fn recipe(seed: u64) -> Recipe {
    Recipe {
        slot_id: 1,
        seed,
        prompt: "a news presenter in a blue studio".to_owned(),
        script: "hello and welcome".to_owned(),
        ..Recipe::default()
    }
}

fn run(rig: &mut Rig, recipe: &Recipe) -> Slot {
    let arena = rig.vram.arena();
    let flux = rig.vram.owner("flux").unwrap();
    reference_actor(arena, flux, recipe, &BUFFERS, &rig.actor, &mut rig.staging).unwrap();
    reference_audio(arena, recipe, &BUFFERS, &rig.audio, &mut rig.staging).unwrap();
    let target = FrameTarget {
        region: &rig.video,
        capacity: BUFFERS.frames(),
    };
    let mut written = Vec::new();
    reference_video(
        arena,
        recipe,
        &BUFFERS,
        VideoInputs {
            actor: &rig.actor,
            audio: &rig.audio,
            speech: &SpeechTiming::default(),
        },
        target,
        &mut rig.staging,
        &mut |i, offset| {
            written.push((i, offset));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(written.len() as u64, BUFFERS.frames());
    assert_eq!(written[3], (3, 3 * BUFFERS.frame_bytes()));
    let (mut clip_b, mut clip_l) = (vec![0f32; 512], vec![0f32; 768]);
    let frames = BUFFERS.frames();
    let mut frame = read_device_frame(arena, target, BUFFERS.frame_bytes());
    let staging = &mut rig.staging;
    let projection_b = EmbeddingProjection::new("clip_b", 512);
    let projection_l = EmbeddingProjection::new("clip_l", 768);
    reference_embedding(
        &projection_b,
        &BUFFERS,
        FrameSelection {
            frames,
            verified: 4,
        },
        &mut frame,
        staging,
        &mut clip_b,
    )
    .unwrap();
    reference_embedding(
        &projection_l,
        &BUFFERS,
        FrameSelection {
            frames,
            verified: 4,
        },
        &mut frame,
        staging,
        &mut clip_l,
    )
    .unwrap();
    let read = |region: &StaticRegion| {
        let mut out = vec![0u8; region.requested as usize];
        arena.download(region, 0, &mut out).unwrap();
        out
    };
    Slot {
        actor: read(&rig.actor),
        audio: read(&rig.audio),
        video: read(&rig.video),
        clip_b,
        clip_l,
    }
}

#[test]
fn identical_for_one_seed_different_for_another() {
    let mut rig = rig();
    let a = run(&mut rig, &recipe(7));
    let b = run(&mut rig, &recipe(7));
    let c = run(&mut rig, &recipe(8));
    assert!(a.actor == b.actor && a.audio == b.audio && a.video == b.video);
    assert_eq!((a.clip_b.clone(), a.clip_l.clone()), (b.clip_b, b.clip_l));
    assert_ne!(a.actor, c.actor);
    assert_ne!(a.audio, c.audio);
    assert_ne!(a.video, c.video);
    assert_ne!(a.clip_b, c.clip_b);
}

#[test]
fn shapes_types_and_data_flow() {
    let mut rig = rig();
    let slot = run(&mut rig, &recipe(1));
    assert_eq!(slot.actor.len(), 32 * 32 * 3);
    assert_eq!(slot.audio.len(), 2 * 8000 * 4);
    assert_eq!(slot.video.len(), 8 * 32 * 32 * 3);
    // The audio is speech-like: non-silent while the script lasts, silent after it.
    let samples: Vec<f32> = slot
        .audio
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let burst = 8000 * 80 / 1000;
    let speech = &samples[..burst * 5];
    let after = &samples[burst * 17..];
    assert!(speech.iter().any(|s| s.abs() > 0.05) && speech.iter().all(|s| s.abs() <= 0.3));
    assert!(after.iter().all(|&s| s == 0.0));
    // Frames come from the actor, and the audio drives them: talking frames differ from silent ones.
    let frame = |i: usize| &slot.video[i * 3072..(i + 1) * 3072];
    let same_as_actor = frame(0)
        .iter()
        .zip(&slot.actor)
        .filter(|(a, b)| a == b)
        .count();
    assert!(same_as_actor > 3072 / 2, "frame 0 is warped from the actor");
    // Same seed and prompt (same actor, same head motion), silent script: only the mouth,
    // driven by the audio envelope, differs.
    let silent = run(
        &mut rig,
        &Recipe {
            script: "      ".to_owned(),
            ..recipe(1)
        },
    );
    assert_eq!(silent.actor, slot.actor);
    let differing = frame(0)
        .iter()
        .zip(&silent.video[..3072])
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing > 0 && differing < 3072 / 10,
        "{differing} bytes differ"
    );
    // Embeddings are L2-normalized, 512 and 768 wide, and not the same direction.
    for e in [&slot.clip_b, &slot.clip_l] {
        let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_eq!((slot.clip_b.len(), slot.clip_l.len()), (512, 768));
}

#[test]
fn nothing_is_allocated_or_kept_per_slot() {
    let mut rig = rig();
    run(&mut rig, &recipe(1));
    let (capacity, ptr) = (rig.staging.capacity(), rig.staging.as_ptr());
    let allocated = rig.vram.tracker().allocated();
    run(&mut rig, &recipe(2));
    assert_eq!(
        (rig.staging.capacity(), rig.staging.as_ptr()),
        (capacity, ptr),
        "staging reused"
    );
    assert_eq!(
        rig.vram.tracker().allocated(),
        allocated,
        "the latent's scratch was released"
    );
    assert!(rig.vram.tracker().purpose_bytes(Purpose::Scratch) == 0);
}

#[test]
fn unsupported_dtypes_and_short_buffers_say_what_to_change() {
    let mut rig = rig();
    let arena = rig.vram.arena();
    let f16_video = OutputBuffers {
        video_dtype: Dtype::F16,
        ..BUFFERS
    };
    let target = FrameTarget {
        region: &rig.video,
        capacity: 8,
    };
    let err = reference_video(
        arena,
        &recipe(1),
        &f16_video,
        VideoInputs {
            actor: &rig.actor,
            audio: &rig.audio,
            speech: &SpeechTiming::default(),
        },
        target,
        &mut rig.staging,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(matches!(err, ComputeError::Dtype { .. }));
    assert!(
        // The advice in config.toml's own spelling (it refuses "U8").
        err.to_string().contains("set buffers.video_dtype = \"u8\""),
        "{err}"
    );
    let longer = OutputBuffers {
        seconds: 3,
        ..BUFFERS
    };
    let err =
        reference_audio(arena, &recipe(1), &longer, &rig.audio, &mut rig.staging).unwrap_err();
    assert!(
        err.to_string()
            .contains("audio buffer holds 64000 bytes but its shape needs 96000"),
        "{err}"
    );
}
