//! `vortex-pipeline`: `VortexPipeline` (async slot generation on tokio), the `vortex` command,
//! configuration loading, metrics and health endpoints.
//!
//! Not built yet: this crate is empty until the pipeline issue lands.
