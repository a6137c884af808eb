//! Configuration: `config.toml` read into raw structs (`deny_unknown_fields`), then validated
//! into [`Config`]. Every refusal names the key and says what to write instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vortex_models::adapter::{ModelSpec, adapter_on};
use vortex_models::choose::RuntimeSettings;
use vortex_models::cost::{CostProfile, SlotWork, TimePlan};
use vortex_models::export::{Export, ExportDtype};
use vortex_models::physics::{CountedWork, DevicePeaks, Rate, SlotFloors};
use vortex_models::stage::Stage;
use vortex_models::stage::StageMap;
use vortex_models::weights::{Network, WeightSource, resident_bytes};
use vortex_registry::{Dtype, Model, ModelBudget, OutputBuffers, Placement, PlanConfig, VramPlan};
use vortex_vram::{ByteSize, HostConfig, Limits, MonitorConfig};

/// The models' names (`[models.NAME]`), in load order.
pub const MODELS: [&str; 5] = [
    Stage::LOAD_ORDER[0].model(),
    Stage::LOAD_ORDER[1].model(),
    Stage::LOAD_ORDER[2].model(),
    Stage::LOAD_ORDER[3].model(),
    Stage::LOAD_ORDER[4].model(),
];

/// The shipped `config.toml`'s text.
pub const SHIPPED: &str = include_str!("../../../config.toml");

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, a missing key or a value of the wrong type.
    #[error("{}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("{}: {key}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The key, dotted (`vram.soft_limit`).
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device: RawDevice,
    vram: RawVram,
    buffers: RawBuffers,
    models: BTreeMap<String, RawModel>,
    timing: RawTiming,
    monitoring: RawMonitoring,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    verify: RawVerify,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    server: RawServer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    probe_addr: Option<String>,
    #[serde(default = "default_queue")]
    queue: i64,
    #[serde(default = "default_keep")]
    keep: i64,
}

fn default_queue() -> i64 {
    Server::default().queue as i64
}

fn default_keep() -> i64 {
    Server::default().keep as i64
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            probe_addr: None,
            queue: default_queue(),
            keep: default_keep(),
        }
    }
}

/// What `vortex serve` holds (`[server]`, optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// A listener of its own for `/health`, `/ready` and `/metrics` (`vortex serve
    /// --probe-addr` wins over it); `None`: the probes are served on the main port only.
    pub probe_addr: Option<String>,
    /// Recipes that wait behind the running slot; one more is refused with 429.
    pub queue: usize,
    /// Finished slots' folders kept under `--out`; the oldest is removed first.
    pub keep: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            probe_addr: None,
            queue: 2,
            keep: 100,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default)]
    ffmpeg: Option<String>,
}

/// How the slots' files are written (`[output]`, optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The ffmpeg that encodes the MP4s: a path, or a program name looked up on `PATH`
    /// (`"ffmpeg"` for the system's). `None` (`"auto"`): `VORTEX_FFMPEG`, else the pinned
    /// imageio-ffmpeg wheel's, fetched into Vortex's cache
    /// ([`crate::output::Ffmpeg::resolve`]).
    pub ffmpeg: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    clip_b_weight: f64,
    clip_l_weight: f64,
    threshold: f64,
}

impl Default for RawVerify {
    fn default() -> Self {
        let d = Verify::default();
        RawVerify {
            clip_b_weight: d.clip_b_weight,
            clip_l_weight: d.clip_l_weight,
            threshold: d.threshold,
        }
    }
}

/// How CLIP's scores decide (`[verify]`, optional).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verify {
    /// ViT-B/32's weight in the ensemble score.
    pub clip_b_weight: f64,
    /// ViT-L/14's weight in the ensemble score.
    pub clip_l_weight: f64,
    /// A slot whose ensemble score is below this fails verification.
    pub threshold: f64,
}

