//! `vortex-pipeline`: [`VortexPipeline`] (async slot generation on tokio), configuration
//! loading, and the pieces of the `vortex` command.
//!
//! - [`config`]: `config.toml` into a validated [`config::Config`]; refusals name the key.
//! - [`http`]: the endpoints of `vortex serve` (`/metrics`, `/health`, `/ready`, `/vram`,
//!   `POST /slot`).
//! - [`output`]: PNG, WAV and Y4M files of a slot, and the plan as SVG.
//! - [`pipeline`]: [`VortexPipeline::new`] plans, loads every model and allocates every
//!   buffer once; [`VortexPipeline::generate_slot`] runs audio and actor concurrently, then
//!   video, then the two CLIP verifications concurrently, inside the slot deadline.
//!
//! The stages run the reference implementations of `vortex-models` (DESIGN.md §6): they are
//! not model inference, and logs and the CLI say so.
//!
//! # Invariants
//! - Nothing is allocated on the device after [`VortexPipeline::new`] but per-stage scratch,
//!   which is released before the stage ends; tracked bytes are the same after every slot.
//! - A failed or cancelled slot returns nothing partial.

pub mod config;
pub mod http;
pub mod output;
pub mod pipeline;

pub use pipeline::{
    ClipEmbedding, GenerationResult, PipelineError, SlotError, StageTimings, VortexPipeline,
};
pub use vortex_models::reference::Recipe;
