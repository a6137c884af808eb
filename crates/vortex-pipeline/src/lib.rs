//! `vortex-pipeline`: [`VortexPipeline`] (async slot generation on tokio), configuration
//! loading, and the pieces of the `vortex` command.
//!
//! - [`config`]: `config.toml` into a validated [`config::Config`]; refusals name the key.
//! - [`http`]: the endpoints of `vortex serve` (`/metrics`, `/health`, `/ready`, `/vram`,
//!   `POST /slot`).
//! - [`output`]: the [`output::MediaSink`] a slot's media is fed to as it is produced, and
//!   the encoders behind it (PNG, WAV, Y4M files; the plan as SVG).
//! - [`report`]: the documents shown to the outside (HTTP bodies, the run summary).
//! - [`pipeline`]: [`VortexPipeline::new`] plans, loads every model and allocates every
//!   buffer once; [`VortexPipeline::generate_slot`] runs audio and actor concurrently, then
//!   video, then the two CLIP verifications concurrently, inside the slot deadline.
//!
//! Each stage runs the implementation `vortex-models` chose for it at start-up (today the
//! reference implementations, DESIGN.md §6: not model inference); logs, `vortex plan`, the
//! slot summary and `/ready` say which.
//!
//! # Features
//! - `cli` (default): the `vortex` binary and what only it needs (clap, the JSON log
//!   subscriber, the Prometheus exporter). An ICN crate depends on this crate with
//!   `default-features = false` and gets none of them.
//! - `cuda`: the CUDA backend (`device.backend = "cuda"`).
//!
//! # Invariants
//! - Nothing is allocated on the device after [`VortexPipeline::new`] but per-stage scratch,
//!   which is released before the stage ends; tracked bytes are the same after every slot.
//! - A failed or cancelled slot returns nothing partial.

pub mod config;
pub mod http;
mod offload;
pub mod output;
pub mod pipeline;
pub mod report;

pub use config::{Config, ConfigError};
pub use output::{Discard, MediaSink, SlotFiles, VideoFormat};
pub use pipeline::{
    ClipEmbedding, Generation, GenerationResult, PipelineError, SlotError, StageTimings,
    VortexPipeline,
};
pub use report::Manifest;
pub use vortex_models::compute::{Implementation, ImplementationKind, Recipe, RecipeError};
pub use vortex_models::stage::{Stage, StageMap};
