//! The documents Vortex shows the outside, in one place: every HTTP body and error
//! ([`ApiError`], [`HealthDoc`], [`ReadyDoc`], [`VramDoc`], [`SlotAccepted`],
//! [`SlotStatusDoc`]), each slot's [`Manifest`], `vortex run`'s [`RunSummary`] and `vortex
//! plan`'s [`PlanDoc`] (with the time plan, [`TimePlanDoc`]).
//!
//! Internal types are not serialized as they are: these are built from them and say what an
//! operator reads — bytes as integers with the unit in the key's doc, times in milliseconds,
//! stages by label, no device addresses. Which HTTP status goes with a document, and how it
//! is sent, is `http.rs`'s business; what it says is decided here.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use vortex_models::choose::StageSet;
use vortex_models::compute::{Implementation, ImplementationKind, Recipe};
use vortex_models::physics::{Compute, CountedWork, DevicePeaks, Floor, FrameBudget, Per, Rate};
use vortex_models::stage::{Stage, StageMap};
use vortex_registry::VramPlan;
use vortex_vram::{
    Arena, ArenaStats, Bytes, DeviceHealth, UsageReport, VramMonitor, VramSnapshot, VramTracker,
};

use crate::config::Config;
use crate::output::{SlotFile, VideoFormat};
use crate::pipeline::{ClipScores, GenerationResult, StageTimings, Verdict, VortexPipeline};

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

    /// The `/ready` document now: ready (`busy` while a slot holds the pipeline) or the device
    /// lost.
    pub fn ready(&self, busy: bool) -> ReadyDoc<'_> {
        match self.device_lost() {
            Some(reason) => ReadyDoc::DeviceLost {
                reason,
                what_to_do: "restart the process; nothing on a lost device can be trusted",
            },
            None => ReadyDoc::Ready {
                busy,
                models: &self.names,
                implementations: &self.implementations,
            },
        }
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

/// Why a request was refused, in HTTP's words (`http.rs` gives each its status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a body or a path that cannot be read.
    BadRequest,
    /// 401: the bearer token is missing or wrong.
    Unauthorized,
    /// 404: no such endpoint, slot or file.
    NotFound,
    /// 409: not now (a slot is running, an id is taken, the files are not there yet).
    Conflict,
    /// 429: the queue is full (with `Retry-After`).
    TooManyRequests,
    /// 410: a slot's file that was there is gone.
    Gone,
    /// 413: a body over the limit.
    PayloadTooLarge,
    /// 415: a body that is not JSON.
    UnsupportedMediaType,
    /// 503: the device was lost, or the server is stopping.
    Unavailable,
}

/// A refused request: its [`Refusal`] and the body `{"error": message}`, the message saying
/// what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// Why, as an HTTP status.
    #[serde(skip)]
    pub refusal: Refusal,
    /// What went wrong and what to do instead.
    #[serde(rename = "error")]
    pub message: String,
}

impl ApiError {
    /// A refusal saying `message`.
    pub fn new(refusal: Refusal, message: impl Into<String>) -> Self {
        ApiError {
            refusal,
            message: message.into(),
        }
    }

    /// No token, or the wrong one.
    pub fn unauthorized() -> Self {
        Self::new(
            Refusal::Unauthorized,
            "this endpoint needs `Authorization: Bearer TOKEN` (the server's VORTEX_TOKEN)",
        )
    }

    /// A path no endpoint answers.
    pub fn no_such_endpoint() -> Self {
        Self::new(
            Refusal::NotFound,
            "no such endpoint: use /health, /ready, /metrics, /vram, /slots (GET or POST) or /slots/{id}",
        )
    }

    /// The device is lost: no slot can run.
    pub fn device_lost(reason: &str) -> Self {
        Self::new(
            Refusal::Unavailable,
            format!("the device was lost ({reason}): restart the process"),
        )
    }

    /// The queue is full: try again in about `retry_after_s` seconds (the `Retry-After`).
    pub fn queue_full(queued: usize, retry_after_s: u64) -> Self {
        Self::new(
            Refusal::TooManyRequests,
            format!(
                "a slot is running and {queued} wait behind it (the queue is full): try again in about {retry_after_s} s, or raise [server] queue"
            ),
        )
    }

    /// The server was told to stop: it finishes the running slot and takes no more.
    pub fn stopping() -> Self {
        Self::new(
            Refusal::Unavailable,
            "the server is stopping (SIGTERM): send the recipe to its successor",
        )
    }

    /// Slot `id` was requested before.
    pub fn slot_id_taken(id: u64) -> Self {
        Self::new(
            Refusal::Conflict,
            format!("slot {id} was already requested: use another slot_id"),
        )
    }

    /// `raw` in a slot's path is not a slot id.
    pub fn not_a_slot_id(raw: &str) -> Self {
        Self::new(
            Refusal::BadRequest,
            format!("{raw:?} is not a slot id: use the slot_id of a POST /slots"),
        )
    }

    /// Slot `id` was never requested.
    pub fn no_slot(id: u64) -> Self {
        Self::new(Refusal::NotFound, format!("no slot {id} was requested"))
    }

    /// Slot `id` is running or failed: it has no files.
    pub fn no_files_yet(id: u64) -> Self {
        Self::new(Refusal::Conflict, format!("slot {id} has no files (yet)"))
    }

    /// A file name that is not one of a slot's (written with `format`).
    pub fn no_such_file(format: VideoFormat) -> Self {
        let [video, audio, actor, manifest] = SlotFile::all(format).map(SlotFile::name);
        Self::new(
            Refusal::NotFound,
            format!("the files of a slot are {video}, {audio}, {actor} and {manifest}"),
        )
    }

    /// `file` of slot `id` could not be read.
    pub fn file_gone(file: SlotFile, id: u64, err: &std::io::Error) -> Self {
        Self::new(
            Refusal::Gone,
            format!("{} of slot {id}: {err}", file.name()),
        )
    }
}

