//! The model adapters: one type per model, sharing one implementation of
//! [`vortex_registry::Model`] that loads the model's weights into its region.

use std::marker::PhantomData;
use std::sync::OnceLock;

use vortex_registry::{CpuWeights, LoadContext, LoadError, Model, ModelRegistry};

use crate::clip::ClipConfig;
use crate::flux::{FluxActor, T5Placement, parts};
use crate::kokoro::KokoroConfig;
use crate::layout::{Layout, WeightDtype};
use crate::liveportrait::LivePortraitConfig;
use crate::stage::Stage;
use crate::weights::{self, ResidentWeights, WeightSource, resident_bytes};

/// What the configuration says about one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Device bytes granted: weights plus the model's own working memory.
    pub budget: u64,
    /// Where its weights come from.
    pub weights: WeightSource,
}

/// A kind of model: its owner name and the layouts of its checkpoint.
pub trait ModelKind: Send + Sync + 'static {
    /// Owner name.
    const NAME: &'static str;
    /// The published checkpoint's tensors.
    fn checkpoint() -> &'static Layout;
    /// The tensors kept resident (all of them, or a tower of them).
    fn resident() -> &'static Layout;
}

/// An adapter for model kind `K`.
#[derive(Debug)]
pub struct Adapter<K: ModelKind> {
    spec: ModelSpec,
    checkpoint: Layout,
    resident_layout: Layout,
    resident: Option<ResidentWeights>,
    cpu_weights: Option<CpuWeights>,
    kind: PhantomData<K>,
}

impl<K: ModelKind> Adapter<K> {
    /// The adapter for the published checkpoint.
    pub fn new(spec: ModelSpec) -> Self {
        Self::with_layouts(spec, K::checkpoint().clone(), K::resident().clone())
    }

    /// The adapter for another layout of the same structure (scaled-down test fixtures).
    pub fn with_layouts(spec: ModelSpec, checkpoint: Layout, resident: Layout) -> Self {
        Adapter {
            spec,
            checkpoint,
            resident_layout: resident,
            resident: None,
            cpu_weights: None,
            kind: PhantomData,
        }
    }

    /// Weights the plan keeps in host memory, run on the CPU (not loaded by the adapter).
    pub fn with_cpu_weights(mut self, cpu: CpuWeights) -> Self {
        self.cpu_weights = Some(cpu);
        self
    }

    /// Its weights on the device, once loaded.
    pub fn weights(&self) -> Option<&ResidentWeights> {
        self.resident.as_ref()
    }

    /// Where its weights come from.
    pub fn source(&self) -> &WeightSource {
        &self.spec.weights
    }

    /// The tensors it keeps resident.
    pub fn resident_layout(&self) -> &Layout {
        &self.resident_layout
    }
}

impl<K: ModelKind> Model for Adapter<K> {
    fn name(&self) -> &str {
        K::NAME
    }

    fn budget(&self) -> u64 {
        self.spec.budget
    }

    fn weight_bytes(&self) -> u64 {
        resident_bytes(&self.resident_layout)
    }

    fn cpu_weights(&self) -> Option<CpuWeights> {
        self.cpu_weights.clone()
    }

    fn check(&self) -> Result<(), LoadError> {
        match &self.spec.weights {
            WeightSource::File(path) => {
                weights::WeightFile::open(path, &self.checkpoint)?;
            }
            WeightSource::Export(export) => {
                weights::WeightFile::open(&export.weights(), &self.checkpoint)?;
            }
            WeightSource::Synthetic { .. } | WeightSource::Network(_) => {}
        }
        Ok(())
    }

    fn load(&mut self, ctx: &mut LoadContext<'_>) -> Result<(), LoadError> {
        self.resident = Some(weights::load(
            ctx,
            &self.checkpoint,
            &self.resident_layout,
            &self.spec.weights,
        )?);
        Ok(())
    }
}

