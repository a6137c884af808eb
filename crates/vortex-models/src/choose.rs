//! Choosing and profiling each stage's implementation at start-up: one floor above the
//! interfaces ([`crate::compute`]) and their implementations (the networks, the reference
//! ones), which know nothing of this module. A network is a file implementing its stage's
//! trait and an arm in [`StageSet::choose`], not an edit of the pipeline.

use vortex_registry::{ModelRegistry, OutputBuffers};
use vortex_runtime::{CudaOptions, Provider, Runtime, RuntimeError, SessionConfig};
use vortex_vram::{Arena, OutsideRecord, OwnerId, Purpose, StreamId, VramError};

use crate::clip::network::ClipNetwork;
use crate::compute::{
    ActorStage, AudioStage, ComputeError, EmbeddingStage, Implementation, Recipe, VideoStage,
};
use crate::flux::network::FluxNetwork;
use crate::kokoro::network::{KOKORO_DETAIL, KokoroNetwork};
use crate::liveportrait::network::LivePortraitNetwork;
use crate::reference::{ReferenceActor, ReferenceAudio, ReferenceEmbedding, ReferenceVideo};
use crate::stage::{Stage, StageMap};
use crate::weights::{HostWeights, Network, WeightSource};

/// One implementation per stage, chosen at start-up.
#[derive(Debug)]
pub struct StageSet {
    /// Kokoro's stage.
    pub audio: Box<dyn AudioStage>,
    /// Flux's stage.
    pub actor: Box<dyn ActorStage>,
    /// LivePortrait's stage.
    pub video: Box<dyn VideoStage>,
    /// CLIP ViT-B/32's stage.
    pub clip_b: Box<dyn EmbeddingStage>,
    /// CLIP ViT-L/14's stage.
    pub clip_l: Box<dyn EmbeddingStage>,
    /// On a GPU, what ONNX Runtime's CUDA provider holds outside every allocator for each
    /// network (its context, cuBLAS/cuDNN workspaces, its capped arena), as measured with the
    /// driver's free memory around the network's session creation and profile run, recorded
    /// in the tracker under the owner [`PROVIDER_OWNER`] for as long as the networks live.
    outside: Vec<(Stage, OutsideRecord)>,
}

/// What ONNX Runtime's CUDA provider holds outside every allocator, per stage, as recorded in
/// the tracker ([`StageSet::take_provider_records`]); released on drop.
#[derive(Debug, Default)]
pub struct ProviderRecords(Vec<(Stage, OutsideRecord)>);

impl ProviderRecords {
    /// Bytes per stage.
    pub fn bytes(&self) -> impl Iterator<Item = (Stage, u64)> + '_ {
        self.0.iter().map(|(stage, r)| (*stage, r.bytes()))
    }
}

/// The tracker's owner of what ONNX Runtime's CUDA provider holds outside every allocator.
pub const PROVIDER_OWNER: &str = "onnxruntime-cuda";

/// The most a network's CUDA session may hold outside Vortex's allocators (its context share,
/// cuBLAS/cuDNN workspaces and the provider's capped arena): a guard against a provider that
/// allocates behind the plan, not a measured figure (`cargo xtask gpu-check` reports those).
pub const PROVIDER_OUTSIDE_CAP: u64 = 1 << 30;

/// The profile run's phonemes ("The quick brown fox…", misaki's set), repeated and cut to
/// the longest piece a slot's run gets, so it measures the largest activations a slot needs.
const PROFILE_PHONEMES: &str = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ, ";

