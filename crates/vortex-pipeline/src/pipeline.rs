//! [`VortexPipeline`]: every model resident, buffers allocated once, and slots generated on
//! tokio: audio and actor concurrently, then video, then both CLIP verifications concurrently.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use vortex_models::adapter::resident_weights;
use vortex_models::choose::{ProviderRecords, SlotShapes, StageSet};
use vortex_models::compute::{
    ActorStage, AudioStage, ComputeError, EmbeddingStage, FrameSelection, FrameTarget,
    Implementation, Recipe, SpeechTiming, StageContext, VideoInputs, VideoStage,
};
use vortex_models::cost::TimePlan;
use vortex_models::physics::Rate;
use vortex_models::stage::{Stage, StageMap};
use vortex_registry::{InitError, ModelRegistry, OutputBuffers, Placement, VramPlan};
use vortex_runtime::Terminator;
use vortex_vram::{
    Arena, Backend, BackendError, EventId, HostBackend, OwnerId, Purpose, ScratchBuffer,
    StaticRegion, StreamId, Vram, VramConfig, VramError, VramTracker, metrics as names,
};

use crate::config::{Config, DeviceKind};
use crate::offload::{Outcome, offload};
use crate::output::{Discard, MediaSink};
use crate::report::Manifest;

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The plan, a model load, or a limit.
    #[error(transparent)]
    Init(#[from] InitError),
    /// The VRAM layer.
    #[error(transparent)]
    Vram(#[from] VramError),
    /// The device.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A stage's network could not be set up.
    #[error(transparent)]
    Stage(#[from] ComputeError),
    /// A CUDA device was configured in a build without the `cuda` feature.
    #[error(
        "device.backend = \"cuda\" needs a build with the cuda feature (cargo build --features cuda); or set device.backend = \"host\""
    )]
    CudaNotBuilt,
    /// A scratch region smaller than what a stage takes from it in every slot.
    #[error(
        "vram.scratch is {have} bytes, but the {stage} stage takes {need} bytes of scratch in every slot: set vram.scratch to at least {need} bytes (the shipped \"256MiB\" also holds a network's activations)"
    )]
    ScratchTooSmall {
        /// Configured.
        have: u64,
        /// Needed.
        need: u64,
        /// By which stage.
        stage: Stage,
    },
}

/// Why a slot failed. A failed slot returns nothing partial; the next slot starts clean.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The slot did not finish inside its deadline.
    #[error("slot {slot_id} missed its deadline of {:.3} s (it was in the {stage} stage); no partial result is kept. Raise timing.deadline or choose a faster profile or device", deadline.as_secs_f64())]
    DeadlineMissed {
        /// The slot.
        slot_id: u64,
        /// The deadline.
        deadline: Duration,
        /// The first stage, in slot order, that had not finished.
        stage: Stage,
    },
    /// The media sink could not take the slot's media (a full disk, a closed pipe).
    #[error("slot {slot_id}: could not write its media: {source}")]
    Output {
        /// The slot.
        slot_id: u64,
        /// What the sink said.
        #[source]
        source: std::io::Error,
    },
    /// The device was lost, in this slot or before it. Nothing on it can be trusted again.
    #[error(
        "slot {slot_id}: the device was lost ({reason}); restart the process (and check the GPU: driver messages, temperature, power) before generating again"
    )]
    DeviceLost {
        /// The slot.
        slot_id: u64,
        /// What the backend reported when it was first lost.
        reason: String,
    },
    /// A stage failed.
    #[error("slot {slot_id}: {source}")]
    Compute {
        /// The slot.
        slot_id: u64,
        /// What failed.
        #[source]
        source: ComputeError,
    },
}

/// Wall time of each stage of a slot.
pub type StageTimings = StageMap<Duration>;

/// The two verification embeddings of a slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipEmbedding<'a> {
    /// ViT-B/32: 512 values, L2-normalized.
    pub clip_b: &'a [f32],
    /// ViT-L/14: 768 values, L2-normalized.
    pub clip_l: &'a [f32],
}

/// How a slot's frames compare with its prompt: each CLIP model's cosine similarity between
/// the frames' embedding and the prompt's, and the ensemble score that decides.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct ClipScores {
    /// ViT-B/32's similarity; `None` when not scored (a reference implementation, which has no
    /// text tower, or a recipe without a prompt).
    pub clip_b: Option<f32>,
    /// ViT-L/14's similarity; `None` when not scored.
    pub clip_l: Option<f32>,
    /// The weighted mean of the scored models' similarities (`[verify]` weights, over the
    /// models that scored); `None` when neither did.
    pub ensemble: Option<f32>,
    /// The threshold it is held against (`[verify] threshold`).
    pub threshold: f32,
    /// Whether the ensemble reached the threshold; `None` when not scored.
    pub passed: Option<bool>,
}

impl ClipScores {
    /// The scores of two similarities under `verify`.
    pub fn new(clip_b: Option<f32>, clip_l: Option<f32>, verify: &crate::config::Verify) -> Self {
        let scored = [
            (clip_b, verify.clip_b_weight),
            (clip_l, verify.clip_l_weight),
        ];
        let (sum, weight) = scored
            .iter()
            .filter_map(|&(s, w)| s.map(|s| (f64::from(s) * w, w)))
            .fold((0.0, 0.0), |(a, b), (x, w)| (a + x, b + w));
        let ensemble = (weight > 0.0).then(|| (sum / weight) as f32);
        let threshold = verify.threshold as f32;
        ClipScores {
            clip_b,
            clip_l,
            ensemble,
            threshold,
            passed: ensemble.map(|e| e >= threshold),
        }
    }

