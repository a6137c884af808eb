//! Networks exported by Vortex's own scripts: a directory holding the graphs (ONNX, weights
//! left out), `weights.safetensors` (every tensor under the official checkpoint's name) and a
//! manifest saying what they are. An operator points `[models.NAME] weights` at the
//! directory; the weights load into the model's static region like any checkpoint and the
//! graphs read them there.
//!
//! - CLIP: `clip.json`, written by `crates/vortex-models/data/clip/export_clip.py`; its layout
//!   comes from the manifest's hyperparameters.
//! - FLUX.1: `flux.json`, written by `crates/vortex-models/data/flux/export_flux.py`; its
//!   layout is the weights file's header (diffusers' and transformers' names), less the
//!   tensors no graph reads (the VAE's encoder).
//!
//! The graphs of FLUX and LivePortrait exports run in f32 on ONNX Runtime's CPU provider; a
//! weights file may hold their float tensors in bf16 or f16 (the official checkpoints are
//! bf16, half the file): they are converted on load, by `half`, into the f32 the graphs read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::clip::ClipConfig;
use crate::layout::{Layout, WeightDtype};

/// The CLIP manifest's file name.
pub const CLIP_MANIFEST: &str = "clip.json";
/// The script that writes a CLIP export.
pub const CLIP_SCRIPT: &str = "crates/vortex-models/data/clip/export_clip.py";
/// The FLUX manifest's file name.
pub const FLUX_MANIFEST: &str = "flux.json";
/// The script that writes a FLUX export.
pub const FLUX_SCRIPT: &str = "crates/vortex-models/data/flux/export_flux.py";
/// The LivePortrait manifest's file name.
pub const LIVEPORTRAIT_MANIFEST: &str = "liveportrait.json";
/// The script that writes a LivePortrait export.
pub const LIVEPORTRAIT_SCRIPT: &str =
    "crates/vortex-models/data/liveportrait/export_liveportrait.py";
/// Every script, for a directory that is no export.
const SCRIPTS: &str = "crates/vortex-models/data/clip/export_clip.py (CLIP), crates/vortex-models/data/flux/export_flux.py (FLUX) or crates/vortex-models/data/liveportrait/export_liveportrait.py (LivePortrait)";
/// How a LivePortrait export's layout names the checkpoint in errors.
const LIVEPORTRAIT_CHECKPOINT: &str =
    "LivePortrait as export_liveportrait.py writes it (official checkpoint names)";
/// How a CLIP export's layout names the checkpoint in errors.
const CLIP_CHECKPOINT: &str = "CLIP as export_clip.py writes it (Hugging Face CLIPModel names)";
/// How a FLUX export's layout names the checkpoint in errors.
const FLUX_CHECKPOINT: &str = "FLUX.1 as export_flux.py writes it (diffusers/transformers names)";

/// The precision an export's weights and graphs are in (inputs and outputs are f32 either
/// way). ONNX Runtime's CPU provider runs f32 exports; f16 exports are for the CUDA provider
/// (half the weights' bytes): the CPU provider lacks f16 kernels for most of their ops and
/// runs them by casting to f32 around each such node (weights included, every run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportDtype {
    /// `--dtype f32`.
    F32,
    /// `--dtype f16`.
    F16,
}

impl ExportDtype {
    /// From a manifest's `dtype`.
    fn parse(dtype: &str) -> Result<ExportDtype, String> {
        match dtype {
            "f32" => Ok(ExportDtype::F32),
            "f16" => Ok(ExportDtype::F16),
            other => Err(format!(
                "dtype {other:?}: Vortex reads f32 exports (ONNX Runtime's CPU or CUDA provider) and f16 exports (the CUDA provider); export with --dtype f32 or --dtype f16"
            )),
        }
    }

