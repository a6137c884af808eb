//! One conformance suite run over every implementation of every stage interface, as RMM runs
//! one suite over every memory resource: shapes, dtypes, determinism, no device memory kept
//! beyond the call (scratch only, released), and a video stage stopped by its drain.
//!
//! [`implementations`] lists what is checked. A new implementation (a network on ONNX
//! Runtime) is added there and passes the same checks.

mod common;

use std::sync::Arc;
use vortex_runtime::SessionConfig;

use vortex_models::adapter::resident_weights;
use vortex_models::choose::StageSet;
use vortex_models::clip::network::ClipNetwork;
use vortex_models::clip_text::clip_tokenizer;
use vortex_models::compute::{
    ComputeError, FrameSelection, FrameTarget, Implementation, Recipe, StageContext, VideoInputs,
};
use vortex_models::flux::network::FluxNetwork;
use vortex_models::liveportrait::network::LivePortraitNetwork;
use vortex_models::stage::Stage;
use vortex_registry::{Dtype, OutputBuffers, Placement};
use vortex_runtime::{Runtime, fetch};
use vortex_vram::{
    ArenaConfig, HostBackend, HostConfig, OwnerId, Purpose, StaticRegion, StreamId, Vram,
    VramConfig,
};

/// 128 px: what the tiny LivePortrait export draws (twice its 64 px source); FLUX draws any
/// multiple of 16.
const BUFFERS: OutputBuffers = OutputBuffers {
    image_size: 128,
    channels: 3,
    actor_dtype: Dtype::U8,
    seconds: 1,
    sample_rate: 4000,
    audio_dtype: Dtype::F32,
    fps: 6,
    video_dtype: Dtype::U8,
    video_placement: Placement::Device,
};

/// Every stage set to check, by name: the reference one; the CLIP network on the tiny export
/// (`tests/data/clip/tiny/`) under both CLIP stages; FLUX's 4-bit tiny export as the actor and
/// LivePortrait's as the video.
fn implementations() -> Vec<(&'static str, StageSet)> {
    let mut clip = StageSet::reference();
    clip.clip_b = Box::new(clip_network(Stage::ClipB));
    clip.clip_l = Box::new(clip_network(Stage::ClipL));
    let mut drawn = StageSet::reference();
    drawn.actor = Box::new(flux_network());
    drawn.video = Box::new(liveportrait_network());
    vec![
        ("reference", StageSet::reference()),
        ("clip network", clip),
        ("flux and liveportrait networks", drawn),
    ]
}

/// FLUX.1 over the tiny 4-bit export.
fn flux_network() -> FluxNetwork {
    let (export, vram, registry) =
        common::loaded(Stage::Actor, &common::data("flux").join("tiny_q4"), 1 << 20);
    let weights = resident_weights(&registry, Stage::Actor).unwrap();
    FluxNetwork::new(
        Runtime::get(None).unwrap(),
        &export,
        vram.arena(),
        weights,
        clip_tokenizer(&fetch::cache_dir()).unwrap(),
        &SessionConfig::cpu(1),
    )
    .unwrap()
}

/// LivePortrait over the tiny export.
fn liveportrait_network() -> LivePortraitNetwork {
    let (export, vram, registry) = common::loaded(
        Stage::Video,
        &common::data("liveportrait").join("tiny"),
        1 << 20,
    );
    let weights = resident_weights(&registry, Stage::Video).unwrap();
    LivePortraitNetwork::new(
        Runtime::get(None).unwrap(),
        &export,
        vram.arena(),
        weights,
        &SessionConfig::cpu(1),
    )
    .unwrap()
}

/// The CLIP network over the tiny export, its weights in an arena of its own (kept alive by
/// the network).
fn clip_network(stage: Stage) -> ClipNetwork {
    let (export, vram, registry) =
        common::loaded(stage, &common::data("clip").join("tiny"), 1 << 20);
    let weights = resident_weights(&registry, stage).unwrap();
    ClipNetwork::new(
        Runtime::get(None).unwrap(),
        stage.model(),
        &export,
        vram.arena(),
        weights,
        clip_tokenizer(&fetch::cache_dir()).unwrap(),
        &SessionConfig::cpu(1),
    )
    .unwrap()
}