/// vLLM's profile run: `run` does the largest work a slot gives the model's network; then a
/// budget that cannot hold the model's weights plus the activation peak just measured is
/// refused, with the arithmetic.
fn profile(
    stage: Stage,
    registry: &ModelRegistry,
    arena: &Arena,
    run: impl FnOnce(OwnerId) -> Result<(), ComputeError>,
) -> Result<(), ComputeError> {
    let model = stage.model();
    let owner = arena.tracker().register_owner(model)?;
    let started = std::time::Instant::now();
    run(owner)?;
    let usage = arena.tracker().owners();
    let peak = usage
        .iter()
        .find(|o| &*o.owner == model)
        .map_or(0, |o| o.peak);
    let loaded = registry.loaded().iter().find(|m| m.name == model);
    let (budget, weights) = loaded.map_or((0, 0), |m| (m.budget, m.measured));
    let activations = peak.saturating_sub(weights);
    tracing::info!(
        target: "vortex_models",
        model,
        weights,
        activations,
        budget,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "profile run: activation peak measured"
    );
    if weights + activations > budget {
        return Err(ComputeError::Budget {
            model,
            budget,
            weights,
            activations,
            alternative: t5_off_the_device(stage, registry, weights, activations),
        });
    }
    Ok(())
}

/// For the actor with T5's encoder on the device (its budget held every weight, but not the
/// activations besides): the budgets under which T5 goes to the CPU and the rest still fits,
/// when T5's weights are more than the activations need.
fn t5_off_the_device(
    stage: Stage,
    registry: &ModelRegistry,
    weights: u64,
    activations: u64,
) -> Option<String> {
    if stage != Stage::Actor {
        return None;
    }
    let resident = crate::adapter::resident_weights(registry, stage)?;
    let t5 = crate::weights::resident_bytes(&resident.layout.select(&[crate::flux::parts::T5]));
    let least = weights.checked_sub(t5)? + activations;
    (t5 > 0 && least < weights).then(|| {
        format!(
            "; or lower it to at least {least} and under {weights}: T5's encoder ({t5} bytes) then runs on the CPU from host memory, leaving the device its activations"
        )
    })
}

/// How `stage`'s network runs: on a GPU every network but Kokoro on ONNX Runtime's CUDA
/// provider, inside the arena's device memory, on the stage's stream; Kokoro's int8 graph
/// (no CUDA kernels) and everything on the host backend on the CPU provider.
fn session_for(
    stage: Stage,
    arena: &Arena,
    settings: &RuntimeSettings,
    shapes: &SlotShapes<'_>,
) -> SessionConfig {
    let backend = arena.backend();
    let threads = match settings.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let provider = match !backend.host_addressable() && stage != Stage::Audio {
        false => Provider::Cpu,
        // CUDA graphs only for LivePortrait's per-frame graph (fixed shapes, run bound): the
        // network turns them off for its other graphs.
        true => Provider::Cuda(CudaOptions {
            stream: backend.raw_stream(shapes.streams[stage]),
            stream_id: Some(shapes.streams[stage]),
            cuda_graph: settings.cuda_graphs && stage == Stage::Video,
            ..CudaOptions::on(0)
        }),
    };
    SessionConfig { threads, provider }
}

/// Kokoro's network: over its weights in the arena on the host backend; beside a GPU over its
/// weights read from its files into host memory (the adapter loaded none on the device),
/// held by the session.
fn kokoro(
    runtime: &'static Runtime,
    arena: &Arena,
    weights: &crate::weights::ResidentWeights,
    session: &SessionConfig,
) -> Result<KokoroNetwork, ComputeError> {
    let files = crate::kokoro::assets::prepare(&vortex_runtime::fetch::cache_dir())
        .map_err(|e| ComputeError::Runtime(Box::new(RuntimeError::Assets(e.to_string()))))?;
    if arena.backend().host_addressable() {
        return KokoroNetwork::new(runtime, &files, arena, weights, session);
    }
    let layout = Network::Kokoro82mInt8.layout();
    let host = HostWeights::read(&files.weights, &layout, &layout)?;
    KokoroNetwork::with_weights(runtime, &files, host.graph_weights()?, session)
}