    /// As the export scripts spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportDtype::F32 => "f32",
            ExportDtype::F16 => "f16",
        }
    }

    /// The type a tensor the weights file holds as `stored` is loaded as: an f32 export's
    /// graphs read f32, so 16-bit floats (the official checkpoints are bf16) are converted on
    /// load ([`crate::weights::convert`]); an f16 export's graphs read each weight as the
    /// file holds it (the export script wrote it as the converted graph reads it).
    fn loaded(self, stored: WeightDtype) -> WeightDtype {
        match (self, stored) {
            (ExportDtype::F32, WeightDtype::BF16 | WeightDtype::F16) => WeightDtype::F32,
            (_, other) => other,
        }
    }
}

impl std::fmt::Display for ExportDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn f32_default() -> String {
    "f32".to_owned()
}

/// An export directory that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}; write the directory with {script}", dir.display())]
pub struct ExportError {
    /// The directory.
    pub dir: PathBuf,
    /// What is wrong.
    pub problem: String,
    /// The script that writes it.
    pub script: &'static str,
}

/// A checked export directory.
#[derive(Debug, Clone)]
pub struct Export {
    dir: PathBuf,
    network: Arc<ExportedNetwork>,
    /// Every tensor of the weights file.
    layout: Arc<Layout>,
    /// The tensors the graphs read (what is loaded).
    resident: Arc<Layout>,
}

/// Two exports are the same when they are the same directory.
impl PartialEq for Export {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}

impl Eq for Export {}

/// What an export holds.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportedNetwork {
    /// CLIP's two towers.
    Clip(ClipManifest),
    /// FLUX.1's text encoders, transformer and VAE decoder.
    Flux(Box<FluxManifest>),
    /// LivePortrait's networks.
    LivePortrait(LivePortraitManifest),
}

impl ExportedNetwork {
    /// The precision its manifest declares (checked when the export was opened).
    pub fn dtype(&self) -> ExportDtype {
        let dtype = match self {
            ExportedNetwork::Clip(m) => &m.dtype,
            ExportedNetwork::Flux(m) => &m.dtype,
            ExportedNetwork::LivePortrait(m) => &m.dtype,
        };
        ExportDtype::parse(dtype).unwrap_or(ExportDtype::F32)
    }
}

/// `liveportrait.json` (the parts Vortex reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LivePortraitManifest {
    /// `"liveportrait"`.
    pub kind: String,
    /// `"vortex-liveportrait-1"`.
    pub format: String,
    /// `"f32"` (also when absent: exports before `--dtype`) or `"f16"`.
    #[serde(default = "f32_default")]
    pub dtype: String,
    /// Hyperparameters.
    pub config: LivePortraitConfigDoc,
    /// The weights file.
    pub weights: LivePortraitWeights,
    /// The six graphs, by name.
    pub graphs: std::collections::BTreeMap<String, LivePortraitGraph>,
}

/// The hyperparameters Vortex reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct LivePortraitConfigDoc {
    /// Side of the source image the extractors read (frames are twice it).
    pub image_size: u64,
    /// Implicit keypoints.
    pub num_kp: u64,
    /// Head-pose bins.
    pub num_bins: u64,
}

/// The weights file of a LivePortrait export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LivePortraitWeights {
    /// Its name.
    pub file: String,
    /// Tensors no graph reads (batch-norm step counters).
    #[serde(default)]
    pub unused_by_graphs: Vec<String>,
}

/// One graph of a LivePortrait export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LivePortraitGraph {
    /// The graph file.
    pub file: String,
    /// Its inputs (fixed shapes: the export's batch of 1).
    pub inputs: Vec<GraphInput>,
    /// The weights it reads, by name.
    pub external_initializers: Vec<String>,
}

/// A graph input: its name and shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GraphInput {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
}

impl LivePortraitManifest {
    /// The graphs the stage runs.
    pub const GRAPHS: [&'static str; 6] = [
        "appearance_feature_extractor",
        "motion_extractor",
        "warping_spade",
        "stitching",
        "retarget_lip",
        "retarget_eye",
    ];