    /// What the scores decided.
    pub fn verdict(&self) -> Verdict {
        match self.passed {
            Some(true) => Verdict::Pass,
            Some(false) => Verdict::Fail,
            None => Verdict::Unscored,
        }
    }
}

/// What CLIP's verification decided for a slot: the label of `icn_vortex_clip_verdicts_total`
/// and of the log line, serialized as that label (`"pass"`, `"fail"`, `"unscored"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The ensemble score reached the threshold.
    Pass,
    /// The ensemble score fell below the threshold (the slot's files are kept).
    Fail,
    /// Not scored: no CLIP stage had a text tower, or the recipe had no prompt.
    Unscored,
}

impl Verdict {
    /// Its label: `"pass"`, `"fail"` or `"unscored"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unscored => "unscored",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finished slot. It borrows the pipeline's host buffers, so the borrow checker stops the
/// next slot from overwriting a result still in use; copy what must outlive the next slot.
#[derive(Debug, Clone, Copy)]
pub struct GenerationResult<'a> {
    /// The slot.
    pub slot_id: u64,
    /// The actor image, `size × size × channels` u8.
    pub actor_image: &'a [u8],
    /// Every frame, `frames × size × size × channels` u8, row-major RGB.
    pub video_frames: &'a [u8],
    /// The waveform, mono f32 at the configured sample rate.
    pub audio_waveform: &'a [f32],
    /// The verification embeddings.
    pub clip_embedding: ClipEmbedding<'a>,
    /// How the frames compare with the prompt.
    pub clip_scores: ClipScores,
    /// Wall time of the slot in milliseconds.
    pub generation_time_ms: f64,
    /// Wall time of each stage.
    pub stages: StageTimings,
    /// When each speech sound is said (Kokoro's timing, which drove the mouth; empty from the
    /// reference audio).
    pub speech: &'a SpeechTiming,
}

impl GenerationResult<'_> {
    /// A copy that outlives the next slot (the result itself borrows the pipeline's buffers).
    pub fn to_owned_result(&self) -> Generation {
        Generation {
            slot_id: self.slot_id,
            actor_image: self.actor_image.to_vec(),
            video_frames: self.video_frames.to_vec(),
            audio_waveform: self.audio_waveform.to_vec(),
            clip_b: self.clip_embedding.clip_b.to_vec(),
            clip_l: self.clip_embedding.clip_l.to_vec(),
            clip_scores: self.clip_scores,
            generation_time_ms: self.generation_time_ms,
            stages: self.stages,
            speech: self.speech.clone(),
        }
    }
}

/// An owned [`GenerationResult`], made by [`GenerationResult::to_owned_result`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The slot.
    pub slot_id: u64,
    /// The actor image, `size × size × channels` u8.
    pub actor_image: Vec<u8>,
    /// Every frame, row-major RGB.
    pub video_frames: Vec<u8>,
    /// The waveform.
    pub audio_waveform: Vec<f32>,
    /// ViT-B/32's verification embedding.
    pub clip_b: Vec<f32>,
    /// ViT-L/14's verification embedding.
    pub clip_l: Vec<f32>,
    /// How the frames compare with the prompt.
    pub clip_scores: ClipScores,
    /// Wall time of the slot in milliseconds.
    pub generation_time_ms: f64,
    /// Wall time of each stage.
    pub stages: StageTimings,
    /// When each speech sound is said.
    pub speech: SpeechTiming,
}

struct Regions {
    actor: StaticRegion,
    audio: StaticRegion,
    /// The whole video, or the staging ring when the video lives in host memory.
    video: StaticRegion,
    video_frames_on_device: u64,
}

struct HostBuffers {
    actor: Vec<u8>,
    video: Vec<u8>,
    audio: Vec<f32>,
    /// The audio's bytes as downloaded, reused slot to slot.
    audio_bytes: Vec<u8>,
    clip_b: Vec<f32>,
    clip_l: Vec<f32>,
    /// The last slot's scores.
    scores: ClipScores,
    /// The last slot's speech timing.
    speech: SpeechTiming,
}

/// What the pipeline keeps for one stage: its model's owner and resident weights, its
/// device queue, and its host staging memory (reused slot to slot).
struct StageState {
    owner: OwnerId,
    weights: StaticRegion,
    queue: StageQueue,
    staging: Vec<u8>,
    /// The frames a network's verification reads, copied out for the blocking pool.
    frames: Vec<u8>,
}

/// Every model resident, every buffer allocated; generates slots. See the module docs.
pub struct VortexPipeline {
    config: Config,
    vram: Vram,
    registry: ModelRegistry,
    plan: VramPlan,
    regions: Regions,
    host: HostBuffers,
    stages: StageMap<StageState>,
    compute: Compute,
    implementations: StageMap<Implementation>,
    slots: u64,
    /// What ONNX Runtime's CUDA provider holds outside Vortex's allocators, counted in the
    /// tracker as long as the networks live (declared after `compute`, so it is released
    /// after the sessions are).
    provider: ProviderRecords,
}

/// The stage implementations. Networks run off the async runtime's threads
/// ([`crate::offload`]), so every stage is shared with the blocking pool.
struct Compute {
    audio: Arc<Mutex<Box<dyn AudioStage>>>,
    actor: Arc<Mutex<Box<dyn ActorStage>>>,
    video: Arc<Mutex<Box<dyn VideoStage>>>,
    clip_b: Arc<Mutex<Box<dyn EmbeddingStage>>>,
    clip_l: Arc<Mutex<Box<dyn EmbeddingStage>>>,
}