/// What ONNX Runtime's CUDA provider holds outside every allocator for `stage`'s network: the
/// driver's free memory `before` its session was made, less what is free now (the arena was
/// reserved before), refused above [`PROVIDER_OUTSIDE_CAP`], recorded under
/// [`PROVIDER_OWNER`].
fn provider_outside(
    arena: &Arena,
    stage: Stage,
    before: u64,
) -> Result<OutsideRecord, ComputeError> {
    let after = arena.backend().free_memory().map_err(VramError::from)?;
    let held = before.saturating_sub(after);
    if held > PROVIDER_OUTSIDE_CAP {
        return Err(ComputeError::ProviderOutside {
            model: stage.model(),
            held,
            cap: PROVIDER_OUTSIDE_CAP,
        });
    }
    let owner = arena.tracker().register_owner(PROVIDER_OWNER)?;
    let record = arena.record_outside(owner, Purpose::Context, held)?;
    tracing::info!(
        target: "vortex_models",
        model = stage.model(),
        bytes = held,
        "the CUDA provider holds this outside Vortex's allocators (measured with the driver's free memory), recorded under {PROVIDER_OWNER}"
    );
    Ok(record)
}

/// The longest piece of phonemes a slot's run of Kokoro gets.
fn longest_piece() -> String {
    PROFILE_PHONEMES
        .repeat(crate::kokoro::network::MAX_PIECE_TOKENS)
        .chars()
        .take(crate::kokoro::network::MAX_PIECE_TOKENS)
        .collect()
}

/// How networks run (`[runtime]` in the configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// ONNX Runtime's library (`[runtime] onnxruntime`); `None` lets the resolver find it.
    pub onnxruntime: Option<std::path::PathBuf>,
    /// Threads of a network's session (`[runtime] threads`); 0 = the machine's cores.
    pub threads: usize,
    /// On CUDA, capture each fixed-shape graph's kernels once and replay them
    /// (`[runtime] cuda_graphs`).
    pub cuda_graphs: bool,
}

/// The largest work a slot gives each network: what the profile runs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotShapes<'a> {
    /// The slot's output buffers (the actor image's side is what FLUX's profile run draws).
    pub buffers: &'a OutputBuffers,
    /// Frames a slot's verification embeds at once (`[timing] verified_frames`): the batch of
    /// CLIP's profile run.
    pub verified_frames: u64,
    /// Each stage's stream: on a GPU, the stream its network's session queues its work on.
    pub streams: &'a StageMap<StreamId>,
}