    fn check(&self) -> Result<(), String> {
        if self.kind != "liveportrait" || self.format != "vortex-liveportrait-1" {
            return Err(format!(
                "kind {:?} format {:?} is not a LivePortrait export Vortex reads",
                self.kind, self.format
            ));
        }
        ExportDtype::parse(&self.dtype)?;
        let c = &self.config;
        if c.image_size == 0
            || c.image_size > 2048
            || c.num_kp == 0
            || c.num_kp > 256
            || c.num_bins < 2
        {
            return Err(format!(
                "config: image_size {}, num_kp {}, num_bins {} are not a LivePortrait's",
                c.image_size, c.num_kp, c.num_bins
            ));
        }
        if let Some(missing) = Self::GRAPHS.iter().find(|g| !self.graphs.contains_key(**g)) {
            return Err(format!("graphs has no {missing}"));
        }
        if self.feature_shape().is_none() {
            return Err("graphs.warping_spade has no 5-D input feature_3d".to_owned());
        }
        Ok(())
    }

    /// The appearance features' shape `[1, C, D, S/4, S/4]`: the warping graph's
    /// `feature_3d` input.
    pub fn feature_shape(&self) -> Option<[usize; 5]> {
        let input = self
            .graphs
            .get("warping_spade")?
            .inputs
            .iter()
            .find(|i| i.name == "feature_3d")?;
        <[usize; 5]>::try_from(input.shape.as_slice()).ok()
    }

    /// A graph's entry (present: checked when opened).
    pub fn graph(&self, name: &str) -> &LivePortraitGraph {
        &self.graphs[name]
    }
}

/// `flux.json` (the parts Vortex reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FluxManifest {
    /// `"flux"`.
    pub kind: String,
    /// `1`.
    pub format: u32,
    /// The weights' dtype (`"f32"` or `"f16"`).
    pub dtype: String,
    /// Where the weights came from.
    pub source: String,
    /// The weights file.
    pub weights: String,
    /// The four graphs.
    pub graphs: FluxGraphs,
    /// How prompts become ids.
    pub tokenizers: FluxTokenizers,
    /// The sampling schedule.
    pub scheduler: FluxScheduler,
    /// Latent shapes and the VAE's scaling.
    pub latents: FluxLatents,
    /// Tensors of the weights file no graph reads (not loaded).
    #[serde(default)]
    pub unread_parameters: Option<FluxUnread>,
    /// How graphs were quantized (`quantize_nbits.py --out`); `None`: every weight is float.
    #[serde(default)]
    pub quantization: Option<FluxQuantization>,
}

/// The 4-bit graphs of a quantized FLUX export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FluxQuantization {
    /// `"com.microsoft.MatMulNBits"`.
    pub op: String,
    /// Bits per weight (4).
    pub bits: u32,
    /// Weights per block along K.
    pub block_size: u64,
    /// The graphs whose Linear weights are 4-bit (`transformer`, `t5`).
    pub graphs: Vec<String>,
}

/// The four graphs of a FLUX export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FluxGraphs {
    /// CLIP-L's text tower: `input_ids [1, 77]` → `pooler_output [1, 768]`.
    pub clip_text: FluxGraph,
    /// T5's encoder: `input_ids [1, L]` → `last_hidden_state [1, L, 4096]`.
    pub t5: FluxGraph,
    /// The transformer, one step.
    pub transformer: FluxGraph,
    /// The VAE's decoder: unscaled latents → image in [-1, 1].
    pub vae_decoder: FluxGraph,
}

/// One graph of a FLUX export.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FluxGraph {
    /// The graph file.
    pub file: String,
    /// The component whose tensors it reads (`transformer`: names `transformer.*`).
    pub component: String,
}

/// How a FLUX export's prompts become ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FluxTokenizers {
    /// T5's.
    pub t5: T5Ids,
}

