//! The [`Model`] trait and the [`ModelRegistry`]: every model loaded once, in one transaction,
//! and never unloaded.

use std::any::Any;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use vortex_vram::{Arena, Bytes, OwnerId, Purpose, StaticRegion, VramError};

use crate::error::{InitError, LoadError};

/// A model Vortex keeps resident.
pub trait Model: Any + Send + Sync {
    /// Owner name in the tracker and the plan (`"flux"`, …).
    fn name(&self) -> &str;

    /// Bytes the configuration grants it on the device: weights plus its own working memory.
    fn budget(&self) -> u64;

    /// Bytes of its checkpoint's weights.
    fn weight_bytes(&self) -> u64;

    /// Weights the plan keeps off the device: in host memory, run on the CPU (FLUX's T5
    /// encoder on a 12 GiB card). `None` when everything is on the device.
    fn cpu_weights(&self) -> Option<CpuWeights> {
        None
    }

    /// Checks what it will load from (its weights file's header against its layout) without
    /// touching the device; [`ModelRegistry::load`] checks every model this way before it
    /// loads any, so a bad file fails start-up at once.
    fn check(&self) -> Result<(), LoadError> {
        Ok(())
    }

    /// Reserves its regions through `ctx` and fills them with its weights.
    fn load(&mut self, ctx: &mut LoadContext<'_>) -> Result<(), LoadError>;
}

/// Weights a model keeps in host memory and runs on the CPU: a line of the plan, beside the
/// device's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuWeights {
    /// Bytes of host memory.
    pub bytes: u64,
    /// What they are and why they are there.
    pub what: String,
}

/// What a model loads through: its owner id and the arena.
#[derive(Debug)]
pub struct LoadContext<'a> {
    arena: &'a Arena,
    owner: OwnerId,
}

impl<'a> LoadContext<'a> {
    /// The arena.
    pub fn arena(&self) -> &'a Arena {
        self.arena
    }

    /// The model's owner id.
    pub fn owner(&self) -> OwnerId {
        self.owner
    }

    /// A static region of `bytes` for this model.
    pub fn alloc(&mut self, purpose: Purpose, bytes: u64) -> Result<StaticRegion, VramError> {
        self.arena.alloc_static(self.owner, purpose, bytes)
    }
}

/// What the registry measured while loading one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedModel {
    /// The model's name.
    pub name: String,
    /// Its budget.
    pub budget: u64,
    /// Its checkpoint's weight bytes.
    pub weight_bytes: u64,
    /// Device bytes it holds, as the tracker counts them.
    pub measured: u64,
    /// Time its load took.
    pub load_time: Duration,
}

/// Every model, loaded. Built once by [`ModelRegistry::load`]; there is no way to unload.
pub struct ModelRegistry {
    models: Vec<Box<dyn Model>>,
    loaded: Vec<LoadedModel>,
}

impl fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("loaded", &self.loaded)
            .finish()
    }
}

