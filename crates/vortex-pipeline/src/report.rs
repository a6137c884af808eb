//! The documents Vortex shows the outside (HTTP bodies, the run summary), in one place.
//!
//! Internal types are not serialized as they are: these are built from them and say what an
//! operator reads — bytes as integers with the unit in the key's doc, times in milliseconds,
//! stages by label, no device addresses.

use serde::Serialize;
use std::sync::Arc;
use vortex_models::compute::{Implementation, ImplementationKind, Recipe};
use vortex_models::stage::StageMap;

use vortex_vram::{
    Arena, ArenaStats, DeviceHealth, UsageReport, VramMonitor, VramSnapshot, VramTracker,
};

use crate::pipeline::{ClipScores, GenerationResult, VortexPipeline};

/// What runs a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImplementationDoc {
    /// `"reference"` or `"network"`.
    pub kind: ImplementationKind,
    /// What it is, in words.
    pub detail: String,
}

impl From<&Implementation> for ImplementationDoc {
    fn from(i: &Implementation) -> Self {
        ImplementationDoc {
            kind: i.kind,
            detail: i.detail.clone(),
        }
    }
}

/// Every stage's implementation, by stage label.
pub fn implementations(pipeline: &VortexPipeline) -> StageMap<ImplementationDoc> {
    pipeline
        .implementations()
        .as_ref()
        .map(|_, i| ImplementationDoc::from(i))
}

/// A finished slot: `POST /slot`'s answer and a line of the run summary.
#[derive(Debug, Clone, Serialize)]
pub struct SlotDoc {
    /// The slot.
    pub slot_id: u64,
    /// Wall time of the slot, milliseconds.
    pub generation_time_ms: f64,
    /// Wall time of each stage, milliseconds.
    pub stages_ms: StageMap<f64>,
    /// What ran each stage.
    pub implementations: StageMap<ImplementationDoc>,
    /// Whether any stage ran a reference implementation (not model inference).
    pub reference_implementation: bool,
    /// How the frames compare with the prompt (CLIP).
    pub clip_scores: ClipScores,
    /// Speech sounds the audio stage timed (Kokoro's phonemes), which the video's mouth
    /// followed; 0 when it gave no timing (the reference audio: the energy drove the mouth).
    pub speech_sounds: usize,
}

impl SlotDoc {
    /// The document of `result`, whose stages ran `implementations`.
    pub fn new(
        implementations: StageMap<ImplementationDoc>,
        result: &GenerationResult<'_>,
    ) -> Self {
        let reference_implementation = implementations
            .iter()
            .any(|(_, i)| i.kind == ImplementationKind::Reference);
        SlotDoc {
            slot_id: result.slot_id,
            generation_time_ms: result.generation_time_ms,
            stages_ms: result.stages.map(|_, d| d.as_secs_f64() * 1e3),
            implementations,
            reference_implementation,
            clip_scores: result.clip_scores,
            speech_sounds: result.speech.sounds.len(),
        }
    }
}

/// The hard and soft limits, bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitsDoc {
    /// Above this a warning, bytes.
    pub soft: u64,
    /// Above this a refusal, bytes.
    pub hard: u64,
}

/// One loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDoc {
    /// Its name.
    pub name: String,
    /// Its budget, bytes.
    pub budget: u64,
    /// Its checkpoint's weight bytes.
    pub weight_bytes: u64,
    /// Device bytes it holds as the tracker counts them.
    pub measured: u64,
    /// How long its load took, milliseconds.
    pub load_ms: f64,
}

/// The device.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceDoc {
    /// `"host"` or `"cuda"`.
    pub backend: String,
    /// The device's name.
    pub name: String,
}

/// `GET /vram`: where every byte is, by owner and purpose.
#[derive(Debug, Clone, Serialize)]
pub struct VramDoc {
    /// The device.
    pub device: DeviceDoc,
    /// Totals now.
    pub snapshot: VramSnapshot,
    /// By owner and by purpose.
    pub usage: UsageReport,
    /// The limits.
    pub limits: LimitsDoc,
    /// The slab: static and scratch regions.
    pub arena: ArenaStats,
    /// `1 − largest free block / free` of the slab.
    pub fragmentation: f64,
    /// The resident models.
    pub models: Vec<ModelDoc>,
}

impl VramDoc {
    /// The document of `pipeline` now.
    pub fn new(pipeline: &VortexPipeline) -> Self {
        Probe::new(pipeline).vram()
    }
}

