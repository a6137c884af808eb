//! [`VortexPipeline`]: every model resident, buffers allocated once, and slots generated on
//! tokio: audio and actor concurrently, then video, then both CLIP verifications concurrently.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use vortex_models::adapter::{ClipB, ClipL, Flux, Kokoro, LivePortrait};
use vortex_models::cost::{SlotWork, Stage, TimePlan};
use vortex_models::reference::{
    ComputeError, EmbeddingProjection, FrameTarget, Recipe, reference_actor, reference_audio,
    reference_embedding, reference_video,
};
use vortex_registry::{InitError, ModelRegistry, Placement, VramPlan};
use vortex_vram::{
    Backend, BackendError, EventId, HostBackend, OwnerId, Purpose, ScratchBuffer, StaticRegion,
    StreamId, Vram, VramConfig, VramError, VramTracker, metrics as names,
};

use crate::config::{Config, DeviceKind};

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
    /// A CUDA device was configured in a build without the `cuda` feature.
    #[error(
        "device.backend = \"cuda\" needs a build with the cuda feature (cargo build --features cuda); or set device.backend = \"host\""
    )]
    CudaNotBuilt,
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
        /// The stage that was running.
        stage: &'static str,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StageTimings {
    /// Kokoro (reference implementation).
    pub audio: Duration,
    /// Flux (reference implementation).
    pub actor: Duration,
    /// LivePortrait (reference implementation).
    pub video: Duration,
    /// CLIP ViT-B/32 (reference implementation).
    pub clip_b: Duration,
    /// CLIP ViT-L/14 (reference implementation).
    pub clip_l: Duration,
}

impl StageTimings {
    /// Each stage's label and time, in slot order.
    pub fn by_stage(&self) -> [(&'static str, Duration); 5] {
        [
            ("audio", self.audio),
            ("actor", self.actor),
            ("video", self.video),
            ("clip_b", self.clip_b),
            ("clip_l", self.clip_l),
        ]
    }
}

/// The two verification embeddings of a slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipEmbedding<'a> {
    /// ViT-B/32: 512 values, L2-normalized.
    pub clip_b: &'a [f32],
    /// ViT-L/14: 768 values, L2-normalized.
    pub clip_l: &'a [f32],
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
    /// Wall time of the slot in milliseconds.
    pub generation_time_ms: f64,
    /// Wall time of each stage.
    pub stages: StageTimings,
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
    clip_b: Vec<f32>,
    clip_l: Vec<f32>,
}