struct Rig {
    vram: Vram,
    owner: OwnerId,
    weights: StaticRegion,
    actor: StaticRegion,
    audio: StaticRegion,
    video: StaticRegion,
    staging: Vec<u8>,
}

fn rig() -> Rig {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(1 << 20, 64 << 20)),
    )
    .unwrap();
    let owner = vram.owner("model").unwrap();
    let region = |purpose, bytes| vram.arena().alloc_static(owner, purpose, bytes).unwrap();
    Rig {
        weights: region(Purpose::ModelWeights, 4096),
        actor: region(Purpose::OutputBuffer, BUFFERS.actor_bytes()),
        audio: region(Purpose::OutputBuffer, BUFFERS.audio_bytes()),
        video: region(Purpose::OutputBuffer, BUFFERS.video_bytes()),
        owner,
        vram,
        staging: Vec::new(),
    }
}

impl Rig {
    fn cx<'a>(&'a mut self, buffers: &'a OutputBuffers) -> StageContext<'a> {
        StageContext {
            arena: self.vram.arena(),
            owner: self.owner,
            weights: &self.weights,
            buffers,
            staging: &mut self.staging,
            stream: StreamId(0),
        }
    }

    fn read(&self, region: &StaticRegion) -> Vec<u8> {
        let mut out = vec![0u8; region.requested as usize];
        self.vram.arena().download(region, 0, &mut out).unwrap();
        out
    }

    /// Device memory a call may not keep: everything allocated, and scratch in particular.
    fn held(&self) -> (u64, u64) {
        let tracker = self.vram.tracker();
        (tracker.allocated(), tracker.purpose_bytes(Purpose::Scratch))
    }
}

fn recipe(seed: u64) -> Recipe {
    Recipe {
        slot_id: 1,
        seed,
        prompt: "a presenter in a red studio".to_owned(),
        script: "good evening and welcome".to_owned(),
        ..Recipe::default()
    }
}