/// T5's ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct T5Ids {
    /// `"tokenizer.json"`: the checkpoint's own tokenizer (`tokenizer_2/tokenizer.json`, T5's
    /// SentencePiece vocabulary) copied into the export as `file`; or `"byt5"`: UTF-8 bytes + 3
    /// (the tiny fixture's test vocabulary).
    pub kind: String,
    /// The tokenizer file, for kind `"tokenizer.json"`.
    #[serde(default)]
    pub file: Option<String>,
    /// Ids a prompt is padded or cut to.
    pub max_length: usize,
    /// Padding id.
    pub pad: i64,
    /// `</s>`.
    pub eos: i64,
}

/// The sampling schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FluxScheduler {
    /// σ of each step and the final 0 (schnell: 1, 0.75, 0.5, 0.25, 0).
    pub sigmas: Vec<f32>,
}

/// Latent shapes and the VAE's scaling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FluxLatents {
    /// Pixels per latent (8).
    pub vae_scale_factor: u64,
    /// Latent channels (16).
    pub latent_channels: u64,
    /// Latents are divided by this before decoding…
    pub scaling_factor: f32,
    /// …and this is added.
    pub shift_factor: f32,
}

/// Tensors no graph reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FluxUnread {
    /// Their name prefixes.
    pub prefixes: Vec<String>,
}

impl FluxManifest {
    fn check(&self) -> Result<(), String> {
        if self.kind != "flux" || self.format != 1 {
            return Err(format!(
                "kind {:?} format {} is not a FLUX export Vortex reads (kind \"flux\", format 1)",
                self.kind, self.format
            ));
        }
        ExportDtype::parse(&self.dtype)?;
        // The plan places T5 by its tensors' prefix (`flux::parts`); the graphs must read the
        // components under the names the plan knows.
        let g = &self.graphs;
        for (graph, found, wanted) in [
            ("clip_text", &g.clip_text.component, "text_encoder"),
            ("t5", &g.t5.component, "text_encoder_2"),
            ("transformer", &g.transformer.component, "transformer"),
            ("vae_decoder", &g.vae_decoder.component, "vae"),
        ] {
            if found != wanted {
                return Err(format!(
                    "graphs.{graph}.component {found:?}: export_flux.py writes {wanted:?} (the diffusers folder's name); export again"
                ));
            }
        }
        let t5 = &self.tokenizers.t5;
        match (t5.kind.as_str(), &t5.file) {
            ("byt5", None) | ("tokenizer.json", Some(_)) => {}
            ("byt5", Some(file)) => {
                return Err(format!(
                    "tokenizers.t5.kind \"byt5\" reads no file, but tokenizers.t5.file is {file:?}: drop the file, or set kind = \"tokenizer.json\" to read it"
                ));
            }
            ("tokenizer.json", None) => {
                return Err(
                    "tokenizers.t5.kind \"tokenizer.json\" needs tokenizers.t5.file".to_owned(),
                );
            }
            (kind, _) => {
                return Err(format!(
                    "tokenizers.t5.kind {kind:?}: use \"tokenizer.json\" (with file) or \"byt5\""
                ));
            }
        }
        if !(2..=512).contains(&t5.max_length) {
            return Err(format!(
                "tokenizers.t5.max_length {}: use 2 to 512",
                t5.max_length
            ));
        }
        if let Some(q) = &self.quantization {
            let known = ["clip_text", "t5", "transformer", "vae_decoder"];
            if q.op != "com.microsoft.MatMulNBits"
                || q.bits != 4
                || q.block_size < 16
                || !q.block_size.is_power_of_two()
            {
                return Err(format!(
                    "quantization: {} with {} bits in blocks of {}: Vortex runs com.microsoft.MatMulNBits with 4 bits in blocks of a power of two from 16 (quantize_nbits.py writes that)",
                    q.op, q.bits, q.block_size
                ));
            }
            if let Some(g) = q.graphs.iter().find(|g| !known.contains(&g.as_str())) {
                return Err(format!(
                    "quantization.graphs names {g:?}: a FLUX export's graphs are {known:?}"
                ));
            }
        }
        let sigmas = &self.scheduler.sigmas;
        if sigmas.len() < 2
            || sigmas.len() > 101
            || sigmas.iter().any(|s| !s.is_finite())
            || sigmas.windows(2).any(|w| w[1] >= w[0])
        {
            return Err(format!(
                "scheduler.sigmas {sigmas:?}: give 2 to 101 finite values, falling"
            ));
        }
        let l = &self.latents;
        if l.vae_scale_factor != 8 || l.latent_channels != 16 {
            return Err(format!(
                "latents: vae_scale_factor {} and latent_channels {}: FLUX's packing needs 8 and 16",
                l.vae_scale_factor, l.latent_channels
            ));
        }
        if !(l.scaling_factor.is_finite() && l.scaling_factor > 0.0 && l.shift_factor.is_finite()) {
            return Err(
                "latents.scaling_factor must be positive and shift_factor finite".to_owned(),
            );
        }
        Ok(())
    }

