//! [`InitError`]: why Vortex could not start, with the numbers and what to change.

use vortex_vram::{Bytes, VramError};

use crate::plan::VramPlan;

/// A start-up failure. Nothing stays allocated when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The plan adds up to more than the device or the hard limit allows.
    #[error(
        "the VRAM plan needs {} ({total} bytes) on the device, above {limit_name} of {} ({limit} bytes) by {} ({excess} bytes); {remediation}\n{plan}",
        Bytes(*total), Bytes(*limit), Bytes(*excess)
    )]
    PlanDoesNotFit {
        /// Device bytes of every owner together.
        total: u64,
        /// The limit passed.
        limit: u64,
        /// Which limit: the hard limit or the device's capacity.
        limit_name: &'static str,
        /// `total - limit`.
        excess: u64,
        /// What to change.
        remediation: String,
        /// The whole plan, shown as a table.
        plan: Box<VramPlan>,
    },
    /// A model's budget cannot hold its own weights.
    #[error(
        "model `{model}` has a budget of {} ({budget} bytes) but its weights alone take {} ({weights} bytes): raise models.{model}.budget to at least {}",
        Bytes(*budget), Bytes(*weights), Bytes(*weights)
    )]
    BudgetBelowWeights {
        /// The model.
        model: String,
        /// Its configured budget.
        budget: u64,
        /// Its weights' bytes.
        weights: u64,
    },
    /// Loading one model failed; every model loaded before it was released.
    #[error(
        "loading model `{model}` failed asking for {} ({requested} bytes) with {} ({available} bytes) available; {remediation}: {source}",
        Bytes(*requested), Bytes(*available)
    )]
    ModelLoad {
        /// The model that failed.
        model: String,
        /// Bytes it asked for when it failed (its budget if the failure was not about memory).
        requested: u64,
        /// Bytes that were available to it then.
        available: u64,
        /// What to change.
        remediation: String,
        /// What went wrong.
        #[source]
        source: Box<LoadError>,
    },
    /// Two models with one name.
    #[error("two models are named `{0}`: give each model its own name")]
    DuplicateModel(String),
    /// The VRAM layer refused.
    #[error(transparent)]
    Vram(#[from] VramError),
}

/// Why one model could not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Memory: the hard limit, the arena, or the device.
    #[error(transparent)]
    Vram(#[from] VramError),
    /// The model's weights could not be read or did not match its layout.
    #[error("weights: {0}")]
    Weights(Box<dyn std::error::Error + Send + Sync>),
    /// The model used more device memory than its budget declares.
    #[error("it holds {} ({measured} bytes), more than its budget of {} ({budget} bytes)", Bytes(*measured), Bytes(*budget))]
    OverBudget {
        /// Bytes it holds.
        measured: u64,
        /// Bytes it declared.
        budget: u64,
    },
}