/// Runs one whole slot through `set` on `rig`; returns (actor, audio, video, clip_b, clip_l).
fn slot(set: &mut StageSet, rig: &mut Rig, recipe: &Recipe) -> [Vec<u8>; 5] {
    let before = rig.held();
    let (actor, audio, video) = (rig.actor, rig.audio, rig.video);
    set.actor
        .run(&mut rig.cx(&BUFFERS), recipe, &actor)
        .unwrap();
    let speech = set
        .audio
        .run(&mut rig.cx(&BUFFERS), recipe, &audio)
        .unwrap();
    let target = FrameTarget {
        region: &video,
        capacity: BUFFERS.frames(),
    };
    let mut drained = 0u64;
    let inputs = VideoInputs {
        actor: &actor,
        audio: &audio,
        speech: &speech,
    };
    set.video
        .run(
            &mut rig.cx(&BUFFERS),
            recipe,
            inputs,
            target,
            &mut |i, offset| {
                assert_eq!((i, offset), (drained, drained * BUFFERS.frame_bytes()));
                drained += 1;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(drained, BUFFERS.frames(), "every frame drained once");
    let frames = rig.read(&video);
    let selection = FrameSelection {
        frames: BUFFERS.frames(),
        verified: 3,
    };
    let mut embed = |stage: Stage, rig: &mut Rig| {
        let embedding = match stage {
            Stage::ClipB => &mut set.clip_b,
            _ => &mut set.clip_l,
        };
        let mut out = vec![0f32; embedding.dim()];
        let frame_bytes = BUFFERS.frame_bytes() as usize;
        let mut read = |i: u64, into: &mut [u8]| {
            let at = i as usize * frame_bytes;
            into.copy_from_slice(&frames[at..at + frame_bytes]);
            Ok(())
        };
        embedding
            .run(
                &mut rig.cx(&BUFFERS),
                recipe,
                selection,
                &mut read,
                &mut out,
            )
            .unwrap();
        let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "{stage}: an L2-normalized embedding, norm {norm}"
        );
        out.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let clip_b = embed(Stage::ClipB, rig);
    let clip_l = embed(Stage::ClipL, rig);
    assert_eq!(rig.held(), before, "a slot keeps no device memory");
    assert_eq!(rig.held().1, 0, "scratch is released");
    [rig.read(&actor), rig.read(&audio), frames, clip_b, clip_l]
}

/// The video network reads the audio stage's timing: the same audio and actor with every
/// sample said as "m" (lips shut) and as "a" (wide) give other frames, each deterministic;
/// the reference video, which draws from the audio alone, gives the same frames either way.
#[test]
fn the_video_network_follows_the_audio_stages_timing() {
    use vortex_models::compute::{SpeechSound, SpeechTiming};
    let recipe = recipe(5);
    let samples = BUFFERS.seconds * BUFFERS.sample_rate;
    let said = |symbol| SpeechTiming {
        sounds: vec![SpeechSound {
            symbol,
            start: 0,
            end: samples,
        }],
    };
    let mut rig = rig();
    let (actor, audio, video) = (rig.actor, rig.audio, rig.video);
    let mut reference = StageSet::reference();
    reference
        .actor
        .run(&mut rig.cx(&BUFFERS), &recipe, &actor)
        .unwrap();
    reference
        .audio
        .run(&mut rig.cx(&BUFFERS), &recipe, &audio)
        .unwrap();
    let draw = |stage: &mut Box<dyn vortex_models::compute::VideoStage>,
                speech: &SpeechTiming,
                rig: &mut Rig| {
        let inputs = VideoInputs {
            actor: &actor,
            audio: &audio,
            speech,
        };
        let target = FrameTarget {
            region: &video,
            capacity: BUFFERS.frames(),
        };
        stage
            .run(
                &mut rig.cx(&BUFFERS),
                &recipe,
                inputs,
                target,
                &mut |_, _| Ok(()),
            )
            .unwrap();
        rig.read(&video)
    };
    let mut network: Box<dyn vortex_models::compute::VideoStage> = Box::new(liveportrait_network());
    let (shut, wide) = (said('m'), said('a'));
    let closed = draw(&mut network, &shut, &mut rig);
    let open = draw(&mut network, &wide, &mut rig);
    assert_ne!(closed, open, "the mouth follows the timing");
    assert_eq!(draw(&mut network, &wide, &mut rig), open, "deterministic");
    let none = draw(&mut network, &SpeechTiming::default(), &mut rig);
    assert_ne!(none, closed, "without timing the energy alone opens it");
    let (a, b) = (
        draw(&mut reference.video, &shut, &mut rig),
        draw(&mut reference.video, &wide, &mut rig),
    );
    assert_eq!(a, b);
}

#[test]
fn every_implementation_reports_what_it_is() {
    for (name, set) in implementations() {
        for (stage, implementation) in set.implementations().iter() {
            let Implementation { kind, detail } = implementation;
            assert!(!detail.is_empty(), "{name}/{stage}");
            if implementation.is_reference() {
                assert!(
                    detail.contains("reference implementation")
                        && detail.contains("not model inference"),
                    "{name}/{stage}: a reference implementation is named as such: {detail}"
                );
            }
            let _ = kind;
        }
        if set.clip_b.implementation().is_reference() {
            assert_eq!(set.clip_b.dim(), 512, "{name}: CLIP ViT-B/32 embeds in 512");
            assert_eq!(set.clip_l.dim(), 768, "{name}: CLIP ViT-L/14 embeds in 768");
        }
    }
}

#[test]
fn every_implementation_fills_its_buffers_deterministically_and_keeps_no_memory() {
    for (name, mut set) in implementations() {
        let mut rig = rig();
        let first = slot(&mut set, &mut rig, &recipe(7));
        // Shapes: every buffer written to its size, with content.
        let [actor, audio, video, clip_b, clip_l] = &first;
        assert_eq!(actor.len() as u64, BUFFERS.actor_bytes(), "{name}");
        assert!(actor.iter().any(|&b| b != 0), "{name}: an actor image");
        let samples: Vec<f32> = audio
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(samples.len() as u64, BUFFERS.seconds * BUFFERS.sample_rate);
        assert!(
            samples.iter().all(|s| s.is_finite() && s.abs() <= 1.0),
            "{name}"
        );
        assert!(samples.iter().any(|&s| s != 0.0), "{name}: some sound");
        assert_eq!(video.len() as u64, BUFFERS.video_bytes(), "{name}");
        assert_eq!(
            (clip_b.len(), clip_l.len()),
            (set.clip_b.dim() * 4, set.clip_l.dim() * 4),
            "{name}"
        );
        // Determinism: the same recipe gives the same bytes, on a fresh rig too.
        assert_eq!(
            slot(&mut set, &mut rig, &recipe(7)),
            first,
            "{name}: same rig"
        );
        assert_eq!(
            slot(&mut set, &mut self::rig(), &recipe(7)),
            first,
            "{name}"
        );
        // And the seed matters.
        let other = slot(&mut set, &mut rig, &recipe(8));
        assert_ne!(other[0], first[0], "{name}: the seed changes the actor");
    }
}

#[test]
fn every_implementation_refuses_buffers_it_cannot_write() {
    let f16 = OutputBuffers {
        actor_dtype: Dtype::F16,
        audio_dtype: Dtype::F16,
        video_dtype: Dtype::F16,
        ..BUFFERS
    };
    for (name, mut set) in implementations() {
        let mut rig = rig();
        let before = rig.held();
        let (actor, audio) = (rig.actor, rig.audio);
        let recipe = recipe(1);
        let err = set
            .actor
            .run(&mut rig.cx(&f16), &recipe, &actor)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ComputeError::Dtype {
                    key: "actor_dtype",
                    ..
                }
            ),
            "{name}: {err}"
        );
        let err = set
            .audio
            .run(&mut rig.cx(&f16), &recipe, &audio)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ComputeError::Dtype {
                    key: "audio_dtype",
                    ..
                }
            ),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("set buffers.audio_dtype"), "{err}");
        // A buffer smaller than the shape.
        let small = rig
            .vram
            .arena()
            .alloc_static(rig.owner, Purpose::OutputBuffer, 256)
            .unwrap();
        let err = set
            .actor
            .run(&mut rig.cx(&BUFFERS), &recipe, &small)
            .unwrap_err();
        assert!(matches!(err, ComputeError::Shape { .. }), "{name}: {err}");
        // An embedding output of the wrong width.
        let mut out = vec![0f32; 3];
        let mut read = |_: u64, _: &mut [u8]| Ok(());
        let selection = FrameSelection {
            frames: 1,
            verified: 1,
        };
        let err = set
            .clip_b
            .run(
                &mut rig.cx(&BUFFERS),
                &recipe,
                selection,
                &mut read,
                &mut out,
            )
            .unwrap_err();
        assert!(
            matches!(err, ComputeError::OutputLength { .. }),
            "{name}: {err}"
        );
        assert_eq!(rig.held().1, 0, "{name}: no scratch kept after a refusal");
        assert_eq!(rig.held().0, before.0 + small.size, "{name}");
    }
}

