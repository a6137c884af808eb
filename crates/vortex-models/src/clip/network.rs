//! A verification stage on CLIP's exported towers: the verified frames through the image
//! tower in one batch, the recipe's prompt through the text tower, both on ONNX Runtime with
//! the weights read in place from the model's static region and the activations from the
//! arena's scratch.
//!
//! The slot's embedding is the mean of the frames' L2-normalized image embeddings,
//! normalized again; the similarity is its cosine with the prompt's text embedding.

use vortex_registry::Dtype;
use vortex_vram::{Arena, OwnerId};

use super::image::ImagePrep;
use crate::clip_text::{self, ClipTokenizer};
use crate::compute::{
    ComputeError, EmbeddingStage, FrameReader, FrameSelection, Implementation, Recipe,
    StageContext, StageImpl, check_dtype, check_rgb,
};
use crate::export::{Export, ExportedNetwork};
use crate::weights::ResidentWeights;
use vortex_runtime::{Graph, Input, OutputInto, Runtime, SessionConfig, Terminator};

/// The verification stage on one CLIP export.
#[derive(Debug)]
pub struct ClipNetwork {
    model: &'static str,
    detail: String,
    vision: Graph,
    text: Graph,
    tokenizer: ClipTokenizer,
    prep: ImagePrep,
    size: usize,
    dim: usize,
    pixels: Vec<f32>,
    embeds: Vec<f32>,
    /// The last prompt and its normalized text embedding (a slot's prompt is embedded once).
    prompt: Option<(String, Vec<f32>)>,
}

/// The tensors each tower reads, by name prefix.
const VISION: [&str; 2] = ["vision_model.", "visual_projection."];
const TEXT: [&str; 2] = ["text_model.", "text_projection."];

impl ClipNetwork {
    /// Sessions over `weights` (the export's tensors, resident in `arena`, whose memory must be
    /// host-addressable for the CPU provider, device memory for the CUDA one).
    pub fn new(
        runtime: &'static Runtime,
        model: &'static str,
        export: &Export,
        arena: &Arena,
        weights: &ResidentWeights,
        tokenizer: ClipTokenizer,
        session: &SessionConfig,
    ) -> Result<Self, ComputeError> {
        let ExportedNetwork::Clip(manifest) = export.network() else {
            return Err(ComputeError::WrongExport {
                dir: export.dir().to_owned(),
                found: export.kind(),
                wanted: "CLIP",
            });
        };
        let vision_file = export.file(&manifest.graphs.vision);
        let text_file = export.file(&manifest.graphs.text);
        let vision_weights =
            weights.graph_weights(arena, |n| VISION.iter().any(|p| n.starts_with(p)))?;
        let text_weights =
            weights.graph_weights(arena, |n| TEXT.iter().any(|p| n.starts_with(p)))?;
        let vision = runtime.graph(&vision_file, vision_weights, session)?;
        let mut text = runtime.graph(&text_file, text_weights, session)?;
        // One stop for both towers: a cancelled slot stops whichever runs.
        text.share_stop(&vision);
        let size = manifest.vision.image_size as usize;
        Ok(ClipNetwork {
            model,
            detail: format!(
                "CLIP (image tower {}×{}, patch {}, {} px; text tower {}×{}; embeddings of {}; from {}) exported by export_clip.py, on ONNX Runtime's {} provider",
                manifest.vision.width,
                manifest.vision.layers,
                manifest.vision.patch,
                size,
                manifest.text.width,
                manifest.text.layers,
                manifest.projection_dim,
                manifest.source,
                session.provider.name()
            ),
            vision,
            text,
            tokenizer,
            prep: ImagePrep::new(size as u32, manifest.image_mean, manifest.image_std),
            size,
            dim: manifest.projection_dim as usize,
            pixels: Vec::new(),
            embeds: Vec::new(),
            prompt: None,
        })
    }

    /// Image embeddings (projected, not normalized) of `frames` prepared frames in
    /// `self.pixels`, into `self.embeds`.
    fn image_embeds(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        frames: usize,
    ) -> Result<(), ComputeError> {
        let shape = [frames, 3, self.size, self.size];
        // ONNX Runtime writes the embeddings straight into `self.embeds` (grown once to the
        // most frames asked for, then reused): no output tensor copied afterwards.
        self.embeds.resize(frames * self.dim, 0.0);
        self.vision.run_into(
            arena,
            owner,
            &[Input::F32("pixel_values", &shape, &self.pixels)],
            &mut [OutputInto {
                name: "image_embeds",
                shape: &[frames, self.dim],
                data: &mut self.embeds,
            }],
        )?;
        Ok(())
    }

    /// The normalized text embedding of `ids` (one prompt's 77 token ids).
    fn text_embed(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        ids: &[i64],
    ) -> Result<Vec<f32>, ComputeError> {
        let mut out = vec![0.0f32; self.dim];
        self.text.run_into(
            arena,
            owner,
            &[Input::I64("input_ids", &[1, ids.len()], ids)],
            &mut [OutputInto {
                name: "text_embeds",
                shape: &[1, self.dim],
                data: &mut out,
            }],
        )?;
        normalize(&mut out);
        Ok(out)
    }