/// Every model resident, every buffer allocated; generates slots. See the module docs.
pub struct VortexPipeline {
    config: Config,
    vram: Vram,
    registry: ModelRegistry,
    plan: VramPlan,
    regions: Regions,
    host: HostBuffers,
    /// Staging for actor, audio, video and the two CLIP stages; reused slot to slot.
    staging: [Vec<u8>; 5],
    flux: OwnerId,
    work: SlotWork,
    slots: u64,
    projections: [EmbeddingProjection; 2],
    /// Each stage's model: its owner and resident weights (audio, actor, video, clip_b, clip_l).
    weights: [(OwnerId, StaticRegion); 5],
    /// Each stage's stream and timing events, in the same order.
    queues: [StageQueue; 5],
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
async fn sweep(
    arena: &vortex_vram::Arena,
    (owner, weights): &(OwnerId, StaticRegion),
    queue: StageQueue,
) -> Result<Duration, ComputeError> {
    let backend = arena.backend().as_ref();
    if backend.emulates_latency() {
        return Ok(Duration::ZERO);
    }
    let through = arena.alloc_scratch(*owner, Purpose::Workspace, SWEEP_CHUNK.min(weights.size))?;
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
        let regions = Regions {
            actor: alloc("actor_buffer", Purpose::OutputBuffer, b.actor_bytes())?,
            audio: alloc("audio_buffer", Purpose::OutputBuffer, b.audio_bytes())?,
            video: alloc(
                "video_buffer",
                video_purpose,
                video_frames_on_device * b.frame_bytes(),
            )?,
            video_frames_on_device,
        };
        let host = HostBuffers {
            actor: vec![0; b.actor_bytes() as usize],
            video: vec![0; b.video_bytes() as usize],
            audio: vec![0.0; (b.seconds * b.sample_rate) as usize],
            clip_b: vec![0.0; 512],
            clip_l: vec![0.0; 768],
        };
        let flux = vram.owner("flux")?;
        let resident = |name: &str,
                        region: Option<StaticRegion>|
         -> Result<(OwnerId, StaticRegion), PipelineError> {
            let region = region.ok_or_else(|| {
                PipelineError::Vram(VramError::InvalidRequest {
                    what: format!("model `{name}` has no resident weights"),
                })
            })?;
            Ok((vram.owner(name)?, region))
        };
        let backend = vram.backend().as_ref();
        let queue = || -> Result<StageQueue, BackendError> {
            Ok(StageQueue {
                stream: backend.create_stream()?,
                start: backend.create_event()?,
                end: backend.create_event()?,
            })
        };
        let queues = [queue()?, queue()?, queue()?, queue()?, queue()?];
        let weights = [
            resident(
                "kokoro",
                registry
                    .get::<Kokoro>()
                    .and_then(|m| m.weights())
                    .map(|w| w.region),
            )?,
            resident(
                "flux",
                registry
                    .get::<Flux>()
                    .and_then(|m| m.weights())
                    .map(|w| w.region),
            )?,
            resident(
                "liveportrait",
                registry
                    .get::<LivePortrait>()
                    .and_then(|m| m.weights())
                    .map(|w| w.region),
            )?,
            resident(
                "clip_b",
                registry
                    .get::<ClipB>()
                    .and_then(|m| m.weights())
                    .map(|w| w.region),
            )?,
            resident(
                "clip_l",
                registry
                    .get::<ClipL>()
                    .and_then(|m| m.weights())
                    .map(|w| w.region),
            )?,
        ];
        let work = SlotWork {
            seconds: b.seconds,
            frames: b.frames(),
            verified_frames: config.timing.verified_frames,
        };
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
            staging: Default::default(),
            flux,
            work,
            slots: 0,
            projections: [
                EmbeddingProjection::new("clip_b", 512),
                EmbeddingProjection::new("clip_l", 768),
            ],
            weights,
            queues,
        })
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

    /// Slots finished (successful or not).
    pub fn slots(&self) -> u64 {
        self.slots
    }

    /// Changes the slot deadline from the next slot on.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.config.timing.deadline = deadline;
    }

    /// Generates one slot. See [`GenerationResult`] for how long its data lives. Dropping the
    /// returned future at any point stops the pending stages, synchronizes the device and
    /// keeps nothing partial; the next slot starts clean.
    pub async fn generate_slot(
        &mut self,
        recipe: &Recipe,
    ) -> Result<GenerationResult<'_>, SlotError> {
        let slot_id = recipe.slot_id;
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
        let mut stage: &'static str = "audio";
        let outcome = tokio::time::timeout(deadline, self.run_stages(recipe, &mut stage)).await;
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
        let stages = match outcome {
            Err(_elapsed) => {
                // The stage futures were dropped; wait for the device before anything reuses
                // the buffers.
                let _ = self.vram.backend().synchronize();
                metrics::counter!(names::SLOTS_TOTAL, "outcome" => "deadline_missed").increment(1);
                let err = SlotError::DeadlineMissed {
                    slot_id,
                    deadline,
                    stage,
                };
                tracing::warn!(target: "vortex_pipeline", slot_id, error = %err, "slot failed");
                return Err(err);
            }
            Ok(Err(source)) => {
                let _ = self.vram.backend().synchronize();
                metrics::counter!(names::SLOTS_TOTAL, "outcome" => "error").increment(1);
                let err = SlotError::Compute { slot_id, source };
                tracing::error!(target: "vortex_pipeline", slot_id, error = %err, "slot failed");
                return Err(err);
            }
            Ok(Ok(stages)) => stages,
        };
        metrics::counter!(names::SLOTS_TOTAL, "outcome" => "ok").increment(1);
        let generation_time_ms = elapsed.as_secs_f64() * 1e3;
        tracing::info!(
            target: "vortex_pipeline",
            slot_id,
            generation_time_ms,
            audio_ms = stages.audio.as_secs_f64() * 1e3,
            actor_ms = stages.actor.as_secs_f64() * 1e3,
            video_ms = stages.video.as_secs_f64() * 1e3,
            clip_b_ms = stages.clip_b.as_secs_f64() * 1e3,
            clip_l_ms = stages.clip_l.as_secs_f64() * 1e3,
            allocated = after,
            "slot done"
        );
        Ok(GenerationResult {
            slot_id,
            actor_image: &self.host.actor,
            video_frames: &self.host.video,
            audio_waveform: &self.host.audio,
            clip_embedding: ClipEmbedding {
                clip_b: &self.host.clip_b,
                clip_l: &self.host.clip_l,
            },
            generation_time_ms,
            stages,
        })
    }

    async fn run_stages(
        &mut self,
        recipe: &Recipe,
        stage: &mut &'static str,
    ) -> Result<StageTimings, ComputeError> {
        let Self {
            config,
            vram,
            regions,
            host,
            staging,
            flux,
            work,
            projections,
            weights,
            queues,
            ..
        } = self;
        let arena = vram.arena();
        let b = &config.buffers;
        let timing = &config.timing;
        let latency = |s: Stage| timing.profile.latency(s, *work, timing.time_scale);
        let [s_actor, s_audio, s_video, s_clip_b, s_clip_l] = staging;

        // Each stage lasts its profiled latency from the start of its phase, however much of
        // that its reference compute took: the host backend stands in for a GPU whose stage
        // takes that long.
        // No timer at all once the time has passed: tokio's timers tick in milliseconds, and
        // a zero-length sleep would still wait for the next tick.
        // On a real device nothing is emulated: the stage takes what its work takes.
        let emulated = arena.backend().emulates_latency();
        let until = |start: Instant, s: Stage| {
            let end = start + latency(s);
            async move {
                if emulated && Instant::now() < end {
                    tokio::time::sleep_until(end).await;
                }
            }
        };

        *stage = "audio+actor";
        let t0 = Instant::now();
        let audio = async {
            sweep(arena, &weights[0], queues[0]).await?;
            reference_audio(arena, recipe, b, &regions.audio, s_audio)?;
            until(t0, Stage::Audio).await;
            Ok::<_, ComputeError>(t0.elapsed())
        };
        let actor = async {
            sweep(arena, &weights[1], queues[1]).await?;
            reference_actor(arena, *flux, recipe, b, &regions.actor, s_actor)?;
            until(t0, Stage::Actor).await;
            Ok::<_, ComputeError>(t0.elapsed())
        };
        let (audio, actor) = tokio::try_join!(audio, actor)?;
        stage_done(recipe.slot_id, Stage::Audio, audio);
        stage_done(recipe.slot_id, Stage::Actor, actor);

        *stage = "video";
        let t1 = Instant::now();
        let target = FrameTarget {
            region: &regions.video,
            capacity: regions.video_frames_on_device,
        };
        let frame_bytes = b.frame_bytes() as usize;
        let in_ring = b.video_placement != Placement::Device;
        let host_video = &mut host.video;
        sweep(arena, &weights[2], queues[2]).await?;
        reference_video(
            arena,
            recipe,
            b,
            &regions.actor,
            &regions.audio,
            target,
            s_video,
            &mut |i, offset| {
                if in_ring {
                    let at = i as usize * frame_bytes;
                    arena.download(
                        &regions.video,
                        offset,
                        &mut host_video[at..at + frame_bytes],
                    )?;
                }
                Ok(())
            },
        )?;
        if !in_ring {
            arena.download(&regions.video, 0, host_video)?;
        }
        until(t1, Stage::Video).await;
        let video = t1.elapsed();
        stage_done(recipe.slot_id, Stage::Video, video);

        *stage = "clip";
        let t2 = Instant::now();
        let frames = b.frames();
        let verified = timing.verified_frames;
        let host_video = &host.video;
        let from_host = |index: u64, into: &mut [u8]| {
            let at = index as usize * frame_bytes;
            into.copy_from_slice(&host_video[at..at + frame_bytes]);
            Ok(())
        };
        let clip_b = async {
            let mut read = from_host;
            sweep(arena, &weights[3], queues[3]).await?;
            reference_embedding(
                &projections[0],
                b,
                frames,
                verified,
                &mut read,
                s_clip_b,
                &mut host.clip_b,
            )?;
            until(t2, Stage::ClipB).await;
            Ok::<_, ComputeError>(t2.elapsed())
        };
        let clip_l = async {
            let mut read = from_host;
            sweep(arena, &weights[4], queues[4]).await?;
            reference_embedding(
                &projections[1],
                b,
                frames,
                verified,
                &mut read,
                s_clip_l,
                &mut host.clip_l,
            )?;
            until(t2, Stage::ClipL).await;
            Ok::<_, ComputeError>(t2.elapsed())
        };
        let (clip_b, clip_l) = tokio::try_join!(clip_b, clip_l)?;
        stage_done(recipe.slot_id, Stage::ClipB, clip_b);
        stage_done(recipe.slot_id, Stage::ClipL, clip_l);

        // The actor image and the audio for the caller.
        arena.download(&regions.actor, 0, &mut host.actor)?;
        let mut bytes = std::mem::take(s_audio);
        bytes.resize(host.audio.len() * 4, 0);
        arena.download(&regions.audio, 0, &mut bytes)?;
        for (sample, b) in host.audio.iter_mut().zip(bytes.chunks_exact(4)) {
            *sample = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        *s_audio = bytes;
        Ok(StageTimings {
            audio,
            actor,
            video,
            clip_b,
            clip_l,
        })
    }
}

fn stage_done(slot_id: u64, stage: Stage, took: Duration) {
    metrics::histogram!(names::STAGE_DURATION_SECONDS, "stage" => stage.as_str())
        .record(took.as_secs_f64());
    tracing::info!(
        target: "vortex_pipeline",
        slot_id,
        stage = stage.as_str(),
        ms = took.as_secs_f64() * 1e3,
        "stage done (reference implementation)"
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