    fn files(&self) -> Vec<&str> {
        let mut files = vec![
            self.graphs.clip_text.file.as_str(),
            &self.graphs.t5.file,
            &self.graphs.transformer.file,
            &self.graphs.vae_decoder.file,
            &self.weights,
        ];
        files.extend(self.tokenizers.t5.file.as_deref());
        files
    }
}

/// `clip.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipManifest {
    /// `"clip"`.
    pub kind: String,
    /// `1`.
    pub format: u32,
    /// The weights' dtype (`"f32"` or `"f16"`).
    pub dtype: String,
    /// The text tower.
    pub text: ClipTextTower,
    /// The image tower.
    pub vision: ClipVisionTower,
    /// Width of the joint embedding.
    pub projection_dim: u64,
    /// Per-channel mean the pixels are normalized with.
    pub image_mean: [f32; 3],
    /// Per-channel deviation.
    pub image_std: [f32; 3],
    /// Where the weights came from (a checkpoint, or `seeded:N` for test fixtures).
    pub source: String,
    /// Graph files.
    pub graphs: ClipGraphs,
    /// The weights file.
    pub weights: String,
}

/// The text tower's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ClipTextTower {
    /// Width.
    pub width: u64,
    /// Blocks.
    pub layers: u64,
    /// Attention heads.
    pub heads: u64,
    /// Token ids (49,408: CLIP's BPE).
    pub vocab: u64,
    /// Tokens read (77).
    pub context: u64,
}

/// The image tower's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ClipVisionTower {
    /// Width.
    pub width: u64,
    /// Blocks.
    pub layers: u64,
    /// Attention heads.
    pub heads: u64,
    /// Patch side in pixels.
    pub patch: u64,
    /// Input side in pixels.
    pub image_size: u64,
}

/// A CLIP export's graph files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClipGraphs {
    /// `pixel_values [N, 3, S, S]` → `image_embeds [N, projection_dim]`.
    pub vision: String,
    /// `input_ids [N, 77]` → `text_embeds [N, projection_dim]`.
    pub text: String,
}

impl ClipManifest {
    /// The hyperparameters as a [`ClipConfig`].
    pub fn config(&self) -> ClipConfig {
        ClipConfig {
            checkpoint: CLIP_CHECKPOINT,
            text_width: self.text.width,
            text_layers: self.text.layers,
            vision_width: self.vision.width,
            vision_layers: self.vision.layers,
            patch: self.vision.patch,
            image_size: self.vision.image_size,
            projection_dim: self.projection_dim,
            vocab: self.text.vocab,
            context: self.text.context,
        }
    }