macro_rules! kind {
    ($(#[$doc:meta])* $kind:ident, $alias:ident, $name:literal, $checkpoint:expr, $resident:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $kind;

        impl ModelKind for $kind {
            const NAME: &'static str = $name;
            fn checkpoint() -> &'static Layout {
                static LAYOUT: OnceLock<Layout> = OnceLock::new();
                LAYOUT.get_or_init(|| $checkpoint)
            }
            fn resident() -> &'static Layout {
                static LAYOUT: OnceLock<Layout> = OnceLock::new();
                LAYOUT.get_or_init(|| $resident)
            }
        }

        $(#[$doc])*
        pub type $alias = Adapter<$kind>;
    };
}

kind!(
    /// FLUX.1-schnell (transformer and T5 4-bit for MatMulNBits, CLIP-L text and the VAE
    /// decoder 16-bit): the actor image. The resident layout here has T5 on the device;
    /// [`adapter_for`] moves it to the CPU when the budget cannot hold it.
    FluxKind, Flux, "flux",
    FluxActor::SCHNELL.layout(T5Placement::Device),
    FluxActor::SCHNELL.layout(T5Placement::Device)
);
kind!(
    /// CLIP ViT-B/32's image tower (fp16): frame verification.
    ClipBKind, ClipB, "clip_b",
    ClipConfig::B32.layout(WeightDtype::F16),
    ClipConfig::B32.vision_layout(WeightDtype::F16)
);
kind!(
    /// CLIP ViT-L/14's image tower (fp16): frame verification.
    ClipLKind, ClipL, "clip_l",
    ClipConfig::L14.layout(WeightDtype::F16),
    ClipConfig::L14.vision_layout(WeightDtype::F16)
);
kind!(
    /// Kokoro-82M (fp16): the audio.
    KokoroKind, Kokoro, "kokoro",
    KokoroConfig::V1_0.layout(WeightDtype::F16),
    KokoroConfig::V1_0.layout(WeightDtype::F16)
);
kind!(
    /// LivePortrait's five networks (fp16): the video.
    LivePortraitKind, LivePortrait, "liveportrait",
    LivePortraitConfig::HUMAN.layout(WeightDtype::F16),
    LivePortraitConfig::HUMAN.layout(WeightDtype::F16)
);

/// The adapter of `stage`'s model. A network source brings its own layout (the int8 export's
/// initializers, not the official checkpoint's tensors); an export its own (both towers of a
/// CLIP export, in f32; what a FLUX export's graphs read).
pub fn adapter_for(stage: Stage, spec: ModelSpec) -> Box<dyn Model> {
    adapter_on(stage, spec, true)
}

/// [`adapter_for`] on a device whose memory the CPU can address or not: on a GPU
/// (`host_addressable` false) Kokoro's int8 graph, whose integer ops have no CUDA kernels,
/// stays on the CPU, so its weights are the plan's host memory ([`CpuWeights`]) and nothing
/// of it is loaded on the device; its network reads them from its files into host memory.
pub fn adapter_on(stage: Stage, spec: ModelSpec, host_addressable: bool) -> Box<dyn Model> {
    if let (Stage::Audio, false, WeightSource::Network(network)) =
        (stage, host_addressable, &spec.weights)
    {
        let layout = network.layout();
        let what = format!(
            "{}, on ONNX Runtime's CPU provider beside the GPU: its integer ops (ConvInteger, DynamicQuantizeLinear, DynamicQuantizeLSTM) and STFT have no CUDA kernels",
            network.name()
        );
        let bytes = resident_bytes(&layout);
        let none = layout.select(&[]);
        return Box::new(
            Kokoro::with_layouts(spec, layout, none).with_cpu_weights(CpuWeights { bytes, what }),
        );
    }
    let layouts = match &spec.weights {
        WeightSource::Network(network) => Some((network.layout(), network.layout())),
        WeightSource::Export(export) => Some((export.layout(), export.resident_layout())),
        WeightSource::File(_) | WeightSource::Synthetic { .. } => None,
    };
    if let Some((checkpoint, resident)) = layouts {
        return match stage {
            Stage::Audio => Box::new(Kokoro::with_layouts(spec, checkpoint, resident)),
            Stage::Actor => Box::new(flux_placed(
                spec,
                checkpoint,
                resident,
                "T5 encoder of the export",
            )),
            Stage::Video => Box::new(LivePortrait::with_layouts(spec, checkpoint, resident)),
            Stage::ClipB => Box::new(ClipB::with_layouts(spec, checkpoint, resident)),
            Stage::ClipL => Box::new(ClipL::with_layouts(spec, checkpoint, resident)),
        };
    }
    match stage {
        Stage::Audio => Box::new(Kokoro::new(spec)),
        Stage::Actor => Box::new(flux(spec)),
        Stage::Video => Box::new(LivePortrait::new(spec)),
        Stage::ClipB => Box::new(ClipB::new(spec)),
        Stage::ClipL => Box::new(ClipL::new(spec)),
    }
}