impl From<StageSet> for Compute {
    fn from(set: StageSet) -> Self {
        Compute {
            audio: Arc::new(Mutex::new(set.audio)),
            actor: Arc::new(Mutex::new(set.actor)),
            video: Arc::new(Mutex::new(set.video)),
            clip_b: Arc::new(Mutex::new(set.clip_b)),
            clip_l: Arc::new(Mutex::new(set.clip_l)),
        }
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Scratch each stage copies its weights through on a real device.
const SWEEP_CHUNK: u64 = 32 << 20;

/// A stage's queue on the device: its stream and the two events that time its work.
#[derive(Debug, Clone, Copy)]
struct StageQueue {
    stream: StreamId,
    start: EventId,
    end: EventId,
}

/// Device work of one stage in flight. Dropping it (a cancelled slot) waits for its stream
/// before its scratch goes back to the arena, so the device never writes into memory that
/// was handed to someone else.
struct DeviceWork<'a> {
    backend: &'a dyn Backend,
    queue: StageQueue,
    _through: ScratchBuffer,
    done: bool,
}

impl DeviceWork<'_> {
    /// Waits for the queued work without blocking the runtime; returns its device time.
    async fn finish(mut self) -> Result<Duration, ComputeError> {
        while !self
            .backend
            .event_done(self.queue.end)
            .map_err(VramError::from)?
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.done = true;
        Ok(self
            .backend
            .event_elapsed(self.queue.start, self.queue.end)
            .map_err(VramError::from)?)
    }
}

impl Drop for DeviceWork<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.backend.synchronize_stream(self.queue.stream);
        }
    }
}

/// On a real device (not the host stand-in), a reference stage reads its model's resident
/// weights once, device to device through scratch, on the stage's own stream: the memory
/// traffic of a real step, overlapping with the concurrent stage's. Returns the device time.
async fn sweep(arena: &Arena, state: &StageState) -> Result<Duration, ComputeError> {
    let backend = arena.backend().as_ref();
    if backend.emulates_latency() {
        return Ok(Duration::ZERO);
    }
    let (queue, weights) = (state.queue, &state.weights);
    let through = arena.alloc_scratch(
        state.owner,
        Purpose::Workspace,
        SWEEP_CHUNK.min(weights.size),
    )?;
    backend
        .record_event(queue.start, queue.stream)
        .map_err(VramError::from)?;
    let work = DeviceWork {
        backend,
        queue,
        _through: through,
        done: false,
    };
    // SAFETY: `work` owns the scratch and waits for the stream before letting it go (in
    // `finish`, or on drop when the slot is cancelled or this fails part-way); the weights
    // are resident for the pipeline's life and never rolled back.
    unsafe { arena.sweep(weights, &work._through, queue.stream) }?;
    backend
        .record_event(queue.end, queue.stream)
        .map_err(VramError::from)?;
    work.finish().await
}

/// Which stages of a slot have finished: the deadline error names the first that has not.
/// Atomic so that the slot's future stays `Send`.
#[derive(Debug, Default)]
struct Progress(AtomicU8);

impl Progress {
    fn done(&self, stage: Stage) {
        self.0.fetch_or(1 << stage as u8, Ordering::Relaxed);
    }

    fn first_running(&self) -> Stage {
        let done = self.0.load(Ordering::Relaxed);
        Stage::ALL
            .into_iter()
            .find(|&s| done & (1 << s as u8) == 0)
            .unwrap_or(Stage::ClipL)
    }
}

impl std::fmt::Debug for VortexPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VortexPipeline")
            .field("vram", &self.vram)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// The backend a configuration names.