/// `GET /health`: `{"status": "live"}` while the process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HealthDoc {
    /// The process answers.
    Live,
}

/// `GET /ready` (and the 503 of `/vram` and `POST /slots` while loading), tagged by `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReadyDoc<'a> {
    /// The models are still loading.
    Loading,
    /// Told to stop (SIGTERM): the running slot finishes, nothing new is taken.
    Stopping,
    /// The device was lost: nothing more will run.
    DeviceLost {
        /// Why, as the device said.
        reason: &'a str,
        /// What the operator does.
        what_to_do: &'static str,
    },
    /// Every model is resident.
    Ready {
        /// Whether a slot is running.
        busy: bool,
        /// The models, in load order.
        models: &'a [String],
        /// What runs each stage.
        implementations: &'a StageMap<ImplementationDoc>,
    },
}

impl ReadyDoc<'_> {
    /// Whether it says ready (a 200, the others a 503).
    pub fn is_ready(&self) -> bool {
        matches!(self, ReadyDoc::Ready { .. })
    }
}

/// The path of slot `id`'s document.
fn slot_path(id: u64) -> String {
    format!("/slots/{id}")
}

/// `POST /slots`' 202 answer: `{"status": "running" | "queued", "slot_id": …, "location":
/// "/slots/ID", "place": N}` (place 0 runs now; place N waits behind N − 1 others and the
/// running slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotAccepted {
    /// `running` or `queued`.
    pub status: SlotState,
    /// The slot.
    pub slot_id: u64,
    /// Where its status is (also the `Location` header).
    pub location: String,
    /// 0: running now; N: the Nth in the queue.
    pub place: usize,
}

impl SlotAccepted {
    /// Slot `id`, accepted at `place` (0: it runs now).
    pub fn new(slot_id: u64, place: usize) -> Self {
        SlotAccepted {
            status: if place == 0 {
                SlotState::Running
            } else {
                SlotState::Queued
            },
            slot_id,
            location: slot_path(slot_id),
            place,
        }
    }
}

/// Where a slot requested over HTTP is, as `GET /slots` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Waiting behind the running slot.
    Queued,
    /// Being generated.
    Running,
    /// Its files are there.
    Done,
    /// It failed; nothing of it was kept.
    Failed,
    /// Queued when the server was told to stop (SIGTERM); never run.
    Cancelled,
    /// Done, and its folder removed since to keep `[server] keep` folders.
    Removed,
}

/// One slot of `GET /slots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotBrief {
    /// The slot.
    pub slot_id: u64,
    /// Where it is.
    pub status: SlotState,
    /// Why it failed, for a failed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /slots`: the recent slots, newest first, and the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotListDoc {
    /// Recipes waiting now.
    pub queued: usize,
    /// How many may wait (`[server] queue`).
    pub queue_capacity: usize,
    /// The recent slots, newest first.
    pub slots: Vec<SlotBrief>,
}

/// `GET /slots/{id}`: where a slot requested over HTTP is, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SlotStatusDoc {
    /// Being generated.
    Running {
        /// The slot.
        slot_id: u64,
    },
    /// Failed; nothing of it was kept.
    Failed {
        /// The slot.
        slot_id: u64,
        /// Why.
        error: String,
    },
    /// Waiting behind the running slot: `place` 1 runs next.
    Queued {
        /// The slot.
        slot_id: u64,
        /// Its place in the queue.
        place: usize,
    },
    /// Queued when the server was told to stop (SIGTERM); never run.
    Cancelled {
        /// The slot.
        slot_id: u64,
    },
    /// Done, and its folder removed since (`[server] keep`).
    Removed {
        /// The slot.
        slot_id: u64,
    },
    /// Done: its files and its manifest.
    Done {
        /// The slot.
        slot_id: u64,
        /// The paths of its files.
        files: Vec<String>,
        /// Its `manifest.json` as written; `null` if it cannot be read.
        manifest: Option<serde_json::Value>,
    },
}

impl SlotStatusDoc {
    /// Slot `id` done, its files written with `format`, `manifest` read back from its folder.
    pub fn done(slot_id: u64, format: VideoFormat, manifest: Option<serde_json::Value>) -> Self {
        let dir = slot_path(slot_id);
        SlotStatusDoc::Done {
            slot_id,
            files: SlotFile::all(format)
                .iter()
                .map(|f| format!("{dir}/{}", f.name()))
                .collect(),
            manifest,
        }
    }
}

/// The 50th and 99th percentiles of some times, milliseconds (nearest rank; 0 of none).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Percentiles {
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
}

impl Percentiles {
    /// The percentiles of `times_ms`.
    pub fn of(mut times_ms: Vec<f64>) -> Self {
        times_ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if times_ms.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * times_ms.len() as f64).ceil() as usize;
            times_ms[rank.clamp(1, times_ms.len()) - 1]
        };
        Percentiles {
            p50_ms: rank(50.0),
            p99_ms: rank(99.0),
        }
    }
}

/// What `vortex run` counts while its slots run: every good slot's times and scores, and the
/// failures.
#[derive(Debug, Default)]
pub struct RunTally {
    failed: u64,
    times_ms: Vec<f64>,
    stages: Vec<StageTimings>,
    scores: Vec<ClipScores>,
}

impl RunTally {
    /// A slot that finished.
    pub fn done(&mut self, result: &GenerationResult<'_>) {
        self.times_ms.push(result.generation_time_ms);
        self.stages.push(result.stages);
        self.scores.push(result.clip_scores);
    }

    /// A slot that failed.
    pub fn failed(&mut self) {
        self.failed += 1;
    }
}

/// How a run's slots were verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipTally {
    /// Slots whose ensemble reached the threshold.
    pub pass: usize,
    /// Slots whose ensemble fell below it.
    pub fail: usize,
    /// Slots not scored.
    pub unscored: usize,
    /// The mean ensemble score of the scored slots; `null` when none was.
    pub mean_ensemble: Option<f32>,
    /// The threshold (`[verify] threshold`).
    pub threshold: f64,
    /// Every good slot's scores, in order.
    pub slots: Vec<ClipScores>,
}