impl ModelRegistry {
    /// Loads every model into `arena`, in order. If model k fails, every region models 0..=k
    /// took is released, the tracker is back at the total it had on entry, and the error names
    /// the model, the bytes it asked for, the bytes available and what to change.
    pub fn load(arena: &Arena, mut models: Vec<Box<dyn Model>>) -> Result<Self, InitError> {
        for (i, model) in models.iter().enumerate() {
            if models[..i].iter().any(|m| m.name() == model.name()) {
                return Err(InitError::DuplicateModel(model.name().to_owned()));
            }
        }
        // Every file first: a bad one fails start-up before anything is loaded.
        for model in &models {
            if let Err(source) = model.check() {
                return Err(InitError::ModelLoad {
                    model: model.name().to_owned(),
                    requested: model.budget(),
                    available: arena.stats().free,
                    remediation: remediation(model.name(), &source),
                    source: Box::new(source),
                });
            }
        }
        let tracker = arena.tracker();
        let owners = models
            .iter()
            .map(|m| tracker.register_owner(m.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let start_bytes = tracker.allocated();
        let checkpoint = arena.static_checkpoint();
        let mut loaded = Vec::with_capacity(models.len());
        for (model, &owner) in models.iter_mut().zip(&owners) {
            let before = tracker.owner_bytes(owner);
            let started = Instant::now();
            let mut ctx = LoadContext { arena, owner };
            let result = model.load(&mut ctx).and_then(|()| {
                let measured = tracker.owner_bytes(owner) - before;
                if measured > model.budget() {
                    Err(LoadError::OverBudget {
                        measured,
                        budget: model.budget(),
                    })
                } else {
                    Ok(measured)
                }
            });
            let measured = match result {
                Ok(measured) => measured,
                Err(source) => {
                    let (requested, available) = pressure(arena, &source, model.budget());
                    let freed = arena.rollback_static(checkpoint);
                    tracing::warn!(
                        target: "vortex_registry",
                        model = model.name(),
                        freed,
                        error = %source,
                        "model load failed; released {} held by the models loaded so far",
                        Bytes(freed)
                    );
                    debug_assert_eq!(tracker.allocated(), start_bytes);
                    return Err(InitError::ModelLoad {
                        model: model.name().to_owned(),
                        requested,
                        available,
                        remediation: remediation(model.name(), &source),
                        source: Box::new(source),
                    });
                }
            };
            let load_time = started.elapsed();
            let throughput = measured as f64 / load_time.as_secs_f64().max(1e-9) / 1e9;
            tracing::info!(
                target: "vortex_registry",
                model = model.name(),
                bytes = measured,
                budget = model.budget(),
                weight_bytes = model.weight_bytes(),
                ms = load_time.as_secs_f64() * 1e3,
                gb_per_s = throughput,
                "model loaded: {} in {:.1} ms ({:.2} GB/s)",
                Bytes(measured),
                load_time.as_secs_f64() * 1e3,
                throughput
            );
            loaded.push(LoadedModel {
                name: model.name().to_owned(),
                budget: model.budget(),
                weight_bytes: model.weight_bytes(),
                measured,
                load_time,
            });
        }
        Ok(ModelRegistry { models, loaded })
    }

    /// The loaded model of type `M`.
    pub fn get<M: Model>(&self) -> Option<&M> {
        self.models
            .iter()
            .find_map(|m| (m.as_ref() as &dyn Any).downcast_ref::<M>())
    }

    /// The loaded model named `name`, for callers that know models by name only.
    pub fn get_by_name(&self, name: &str) -> Option<&dyn Model> {
        self.models
            .iter()
            .find(|m| m.name() == name)
            .map(|m| m.as_ref())
    }

    /// Every model's name, in load order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| m.name())
    }

    /// Declared against measured bytes per model, in load order.
    pub fn loaded(&self) -> &[LoadedModel] {
        &self.loaded
    }
}

/// The bytes asked for and available when `error` happened.
fn pressure(arena: &Arena, error: &LoadError, budget: u64) -> (u64, u64) {
    let static_free = arena.stats().static_region.free;
    match error {
        LoadError::Vram(VramError::HardLimit {
            current,
            requested,
            limit,
            ..
        }) => (*requested, limit.saturating_sub(*current)),
        LoadError::Vram(VramError::OutOfMemory(report)) => (report.requested, report.free),
        LoadError::Vram(VramError::Backend { requested, .. }) => (*requested, static_free),
        LoadError::OverBudget { measured, .. } => (*measured, budget),
        _ => (budget, static_free),
    }
}

fn remediation(model: &str, error: &LoadError) -> String {
    match error {
        LoadError::Vram(VramError::HardLimit { .. }) => {
            format!("lower models.{model}.budget or raise vram.hard_limit")
        }
        LoadError::Vram(VramError::OutOfMemory(_)) => {
            "the static region is smaller than the plan: size the arena from the VRAM plan"
                .to_owned()
        }
        LoadError::Vram(_) => {
            "check the device (nvidia-smi) and the free memory it reports".to_owned()
        }
        LoadError::Weights(_) => {
            format!(
                "replace the weights of `{model}` named above, or set weights = \"synthetic\" to run without them"
            )
        }
        LoadError::OverBudget { measured, .. } => {
            format!("raise models.{model}.budget to at least {measured} bytes")
        }
    }
}