pub fn backend_for(config: &Config) -> Result<Arc<dyn Backend>, PipelineError> {
    match &config.device {
        DeviceKind::Host(host) => Ok(Arc::new(HostBackend::new(
            host.clone().with_context_overhead(config.context_reserve),
        ))),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda { ordinal } => Ok(Arc::new(vortex_vram::CudaBackend::new(*ordinal)?)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda { .. } => Err(PipelineError::CudaNotBuilt),
    }
}

/// Refuses a plan that does not fit; warns when the time plan cannot meet the deadline.
fn check_plans(config: &Config, plan: &VramPlan, backend: &dyn Backend) -> Result<(), InitError> {
    plan.check()?;
    tracing::info!(
        target: "vortex_pipeline",
        device = backend.device_name(),
        planned = plan.device_total(),
        "VRAM plan fits: {} on the device",
        vortex_vram::Bytes(plan.device_total())
    );
    let time_plan = config.time_plan();
    if !time_plan.meets_deadline() {
        tracing::warn!(
            target: "vortex_pipeline",
            profile = time_plan.profile,
            critical_path_s = time_plan.critical_path.as_secs_f64(),
            deadline_s = time_plan.deadline.as_secs_f64(),
            "the cost profile cannot meet the slot deadline"
        );
    }
    if let Some(floors) = config.floors(Rate::Fp16Acc16)
        && floors.critical_path_s > time_plan.deadline.as_secs_f64()
    {
        tracing::warn!(
            target: "vortex_pipeline",
            device = floors.device.name,
            floor_s = floors.critical_path_s,
            deadline_s = time_plan.deadline.as_secs_f64(),
            "at its peak rates the card cannot meet the slot deadline: the critical path's floor is above it (`vortex plan` says what would change it)"
        );
    }
    Ok(())
}

/// Refuses a scratch region that cannot hold what a stage takes from it in every slot: what
/// its implementation says it takes (a reference actor's latent), and on a GPU the weight
/// sweep's chunk. (A network's activations are checked by its profile run.)
fn check_scratch(
    config: &Config,
    compute: &StageSet,
    backend: &dyn Backend,
) -> Result<(), PipelineError> {
    let mut needs = vec![compute.scratch_bytes(&config.buffers)];
    if !backend.emulates_latency() {
        needs.push((Stage::Video, SWEEP_CHUNK));
    }
    match needs.into_iter().max_by_key(|(_, need)| *need) {
        Some((stage, need)) if need > config.scratch => Err(PipelineError::ScratchTooSmall {
            have: config.scratch,
            need,
            stage,
        }),
        _ => Ok(()),
    }
}

/// The output buffers on the device, each under an owner of its own.
fn allocate_regions(vram: &Vram, b: &OutputBuffers) -> Result<Regions, VramError> {
    let (video_frames_on_device, video_purpose) = match b.video_placement {
        Placement::Device => (b.frames(), Purpose::OutputBuffer),
        Placement::PinnedHost { staging_frames } => {
            (staging_frames.min(b.frames()), Purpose::Staging)
        }
    };
    let alloc = |name: &str, purpose, bytes| -> Result<StaticRegion, VramError> {
        let owner = vram.owner(name)?;
        vram.arena().alloc_static(owner, purpose, bytes)
    };
    Ok(Regions {
        actor: alloc("actor_buffer", Purpose::OutputBuffer, b.actor_bytes())?,
        audio: alloc("audio_buffer", Purpose::OutputBuffer, b.audio_bytes())?,
        video: alloc(
            "video_buffer",
            video_purpose,
            video_frames_on_device * b.frame_bytes(),
        )?,
        video_frames_on_device,
    })
}

/// A stage's model (owner, resident weights) and a fresh device queue for it.
fn stage_state(
    vram: &Vram,
    registry: &ModelRegistry,
    stage: Stage,
) -> Result<StageState, PipelineError> {
    let model = stage.model();
    let weights = resident_weights(registry, stage)
        .map(|w| w.region)
        .ok_or_else(|| {
            PipelineError::Vram(VramError::InvalidRequest {
                what: format!("model `{model}` has no resident weights"),
            })
        })?;
    let backend = vram.backend().as_ref();
    Ok(StageState {
        owner: vram.owner(model)?,
        weights,
        queue: StageQueue {
            stream: backend.create_stream()?,
            start: backend.create_event()?,
            end: backend.create_event()?,
        },
        staging: Vec::new(),
        frames: Vec::new(),
    })
}

impl VortexPipeline {
    /// Plans, checks the plan, reserves the slab, loads every model and allocates the output
    /// buffers. Nothing stays allocated if this fails.
    pub fn new(config: Config) -> Result<Self, PipelineError> {
        let backend = backend_for(&config)?;
        Self::with_backend(config, backend)
    }

    /// [`VortexPipeline::new`] on a backend of the caller's (a host backend with injected
    /// faults, say).
    pub fn with_backend(config: Config, backend: Arc<dyn Backend>) -> Result<Self, PipelineError> {
        let models = config.build_models();
        let plan = config.plan(&models, backend.total_memory()?);
        check_plans(&config, &plan, backend.as_ref())?;
        let vram = Vram::new(
            backend,
            VramConfig {
                limits: config.limits,
                arena: plan.arena(),
                monitor: config.monitor,
                max_owners: VramTracker::DEFAULT_MAX_OWNERS,
            },
        )?;
        let registry = ModelRegistry::load(vram.arena(), models)?;
        let b = config.buffers;
        let regions = allocate_regions(&vram, &b)?;
        let host = HostBuffers {
            actor: vec![0; b.actor_bytes() as usize],
            video: vec![0; b.video_bytes() as usize],
            audio: vec![0.0; (b.seconds * b.sample_rate) as usize],
            audio_bytes: Vec::new(),
            clip_b: Vec::new(),
            clip_l: Vec::new(),
            scores: ClipScores::default(),
            speech: SpeechTiming::default(),
        };
        let stages = StageMap::try_from_fn(|stage| stage_state(&vram, &registry, stage))?;
        let streams = stages.as_ref().map(|_, s| s.queue.stream);
        let shapes = SlotShapes {
            buffers: &config.buffers,
            verified_frames: config.timing.verified_frames,
            streams: &streams,
        };
        let mut compute = StageSet::choose(&registry, vram.arena(), &config.runtime, shapes)?;
        let provider = compute.take_provider_records();
        compute.check_buffers(&b)?;
        check_scratch(&config, &compute, vram.backend().as_ref())?;
        let mut host = host;
        host.clip_b = vec![0.0; compute.clip_b.dim()];
        host.clip_l = vec![0.0; compute.clip_l.dim()];
        let implementations = compute.implementations();
        let compute = Compute::from(compute);
        vram.monitor().emit_snapshot("after_load", None);
        vram.monitor().set_leak_baseline();
        vram.monitor().publish_metrics();
        Ok(VortexPipeline {
            config,
            vram,
            registry,
            plan,
            regions,
            host,
            stages,
            compute,
            implementations,
            slots: 0,
            provider,
        })
    }

    /// Bytes ONNX Runtime's CUDA provider holds outside Vortex's allocators, per stage whose
    /// network runs on it (empty on the CPU).
    pub fn provider_outside(&self) -> Vec<(Stage, u64)> {
        self.provider.bytes().collect()
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The VRAM layer (tracker, arena, monitor).
    pub fn vram(&self) -> &Vram {
        &self.vram
    }

    /// The loaded models.
    pub fn registry(&self) -> &ModelRegistry {
        &self.registry
    }

    /// The VRAM plan it was built from.
    pub fn plan(&self) -> &VramPlan {
        &self.plan
    }

    /// The time plan of a slot under the configured profile.
    pub fn time_plan(&self) -> TimePlan {
        self.config.time_plan()
    }

    /// What runs each stage (a network, or a reference implementation), chosen at start-up.
    pub fn implementations(&self) -> &StageMap<Implementation> {
        &self.implementations
    }

    /// Slots finished (successful or not).
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Changes the slot deadline from the next slot on.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.config.timing.deadline = deadline;
    }

    /// The last slot's speech timing (Kokoro's sounds, which drove the mouth; empty from the
    /// reference audio).
    pub fn speech(&self) -> &SpeechTiming {
        &self.host.speech
    }

    /// The scores of the last slot that finished its verification.
    pub fn clip_scores(&self) -> ClipScores {
        self.host.scores
    }

    /// Generates one slot. See [`GenerationResult`] for how long its data lives. Dropping the
    /// returned future at any point stops the pending stages, synchronizes the device and
    /// keeps nothing partial; the next slot starts clean.
    pub async fn generate_slot(
        &mut self,
        recipe: &Recipe,
    ) -> Result<GenerationResult<'_>, SlotError> {
        self.generate_slot_into(recipe, &mut Discard).await
    }

    /// [`VortexPipeline::generate_slot`], handing the media to `sink` as it is produced: the
    /// actor image and the audio once both exist, then every frame as the video stage drains
    /// it. On failure the sink is told to [`MediaSink::abort`].
    pub async fn generate_slot_into(
        &mut self,
        recipe: &Recipe,
        sink: &mut dyn MediaSink,
    ) -> Result<GenerationResult<'_>, SlotError> {
        let slot_id = recipe.slot_id;
        if let Some(reason) = self.vram.device_lost() {
            sink.abort();
            return Err(refuse_lost(slot_id, reason));
        }
        let started = Instant::now();
        let before = self.vram.tracker().allocated();
        self.vram.monitor().check_limits();
        self.vram
            .monitor()
            .emit_snapshot("slot_start", Some(slot_id));
        let mut guard = SlotGuard {
            backend: Arc::clone(self.vram.backend()),
            slot_id,
            done: false,
        };
        let deadline = self.config.timing.deadline;
        let progress = Progress::default();
        let mut timings = StageTimings::default();
        let outcome =
            tokio::time::timeout(deadline, self.run_stages(recipe, &progress, &mut *sink)).await;
        guard.done = true;
        self.slots += 1;
        let elapsed = started.elapsed();
        metrics::histogram!(names::SLOT_DURATION_SECONDS).record(elapsed.as_secs_f64());
        let after = self.vram.tracker().allocated();
        if after != before {
            tracing::error!(target: "vortex_pipeline", slot_id, before, after, "tracked VRAM changed across a slot");
        }
        // Gauges are published after load and on every /metrics scrape, not per slot.
        self.vram.monitor().emit_snapshot("slot_end", Some(slot_id));
        self.vram.monitor().generation_completed();
        let failure = match outcome {
            Err(_elapsed) => Some((
                "deadline_missed",
                SlotError::DeadlineMissed {
                    slot_id,
                    deadline,
                    stage: progress.first_running(),
                },
            )),
            Ok(Err(ComputeError::DeadlinePassed)) => Some((
                "deadline_missed",
                SlotError::DeadlineMissed {
                    slot_id,
                    deadline,
                    stage: progress.first_running(),
                },
            )),
            Ok(Err(ComputeError::Drain(source))) => Some((
                "error",
                SlotError::Output {
                    slot_id,
                    source: std::io::Error::other(source),
                },
            )),
            Ok(Err(source)) => Some(match self.vram.device_lost() {
                Some(reason) => (
                    "device_lost",
                    SlotError::DeviceLost {
                        slot_id,
                        reason: reason.to_owned(),
                    },
                ),
                None => ("error", SlotError::Compute { slot_id, source }),
            }),
            Ok(Ok(stages)) => {
                let manifest = Manifest::new(self, recipe, &stages, elapsed, (before, after));
                // The encoder's tail and the fsyncs block: off the runtime's other work.
                blocking(|| sink.manifest(&manifest).and_then(|()| sink.finish()))
                    .err()
                    .map(|source| ("error", SlotError::Output { slot_id, source }))
                    .or_else(|| {
                        timings = stages;
                        None
                    })
            }
        };
        if let Some((outcome, err)) = failure {
            // The stage futures were dropped; wait for the device before anything reuses
            // the buffers.
            let _ = self.vram.backend().synchronize();
            blocking(|| sink.abort());
            metrics::counter!(names::SLOTS_TOTAL, "outcome" => outcome).increment(1);
            tracing::warn!(target: "vortex_pipeline", slot_id, error = %err, "slot failed");
            return Err(err);
        }
        metrics::counter!(names::SLOTS_TOTAL, "outcome" => "ok").increment(1);
        let generation_time_ms = elapsed.as_secs_f64() * 1e3;
        let stages = timings;
        slot_done(slot_id, generation_time_ms, &stages, after);
        clip_verdict(slot_id, &self.host.scores);
        Ok(GenerationResult {
            slot_id,
            actor_image: &self.host.actor,
            video_frames: &self.host.video,
            audio_waveform: &self.host.audio,
            clip_embedding: ClipEmbedding {
                clip_b: &self.host.clip_b,
                clip_l: &self.host.clip_l,
            },
            clip_scores: self.host.scores,
            generation_time_ms,
            stages,
            speech: &self.host.speech,
        })
    }

    async fn run_stages(
        &mut self,
        recipe: &Recipe,
        progress: &Progress,
        sink: &mut dyn MediaSink,
    ) -> Result<StageTimings, ComputeError> {
        let Self {
            config,
            vram,
            regions,
            host,
            stages,
            compute,
            implementations,
            ..
        } = self;
        let timing = &config.timing;
        let work = config.slot_work();
        let slot = Slot {
            arena: vram.arena(),
            buffers: &config.buffers,
            regions,
            recipe,
            progress,
            // On a real device nothing is emulated: the stage takes what its work takes.
            pace: StageMap::from_fn(|stage| timing.profile.latency(stage, work, timing.time_scale)),
            implementations,
            emulated: vram.backend().emulates_latency(),
            verified: timing.verified_frames,
            deadline_at: Instant::now() + timing.deadline,
        };
        let [s_audio, s_actor, s_video, s_clip_b, s_clip_l] = stages.as_mut().into_values();
        let mut took = StageTimings::default();
        let ((audio_took, speech), actor_took) = slot
            .audio_and_actor((s_audio, &compute.audio), (s_actor, &compute.actor))
            .await?;
        (took[Stage::Audio], took[Stage::Actor]) = (audio_took, actor_took);
        host.speech = speech;
        slot.deliver_actor_and_audio(host, sink)?;
        took[Stage::Video] = slot
            .video(s_video, &compute.video, &host.speech, &mut host.video, sink)
            .await?;
        let ((b, score_b), (l, score_l)) = slot
            .verify(
                (s_clip_b, &compute.clip_b, &mut host.clip_b),
                (s_clip_l, &compute.clip_l, &mut host.clip_l),
                &host.video,
            )
            .await?;
        (took[Stage::ClipB], took[Stage::ClipL]) = (b, l);
        host.scores = ClipScores::new(score_b, score_l, &config.verify);
        Ok(took)
    }
}

