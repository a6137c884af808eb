//! `vortex-registry`: the VRAM plan, the [`Model`] trait, and the typed [`ModelRegistry`]
//! that loads every model in one transaction.
//!
//! - [`plan`]: [`VramPlan`] adds every owner's bytes (models, output buffers, scratch, the
//!   context reserve) and [`VramPlan::check`] refuses, before any allocation, a plan above the
//!   hard limit or the device, with the arithmetic and what to change.
//! - [`registry`]: [`ModelRegistry::load`] loads models into the arena's static region; if one
//!   fails, everything loaded so far is released and [`InitError::ModelLoad`] says why.
//!
//! # Invariants
//! - There is no API to unload a model: a registry holds its models for its whole life.
//! - Nothing here names `cust`; device memory comes only through `vortex-vram`.

pub mod error;
pub mod plan;
pub mod registry;

pub use error::{InitError, LoadError};
pub use plan::{Dtype, ModelBudget, OutputBuffers, Placement, PlanConfig, PlanEntry, VramPlan};
pub use registry::{CpuWeights, LoadContext, LoadedModel, Model, ModelRegistry};
