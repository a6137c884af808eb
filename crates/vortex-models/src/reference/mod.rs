//! Reference implementations of the five models' stages: real data flow with the right shapes
//! and types, deterministic from the recipe and its seed, writing into buffers the caller
//! pre-allocated. They are the fallback when a model's network files are absent, and are
//! named as such everywhere (logs, `vortex plan`, the slot summary, `/ready`): nothing here is
//! Flux, Kokoro, LivePortrait or CLIP inference. Each implements its stage's interface in
//! [`crate::compute`] ([`ReferenceAudio`], [`ReferenceActor`], [`ReferenceVideo`],
//! [`ReferenceEmbedding`]); the free functions are what those call.
//!
//! - actor ([`reference_actor`]): a procedural portrait from the prompt and seed, through a
//!   latent in the scratch region;
//! - audio ([`reference_audio`]): a waveform synthesized from the script, one tone burst per
//!   letter;
//! - video ([`reference_video`]): frames warped from the actor, the mouth and head driven by
//!   the audio envelope;
//! - verification ([`reference_embedding`]): an L2-normalized embedding (512 or 768 wide) of
//!   evenly spaced frames, by a fixed random projection of block colour means.
//!
//! Host memory: each function works through a caller-owned staging `Vec<u8>` that is reused
//! from slot to slot, so nothing is allocated per slot once it has grown to its largest size.

mod actor;
mod audio;
mod embedding;
mod helpers;
mod video;

pub use actor::{latent_bytes, reference_actor};
pub use audio::reference_audio;
pub use embedding::{EmbeddingProjection, read_device_frame, reference_embedding};
pub use video::reference_video;

use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::StaticRegion;

use helpers::check_dtype;

use crate::compute::{
    ActorStage, AudioStage, ComputeError, EmbeddingStage, FrameDrain, FrameReader, FrameSelection,
    FrameTarget, Implementation, Recipe, SpeechTiming, StageContext, StageImpl, VideoInputs,
    VideoStage,
};

/// The audio stage's reference implementation ([`reference_audio`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceAudio;

impl StageImpl for ReferenceAudio {
    fn check_buffers(&self, b: &OutputBuffers) -> Result<(), ComputeError> {
        check_dtype("the audio", "audio_dtype", b.audio_dtype, Dtype::F32)
    }

    fn implementation(&self) -> Implementation {
        Implementation::reference("one tone burst per letter of the script")
    }
}

impl AudioStage for ReferenceAudio {
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        audio: &StaticRegion,
    ) -> Result<SpeechTiming, ComputeError> {
        reference_audio(cx.arena, recipe, cx.buffers, audio, cx.staging)?;
        Ok(SpeechTiming::default())
    }
}

/// The actor stage's reference implementation ([`reference_actor`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceActor;

impl StageImpl for ReferenceActor {
    fn check_buffers(&self, b: &OutputBuffers) -> Result<(), ComputeError> {
        check_dtype("the actor image", "actor_dtype", b.actor_dtype, Dtype::U8)
    }

    fn implementation(&self) -> Implementation {
        Implementation::reference("a procedural portrait from the prompt and seed")
    }

    fn scratch_bytes(&self, buffers: &OutputBuffers) -> u64 {
        // Its latent, on the arena's alignment.
        actor::latent_bytes(buffers).next_multiple_of(vortex_vram::ALIGNMENT)
    }
}

impl ActorStage for ReferenceActor {
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        actor: &StaticRegion,
    ) -> Result<(), ComputeError> {
        reference_actor(cx.arena, cx.owner, recipe, cx.buffers, actor, cx.staging)
    }
}

/// The video stage's reference implementation ([`reference_video`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceVideo;

impl StageImpl for ReferenceVideo {
    fn check_buffers(&self, b: &OutputBuffers) -> Result<(), ComputeError> {
        check_dtype("the video", "video_dtype", b.video_dtype, Dtype::U8)
    }

    fn implementation(&self) -> Implementation {
        Implementation::reference(
            "the actor image moved and its mouth opened by the audio envelope",
        )
    }
}

impl VideoStage for ReferenceVideo {
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        inputs: VideoInputs<'_>,
        target: FrameTarget<'_>,
        drain: &mut FrameDrain<'_>,
    ) -> Result<(), ComputeError> {
        reference_video(
            cx.arena, recipe, cx.buffers, inputs, target, cx.staging, drain,
        )
    }
}

/// A verification stage's reference implementation ([`reference_embedding`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEmbedding {
    projection: EmbeddingProjection,
}

impl ReferenceEmbedding {
    /// The stand-in for `model`, `dim` values wide.
    pub fn new(model: &str, dim: usize) -> Self {
        ReferenceEmbedding {
            projection: EmbeddingProjection::new(model, dim),
        }
    }
}

impl StageImpl for ReferenceEmbedding {
    fn check_buffers(&self, b: &OutputBuffers) -> Result<(), ComputeError> {
        check_dtype("the video", "video_dtype", b.video_dtype, Dtype::U8)
    }

    fn implementation(&self) -> Implementation {
        Implementation::reference("a fixed random projection of block colour means")
    }
}

impl EmbeddingStage for ReferenceEmbedding {
    fn dim(&self) -> usize {
        self.projection.dim()
    }

    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        _recipe: &Recipe,
        selection: FrameSelection,
        read_frame: &mut FrameReader<'_>,
        out: &mut [f32],
    ) -> Result<Option<f32>, ComputeError> {
        if out.len() != self.dim() {
            return Err(ComputeError::OutputLength {
                what: "embedding",
                have: out.len(),
                need: self.dim(),
            });
        }
        reference_embedding(
            &self.projection,
            cx.buffers,
            selection,
            read_frame,
            cx.staging,
            out,
        )?;
        // No text tower: nothing to compare the prompt with.
        Ok(None)
    }
}