/// What the server's probes and `/vram` read, without the pipeline: the tracker and arena
/// (shared, lock-free to read), a monitor of their own over the same tracker, and what does
/// not change after start-up. Made once the pipeline is loaded.
#[derive(Debug)]
pub struct Probe {
    monitor: VramMonitor,
    tracker: Arc<VramTracker>,
    arena: Arena,
    device: DeviceDoc,
    health: Arc<DeviceHealth>,
    models: Vec<ModelDoc>,
    names: Vec<String>,
    implementations: StageMap<ImplementationDoc>,
}

impl Probe {
    /// A probe of `pipeline`'s memory and device.
    pub fn new(pipeline: &VortexPipeline) -> Self {
        let vram = pipeline.vram();
        let backend = Arc::clone(vram.backend());
        Probe {
            monitor: VramMonitor::new(
                Arc::clone(&backend),
                Arc::clone(vram.tracker()),
                pipeline.config().monitor,
            ),
            tracker: Arc::clone(vram.tracker()),
            arena: vram.arena().clone(),
            device: DeviceDoc {
                backend: backend.name().to_owned(),
                name: backend.device_name(),
            },
            health: Arc::clone(vram.health()),
            models: pipeline
                .registry()
                .loaded()
                .iter()
                .map(|m| ModelDoc {
                    name: m.name.clone(),
                    budget: m.budget,
                    weight_bytes: m.weight_bytes,
                    measured: m.measured,
                    load_ms: m.load_time.as_secs_f64() * 1e3,
                })
                .collect(),
            names: pipeline.registry().names().map(str::to_owned).collect(),
            implementations: implementations(pipeline),
        }
    }

    /// The `/vram` document now.
    pub fn vram(&self) -> VramDoc {
        let limits = self.tracker.limits();
        let arena = self.arena.stats();
        VramDoc {
            device: self.device.clone(),
            snapshot: self.monitor.snapshot("http", None),
            usage: self.tracker.report(),
            limits: LimitsDoc {
                soft: limits.soft(),
                hard: limits.hard(),
            },
            fragmentation: arena.fragmentation,
            arena,
            models: self.models.clone(),
        }
    }

    /// Publishes the VRAM gauges (before a `/metrics` scrape).
    pub fn publish_metrics(&self) {
        self.monitor.publish_metrics();
    }

    /// Why the device was lost, if it was.
    pub fn device_lost(&self) -> Option<&str> {
        self.health.device_lost()
    }

    /// The loaded models' names, in load order.
    pub fn models(&self) -> &[String] {
        &self.names
    }

    /// What runs each stage.
    pub fn implementations(&self) -> &StageMap<ImplementationDoc> {
        &self.implementations
    }
}

/// `manifest.json`: what a slot was made from, how long each stage took, the memory before
/// and after, and what ran each stage.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The recipe.
    pub recipe: Recipe,
    /// Wall time of the slot, milliseconds.
    pub generation_time_ms: f64,
    /// The slot deadline, milliseconds.
    pub deadline_ms: f64,
    /// Wall time of each stage, milliseconds.
    pub stages_ms: StageMap<f64>,
    /// What ran each stage.
    pub implementations: StageMap<ImplementationDoc>,
    /// Whether any stage ran a reference implementation (not model inference).
    pub reference_implementation: bool,
    /// Bytes tracked on the device before the slot and after it.
    pub vram_tracked_before: u64,
    /// Bytes tracked after the slot (equal to before: a slot keeps nothing).
    pub vram_tracked_after: u64,
    /// How the frames compare with the prompt (CLIP): each model's similarity, the ensemble
    /// score, the threshold and the verdict (`null` where not scored).
    pub verification: ClipScores,
    /// Speech sounds the audio stage timed (Kokoro's phonemes), which the video's mouth
    /// followed; 0 when it gave no timing (the reference audio: the energy drove the mouth).
    pub speech_sounds: usize,
}

impl Manifest {
    /// The manifest of a slot of `pipeline` made from `recipe`.
    pub fn new(
        pipeline: &VortexPipeline,
        recipe: &Recipe,
        stages: &StageMap<std::time::Duration>,
        elapsed: std::time::Duration,
        (before, after): (u64, u64),
    ) -> Self {
        let implementations = implementations(pipeline);
        let reference_implementation = implementations
            .iter()
            .any(|(_, i)| i.kind == ImplementationKind::Reference);
        Manifest {
            recipe: recipe.clone(),
            generation_time_ms: elapsed.as_secs_f64() * 1e3,
            deadline_ms: pipeline.config().timing.deadline.as_secs_f64() * 1e3,
            stages_ms: stages.map(|_, d| d.as_secs_f64() * 1e3),
            reference_implementation,
            implementations,
            vram_tracked_before: before,
            vram_tracked_after: after,
            verification: pipeline.clip_scores(),
            speech_sounds: pipeline.speech().sounds.len(),
        }
    }
}