/// `vortex run`'s summary: written as JSON by `--summary FILE` (what `cargo xtask bench`
/// reads) and printed for people by its `Display`, from the same value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Slots run.
    pub slots: u64,
    /// Slots that finished.
    pub ok: u64,
    /// Slots that failed.
    pub failed: u64,
    /// `"host"` or `"cuda"`.
    pub backend: String,
    /// The device's name.
    pub device: String,
    /// The cost profile (`[timing] cost_profile`).
    pub profile: &'static str,
    /// `[timing] time_scale`.
    pub time_scale: f64,
    /// The time plan's critical path at that scale, milliseconds.
    pub critical_path_ms: f64,
    /// The slot deadline, milliseconds.
    pub deadline_ms: f64,
    /// The good slots' wall times.
    pub slot: Percentiles,
    /// The good slots' stage times.
    pub stages: StageMap<Percentiles>,
    /// Bytes tracked on the device before the first slot.
    pub vram_tracked_before: u64,
    /// Bytes tracked after the last (equal to before: a slot keeps nothing).
    pub vram_tracked_after: u64,
    /// Bytes reserved on the device.
    pub vram_reserved: u64,
    /// Whether any stage ran a reference implementation (not model inference).
    pub reference_implementations: bool,
    /// How the slots were verified.
    pub clip: ClipTally,
    /// What ran each stage.
    pub implementations: StageMap<ImplementationDoc>,
}

impl RunSummary {
    /// The summary of `tally`, run on `pipeline` from `vram_tracked_before` tracked bytes
    /// with `vram_reserved` reserved.
    pub fn new(
        pipeline: &VortexPipeline,
        tally: RunTally,
        vram_tracked_before: u64,
        vram_reserved: u64,
    ) -> Self {
        let RunTally {
            failed,
            times_ms,
            stages,
            scores,
        } = tally;
        let ok = times_ms.len() as u64;
        let timing = &pipeline.config().timing;
        let backend = pipeline.vram().backend();
        let implementations = implementations(pipeline);
        let count = |v: Verdict| scores.iter().filter(|s| s.verdict() == v).count();
        let ensembles: Vec<f32> = scores.iter().filter_map(|s| s.ensemble).collect();
        let reference_implementations = implementations
            .iter()
            .any(|(_, i)| i.kind == ImplementationKind::Reference);
        RunSummary {
            slots: ok + failed,
            ok,
            failed,
            backend: backend.name().to_owned(),
            device: backend.device_name(),
            profile: timing.profile.name,
            time_scale: timing.time_scale,
            critical_path_ms: pipeline
                .time_plan()
                .critical_path
                .mul_f64(timing.time_scale)
                .as_secs_f64()
                * 1e3,
            deadline_ms: timing.deadline.as_secs_f64() * 1e3,
            slot: Percentiles::of(times_ms),
            stages: StageMap::from_fn(|stage| {
                Percentiles::of(
                    stages
                        .iter()
                        .map(|s| s[stage].as_secs_f64() * 1e3)
                        .collect(),
                )
            }),
            vram_tracked_before,
            vram_tracked_after: pipeline.vram().tracker().allocated(),
            vram_reserved,
            reference_implementations,
            clip: ClipTally {
                pass: count(Verdict::Pass),
                fail: count(Verdict::Fail),
                unscored: count(Verdict::Unscored),
                mean_ensemble: (!ensembles.is_empty())
                    .then(|| ensembles.iter().sum::<f32>() / ensembles.len() as f32),
                threshold: pipeline.config().verify.threshold,
                slots: scores,
            },
            implementations,
        }
    }

    /// The stages a reference implementation ran, in slot order.
    fn references(&self) -> impl Iterator<Item = Stage> + '_ {
        self.implementations
            .iter()
            .filter(|(_, i)| i.kind == ImplementationKind::Reference)
            .map(|(stage, _)| stage)
    }
}

/// The summary as `vortex run` prints it for people.
impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} slots, {} ok, {} failed",
            self.slots, self.ok, self.failed
        )?;
        let references: Vec<&str> = self.references().map(Stage::as_str).collect();
        if !references.is_empty() {
            writeln!(
                f,
                "reference implementations (not model inference): {}",
                references.join(", ")
            )?;
        }
        writeln!(f, "{:<8} {:>10} {:>10}", "stage", "P50 ms", "P99 ms")?;
        for (stage, p) in self.stages.iter() {
            writeln!(
                f,
                "{:<8} {:>10.1} {:>10.1}",
                stage.as_str(),
                p.p50_ms,
                p.p99_ms
            )?;
        }
        writeln!(
            f,
            "{:<8} {:>10.1} {:>10.1}   deadline {:.0} ms",
            "slot", self.slot.p50_ms, self.slot.p99_ms, self.deadline_ms
        )?;
        let clip = &self.clip;
        match clip.mean_ensemble {
            Some(mean) => writeln!(
                f,
                "CLIP verification: {} pass, {} fail, {} unscored; mean ensemble score {mean:.3} (threshold {})",
                clip.pass, clip.fail, clip.unscored, clip.threshold
            )?,
            None => writeln!(
                f,
                "CLIP verification: not scored ({})",
                if self
                    .references()
                    .any(|s| matches!(s, Stage::ClipB | Stage::ClipL))
                {
                    "the CLIP stages are reference implementations, without a text tower"
                } else if clip.slots.is_empty() {
                    "no slot finished"
                } else {
                    "no recipe had a prompt"
                }
            )?,
        }
        writeln!(
            f,
            "VRAM tracked before {} and after {} ({} reserved)",
            Bytes(self.vram_tracked_before),
            Bytes(self.vram_tracked_after),
            Bytes(self.vram_reserved)
        )
    }
}