    fn check(&self) -> Result<(), String> {
        let (t, v) = (&self.text, &self.vision);
        if self.kind != "clip" || self.format != 1 {
            return Err(format!(
                "kind {:?} format {} is not a CLIP export Vortex reads (kind \"clip\", format 1)",
                self.kind, self.format
            ));
        }
        ExportDtype::parse(&self.dtype)?;
        let positive = [
            ("text.width", t.width),
            ("text.layers", t.layers),
            ("text.heads", t.heads),
            ("vision.width", v.width),
            ("vision.layers", v.layers),
            ("vision.heads", v.heads),
            ("vision.patch", v.patch),
            ("projection_dim", self.projection_dim),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, n)| *n == 0) {
            return Err(format!("{key} is 0"));
        }
        if t.width % t.heads != 0 || v.width % v.heads != 0 {
            return Err("a tower's width is not a multiple of its heads".to_owned());
        }
        if v.image_size < v.patch || v.image_size % v.patch != 0 || v.image_size > 4096 {
            return Err(format!(
                "vision.image_size {} is not a multiple of vision.patch {} (at most 4096)",
                v.image_size, v.patch
            ));
        }
        if t.vocab != 49_408 || t.context != crate::clip_text::CONTEXT as u64 {
            return Err(format!(
                "text.vocab {} and text.context {}: the prompt is encoded with CLIP's BPE, which needs 49408 and 77",
                t.vocab, t.context
            ));
        }
        if self.image_std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.image_mean.iter().any(|m| !m.is_finite())
        {
            return Err("image_std must be positive and image_mean finite".to_owned());
        }
        Ok(())
    }
}

