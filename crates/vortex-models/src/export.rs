//! Networks exported by Vortex's own scripts: a directory holding the graphs (ONNX, weights
//! left out), `weights.safetensors` (every tensor under the official checkpoint's name) and a
//! manifest saying what they are. An operator points `[models.NAME] weights` at the
//! directory; the weights load into the model's static region like any checkpoint and the
//! graphs read them there.
//!
//! - CLIP: `clip.json`, written by `crates/vortex-models/data/clip/export_clip.py`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::clip::ClipConfig;
use crate::layout::{Layout, WeightDtype};

/// The CLIP manifest's file name.
pub const CLIP_MANIFEST: &str = "clip.json";
/// The script that writes a CLIP export.
pub const CLIP_SCRIPT: &str = "crates/vortex-models/data/clip/export_clip.py";
/// How a CLIP export's layout names the checkpoint in errors.
const CLIP_CHECKPOINT: &str = "CLIP as export_clip.py writes it (Hugging Face CLIPModel names)";

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
    network: std::sync::Arc<ExportedNetwork>,
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
}

/// `clip.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipManifest {
    /// `"clip"`.
    pub kind: String,
    /// `1`.
    pub format: u32,
    /// The weights' dtype (`"f32"`: the CPU provider's).
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
        if self.dtype != "f32" {
            return Err(format!(
                "dtype {:?}: the towers run on ONNX Runtime's CPU provider in f32; export with --dtype f32",
                self.dtype
            ));
        }
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
        let err = |problem: String| ExportError {
            dir: dir.to_owned(),
            problem,
            script: CLIP_SCRIPT,
        };
        let path = dir.join(CLIP_MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            err(format!(
                "cannot read {CLIP_MANIFEST} ({e}): the directory is not an export Vortex knows"
            ))
        })?;
        let manifest: ClipManifest = serde_json::from_str(&text)
            .map_err(|e| err(format!("{CLIP_MANIFEST} is not a CLIP manifest: {e}")))?;
        manifest
            .check()
            .map_err(|p| err(format!("{CLIP_MANIFEST}: {p}")))?;
        for name in [
            &manifest.graphs.vision,
            &manifest.graphs.text,
            &manifest.weights,
        ] {
            let plain = !name.is_empty()
                && Path::new(name)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                && Path::new(name).components().count() == 1;
            if !plain {
                return Err(err(format!(
                    "{CLIP_MANIFEST} names {name:?}: files must be plain names inside the directory"
                )));
            }
            if !dir.join(name).is_file() {
                return Err(err(format!("{name} is missing")));
            }
        }
        Ok(Export {
            dir: dir.to_owned(),
            network: std::sync::Arc::new(ExportedNetwork::Clip(manifest)),
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
        }
    }

    /// A file of the export.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The layout of its weights file: every tensor the graphs read.
    pub fn layout(&self) -> Layout {
        match &*self.network {
            ExportedNetwork::Clip(m) => m.config().layout(WeightDtype::F32),
        }
    }

    /// What it is, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match &*self.network {
            ExportedNetwork::Clip(_) => "CLIP",
        }
    }
}
