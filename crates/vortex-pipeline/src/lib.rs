//! `vortex-pipeline`: [`VortexPipeline`] (async slot generation on tokio), configuration
//! loading, and the pieces of the `vortex` command.
//!
//! - [`config`]: `config.toml` into a validated [`config::Config`]; refusals name the key.
//! - [`http`]: the endpoints of `vortex serve` (`/metrics`, `/health`, `/ready`, `/vram`,
//!   `POST /slots`, `GET /slots/{id}` and its files).
//! - [`output`]: the [`output::MediaSink`] a slot's media is fed to as it is produced, and
//!   the encoders behind it (MP4 through ffmpeg, PNG, WAV, Y4M files; the plan as SVG).
//! - [`report`]: the documents shown to the outside (HTTP bodies, the run summary).
//! - [`pipeline`]: [`VortexPipeline::new`] plans, loads every model and allocates every
//!   buffer once; [`VortexPipeline::generate_slot`] runs audio and actor concurrently, then
//!   video, then the two CLIP verifications concurrently (scored against the prompt,
//!   [`ClipScores`]), inside the slot deadline.
//!
//! Each stage runs the implementation `vortex-models` chose for it at start-up: its network
//! (Kokoro from PyPI; CLIP, FLUX.1 and LivePortrait from exports) or, where its files are
//! absent, the reference implementation (DESIGN.md §6: not model inference); logs, `vortex
//! plan`, the slot summary, `/ready` and each manifest say which.
//!
//! # Example
//!
//! A pipeline from a configuration made in code, one slot, its media kept past the next slot
//! (the reference audio and small shapes, so it runs anywhere in a second):
//!
//! ```
//! use vortex_pipeline::{Config, Recipe, Stage, VortexPipeline};
//! use vortex_models::weights::WeightSource;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mut config = Config::shipped();
//! config.buffers.image_size = 32;
//! config.buffers.seconds = 1;
//! config.timing.time_scale = 0.0; // no emulated GPU latency
//! config.models[Stage::Audio].weights = WeightSource::Synthetic { seed: 0 };
//! let mut pipeline = VortexPipeline::new(config).unwrap();
//! let recipe = Recipe::from_json(r#"{"slot_id": 1, "script": "Good evening."}"#).unwrap();
//! let slot = pipeline.generate_slot(&recipe).await.unwrap().to_owned_result();
//! assert_eq!(slot.audio_waveform.len(), 24_000);
//! assert_eq!(slot.video_frames.len(), 24 * 32 * 32 * 3);
//! # });
//! ```
//!
//! # Features
//! - `cli` (default): the `vortex` binary and what only it needs (clap, the JSON log
//!   subscriber, the Prometheus exporter, indicatif's progress bars on a terminal). An ICN crate depends on this crate with
//!   `default-features = false` and gets none of them.
//! - `cuda`: the CUDA backend (`device.backend = "cuda"`).
//!
//! # Invariants
//! - Nothing is allocated on the device after [`VortexPipeline::new`] but per-stage scratch,
//!   which is released before the stage ends; tracked bytes are the same after every slot.
//! - A failed or cancelled slot returns nothing partial.

pub mod config;
pub mod doctor;
pub mod http;
mod offload;
pub mod output;
pub mod pipeline;
pub mod report;

pub use config::{Config, ConfigError};
pub use output::{Discard, MediaSink, SlotFile, SlotFiles, VideoFormat};
pub use pipeline::{
    ClipEmbedding, ClipScores, Generation, GenerationResult, PipelineError, SlotError,
    StageTimings, Verdict, VortexPipeline,
};
pub use report::Manifest;
pub use vortex_models::compute::{Implementation, ImplementationKind, Recipe, RecipeError};
pub use vortex_models::stage::{Stage, StageMap};