impl StageSet {
    /// The implementation of every stage: the network where the model's weights are a
    /// network's own files ([`WeightSource::Network`]), else the reference implementation.
    /// Each choice is logged.
    pub fn choose(
        registry: &ModelRegistry,
        arena: &Arena,
        settings: &RuntimeSettings,
        shapes: SlotShapes<'_>,
    ) -> Result<Self, ComputeError> {
        let mut set = Self::reference();
        let backend = arena.backend();
        let on_gpu = !backend.host_addressable();
        let runtime = || match on_gpu {
            false => Runtime::get(settings.onnxruntime.as_deref()),
            true => Runtime::get_cuda(0, backend.driver_version()),
        };
        let session = |stage: Stage| session_for(stage, arena, settings, &shapes);
        // CLIP's tokenizer (read from its wheel) is built once for every stage that needs it.
        let mut tokenizer: Option<crate::clip_text::ClipTokenizer> = None;
        let mut tokenizer = || -> Result<crate::clip_text::ClipTokenizer, ComputeError> {
            if let Some(built) = &tokenizer {
                return Ok(built.clone());
            }
            let built = crate::clip_text::clip_tokenizer(&vortex_runtime::fetch::cache_dir())
                .map_err(|e| ComputeError::Prompt(Box::new(e)))?;
            tokenizer = Some(built.clone());
            Ok(built)
        };
        for stage in Stage::LOAD_ORDER {
            let Some((source, Some(weights))) = crate::adapter::loaded(registry, stage) else {
                continue;
            };
            if let (WeightSource::Export(export), Provider::Cpu) = (source, session(stage).provider)
                && export.dtype() == crate::export::ExportDtype::F16
            {
                return Err(ComputeError::F16OnCpu {
                    kind: export.kind(),
                    dir: export.dir().to_owned(),
                });
            }
            let free_before = match on_gpu {
                true => Some(backend.free_memory().map_err(VramError::from)?),
                false => None,
            };
            match (stage, source) {
                (Stage::Audio, WeightSource::Network(Network::Kokoro82mInt8)) => {
                    let mut network = kokoro(runtime()?, arena, weights, &session(stage))?;
                    profile(stage, registry, arena, |owner| {
                        network
                            .speak_phonemes(
                                arena,
                                owner,
                                &longest_piece(),
                                Recipe::DEFAULT_VOICE,
                                usize::MAX,
                            )
                            .map(drop)
                    })?;
                    set.audio = Box::new(network);
                }
                (Stage::Actor, WeightSource::Export(export)) => {
                    let mut network = FluxNetwork::new(
                        runtime()?,
                        export,
                        arena,
                        weights,
                        tokenizer()?,
                        &session(stage),
                    )?;
                    let size = shapes.buffers.image_size as usize;
                    profile(stage, registry, arena, |owner| {
                        network.profile(arena, owner, size)
                    })?;
                    set.actor = Box::new(network);
                }
                (Stage::Video, WeightSource::Export(export)) => {
                    let mut network = LivePortraitNetwork::new(
                        runtime()?,
                        export,
                        arena,
                        weights,
                        &session(stage),
                    )?;
                    profile(stage, registry, arena, |owner| {
                        network.profile(arena, owner)
                    })?;
                    set.video = Box::new(network);
                }
                (Stage::ClipB | Stage::ClipL, WeightSource::Export(export)) => {
                    let mut network = ClipNetwork::new(
                        runtime()?,
                        stage.model(),
                        export,
                        arena,
                        weights,
                        tokenizer()?,
                        &session(stage),
                    )?;
                    let frames = shapes.verified_frames as usize;
                    profile(stage, registry, arena, |owner| {
                        network.profile(arena, owner, frames)
                    })?;
                    if stage == Stage::ClipB {
                        set.clip_b = Box::new(network);
                    } else {
                        set.clip_l = Box::new(network);
                    }
                }
                _ => continue,
            }
            if let (Some(before), Provider::Cuda(_)) = (free_before, session(stage).provider) {
                set.outside
                    .push((stage, provider_outside(arena, stage, before)?));
            }
        }
        set.log();
        Ok(set)
    }

    /// What [`StageSet::choose`] will pick for models whose weights come from `sources`,
    /// without loading anything (for `vortex plan`).
    pub fn planned(sources: &StageMap<WeightSource>) -> StageMap<Implementation> {
        let reference = Self::reference().implementations();
        reference.map(|stage, implementation| match (&sources[stage], stage) {
            (WeightSource::Network(Network::Kokoro82mInt8), Stage::Audio) => {
                Implementation::network(KOKORO_DETAIL)
            }
            // The configuration only takes an export under the stage that runs its kind.
            (WeightSource::Export(export), _) => Implementation::network(&format!(
                "{} exported in {}, on ONNX Runtime's CPU provider",
                export.kind(),
                export.dir().display()
            )),
            _ => implementation,
        })
    }

    fn log(&self) {
        let implementations = self.implementations();
        let references: Vec<&str> = implementations
            .iter()
            .filter(|(_, i)| i.is_reference())
            .map(|(s, _)| s.as_str())
            .collect();
        tracing::info!(
            target: "vortex_models",
            references = references.len(),
            "{} of 5 stages run reference implementations (not model inference): {}",
            references.len(),
            references.join(", ")
        );
        for (stage, implementation) in implementations.iter() {
            tracing::info!(
                target: "vortex_models",
                stage = stage.as_str(),
                model = stage.model(),
                implementation = ?implementation.kind,
                "{stage}: {implementation}"
            );
        }
    }

    /// The reference implementation of every stage.
    pub fn reference() -> Self {
        StageSet {
            audio: Box::new(ReferenceAudio),
            actor: Box::new(ReferenceActor),
            video: Box::new(ReferenceVideo),
            clip_b: Box::new(ReferenceEmbedding::new(Stage::ClipB.model(), 512)),
            clip_l: Box::new(ReferenceEmbedding::new(Stage::ClipL.model(), 768)),
            outside: Vec::new(),
        }
    }