#[test]
fn a_video_stage_stops_when_its_drain_fails_and_keeps_nothing() {
    for (name, mut set) in implementations() {
        let mut rig = rig();
        let recipe = recipe(3);
        let (actor, audio, video) = (rig.actor, rig.audio, rig.video);
        set.actor
            .run(&mut rig.cx(&BUFFERS), &recipe, &actor)
            .unwrap();
        let speech = set
            .audio
            .run(&mut rig.cx(&BUFFERS), &recipe, &audio)
            .unwrap();
        let before = rig.held();
        let mut seen = 0;
        let err = set
            .video
            .run(
                &mut rig.cx(&BUFFERS),
                &recipe,
                VideoInputs {
                    actor: &actor,
                    audio: &audio,
                    speech: &speech,
                },
                FrameTarget {
                    region: &video,
                    capacity: BUFFERS.frames(),
                },
                &mut |i, _| {
                    seen += 1;
                    if i == 2 {
                        Err(ComputeError::Drain("the slot was cancelled".into()))
                    } else {
                        Ok(())
                    }
                },
            )
            .unwrap_err();
        assert!(matches!(err, ComputeError::Drain(_)), "{name}: {err}");
        assert_eq!(seen, 3, "{name}: no frame after the drain refused");
        assert_eq!(rig.held(), before, "{name}: nothing kept");
    }
}