/// FLUX.1-schnell's adapter over the official checkpoint's layout (see [`flux_placed`]).
fn flux(spec: ModelSpec) -> Flux {
    let all = FluxActor::SCHNELL.layout(T5Placement::Device);
    flux_placed(spec, all.clone(), all, "T5-XXL encoder, 4-bit MatMulNBits")
}

/// A FLUX adapter whose graphs read `resident` (the checkpoint's or an export's): all of it on
/// the device when the budget holds it, else T5's encoder (`what`) in host memory on the CPU —
/// a line of the plan, read there by the network — and the rest on the device.
fn flux_placed(spec: ModelSpec, checkpoint: Layout, resident: Layout, what: &str) -> Flux {
    let all = resident_bytes(&resident);
    let (t5, device) = resident.split(&[parts::T5]);
    if t5_placement(&resident, spec.budget) == T5Placement::Device || t5.tensors.is_empty() {
        return Flux::with_layouts(spec, checkpoint, resident);
    }
    let what = format!(
        "{what}, on ONNX Runtime's CPU provider: with it the actor's weights would be {}, over its {} budget; only its output crosses to the device",
        vortex_vram::Bytes(all),
        vortex_vram::Bytes(spec.budget)
    );
    let bytes = resident_bytes(&t5);
    Flux::with_layouts(spec, checkpoint, device).with_cpu_weights(CpuWeights { bytes, what })
}

/// Where T5 runs when the actor's graphs read `resident` under a device budget of `budget`
/// bytes: on the device when every tensor fits in it, else on the CPU (its weights then take
/// host memory, and the budget's remainder is the transformer's and the VAE's working memory).
pub(crate) fn t5_placement(resident: &Layout, budget: u64) -> T5Placement {
    if resident_bytes(resident) <= budget {
        T5Placement::Device
    } else {
        T5Placement::Cpu
    }
}

/// The resident weights of `stage`'s model, once `registry` has loaded it.
pub fn resident_weights(registry: &ModelRegistry, stage: Stage) -> Option<&ResidentWeights> {
    loaded(registry, stage).and_then(|(_, weights)| weights)
}

/// Where `stage`'s model's weights came from and, once loaded, where they are.
pub fn loaded(
    registry: &ModelRegistry,
    stage: Stage,
) -> Option<(&WeightSource, Option<&ResidentWeights>)> {
    fn of<K: ModelKind>(a: &Adapter<K>) -> (&WeightSource, Option<&ResidentWeights>) {
        (a.source(), a.weights())
    }
    match stage {
        Stage::Audio => registry.get::<Kokoro>().map(of),
        Stage::Actor => registry.get::<Flux>().map(of),
        Stage::Video => registry.get::<LivePortrait>().map(of),
        Stage::ClipB => registry.get::<ClipB>().map(of),
        Stage::ClipL => registry.get::<ClipL>().map(of),
    }
}