impl Export {
    /// Reads and checks the export in `dir`: the manifest parses and is consistent, and every
    /// file it names is a plain file in `dir`.
    pub fn open(dir: &Path) -> Result<Export, ExportError> {
        let err = |problem: String, script: &'static str| ExportError {
            dir: dir.to_owned(),
            problem,
            script,
        };
        let (name, script) = if dir.join(FLUX_MANIFEST).is_file() {
            (FLUX_MANIFEST, FLUX_SCRIPT)
        } else if dir.join(LIVEPORTRAIT_MANIFEST).is_file() {
            (LIVEPORTRAIT_MANIFEST, LIVEPORTRAIT_SCRIPT)
        } else {
            (CLIP_MANIFEST, CLIP_SCRIPT)
        };
        let text = std::fs::read_to_string(dir.join(name)).map_err(|e| {
            err(
                format!(
                    "cannot read {CLIP_MANIFEST} or {FLUX_MANIFEST} ({e}): the directory is not an export Vortex knows"
                ),
                SCRIPTS,
            )
        })?;
        let network = if name == LIVEPORTRAIT_MANIFEST {
            let manifest: LivePortraitManifest = serde_json::from_str(&text).map_err(|e| {
                err(
                    format!("{name} is not a LivePortrait manifest: {e}"),
                    script,
                )
            })?;
            manifest
                .check()
                .map_err(|p| err(format!("{name}: {p}"), script))?;
            ExportedNetwork::LivePortrait(manifest)
        } else if name == FLUX_MANIFEST {
            let manifest: FluxManifest = serde_json::from_str(&text)
                .map_err(|e| err(format!("{name} is not a FLUX manifest: {e}"), script))?;
            manifest
                .check()
                .map_err(|p| err(format!("{name}: {p}"), script))?;
            ExportedNetwork::Flux(Box::new(manifest))
        } else {
            let manifest: ClipManifest = serde_json::from_str(&text)
                .map_err(|e| err(format!("{name} is not a CLIP manifest: {e}"), script))?;
            manifest
                .check()
                .map_err(|p| err(format!("{name}: {p}"), script))?;
            ExportedNetwork::Clip(manifest)
        };
        let files: Vec<&str> = match &network {
            ExportedNetwork::Clip(m) => vec![&m.graphs.vision, &m.graphs.text, &m.weights],
            ExportedNetwork::Flux(m) => m.files(),
            ExportedNetwork::LivePortrait(m) => m
                .graphs
                .values()
                .map(|g| g.file.as_str())
                .chain([m.weights.file.as_str()])
                .collect(),
        };
        for file in files {
            let plain = !file.is_empty()
                && Path::new(file)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                && Path::new(file).components().count() == 1;
            if !plain {
                return Err(err(
                    format!(
                        "{name} names {file:?}: files must be plain names inside the directory"
                    ),
                    script,
                ));
            }
            if !dir.join(file).is_file() {
                return Err(err(format!("{file} is missing"), script));
            }
        }
        let dtype = network.dtype();
        let (layout, resident) = match &network {
            ExportedNetwork::Clip(m) => {
                let layout = m.config().layout(match dtype {
                    ExportDtype::F32 => WeightDtype::F32,
                    ExportDtype::F16 => WeightDtype::F16,
                });
                (layout.clone(), layout)
            }
            ExportedNetwork::Flux(m) => {
                let layout = crate::weights::file_layout(&dir.join(&m.weights), FLUX_CHECKPOINT)
                    .map_err(|e| err(e.to_string(), script))?;
                let unread = m
                    .unread_parameters
                    .as_ref()
                    .map_or(&[][..], |u| u.prefixes.as_slice());
                let mut resident = Layout::new(FLUX_CHECKPOINT);
                for t in layout
                    .tensors
                    .iter()
                    .filter(|t| !unread.iter().any(|p| t.name.starts_with(p.as_str())))
                {
                    resident.push(t.name.clone(), dtype.loaded(t.dtype), &t.shape);
                }
                (layout, resident)
            }
            ExportedNetwork::LivePortrait(m) => {
                let layout = crate::weights::file_layout(
                    &dir.join(&m.weights.file),
                    LIVEPORTRAIT_CHECKPOINT,
                )
                .map_err(|e| err(e.to_string(), script))?;
                let mut resident = Layout::new(LIVEPORTRAIT_CHECKPOINT);
                for t in layout
                    .tensors
                    .iter()
                    .filter(|t| !m.weights.unused_by_graphs.contains(&t.name))
                {
                    resident.push(t.name.clone(), dtype.loaded(t.dtype), &t.shape);
                }
                (layout, resident)
            }
        };
        Ok(Export {
            dir: dir.to_owned(),
            network: Arc::new(network),
            layout: Arc::new(layout),
            resident: Arc::new(resident),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What it holds.
    pub fn network(&self) -> &ExportedNetwork {
        &self.network
    }

    /// The weights file.
    pub fn weights(&self) -> PathBuf {
        match &*self.network {
            ExportedNetwork::Clip(m) => self.dir.join(&m.weights),
            ExportedNetwork::Flux(m) => self.dir.join(&m.weights),
            ExportedNetwork::LivePortrait(m) => self.dir.join(&m.weights.file),
        }
    }

    /// A file of the export.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The layout of its weights file: every tensor in it.
    pub fn layout(&self) -> Layout {
        (*self.layout).clone()
    }

    /// The tensors the graphs read: what is loaded.
    pub fn resident_layout(&self) -> Layout {
        (*self.resident).clone()
    }

    /// The precision of its weights and graphs.
    pub fn dtype(&self) -> ExportDtype {
        self.network.dtype()
    }

    /// The bytes its resident weights would take in an f16 export of the same network (every
    /// floating tensor in 16 bits): what `--dtype f16` would save.
    pub fn f16_resident_bytes(&self) -> u64 {
        let mut f16 = Layout::new("f16");
        for t in &self.resident.tensors {
            let dtype = match t.dtype {
                WeightDtype::F32 | WeightDtype::BF16 => WeightDtype::F16,
                other => other,
            };
            f16.push(t.name.clone(), dtype, &t.shape);
        }
        crate::weights::resident_bytes(&f16)
    }

    /// What it is, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match &*self.network {
            ExportedNetwork::Clip(_) => "CLIP",
            ExportedNetwork::Flux(_) => "FLUX",
            ExportedNetwork::LivePortrait(_) => "LivePortrait",
        }
    }
}