/// What every phase of one slot shares.
struct Slot<'a> {
    arena: &'a Arena,
    buffers: &'a OutputBuffers,
    regions: &'a Regions,
    recipe: &'a Recipe,
    progress: &'a Progress,
    implementations: &'a StageMap<Implementation>,
    /// Each stage's profiled latency (scaled), which the host backend emulates.
    pace: StageMap<Duration>,
    emulated: bool,
    verified: u64,
    /// When the slot's deadline passes: stages that work frame by frame stop there, so a
    /// missed deadline is reported on time even while the compute runs on this thread.
    deadline_at: Instant,
}

/// Runs `work`, which blocks on files (an encoder's tail, fsyncs, a PNG), so that the rest of
/// the runtime's work goes on meanwhile: on a multi-thread runtime (`vortex serve`'s) the
/// worker hands its other tasks to another worker first (`block_in_place`); elsewhere (a
/// current-thread runtime, or none) it simply runs.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn drain_error(err: std::io::Error) -> ComputeError {
    ComputeError::Drain(Box::new(err))
}

impl Slot<'_> {
    /// On the host backend a stage lasts its profiled latency from the start of its phase,
    /// however much of that its compute took: the host stands in for a GPU whose stage takes
    /// that long. No timer at all once the time has passed (tokio's timers tick in
    /// milliseconds, and a zero-length sleep would still wait for the next tick). Marks the
    /// stage done and returns its time.
    async fn finish(&self, stage: Stage, start: Instant) -> Duration {
        let end = start + self.pace[stage];
        if self.emulated && Instant::now() < end {
            tokio::time::sleep_until(end).await;
        }
        self.progress.done(stage);
        let took = start.elapsed();
        stage_done(
            self.recipe.slot_id,
            stage,
            &self.implementations[stage],
            took,
        );
        took
    }

    /// Phase one: the audio and the actor image, concurrently; a network's compute runs on the
    /// blocking pool so the deadline can fire while it runs (a cancelled slot stops and waits
    /// for it).
    async fn audio_and_actor(
        &self,
        (s_audio, audio): (&mut StageState, &Arc<Mutex<Box<dyn AudioStage>>>),
        (s_actor, actor): (&mut StageState, &Arc<Mutex<Box<dyn ActorStage>>>),
    ) -> Result<((Duration, SpeechTiming), Duration), ComputeError> {
        let t0 = Instant::now();
        let audio = async {
            sweep(self.arena, s_audio).await?;
            let stage = Arc::clone(audio);
            let stop = lock(audio).stopper();
            let region = self.regions.audio;
            let speech = self
                .offloaded(s_audio, stop, move |cx, recipe| {
                    lock(&stage).run(cx, recipe, &region)
                })
                .await?;
            Ok::<_, ComputeError>((self.finish(Stage::Audio, t0).await, speech))
        };
        let actor = async {
            sweep(self.arena, s_actor).await?;
            let stage = Arc::clone(actor);
            let stop = lock(actor).stopper();
            let region = self.regions.actor;
            self.offloaded(s_actor, stop, move |cx, recipe| {
                lock(&stage).run(cx, recipe, &region)
            })
            .await?;
            Ok::<_, ComputeError>(self.finish(Stage::Actor, t0).await)
        };
        tokio::try_join!(audio, actor)
    }

    /// Runs `stage`'s `compute` on the blocking pool, network or reference implementation
    /// alike (one path: nothing slow runs on an async worker), with a context made of owned
    /// copies of what the stage needs (the staging memory goes there and back).
    async fn offloaded<T, F>(
        &self,
        state: &mut StageState,
        stop: Option<Terminator>,
        compute: F,
    ) -> Result<T, ComputeError>
    where
        T: Send + 'static,
        F: FnOnce(&mut StageContext<'_>, &Recipe) -> Result<T, ComputeError> + Send + 'static,
    {
        let arena = self.arena.clone();
        let buffers = *self.buffers;
        let recipe = self.recipe.clone();
        let (owner, weights, stream) = (state.owner, state.weights, state.queue.stream);
        let mut staging = std::mem::take(&mut state.staging);
        if let Some(stop) = &stop {
            // A new slot's work: clear a stop left from an earlier, cancelled one.
            stop.reset();
        }
        let outcome = offload(stop, move || {
            let mut cx = StageContext {
                arena: &arena,
                owner,
                weights: &weights,
                buffers: &buffers,
                staging: &mut staging,
                stream,
            };
            let result = compute(&mut cx, &recipe);
            (result, staging)
        })
        .wait()
        .await;
        match outcome {
            Outcome::Done((result, staging)) => {
                state.staging = staging;
                result
            }
            Outcome::Lost(why) => Err(ComputeError::Lost(why)),
        }
    }

    /// The actor image and the audio into host memory and to the sink.
    fn deliver_actor_and_audio(
        &self,
        host: &mut HostBuffers,
        sink: &mut dyn MediaSink,
    ) -> Result<(), ComputeError> {
        self.arena
            .download(&self.regions.actor, 0, &mut host.actor)?;
        let bytes = &mut host.audio_bytes;
        bytes.resize(host.audio.len() * 4, 0);
        self.arena.download(&self.regions.audio, 0, bytes)?;
        for (sample, b) in host.audio.iter_mut().zip(bytes.chunks_exact(4)) {
            *sample = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        blocking(|| {
            sink.actor(&host.actor).map_err(drain_error)?;
            sink.audio(&host.audio).map_err(drain_error)
        })
    }

    /// Phase two: the video. Frames in a device ring are drained to host memory and to the
    /// sink as each is written; a video on the device is downloaded when it is complete. A
    /// network draws on the blocking pool and hands each drained frame back over a channel,
    /// so the deadline fires on time however long a frame takes.
    async fn video(
        &self,
        state: &mut StageState,
        video: &Arc<Mutex<Box<dyn VideoStage>>>,
        speech: &SpeechTiming,
        host_video: &mut [u8],
        sink: &mut dyn MediaSink,
    ) -> Result<Duration, ComputeError> {
        let t1 = Instant::now();
        let regions = self.regions;
        let frame_bytes = self.buffers.frame_bytes() as usize;
        let in_ring = self.buffers.video_placement != Placement::Device;
        let deadline_at = self.deadline_at;
        sweep(self.arena, state).await?;
        // Where frame `i` goes in host memory and to the sink.
        let mut deliver = |i: u64, frame: &[u8]| -> Result<(), ComputeError> {
            let at = i as usize * frame_bytes;
            host_video
                .get_mut(at..at + frame_bytes)
                .ok_or(ComputeError::Shape {
                    what: "video frame",
                    have: at as u64,
                    need: (at + frame_bytes) as u64,
                })?
                .copy_from_slice(frame);
            sink.frame(i, frame).map_err(drain_error)
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(2);
        let shared = Arc::clone(video);
        let stop = lock(video).stopper();
        let (actor, audio, video_region, capacity) = (
            regions.actor,
            regions.audio,
            regions.video,
            regions.video_frames_on_device,
        );
        let speech = speech.clone();
        let drawing = self.offloaded(state, stop, move |cx, recipe| {
            let arena = cx.arena.clone();
            let inputs = VideoInputs {
                actor: &actor,
                audio: &audio,
                speech: &speech,
            };
            let target = FrameTarget {
                region: &video_region,
                capacity,
            };
            lock(&shared).run(cx, recipe, inputs, target, &mut |i, offset| {
                if Instant::now() >= deadline_at {
                    return Err(ComputeError::DeadlinePassed);
                }
                if in_ring {
                    let mut frame = vec![0u8; frame_bytes];
                    arena.download(&video_region, offset, &mut frame)?;
                    // The receiver is gone only when the sink failed: stop drawing.
                    tx.blocking_send((i, frame))
                        .map_err(|_| ComputeError::Drain("the frame consumer stopped".into()))?;
                }
                Ok(())
            })
        });
        // The receiver is owned by its future, which comes first in the join: when the slot is
        // dropped (a missed deadline), it drops before the drawing's handle waits for the
        // work, so a frame blocked on a full channel is refused and the work ends.
        let receiving = async move {
            while let Some((i, frame)) = rx.recv().await {
                deliver(i, &frame)?;
            }
            Ok::<_, ComputeError>(())
        };
        let (received, drawn) = tokio::join!(receiving, drawing);
        // The sink's own error says more than the drawing's "consumer stopped".
        received?;
        drawn?;
        if !in_ring {
            self.arena.download(&regions.video, 0, host_video)?;
            for (i, frame) in host_video.chunks_exact(frame_bytes).enumerate() {
                sink.frame(i as u64, frame).map_err(drain_error)?;
            }
        }
        Ok(self.finish(Stage::Video, t1).await)
    }

    /// Phase three: both verifications, concurrently, on frames from host memory. Each gives
    /// its time and its similarity with the prompt.
    async fn verify(
        &self,
        b: (&mut StageState, &SharedEmbedding, &mut Vec<f32>),
        l: (&mut StageState, &SharedEmbedding, &mut Vec<f32>),
        host_video: &[u8],
    ) -> Result<((Duration, Option<f32>), (Duration, Option<f32>)), ComputeError> {
        let t2 = Instant::now();
        tokio::try_join!(
            self.embed(Stage::ClipB, b, host_video, t2),
            self.embed(Stage::ClipL, l, host_video, t2)
        )
    }

    /// One verification: an embedding of the selected frames, read from host memory (a
    /// reference implementation, inline) or copied out for the blocking pool (a network).
    async fn embed(
        &self,
        stage: Stage,
        (state, embed, out): (&mut StageState, &SharedEmbedding, &mut Vec<f32>),
        host_video: &[u8],
        start: Instant,
    ) -> Result<(Duration, Option<f32>), ComputeError> {
        let frame_bytes = self.buffers.frame_bytes() as usize;
        let selection = FrameSelection {
            frames: self.buffers.frames(),
            verified: self.verified,
        };
        let frame = |index: u64| {
            let at = index as usize * frame_bytes;
            host_video
                .get(at..at + frame_bytes)
                .ok_or(ComputeError::Shape {
                    what: "verified frame",
                    have: host_video.len() as u64,
                    need: (at + frame_bytes) as u64,
                })
        };
        sweep(self.arena, state).await?;
        // The indices the stage reads, and their frames.
        let indices: Vec<u64> = selection.indices().collect();
        let mut frames = std::mem::take(&mut state.frames);
        frames.clear();
        for &index in &indices {
            frames.extend_from_slice(frame(index)?);
        }
        let (dim, stop) = {
            let stage = lock(embed);
            (stage.dim(), stage.stopper())
        };
        // A slot dropped while its verification ran (a missed deadline) took the output with
        // it: make a new one.
        out.resize(dim, 0.0);
        let shared = Arc::clone(embed);
        let mut owned = std::mem::take(out);
        let (similarity, frames, owned) = self
            .offloaded(state, stop, move |cx, recipe| {
                let mut read = |index: u64, into: &mut [u8]| {
                    let k = indices
                        .binary_search(&index)
                        .map_err(|_| ComputeError::Shape {
                            what: "verified frame (not one of the frames copied out)",
                            have: 0,
                            need: index,
                        })?;
                    let frame = frames
                        .get(k * frame_bytes..(k + 1) * frame_bytes)
                        .filter(|f| f.len() == into.len())
                        .ok_or(ComputeError::Shape {
                            what: "verified frame",
                            have: into.len() as u64,
                            need: frame_bytes as u64,
                        })?;
                    into.copy_from_slice(frame);
                    Ok(())
                };
                let similarity = lock(&shared).run(cx, recipe, selection, &mut read, &mut owned);
                // The buffers come back whatever happened, for the next slot.
                Ok((similarity, frames, owned))
            })
            .await
            .unwrap_or_else(|lost| (Err(lost), Vec::new(), vec![0.0; dim]));
        state.frames = frames;
        *out = owned;
        Ok((self.finish(stage, start).await, similarity?))
    }
}

/// An embedding stage shared with the blocking pool.
type SharedEmbedding = Arc<Mutex<Box<dyn EmbeddingStage>>>;

/// A slot refused before it starts because the device was lost earlier.
#[cold]
fn refuse_lost(slot_id: u64, reason: &str) -> SlotError {
    let err = SlotError::DeviceLost {
        slot_id,
        reason: reason.to_owned(),
    };
    metrics::counter!(names::SLOTS_TOTAL, "outcome" => "device_lost").increment(1);
    tracing::error!(target: "vortex_pipeline", slot_id, error = %err, "slot refused");
    err
}

fn slot_done(slot_id: u64, generation_time_ms: f64, stages: &StageTimings, allocated: u64) {
    let ms = |stage| stages[stage].as_secs_f64() * 1e3;
    tracing::info!(
        target: "vortex_pipeline",
        slot_id,
        generation_time_ms,
        audio_ms = ms(Stage::Audio),
        actor_ms = ms(Stage::Actor),
        video_ms = ms(Stage::Video),
        clip_b_ms = ms(Stage::ClipB),
        clip_l_ms = ms(Stage::ClipL),
        allocated,
        "slot done"
    );
}

/// Logs a slot's CLIP scores and counts its verdict.
fn clip_verdict(slot_id: u64, scores: &ClipScores) {
    let verdict = scores.verdict().as_str();
    metrics::counter!(names::CLIP_VERDICTS_TOTAL, "verdict" => verdict).increment(1);
    for (model, score) in [
        ("clip_b", scores.clip_b),
        ("clip_l", scores.clip_l),
        ("ensemble", scores.ensemble),
    ] {
        if let Some(score) = score {
            metrics::gauge!(names::CLIP_SCORE, "model" => model).set(f64::from(score));
        }
    }
    if scores.passed == Some(false) {
        tracing::warn!(
            target: "vortex_pipeline",
            slot_id,
            clip_b = scores.clip_b,
            clip_l = scores.clip_l,
            ensemble = scores.ensemble,
            threshold = scores.threshold,
            verdict,
            "CLIP verification: the frames do not match the prompt well enough"
        );
    } else {
        tracing::info!(
            target: "vortex_pipeline",
            slot_id,
            clip_b = scores.clip_b,
            clip_l = scores.clip_l,
            ensemble = scores.ensemble,
            threshold = scores.threshold,
            verdict,
            "CLIP verification"
        );
    }
}

fn stage_done(slot_id: u64, stage: Stage, implementation: &Implementation, took: Duration) {
    metrics::histogram!(names::STAGE_DURATION_SECONDS, "stage" => stage.as_str())
        .record(took.as_secs_f64());
    tracing::info!(
        target: "vortex_pipeline",
        slot_id,
        stage = stage.as_str(),
        implementation = ?implementation.kind,
        ms = took.as_secs_f64() * 1e3,
        "stage done ({implementation})"
    );
}

/// Synchronizes the device and counts a cancellation if a slot's future is dropped before
/// it finished.
struct SlotGuard {
    backend: Arc<dyn Backend>,
    slot_id: u64,
    done: bool,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.backend.synchronize();
            metrics::counter!(names::SLOTS_TOTAL, "outcome" => "cancelled").increment(1);
            tracing::warn!(target: "vortex_pipeline", slot_id = self.slot_id, "slot cancelled; nothing kept");
        }
    }
}
