//! Verification embeddings (reference implementation): a fixed random projection of block
//! colour means, not CLIP.

use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::Arena;

use super::helpers::{Rng, check_dtype, resize};
use crate::compute::{ComputeError, FrameReader, FrameSelection, FrameTarget};

/// Features per frame: the mean of each colour channel over a 4×4 grid of blocks.
const FEATURES: usize = 48;

/// The fixed random projection from frame features to an embedding, made once per model.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingProjection {
    weights: Vec<f32>,
}

impl EmbeddingProjection {
    /// The projection of `model` (its name seeds it) to `dim` values.
    pub fn new(model: &str, dim: usize) -> Self {
        let mut rng = Rng::new(0, model);
        EmbeddingProjection {
            weights: (0..dim * FEATURES).map(|_| rng.unit() - 0.5).collect(),
        }
    }

    /// Width of the embeddings it makes.
    pub fn dim(&self) -> usize {
        self.weights.len() / FEATURES
    }
}

/// A verification embedding (reference implementation): `projection.dim()` wide (512 for
/// ViT-B/32, 768 for ViT-L/14), from `verified` evenly spaced frames of the `frames` a slot
/// has, each fetched by `read_frame(index, into)` (from the device or from host memory): the
/// frames' 4×4 block colour means, summed, projected, then L2-normalized.
pub fn reference_embedding(
    projection: &EmbeddingProjection,
    buffers: &OutputBuffers,
    selection: FrameSelection,
    read_frame: &mut FrameReader<'_>,
    staging: &mut Vec<u8>,
    out: &mut [f32],
) -> Result<(), ComputeError> {
    check_dtype("the video", "video_dtype", buffers.video_dtype, Dtype::U8)?;
    let frame_bytes = buffers.frame_bytes() as usize;
    let (n, c) = (buffers.image_size as usize, buffers.channels as usize);
    let frames = selection.frames.max(1);
    let verified = selection.verified.clamp(1, frames);
    let frame = resize(staging, frame_bytes);
    let mut features = [0f32; FEATURES];
    for k in 0..verified {
        read_frame(k * frames / verified, frame)?;
        for y in 0..n {
            for x in 0..n {
                let block = (y * 4 / n) * 4 + x * 4 / n;
                for ch in 0..c.min(3) {
                    features[block * 3 + ch] += f32::from(frame[(y * n + x) * c + ch]);
                }
            }
        }
    }
    for (o, row) in out
        .iter_mut()
        .zip(projection.weights.chunks_exact(FEATURES))
    {
        *o = row.iter().zip(&features).map(|(w, f)| w * f).sum();
    }
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
    Ok(())
}

/// Reads frame `index` of a [`FrameTarget`] from the device, for [`reference_embedding`].
pub fn read_device_frame<'a>(
    arena: &'a Arena,
    target: FrameTarget<'a>,
    frame_bytes: u64,
) -> impl FnMut(u64, &mut [u8]) -> Result<(), ComputeError> + 'a {
    move |index, into| {
        let offset = (index % target.capacity.max(1)) * frame_bytes;
        arena.download(target.region, offset, into)?;
        Ok(())
    }
}