impl Default for Verify {
    /// ViT-L/14 weighs more (it is the stronger model); 0.25 is about where a frame
    /// matching its prompt lands for OpenAI's CLIP (unrelated pairs score about 0.1–0.2).
    fn default() -> Self {
        Verify {
            clip_b_weight: 0.4,
            clip_l_weight: 0.6,
            threshold: 0.25,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    #[serde(default)]
    onnxruntime: Option<String>,
    #[serde(default)]
    threads: Option<i64>,
    #[serde(default)]
    cuda_graphs: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    backend: String,
    host_preset: String,
    context_reserve: String,
    ordinal: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVram {
    soft_limit: String,
    hard_limit: String,
    scratch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffers {
    image_size: i64,
    channels: i64,
    actor_dtype: String,
    seconds: i64,
    sample_rate: i64,
    audio_dtype: String,
    fps: i64,
    video_dtype: String,
    video_placement: String,
    staging_frames: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    budget: String,
    weights: String,
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    cost_profile: String,
    deadline: String,
    verified_frames: i64,
    time_scale: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitoring {
    leak_check_every: i64,
    leak_threshold: String,
}

/// Which device runs Vortex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// The host backend with this capacity.
    Host(HostConfig),
    /// CUDA device `ordinal`.
    Cuda {
        /// The ordinal.
        ordinal: u32,
    },
}

/// Slot timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Stage latencies.
    pub profile: CostProfile,
    /// A slot that takes longer fails.
    pub deadline: Duration,
    /// Frames CLIP verifies per slot.
    pub verified_frames: u64,
    /// Emulated latencies on the host backend are multiplied by this.
    pub time_scale: f64,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The device.
    pub device: DeviceKind,
    /// `[device] host_preset`: the card the plans are for. The host backend takes its
    /// capacity from it; the time plan its peak rates, on any backend (a card the device
    /// table does not know gives no floor: [`Config::device_peaks`]).
    pub preset: String,
    /// Bytes the driver context holds.
    pub context_reserve: u64,
    /// Soft and hard limits.
    pub limits: Limits,
    /// Scratch region bytes.
    pub scratch: u64,
    /// Output buffer shapes and placement.
    pub buffers: OutputBuffers,
    /// Every stage's model (`[models.NAME]`, `NAME` = [`Stage::model`]): budget and weights.
    pub models: StageMap<ModelSpec>,
    /// Slot timing.
    pub timing: Timing,
    /// Leak detection.
    pub monitor: MonitorConfig,
    /// How networks run (`[runtime]`, optional).
    pub runtime: RuntimeSettings,
    /// How CLIP's scores decide (`[verify]`, optional).
    pub verify: Verify,
    /// How the slots' files are written (`[output]`, optional).
    pub output: Output,
    /// What `vortex serve` holds (`[server]`, optional).
    pub server: Server,
}

impl Config {
    /// Reads and validates `path`. Relative weight paths are relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The configuration Vortex ships (the workspace's `config.toml`, compiled in): an RTX
    /// 3060 plan on the host backend, Kokoro's real network for the audio. Change its public
    /// fields in code to make another (and [`Config::plan`] + `check()` it).
    pub fn shipped() -> Self {
        // The shipped file is checked by this crate's tests, so it always parses.
        Self::parse(SHIPPED, Path::new("config.toml"))
            .unwrap_or_else(|err| unreachable!("the shipped config.toml is tested to parse: {err}"))
    }

    /// Validates `text`, reporting errors against `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let v = Validator { file: origin };
        let base = origin.parent().unwrap_or(Path::new("."));

        let device = match raw.device.backend.as_str() {
            "host" => {
                DeviceKind::Host(HostConfig::preset(&raw.device.host_preset).ok_or_else(|| {
                    v.err(
                        "device.host_preset",
                        format!(
                            "unknown preset {:?}: use one of {:?}",
                            raw.device.host_preset,
                            HostConfig::PRESETS
                        ),
                    )
                })?)
            }
            "cuda" => DeviceKind::Cuda {
                ordinal: raw.device.ordinal,
            },
            other => {
                return Err(v.err(
                    "device.backend",
                    format!("unknown backend {other:?}: use \"host\" or \"cuda\""),
                ));
            }
        };
        let context_reserve =
            v.bytes("device.context_reserve", &raw.device.context_reserve, true)?;

        let soft = v.bytes("vram.soft_limit", &raw.vram.soft_limit, false)?;
        let hard = v.bytes("vram.hard_limit", &raw.vram.hard_limit, false)?;
        let limits = Limits::new(ByteSize(soft), ByteSize(hard)).map_err(|_| {
            v.err(
                "vram.soft_limit",
                format!(
                    "the soft limit ({soft} bytes) must be below the hard limit ({hard} bytes), and the hard limit at most 1 PiB"
                ),
            )
        })?;
        let scratch = v.bytes("vram.scratch", &raw.vram.scratch, false)?;

        let b = &raw.buffers;
        let video_placement = match b.video_placement.as_str() {
            "device" => Placement::Device,
            "pinned_host" => Placement::PinnedHost {
                staging_frames: v.count("buffers.staging_frames", b.staging_frames)?,
            },
            other => {
                return Err(v.err(
                    "buffers.video_placement",
                    format!("unknown placement {other:?}: use \"device\" or \"pinned_host\""),
                ));
            }
        };
        let channels = v.count("buffers.channels", b.channels)?;
        if !(1..=4).contains(&channels) {
            return Err(v.err(
                "buffers.channels",
                format!("{channels} channels: use 1 to 4"),
            ));
        }
        let buffers = OutputBuffers {
            image_size: v.bounded("buffers.image_size", b.image_size, 4096)?,
            channels,
            actor_dtype: v.dtype("buffers.actor_dtype", &b.actor_dtype)?,
            seconds: v.bounded("buffers.seconds", b.seconds, 3600)?,
            sample_rate: v.bounded("buffers.sample_rate", b.sample_rate, 192_000)?,
            audio_dtype: v.dtype("buffers.audio_dtype", &b.audio_dtype)?,
            fps: v.bounded("buffers.fps", b.fps, 240)?,
            video_dtype: v.dtype("buffers.video_dtype", &b.video_dtype)?,
            video_placement,
        };
        // The whole video is also kept in host memory for the caller.
        const HOST_VIDEO_MAX: u64 = 32 << 30;
        if buffers.video_bytes() > HOST_VIDEO_MAX {
            return Err(v.err(
                "buffers",
                format!(
                    "a slot's video would be {} (seconds × fps × image_size² × channels × dtype); \
                     keep it under 32 GiB: fewer seconds, a lower fps or a smaller image",
                    vortex_vram::Bytes(buffers.video_bytes())
                ),
            ));
        }
        if let Placement::PinnedHost { staging_frames } = video_placement
            && staging_frames > buffers.frames()
        {
            return Err(v.err(
                "buffers.staging_frames",
                format!(
                    "{staging_frames} staging frames but a slot has {}: use at most that",
                    buffers.frames()
                ),
            ));
        }

        let models = v.models(&raw.models, base)?;
        v.precision(&device, &models)?;

        let t = &raw.timing;
        let profile = CostProfile::by_name(&t.cost_profile).ok_or_else(|| {
            v.err(
                "timing.cost_profile",
                format!(
                    "unknown profile {:?}: use one of {:?}",
                    t.cost_profile,
                    CostProfile::NAMES
                ),
            )
        })?;
        let deadline = v.duration("timing.deadline", &t.deadline)?;
        let verified_frames = v.count("timing.verified_frames", t.verified_frames)?;
        if verified_frames > buffers.frames() {
            return Err(v.err(
                "timing.verified_frames",
                format!(
                    "{verified_frames} frames verified but a slot has {}: use at most that",
                    buffers.frames()
                ),
            ));
        }
        if !(t.time_scale.is_finite() && (0.0..=1000.0).contains(&t.time_scale)) {
            return Err(v.err(
                "timing.time_scale",
                format!("{}: use a number from 0 to 1000 (1.0 emulates the profile's latencies as they are)", t.time_scale),
            ));
        }
        let monitor = MonitorConfig {
            leak_check_every: v.count(
                "monitoring.leak_check_every",
                raw.monitoring.leak_check_every,
            )?,
            leak_threshold: v.bytes(
                "monitoring.leak_threshold",
                &raw.monitoring.leak_threshold,
                true,
            )?,
        };
        let runtime = v.runtime(&raw.runtime, base)?;
        let verify = v.verify(&raw.verify)?;
        let output = v.output(&raw.output, base)?;
        let server = v.server(&raw.server)?;
        Ok(Config {
            verify,
            output,
            server,
            device,
            preset: raw.device.host_preset.clone(),
            context_reserve,
            limits,
            scratch,
            buffers,
            models,
            timing: Timing {
                profile,
                deadline,
                verified_frames,
                time_scale: t.time_scale,
            },
            monitor,
            runtime,
        })
    }

    /// Where each stage's model weights come from.
    pub fn weight_sources(&self) -> StageMap<WeightSource> {
        self.models.as_ref().map(|_, m| m.weights.clone())
    }

    /// The model adapters, in load order ([`Stage::LOAD_ORDER`]).
    pub fn build_models(&self) -> Vec<Box<dyn Model>> {
        Stage::LOAD_ORDER
            .iter()
            .map(|&stage| {
                let host = !matches!(self.device, DeviceKind::Cuda { .. });
                adapter_on(stage, self.models[stage].clone(), host)
            })
            .collect()
    }

    /// The VRAM plan for `models` on a device of `capacity` bytes.
    pub fn plan(&self, models: &[Box<dyn Model>], capacity: u64) -> VramPlan {
        VramPlan::new(&PlanConfig {
            models: models.iter().map(|m| ModelBudget::of(m.as_ref())).collect(),
            buffers: self.buffers,
            scratch: self.scratch,
            context_reserve: self.context_reserve,
            limits: self.limits,
            device_capacity: capacity,
        })
    }

    /// The work in one slot: its seconds and frames, and the frames CLIP verifies.
    pub fn slot_work(&self) -> SlotWork {
        SlotWork {
            seconds: self.buffers.seconds,
            frames: self.buffers.frames(),
            verified_frames: self.timing.verified_frames,
        }
    }

    /// The time plan of one slot.
    pub fn time_plan(&self) -> TimePlan {
        TimePlan::new(&self.timing.profile, self.slot_work(), self.timing.deadline)
    }

    /// The peak rates of the card [`Config::preset`] names; `None` where the device table
    /// ([`DevicePeaks::ALL`]) has no such card: the time plan then shows the work without a
    /// floor.
    pub fn device_peaks(&self) -> Option<&'static DevicePeaks> {
        DevicePeaks::by_preset(&self.preset)
    }

    /// Every stage's floor on [`Config::device_peaks`] at the slot's shapes, float stages at
    /// `fp16` ([`Rate::Fp16Acc16`]: the card's fastest fp16 rate); `None` without a device.
    pub fn floors(&self, fp16: Rate) -> Option<SlotFloors> {
        let device = self.device_peaks()?;
        Some(SlotFloors::new(
            CountedWork::shipped(),
            self.slot_work(),
            device,
            fp16,
        ))
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    /// `[models.NAME]`: every stage's model (refusals in slot order).
    fn models(
        &self,
        raw: &BTreeMap<String, RawModel>,
        base: &Path,
    ) -> Result<StageMap<ModelSpec>, ConfigError> {
        for name in raw.keys() {
            if Stage::of_model(name).is_none() {
                return Err(self.err(
                    &format!("models.{name}"),
                    format!("unknown model: the models are {}", MODELS.join(", ")),
                ));
            }
        }
        StageMap::try_from_fn(|stage| self.model(stage, raw, base))
    }

    /// `[models.NAME]` of `stage`'s model: its budget and where its weights come from.
    fn model(
        &self,
        stage: Stage,
        raw: &BTreeMap<String, RawModel>,
        base: &Path,
    ) -> Result<ModelSpec, ConfigError> {
        let name = stage.model();
        let key = format!("models.{name}");
        let m = raw.get(name).ok_or_else(|| {
            self.err(
                &key,
                "missing: every model needs a [models.NAME] table with budget and weights"
                    .to_owned(),
            )
        })?;
        let budget = self.bytes(&format!("{key}.budget"), &m.budget, false)?;
        let weights = match m.weights.as_str() {
            "synthetic" => WeightSource::Synthetic { seed: m.seed },
            named if Network::by_name(named).is_some() => match Network::by_name(named) {
                Some(network @ Network::Kokoro82mInt8) if stage == Stage::Audio => {
                    WeightSource::Network(network)
                }
                _ => {
                    return Err(self.err(
                            &format!("{key}.weights"),
                            format!(
                                "{named:?} is the audio stage's network: use it under [models.kokoro], or write \"synthetic\" or a .safetensors path here"
                            ),
                        ));
                }
            },
            "" => {
                return Err(self.err(
                    &format!("{key}.weights"),
                    "empty: write \"synthetic\", the path of a .safetensors file, or (clip_b, clip_l, flux, liveportrait) a directory an export script wrote"
                        .to_owned(),
                ));
            }
            // A folder under CLIP, FLUX or LivePortrait is an export (anything else reads a file).
            path if matches!(
                stage,
                Stage::ClipB | Stage::ClipL | Stage::Actor | Stage::Video
            ) && base.join(path).is_dir() =>
            {
                let export = Export::open(&base.join(path))
                    .map_err(|e| self.err(&format!("{key}.weights"), e.to_string()))?;
                let wanted = match stage {
                    Stage::Actor => "FLUX",
                    Stage::Video => "LivePortrait",
                    _ => "CLIP",
                };
                if export.kind() != wanted {
                    return Err(self.err(
                        &format!("{key}.weights"),
                        format!(
                            "{path:?} is a {} export, but {name} runs {wanted}: point it at a {wanted} export",
                            export.kind()
                        ),
                    ));
                }
                WeightSource::Export(export)
            }
            path => WeightSource::File(base.join(path)),
        };
        Ok(ModelSpec { budget, weights })
    }

    /// Each export's precision against the device: an f16 export needs the CUDA provider (the
    /// CPU one lacks f16 kernels for most of their ops); on CUDA, an f32 export whose weights do
    /// not fit its budget but would in f16 is told so.
    fn precision(
        &self,
        device: &DeviceKind,
        models: &StageMap<ModelSpec>,
    ) -> Result<(), ConfigError> {
        let on_cuda = matches!(device, DeviceKind::Cuda { .. });
        for stage in Stage::LOAD_ORDER {
            let spec = &models[stage];
            let WeightSource::Export(export) = &spec.weights else {
                continue;
            };
            let key = format!("models.{}", stage.model());
            match (export.dtype(), on_cuda) {
                (ExportDtype::F16, false) => {
                    return Err(self.err(
                        &format!("{key}.weights"),
                        format!(
                            "the {} export in {} is f16, for ONNX Runtime's CUDA provider: the CPU provider lacks f16 kernels for most of its ops and would cast its weights to f32 on every run (ONNX Runtime's inserted Casts; slower than the f32 export, and the copies in scratch): set device.backend = \"cuda\", or export again with --dtype f32",
                            export.kind(),
                            export.dir().display()
                        ),
                    ));
                }
                (ExportDtype::F32, true) => {
                    let f32_bytes = resident_bytes(&export.resident_layout());
                    let f16_bytes = export.f16_resident_bytes();
                    if spec.budget < f32_bytes && f16_bytes <= spec.budget {
                        return Err(self.err(
                            &format!("{key}.budget"),
                            format!(
                                "{} bytes: the {} export in {} is f32, whose weights alone take {f32_bytes} bytes; in f16 they take {f16_bytes}, which fits: export again with --dtype f16 (the CUDA provider runs it), or raise the budget to at least {f32_bytes}",
                                spec.budget,
                                export.kind(),
                                export.dir().display()
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `[runtime]`: where ONNX Runtime comes from and how many threads a session uses.
    fn runtime(&self, raw: &RawRuntime, base: &Path) -> Result<RuntimeSettings, ConfigError> {
        Ok(RuntimeSettings {
            onnxruntime: match raw.onnxruntime.as_deref() {
                None | Some("auto") => None,
                Some("") => {
                    return Err(self.err(
                        "runtime.onnxruntime",
                        "empty: write the path of libonnxruntime.so.1.31.x, or \"auto\"".to_owned(),
                    ));
                }
                Some(path) => Some(base.join(path)),
            },
            threads: match raw.threads {
                None => 0,
                Some(n @ 0..=256) => n as usize,
                Some(n) => {
                    return Err(self.err(
                        "runtime.threads",
                        format!("{n} threads: use 0 (every core) up to 256"),
                    ));
                }
            },
            cuda_graphs: raw.cuda_graphs,
        })
    }

    /// `[output]`: which ffmpeg encodes (a name stays a name, looked up on `PATH` when used;
    /// a path is relative to the config file's folder).
    fn output(&self, raw: &RawOutput, base: &Path) -> Result<Output, ConfigError> {
        Ok(Output {
            ffmpeg: match raw.ffmpeg.as_deref() {
                None | Some("auto") => None,
                Some("") => {
                    return Err(self.err(
                        "output.ffmpeg",
                        "empty: write \"auto\" (the pinned imageio-ffmpeg), \"ffmpeg\" (the one on PATH) or a path".to_owned(),
                    ));
                }
                Some(name) if !name.contains('/') => Some(PathBuf::from(name)),
                Some(path) => Some(base.join(path)),
            },
        })
    }

    /// `[verify]`: two weights that are not both zero, and a threshold a cosine can reach.
    fn verify(&self, raw: &RawVerify) -> Result<Verify, ConfigError> {
        for (key, w) in [
            ("verify.clip_b_weight", raw.clip_b_weight),
            ("verify.clip_l_weight", raw.clip_l_weight),
        ] {
            if !(w.is_finite() && (0.0..=1000.0).contains(&w)) {
                return Err(self.err(key, format!("{w}: use a weight from 0 to 1000")));
            }
        }
        if raw.clip_b_weight + raw.clip_l_weight == 0.0 {
            return Err(self.err(
                "verify",
                "both weights are 0: give at least one model a weight above 0".to_owned(),
            ));
        }
        if !(raw.threshold.is_finite() && (-1.0..=1.0).contains(&raw.threshold)) {
            return Err(self.err(
                "verify.threshold",
                format!(
                    "{}: a cosine similarity lies from -1 to 1; use a threshold in that range",
                    raw.threshold
                ),
            ));
        }
        Ok(Verify {
            clip_b_weight: raw.clip_b_weight,
            clip_l_weight: raw.clip_l_weight,
            threshold: raw.threshold,
        })
    }
    fn err(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.to_owned(),
            message,
        }
    }

    fn bytes(&self, key: &str, text: &str, zero_ok: bool) -> Result<u64, ConfigError> {
        let bytes = text
            .parse::<ByteSize>()
            .map_err(|e| self.err(key, e.to_string()))?
            .bytes();
        if bytes == 0 && !zero_ok {
            return Err(self.err(
                key,
                format!("{text:?} is zero: give a size above zero, such as \"256MiB\""),
            ));
        }
        Ok(bytes)
    }

    /// `[server]`: the probe listener, the queue and the folders kept.
    fn server(&self, raw: &RawServer) -> Result<Server, ConfigError> {
        let probe_addr = match raw.probe_addr.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(addr) if addr.parse::<std::net::SocketAddr>().is_ok() => Some(addr.to_owned()),
            Some(addr) => {
                return Err(self.err(
                    "server.probe_addr",
                    format!(
                        "{addr:?} is not an address: write \"127.0.0.1:9401\" (an IP and a port)"
                    ),
                ));
            }
        };
        let queue = u64::try_from(raw.queue)
            .ok()
            .filter(|&q| q <= 1024)
            .ok_or_else(|| {
                self.err(
                    "server.queue",
                    format!("{}: use 0 (no waiting) to 1024", raw.queue),
                )
            })?;
        let keep = self.bounded("server.keep", raw.keep, 1_000_000)?;
        Ok(Server {
            probe_addr,
            queue: queue as usize,
            keep: keep as usize,
        })
    }

    fn count(&self, key: &str, value: i64) -> Result<u64, ConfigError> {
        u64::try_from(value)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| self.err(key, format!("{value}: use a whole number above zero")))
    }

    fn bounded(&self, key: &str, value: i64, max: u64) -> Result<u64, ConfigError> {
        let v = self.count(key, value)?;
        if v > max {
            return Err(self.err(
                key,
                format!("{v} is more than this engine supports: use at most {max}"),
            ));
        }
        Ok(v)
    }

    fn dtype(&self, key: &str, text: &str) -> Result<Dtype, ConfigError> {
        match text {
            "u8" => Ok(Dtype::U8),
            "f16" => Ok(Dtype::F16),
            "f32" => Ok(Dtype::F32),
            other => Err(self.err(
                key,
                format!("unknown dtype {other:?}: use \"u8\", \"f16\" or \"f32\""),
            )),
        }
    }

    fn duration(&self, key: &str, text: &str) -> Result<Duration, ConfigError> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let scale = match unit.trim() {
            "ms" => 1e-3,
            "s" => 1.0,
            "min" => 60.0,
            _ => {
                return Err(self.err(
                    key,
                    format!(
                        "{text:?}: write a duration with its unit, such as \"15s\" or \"1500ms\""
                    ),
                ));
            }
        };
        let parsed = number
            .parse::<f64>()
            .ok()
            .filter(|&n| n > 0.0)
            .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
            .filter(|&d| d <= Duration::from_secs(86_400));
        parsed.ok_or_else(|| {
            self.err(
                key,
                format!("{text:?}: use a duration above zero and at most a day, such as \"15s\""),
            )
        })
    }
}
