//! `vortex-pipeline`: configuration loading today; `VortexPipeline` (async slot generation on
//! tokio), the `vortex` command, metrics and health endpoints come with the pipeline issue.
//!
//! - [`config`]: `config.toml` into a validated [`config::Config`]: device, limits, buffers,
//!   models, timing, monitoring; refusals name the key and what to write.

pub mod config;