/// `vortex plan`'s document: the VRAM plan, the time plan (the profile's targets beside the
/// device's floors) and what runs each stage; printed for people by its `Display` and as JSON
/// by `vortex plan --json`, from the same value.
#[derive(Debug, Clone, Serialize)]
pub struct PlanDoc {
    /// The VRAM plan (vortex-registry's `VramPlan`, serialized as that crate defines it:
    /// bytes as integers).
    pub vram: VramPlan,
    /// The time plan.
    pub time: TimePlanDoc,
    /// What would run each stage (nothing is loaded to plan).
    pub implementations: StageMap<ImplementationDoc>,
}

impl PlanDoc {
    /// The document of `config` with its VRAM plan `vram`.
    pub fn new(config: &Config, vram: VramPlan) -> Self {
        PlanDoc {
            vram,
            time: TimePlanDoc::new(config),
            implementations: StageSet::planned(&config.weight_sources())
                .as_ref()
                .map(|_, i| ImplementationDoc::from(i)),
        }
    }
}

impl fmt::Display for PlanDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}\n", self.vram)?;
        writeln!(f, "{}\n", self.time)?;
        writeln!(f, "stage implementations:")?;
        for (stage, implementation) in self.implementations.iter() {
            writeln!(
                f,
                "  {:<7} ({:<12}) {}",
                stage,
                stage.model(),
                implementation.detail
            )?;
        }
        Ok(())
    }
}

/// The time plan: per stage the cost profile's figure (a target, for `seed-targets`) beside
/// the work the stage must do and the least time the configured card can do it in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimePlanDoc {
    /// The cost profile whose figures are the targets (`[timing] cost_profile`).
    pub profile: &'static str,
    /// The GPU the profile's figures are for.
    pub profile_gpu: &'static str,
    /// The slot deadline, milliseconds.
    pub deadline_ms: f64,
    /// The slot planned, and the one the work was counted at.
    pub slot: SlotShapeDoc,
    /// `[device] host_preset`.
    pub preset: String,
    /// The card the floors are for; `null` when the device table has no card by that preset
    /// (no floors then).
    pub device: Option<PeaksDoc>,
    /// Per stage, by label.
    pub stages: StageMap<StageTimeDoc>,
    /// The profile's critical path (audio ‖ actor, then video, then clip_b ‖ clip_l),
    /// milliseconds.
    pub critical_path_target_ms: f64,
    /// The floors' critical path; `null` without a device.
    pub floor: Option<PathFloorDoc>,
}

/// A slot's shapes: the one planned and the one the work was counted at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SlotShapeDoc {
    /// Seconds of speech and video.
    pub seconds: u64,
    /// Frames a second.
    pub fps: u64,
    /// Video frames.
    pub frames: u64,
    /// Frames CLIP verifies.
    pub verified_frames: u64,
    /// Side of the frames and the actor image, pixels.
    pub image_size: u64,
    /// The counted slot: seconds, frames, verified frames and image size as above, and
    /// FLUX's steps. The work scales from it with the seconds (Kokoro), the frames
    /// (LivePortrait's per-frame graphs) and the verified frames (CLIP's image tower); the
    /// image size and the steps stay as counted.
    pub counted: CountedSlotDoc,
}

/// The slot `data/work/slot_work.json` was counted at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CountedSlotDoc {
    /// Seconds.
    pub seconds: u64,
    /// Frames a second.
    pub fps: u64,
    /// Frames.
    pub frames: u64,
    /// Verified frames.
    pub verified_frames: u64,
    /// Image side, pixels.
    pub image_size: u64,
    /// FLUX's denoising steps.
    pub flux_steps: u64,
}

/// A card's dense peak rates (`null`: no such tensor path) and which one the floors take.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeaksDoc {
    /// The card's preset, name, rates and bandwidth, as the device table has them.
    #[serde(flatten)]
    pub peaks: vortex_models::physics::DevicePeaks,
    /// The rate the float stages' floors take (`fp16_acc16`: the card's fastest fp16 rate,
    /// so the floors are optimistic; ONNX Runtime's fp16 GEMMs accumulate in fp32).
    pub fp16_rate: &'static str,
}

/// One stage of the time plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageTimeDoc {
    /// The cost profile's figure, milliseconds.
    pub target_ms: f64,
    /// Multiply-adds in the slot.
    pub macs: u64,
    /// Operations: 2 × `macs` (floating-point, or integer for an int8 stage).
    pub flop: u64,
    /// Elementwise operations (not in the floor).
    pub elementwise: u64,
    /// Weight bytes read in the slot, at the precision the plan's path reads them (fp16;
    /// FLUX's shipped 4-bit; Kokoro's int8 graph).
    pub weight_bytes: u64,
    /// `"fp16"` or `"int8"`.
    pub compute: &'static str,
    /// Whether the stage runs on the CPU (Kokoro's int8 graph): its floor is then the GPU's,
    /// a bound it cannot reach there.
    pub on_cpu: bool,
    /// The floor on the card; `null` without a device.
    pub floor: Option<StageFloorDoc>,
}

/// One stage's floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageFloorDoc {
    /// The rate taken (`fp16_acc16`, `int8`, ...).
    pub rate: &'static str,
    /// That rate, tera-operations a second.
    pub rate_tops: f64,
    /// Operations / rate, milliseconds.
    pub compute_ms: f64,
    /// Weight bytes / bandwidth, milliseconds.
    pub memory_ms: f64,
    /// The larger, milliseconds.
    pub floor_ms: f64,
    /// `"compute"` or `"memory"`.
    pub bound: &'static str,
    /// The floor with fp16 accumulated in fp32 (ONNX Runtime's cuBLAS default),
    /// milliseconds.
    pub floor_fp32_acc_ms: f64,
    /// Whether the profile's figure is below the floor (a target no card can meet).
    pub target_below_floor: bool,
}