    /// Takes the records of what the CUDA provider holds outside every allocator, for whoever
    /// keeps the networks (they must live as long as the networks' sessions: dropping them
    /// un-counts bytes the provider still holds).
    pub fn take_provider_records(&mut self) -> ProviderRecords {
        ProviderRecords(std::mem::take(&mut self.outside))
    }

    /// Whether every stage can write buffers of these shapes and dtypes.
    pub fn check_buffers(&self, buffers: &OutputBuffers) -> Result<(), ComputeError> {
        self.audio.check_buffers(buffers)?;
        self.actor.check_buffers(buffers)?;
        self.video.check_buffers(buffers)?;
        self.clip_b.check_buffers(buffers)?;
        self.clip_l.check_buffers(buffers)
    }

    /// The stage that takes the most scratch in every slot besides its profiled
    /// activations, and how much ([`crate::compute::StageImpl::scratch_bytes`]).
    pub fn scratch_bytes(&self, buffers: &OutputBuffers) -> (Stage, u64) {
        [
            (Stage::Audio, self.audio.scratch_bytes(buffers)),
            (Stage::Actor, self.actor.scratch_bytes(buffers)),
            (Stage::Video, self.video.scratch_bytes(buffers)),
            (Stage::ClipB, self.clip_b.scratch_bytes(buffers)),
            (Stage::ClipL, self.clip_l.scratch_bytes(buffers)),
        ]
        .into_iter()
        .max_by_key(|&(_, bytes)| bytes)
        .unwrap_or((Stage::Actor, 0))
    }

    /// What runs each stage.
    pub fn implementations(&self) -> StageMap<Implementation> {
        StageMap::from_fn(|stage| match stage {
            Stage::Audio => self.audio.implementation(),
            Stage::Actor => self.actor.implementation(),
            Stage::Video => self.video.implementation(),
            Stage::ClipB => self.clip_b.implementation(),
            Stage::ClipL => self.clip_l.implementation(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vortex_registry::ModelRegistry;
    use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

    use super::*;
    use crate::adapter::{ModelSpec, adapter_for};
    use crate::compute::ComputeError;
    use crate::export::Export;
    use crate::weights::{WeightSource, resident_bytes};

    /// The actor refused for its activations with T5 on the device is told the budgets that
    /// move T5 to the CPU, when T5 frees more than the activations need; no one else is.
    #[test]
    fn a_flux_budget_refusal_names_the_budgets_that_put_t5_on_the_cpu() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flux/tiny_q4");
        let export = Export::open(&dir).unwrap();
        let all = resident_bytes(&export.resident_layout());
        let t5 = resident_bytes(&export.resident_layout().select(&[crate::flux::parts::T5]));
        let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
        let vram = Vram::new(
            backend,
            VramConfig::new(ArenaConfig::new(all + (1 << 20), 1 << 20)),
        )
        .unwrap();
        let spec = ModelSpec {
            budget: all,
            weights: WeightSource::Export(export),
        };
        let registry =
            ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::Actor, spec)]).unwrap();
        let hint = t5_off_the_device(Stage::Actor, &registry, all, 1000).unwrap();
        let least = all - t5 + 1000;
        assert!(
            hint.contains(&format!("at least {least} and under {all}")),
            "{hint}"
        );
        // Activations bigger than T5: moving it would not make room.
        assert_eq!(t5_off_the_device(Stage::Actor, &registry, all, t5), None);
        assert_eq!(t5_off_the_device(Stage::Video, &registry, all, 1000), None);
        let err = ComputeError::Budget {
            model: "flux",
            budget: all,
            weights: all,
            activations: 1000,
            alternative: Some(hint),
        }
        .to_string();
        assert!(
            err.contains("raise the budget") && err.contains("runs on the CPU"),
            "{err}"
        );
    }
}