    /// The image tower on prepared pixels (`frames × 3 × S × S`, as [`ImagePrep`] writes
    /// them): each frame's embedding, projected but not normalized.
    pub fn image_embeddings(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        pixels: &[f32],
    ) -> Result<&[f32], ComputeError> {
        let values = self.prep.values();
        if pixels.is_empty() || !pixels.len().is_multiple_of(values) {
            return Err(ComputeError::OutputLength {
                what: "pixels",
                have: pixels.len(),
                need: values,
            });
        }
        self.pixels.clear();
        self.pixels.extend_from_slice(pixels);
        self.image_embeds(arena, owner, pixels.len() / values)?;
        Ok(&self.embeds)
    }

    /// The text tower on one prompt's 77 token ids: its embedding, normalized.
    pub fn text_embedding(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        ids: &[i64],
    ) -> Result<Vec<f32>, ComputeError> {
        self.text_embed(arena, owner, ids)
    }

    /// Both towers once at their largest: `frames` frames through the image tower, a prompt
    /// of the full 77 tokens through the text tower (the start-up profile run; also checks
    /// that the graphs' embeddings are as wide as the manifest says).
    pub fn profile(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        frames: usize,
    ) -> Result<(), ComputeError> {
        self.pixels.clear();
        self.pixels.resize(frames * self.prep.values(), 0.0);
        self.image_embeds(arena, owner, frames)?;
        let mut ids = vec![clip_text::BOS; clip_text::CONTEXT];
        ids[1..clip_text::CONTEXT - 1].fill(320); // "a</w>"
        ids[clip_text::CONTEXT - 1] = clip_text::EOS;
        self.text_embed(arena, owner, &ids)?;
        Ok(())
    }

    /// The normalized text embedding of `prompt` (kept for the next slot with the same
    /// prompt).
    pub fn prompt_embedding(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        prompt: &str,
    ) -> Result<&[f32], ComputeError> {
        if self.prompt.as_ref().is_none_or(|(p, _)| p != prompt) {
            let encoded = self
                .tokenizer
                .encode(prompt)
                .map_err(|e| ComputeError::Prompt(Box::new(e)))?;
            if encoded.truncated() {
                tracing::warn!(
                    target: "vortex_models",
                    model = self.model,
                    dropped = encoded.dropped(),
                    "the prompt is longer than CLIP's 77 tokens: its last {} tokens are not scored",
                    encoded.dropped()
                );
            }
            let embedding = self.text_embed(arena, owner, encoded.ids())?;
            self.prompt = Some((prompt.to_owned(), embedding));
        }
        Ok(self.prompt.as_ref().map_or(&[][..], |(_, e)| e.as_slice()))
    }
}

/// Scales `v` to unit length (left as is when it is zero).
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

impl StageImpl for ClipNetwork {
    fn implementation(&self) -> Implementation {
        Implementation::network(&self.detail)
    }

    fn check_buffers(&self, buffers: &vortex_registry::OutputBuffers) -> Result<(), ComputeError> {
        check_dtype(
            "CLIP",
            "the video",
            "video_dtype",
            buffers.video_dtype,
            Dtype::U8,
        )?;
        check_rgb(buffers)
    }

    fn stopper(&self) -> Option<Terminator> {
        Some(self.vision.terminator())
    }
}

impl EmbeddingStage for ClipNetwork {
    fn dim(&self) -> usize {
        self.dim
    }

    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        selection: FrameSelection,
        read_frame: &mut FrameReader<'_>,
        out: &mut [f32],
    ) -> Result<Option<f32>, ComputeError> {
        if out.len() != self.dim {
            return Err(ComputeError::OutputLength {
                what: "embedding",
                have: out.len(),
                need: self.dim,
            });
        }
        let FrameSelection { frames, verified } = selection;
        if frames == 0 || verified == 0 || verified > frames {
            return Err(ComputeError::Selection { frames, verified });
        }
        let n = cx.buffers.image_size as u32;
        let frame_bytes = cx.buffers.frame_bytes() as usize;
        cx.staging.resize(frame_bytes, 0);
        let values = self.prep.values();
        self.pixels.resize(verified as usize * values, 0.0);
        for (index, pixels) in selection
            .indices()
            .zip(self.pixels.chunks_exact_mut(values))
        {
            let frame = &mut cx.staging[..frame_bytes];
            read_frame(index, frame)?;
            self.prep.prepare(frame, n, n, pixels)?;
        }
        self.image_embeds(cx.arena, cx.owner, verified as usize)?;
        out.fill(0.0);
        for e in self.embeds.chunks_exact_mut(self.dim) {
            normalize(e);
            out.iter_mut().zip(e.iter()).for_each(|(o, v)| *o += v);
        }
        normalize(out);
        if recipe.prompt.trim().is_empty() {
            tracing::info!(
                target: "vortex_models",
                model = self.model,
                slot_id = recipe.slot_id,
                "the recipe has no prompt: the frames are embedded but not scored"
            );
            return Ok(None);
        }
        let text = self.prompt_embedding(cx.arena, cx.owner, &recipe.prompt)?;
        Ok(Some(text.iter().zip(out.iter()).map(|(t, i)| t * i).sum()))
    }
}