/// The critical path's floor against the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PathFloorDoc {
    /// Over the stages' floors, milliseconds.
    pub floor_ms: f64,
    /// The same with fp16 accumulated in fp32, milliseconds.
    pub floor_fp32_acc_ms: f64,
    /// Whether the floor fits the deadline.
    pub fits: bool,
    /// Floor / deadline: the share of the card's peak the critical path must average to
    /// meet the deadline (above 1: no efficiency can).
    pub needed_efficiency: f64,
    /// What the deadline leaves the video stage, and what that affords.
    pub video: VideoDemandDoc,
}

/// What the deadline demands of the video stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VideoDemandDoc {
    /// The video stage's operations in the slot.
    pub flop: u64,
    /// Operations a frame (warping + SPADE and the small per-frame networks).
    pub flop_per_frame: u64,
    /// SPADE's share of a frame's multiply-adds.
    pub spade_share: f64,
    /// The rate taken, tera-operations a second.
    pub rate_tops: f64,
    /// The video stage's floor, milliseconds.
    pub floor_ms: f64,
    /// The most the deadline leaves it when every other stage takes its floor,
    /// milliseconds.
    pub share_ms: f64,
    /// Operations a frame that share affords for the slot's frames at the peak rate.
    pub max_flop_per_frame: f64,
    /// Whole frames at today's cost it affords.
    pub max_full_frames: f64,
    /// Those a second of video.
    pub max_frames_per_second: f64,
    /// The video floor at the card's INT8 rate (weights in 8 bits); `null` without one,
    /// milliseconds.
    pub int8_floor_ms: Option<f64>,
}

impl TimePlanDoc {
    /// The time plan of `config`.
    pub fn new(config: &Config) -> Self {
        let plan = config.time_plan();
        let work = CountedWork::shipped();
        let slot = config.slot_work();
        let floors = config.floors(Rate::Fp16Acc16);
        let floors32 = config.floors(Rate::Fp16Acc32);
        let ms = |s: f64| s * 1e3;
        let stages = StageMap::from_fn(|stage| {
            let w = work.work(stage, slot);
            let target_ms = plan.stages[stage].as_secs_f64() * 1e3;
            StageTimeDoc {
                target_ms,
                macs: w.macs.round() as u64,
                flop: w.flop().round() as u64,
                elementwise: w.elementwise.round() as u64,
                weight_bytes: w.weight_bytes.round() as u64,
                compute: match w.compute {
                    Compute::Fp16 => "fp16",
                    Compute::Int8 => "int8",
                },
                on_cpu: w.on_cpu,
                floor: floors.as_ref().zip(floors32.as_ref()).map(|(f, f32)| {
                    let s = &f.stages[stage];
                    StageFloorDoc {
                        rate: s.rate.as_str(),
                        rate_tops: s.ops_per_s / 1e12,
                        compute_ms: ms(s.floor.compute_s),
                        memory_ms: ms(s.floor.memory_s),
                        floor_ms: ms(s.floor.seconds()),
                        bound: if s.floor.compute_bound() {
                            "compute"
                        } else {
                            "memory"
                        },
                        floor_fp32_acc_ms: ms(f32.stages[stage].floor.seconds()),
                        target_below_floor: target_ms < ms(s.floor.seconds()),
                    }
                }),
            }
        });
        let deadline_s = config.timing.deadline.as_secs_f64();
        let floor = floors.as_ref().zip(floors32.as_ref()).map(|(f, f32)| {
            let video = &f.stages[Stage::Video];
            let share_s = f.video_share(deadline_s);
            let frame_ops = 2.0 * work.macs_per(Stage::Video, Per::Frame);
            let budget = FrameBudget::new(
                share_s,
                video.ops_per_s,
                2.0 * work.macs_per(Stage::Video, Per::Slot),
                frame_ops,
                slot.frames,
                slot.seconds,
            );
            let int8_floor_ms = f.device.rate(Rate::Int8).map(|int8| {
                ms(Floor::of(
                    video.work.flop(),
                    video.work.weight_bytes / 2.0,
                    int8,
                    f.device.bandwidth(),
                )
                .seconds())
            });
            PathFloorDoc {
                floor_ms: ms(f.critical_path_s),
                floor_fp32_acc_ms: ms(f32.critical_path_s),
                fits: f.critical_path_s <= deadline_s,
                needed_efficiency: f.critical_path_s / deadline_s,
                video: VideoDemandDoc {
                    flop: video.work.flop().round() as u64,
                    flop_per_frame: frame_ops.round() as u64,
                    spade_share: work.frame.spade_macs
                        / (work.frame.warping_macs + work.frame.spade_macs),
                    rate_tops: video.ops_per_s / 1e12,
                    floor_ms: ms(video.floor.seconds()),
                    share_ms: ms(share_s),
                    max_flop_per_frame: budget.ops_per_frame,
                    max_full_frames: budget.full_frames,
                    max_frames_per_second: budget.full_frames_per_second,
                    int8_floor_ms,
                },
            }
        });
        let counted = work.slot;
        TimePlanDoc {
            profile: plan.profile,
            profile_gpu: config.timing.profile.gpu,
            deadline_ms: ms(deadline_s),
            slot: SlotShapeDoc {
                seconds: slot.seconds,
                fps: config.buffers.fps,
                frames: slot.frames,
                verified_frames: slot.verified_frames,
                image_size: config.buffers.image_size,
                counted: CountedSlotDoc {
                    seconds: counted.seconds,
                    fps: counted.fps,
                    frames: counted.frames,
                    verified_frames: counted.verified_frames,
                    image_size: counted.image,
                    flux_steps: counted.flux_steps,
                },
            },
            preset: config.preset.clone(),
            device: config.device_peaks().map(|d| PeaksDoc {
                peaks: *d,
                fp16_rate: Rate::Fp16Acc16.as_str(),
            }),
            stages,
            critical_path_target_ms: ms(plan.critical_path.as_secs_f64()),
            floor,
        }
    }
}

/// Seconds from milliseconds, as the plan prints them (milliseconds under 0.1 s).
fn secs(ms: f64) -> String {
    if ms.abs() < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

/// Tera-operations, with the precision their size needs.
fn tera(ops: f64) -> String {
    let t = ops / 1e12;
    if t >= 100.0 {
        format!("{t:.1}")
    } else if t >= 1.0 {
        format!("{t:.2}")
    } else {
        format!("{t:.3}")
    }
}

/// A count with thousands separators (1,080).
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The time plan as `vortex plan` prints it.
impl fmt::Display for TimePlanDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate_name = |rate: &str| match rate {
            "fp16_acc16" => Rate::Fp16Acc16,
            "fp16_acc32" => Rate::Fp16Acc32,
            "int8" => Rate::Int8,
            "int4" => Rate::Int4,
            _ => Rate::Fp32,
        };
        match &self.device {
            Some(d) => writeln!(
                f,
                "time plan: the profile's figures ({}, for {}: targets, not measurements) beside each stage's work and its floor on {} ({}), the least time its peak rates allow:",
                self.profile, self.profile_gpu, d.peaks.name, d.peaks.preset
            )?,
            None => writeln!(
                f,
                "time plan: the profile's figures ({}, for {}: targets, not measurements) beside each stage's work; no floor: [device] host_preset = {:?} is not a card the device table knows ({})",
                self.profile,
                self.profile_gpu,
                self.preset,
                DevicePeaks::presets().collect::<Vec<_>>().join(", ")
            )?,
        }
        writeln!(
            f,
            "  stage                   target  work TFLOP  weights read     floor               bound    rate"
        )?;
        let rows = [
            (Stage::Audio, "audio (kokoro)", "┐ concurrent"),
            (Stage::Actor, "actor (flux)", "┘"),
            (Stage::Video, "video (liveportrait)", ""),
            (Stage::ClipB, "verify (clip_b)", "┐ concurrent"),
            (Stage::ClipL, "verify (clip_l)", "┘"),
        ];
        for (stage, label, bracket) in rows {
            let s = &self.stages[stage];
            let (floor, bound, rate) = match &s.floor {
                Some(fl) => (
                    secs(fl.floor_ms),
                    fl.bound,
                    format!(
                        "{} {:.1} {}",
                        fl.rate,
                        fl.rate_tops,
                        rate_name(fl.rate).unit()
                    ),
                ),
                None => ("-".to_owned(), "", String::new()),
            };
            let mut notes = String::new();
            if s.on_cpu {
                notes.push_str(
                    "; runs on the CPU: the GPU's floor is a bound it cannot reach there",
                );
            }
            if s.floor.is_some_and(|fl| fl.target_below_floor) {
                notes.push_str("; the target is below the floor");
            }
            writeln!(
                f,
                "  {label:<21} {:>8} {:>11} {:>10.2} GB {floor:>9}  {bracket:<12} {bound:<8} {rate}{notes}",
                secs(s.target_ms),
                tera(s.flop as f64),
                s.weight_bytes as f64 / 1e9,
            )?;
        }
        let deadline = secs(self.deadline_ms);
        let over = self.critical_path_target_ms - self.deadline_ms;
        write!(
            f,
            "  targets ({}): critical path {} against a deadline of {deadline}: {}",
            self.profile,
            secs(self.critical_path_target_ms),
            if over <= 0.0 {
                format!("meets it with {} to spare", secs(-over))
            } else {
                format!(
                    "misses it by {}; choose a faster profile or device, fewer frames, or a longer deadline",
                    secs(over)
                )
            }
        )?;
        if let (Some(d), Some(fl)) = (&self.device, &self.floor) {
            let v = &fl.video;
            let video_rate = self.stages[Stage::Video]
                .floor
                .map_or(Rate::Fp16Acc16, |s| rate_name(s.rate));
            write!(
                f,
                "\n  floor on {}: critical path {} against a deadline of {deadline}: ",
                d.peaks.name,
                secs(fl.floor_ms)
            )?;
            if fl.fits {
                write!(
                    f,
                    "fits, if the stages on it average at least {:.0}% of the card's peak",
                    fl.needed_efficiency * 100.0
                )?;
            } else {
                write!(
                    f,
                    "the floor alone misses it by {}: no efficiency can meet this deadline on this card",
                    secs(fl.floor_ms - self.deadline_ms)
                )?;
                write!(
                    f,
                    "\n  the video stage alone: {} TFLOP ({} frames × {:.3} TFLOP) at {:.1} {} ({}) takes at least {}",
                    tera(v.flop as f64),
                    thousands(self.slot.frames as f64),
                    v.flop_per_frame as f64 / 1e12,
                    v.rate_tops,
                    video_rate.unit(),
                    video_rate.label(),
                    secs(v.floor_ms)
                )?;
                write!(
                    f,
                    "\n  what the deadline demands: with every other stage at its floor, video has at most {}: at most {} TFLOP a frame at the card's peak (a frame is {:.3}), or {} full frames ({:.1} a second of video, against {})",
                    secs(v.share_ms),
                    tera(v.max_flop_per_frame),
                    v.flop_per_frame as f64 / 1e12,
                    thousands(v.max_full_frames),
                    v.max_frames_per_second,
                    self.slot.fps
                )?;
                let int8 = v.int8_floor_ms.map_or(String::new(), |ms| {
                    format!(
                        " INT8 ({:.0} TOPS: the video floor becomes {}),",
                        d.peaks.int8_tops.unwrap_or(0.0),
                        secs(ms)
                    )
                });
                write!(
                    f,
                    "\n  what would change it: fewer frames a second ({:.0} or fewer at this size), a smaller output (the SPADE generator, which upsamples to the frame, is {:.0}% of a frame's work),{int8} a smaller or distilled generator, a longer deadline",
                    v.max_frames_per_second.floor(),
                    v.spade_share * 100.0
                )?;
            }
            write!(
                f,
                "\n  rates: the floors take {} ({}), the card's fastest fp16 rate, so they are optimistic: ONNX Runtime's fp16 GEMMs accumulate in fp32 by default (cuBLAS COMPUTE_32F: {}), where the critical path's floor is {}",
                Rate::Fp16Acc16.label(),
                d.peaks
                    .fp16_acc16_tflops
                    .map_or("-".to_owned(), |t| format!("{t:.1} TFLOP/s")),
                d.peaks
                    .fp16_acc32_tflops
                    .map_or("-".to_owned(), |t| format!("{t:.1} TFLOP/s")),
                secs(fl.floor_fp32_acc_ms)
            )?;
        }
        let c = &self.slot.counted;
        write!(
            f,
            "\n  work: counted from the graphs (data/work/slot_work.json) at {} s, {} fps, {}², {} verified frames and FLUX's {} steps, scaled to this slot's {} s, {} frames and {} verified frames{}; weights read at the precision the GPU path reads them (fp16, FLUX's 4-bit, Kokoro's int8), activations' traffic and elementwise work not in the floor",
            c.seconds,
            c.fps,
            c.image_size,
            c.verified_frames,
            c.flux_steps,
            self.slot.seconds,
            thousands(self.slot.frames as f64),
            self.slot.verified_frames,
            if self.slot.image_size == c.image_size {
                String::new()
            } else {
                format!(
                    " (not to its {}² images: the networks' work at another size is not counted)",
                    self.slot.image_size
                )
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(doc: impl Serialize, expected: serde_json::Value) {
        assert_eq!(serde_json::to_value(doc).unwrap(), expected);
    }

    /// The HTTP bodies, as the `json!` literals they replaced wrote them.
    #[test]
    fn the_http_documents_keep_their_shape() {
        check(HealthDoc::Live, json!({"status": "live"}));
        check(ReadyDoc::Loading, json!({"status": "loading"}));
        check(
            ReadyDoc::DeviceLost {
                reason: "gone",
                what_to_do: "restart",
            },
            json!({"status": "device_lost", "reason": "gone", "what_to_do": "restart"}),
        );
        let implementations = StageMap::from_fn(|_| ImplementationDoc {
            kind: ImplementationKind::Reference,
            detail: "r".to_owned(),
        });
        check(
            ReadyDoc::Ready {
                busy: true,
                models: &["flux".to_owned()],
                implementations: &implementations,
            },
            json!({
                "status": "ready",
                "busy": true,
                "models": ["flux"],
                "implementations": serde_json::to_value(&implementations).unwrap(),
            }),
        );
        check(
            ApiError::no_slot(7),
            json!({"error": "no slot 7 was requested"}),
        );
        assert_eq!(ApiError::no_slot(7).refusal, Refusal::NotFound);
        check(
            ApiError::no_such_file(VideoFormat::Mp4),
            json!({"error": "the files of a slot are video.mp4, audio.wav, actor.png and manifest.json"}),
        );
        check(
            SlotAccepted::new(3, 0),
            json!({"slot_id": 3, "status": "running", "location": "/slots/3", "place": 0}),
        );
        check(
            SlotAccepted::new(4, 2),
            json!({"slot_id": 4, "status": "queued", "location": "/slots/4", "place": 2}),
        );
        check(
            SlotStatusDoc::Queued {
                slot_id: 4,
                place: 2,
            },
            json!({"slot_id": 4, "status": "queued", "place": 2}),
        );
        check(
            SlotStatusDoc::Cancelled { slot_id: 4 },
            json!({"slot_id": 4, "status": "cancelled"}),
        );
        check(
            SlotListDoc {
                queued: 1,
                queue_capacity: 2,
                slots: vec![
                    SlotBrief {
                        slot_id: 2,
                        status: SlotState::Queued,
                        error: None,
                    },
                    SlotBrief {
                        slot_id: 1,
                        status: SlotState::Failed,
                        error: Some("why".to_owned()),
                    },
                ],
            },
            json!({"queued": 1, "queue_capacity": 2, "slots": [
                {"slot_id": 2, "status": "queued"},
                {"slot_id": 1, "status": "failed", "error": "why"},
            ]}),
        );
        check(
            SlotStatusDoc::Running { slot_id: 3 },
            json!({"slot_id": 3, "status": "running"}),
        );
        check(
            SlotStatusDoc::Failed {
                slot_id: 3,
                error: "why".to_owned(),
            },
            json!({"slot_id": 3, "status": "failed", "error": "why"}),
        );
        check(
            SlotStatusDoc::done(3, VideoFormat::Mp4, None),
            json!({
                "slot_id": 3,
                "status": "done",
                "files": ["/slots/3/video.mp4", "/slots/3/audio.wav", "/slots/3/actor.png", "/slots/3/manifest.json"],
                "manifest": null,
            }),
        );
    }

    #[test]
    fn a_verdict_is_serialized_as_its_label() {
        for verdict in [Verdict::Pass, Verdict::Fail, Verdict::Unscored] {
            check(verdict, json!(verdict.as_str()));
        }
        assert_eq!(
            ClipScores::default().verdict().to_string(),
            "unscored",
            "no score, no verdict"
        );
    }

    fn time_plan(preset: &str) -> TimePlanDoc {
        let mut config = Config::shipped();
        config.preset = preset.to_owned();
        TimePlanDoc::new(&config)
    }

    /// On the shipped RTX 3060 the video stage's floor alone (1.33 PFLOP at 51 TFLOP/s,
    /// about 26 s) is past the 15 s deadline: the plan says so with the numbers, what the
    /// deadline leaves the video and what would change it, beside the seed's targets.
    #[test]
    fn the_rtx3060_plan_says_the_deadline_cannot_be_met() {
        let doc = time_plan("rtx3060-12gb");
        let video = doc.stages[Stage::Video].floor.unwrap();
        assert_eq!(video.rate, "fp16_acc16");
        assert!((video.floor_ms - 26_130.0).abs() < 100.0, "{video:?}");
        assert!(video.target_below_floor, "the seed's 2.12 s is a wish");
        let floor = doc.floor.unwrap();
        assert!(!floor.fits && floor.needed_efficiency > 1.0);
        let text = doc.to_string();
        for expected in [
            "targets (seed-targets): critical path 14.30 s against a deadline of 15.00 s: meets it with 0.70 s to spare",
            "floor on RTX 3060 12 GiB: critical path 27.64 s against a deadline of 15.00 s: the floor alone misses it by 12.64 s: no efficiency can meet this deadline on this card",
            "the video stage alone: 1332.6 TFLOP (1,080 frames × 1.234 TFLOP) at 51.0 TFLOP/s (fp16 tensor, fp16 accumulate) takes at least 26.13 s",
            "video has at most 13.49 s: at most 0.637 TFLOP a frame at the card's peak (a frame is 1.234), or 557 full frames (12.4 a second of video, against 24)",
            "INT8 (102 TOPS: the video floor becomes 13.06 s)",
            "fp16 GEMMs accumulate in fp32 by default (cuBLAS COMPUTE_32F: 25.5 TFLOP/s), where the critical path's floor is 55.28 s",
            "the target is below the floor",
            "runs on the CPU",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        // The JSON is the same value.
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["floor"]["video"]["max_full_frames"], 557.0);
        assert_eq!(json["stages"]["video"]["floor"]["bound"], "compute");
        assert_eq!(json["device"]["fp16_rate"], "fp16_acc16");
    }

    /// A card whose floor fits says how close to its peak the stages must run.
    #[test]
    fn a_card_whose_floor_fits_says_what_efficiency_it_needs() {
        let doc = time_plan("h100-80gb");
        let floor = doc.floor.unwrap();
        assert!(floor.fits, "{floor:?}");
        let text = doc.to_string();
        assert!(
            text.contains(&format!(
                "fits, if the stages on it average at least {:.0}% of the card's peak",
                floor.needed_efficiency * 100.0
            )),
            "{text}"
        );
        assert!(!text.contains("no efficiency"), "{text}");
    }

    /// An unknown preset gives the work without a floor, and says why; no panic.
    #[test]
    fn an_unknown_card_has_no_floor() {
        let doc = time_plan("rtx5090-32gb");
        assert!(doc.device.is_none() && doc.floor.is_none());
        assert!(
            doc.stages
                .iter()
                .all(|(_, s)| s.floor.is_none() && s.flop > 0)
        );
        let text = doc.to_string();
        assert!(
            text.contains("no floor: [device] host_preset = \"rtx5090-32gb\" is not a card the device table knows (rtx3060-12gb, rtx3090-24gb, rtx4090-24gb, a100-80gb, h100-80gb)"),
            "{text}"
        );
        assert!(text.contains("critical path 14.30 s"), "{text}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((p.p50_ms, p.p99_ms), (50.0, 99.0));
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
        let one = Percentiles::of(vec![7.0]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
    }
}

/// One environment check of `vortex doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorCheck {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or what is wrong and what to change.
    pub detail: String,
}

/// One stage as `vortex doctor` found it after start-up and one slot.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorStage {
    /// The stage.
    pub stage: Stage,
    /// What runs it (a network, or a reference implementation, in words).
    pub implementation: String,
    /// ONNX Runtime's provider it computes on (`CUDA`, `CPU`), or none.
    pub provider: String,
    /// Bytes of its weights in the arena (on the device on a GPU).
    pub weights_on_device: u64,
    /// Whether its sessions read the weights where Vortex loaded them (not a copy).
    pub weights_read_in_place: bool,
    /// Its activation peak from scratch, bytes.
    pub activation_peak: u64,
    /// Bytes ONNX Runtime's CUDA provider holds for it outside Vortex's allocators.
    pub provider_outside: u64,
    /// Its latency in the slot, ms (`None` when the slot failed).
    pub latency_ms: Option<f64>,
    /// The time plan's figure for it, ms.
    pub plan_ms: f64,
}

/// What `vortex doctor` found: `--json` serializes it, people read its `Display`.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The environment checks, in order.
    pub checks: Vec<DoctorCheck>,
    /// Each stage, when the pipeline started.
    pub stages: Vec<DoctorStage>,
}

impl DoctorReport {
    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &DoctorCheck> {
        self.checks.iter().filter(|c| !c.ok)
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "vortex doctor")?;
        for c in &self.checks {
            writeln!(
                f,
                "  [{}] {}: {}",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.detail
            )?;
        }
        if !self.stages.is_empty() {
            writeln!(
                f,
                "\n  {:<7} {:<8} {:>12} {:>8} {:>12} {:>12} {:>10} {:>10}  implementation",
                "stage",
                "provider",
                "weights",
                "in place",
                "activations",
                "outside",
                "ms",
                "plan ms"
            )?;
        }
        for s in &self.stages {
            writeln!(
                f,
                "  {:<7} {:<8} {:>12} {:>8} {:>12} {:>12} {:>10} {:>10.0}  {}",
                s.stage.as_str(),
                s.provider.split(' ').next().unwrap_or(""),
                Bytes(s.weights_on_device).to_string(),
                if s.weights_read_in_place { "yes" } else { "-" },
                Bytes(s.activation_peak).to_string(),
                Bytes(s.provider_outside).to_string(),
                s.latency_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0}")),
                s.plan_ms,
                s.implementation
            )?;
        }
        let failed = self.failed().count();
        match failed {
            0 => writeln!(f, "\n  every check passed"),
            n => writeln!(
                f,
                "\n  {n} check(s) failed: each line above says what to change"
            ),
        }
    }
}
