//! CLIP ViT-B/32 and ViT-L/14: the layout of the published checkpoints
//! (`openai/clip-vit-base-patch32`, `openai/clip-vit-large-patch14`, Hugging Face
//! `CLIPModel` tensor names), generated from each model's hyperparameters. Vortex verifies
//! frames with the image tower, so the adapters load its tensors (`vision_model.*` and
//! `visual_projection.weight`) and report the full checkpoint beside them; a CLIP export
//! ([`crate::export`]) loads both towers, which [`network`] runs on ONNX Runtime.
//!
//! - [`image`]: a frame to what the image tower reads (CLIP's resize, crop and
//!   normalization).
//! - [`network`]: the verification stage on the exported towers.

pub mod image;
pub mod network;

use crate::layout::{Layout, WeightDtype};

/// The hyperparameters of one CLIP model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipConfig {
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Text transformer width.
    pub text_width: u64,
    /// Text transformer layers.
    pub text_layers: u64,
    /// Vision transformer width.
    pub vision_width: u64,
    /// Vision transformer layers.
    pub vision_layers: u64,
    /// Patch side in pixels.
    pub patch: u64,
    /// Input image side in pixels.
    pub image_size: u64,
    /// Joint embedding size.
    pub projection_dim: u64,
    /// Tokenizer vocabulary (49,408 for CLIP's BPE).
    pub vocab: u64,
    /// Text context length (77).
    pub context: u64,
}

impl ClipConfig {
    /// ViT-B/32: text 512×12, vision 768×12, patch 32, 224 px, embeddings of 512.
    pub const B32: ClipConfig = ClipConfig {
        checkpoint: "openai/clip-vit-base-patch32",
        text_width: 512,
        text_layers: 12,
        vision_width: 768,
        vision_layers: 12,
        patch: 32,
        image_size: 224,
        projection_dim: 512,
        vocab: 49_408,
        context: 77,
    };

    /// ViT-L/14: text 768×12, vision 1024×24, patch 14, 224 px, embeddings of 768.
    pub const L14: ClipConfig = ClipConfig {
        checkpoint: "openai/clip-vit-large-patch14",
        text_width: 768,
        text_layers: 12,
        vision_width: 1024,
        vision_layers: 24,
        patch: 14,
        image_size: 224,
        projection_dim: 768,
        vocab: 49_408,
        context: 77,
    };

    /// A scaled-down CLIP with the same structure, for test fixtures.
    pub const TINY: ClipConfig = ClipConfig {
        checkpoint: "vortex/tiny-clip (test fixture)",
        text_width: 8,
        text_layers: 1,
        vision_width: 16,
        vision_layers: 2,
        patch: 8,
        image_size: 16,
        projection_dim: 8,
        vocab: 64,
        context: 8,
    };

    /// Image tokens: one per patch plus the class token.
    pub const fn positions(&self) -> u64 {
        (self.image_size / self.patch) * (self.image_size / self.patch) + 1
    }

    /// Every tensor of the checkpoint, stored as `dtype`.
    pub fn layout(&self, dtype: WeightDtype) -> Layout {
        let mut l = Layout::new(self.checkpoint);
        let tw = self.text_width;
        l.push(
            "text_model.embeddings.token_embedding.weight",
            dtype,
            &[self.vocab, tw],
        );
        l.push(
            "text_model.embeddings.position_embedding.weight",
            dtype,
            &[self.context, tw],
        );
        encoder(&mut l, "text_model.encoder", dtype, tw, self.text_layers);
        l.layer_norm("text_model.final_layer_norm", dtype, tw);
        let vw = self.vision_width;
        l.push("vision_model.embeddings.class_embedding", dtype, &[vw]);
        l.push(
            "vision_model.embeddings.patch_embedding.weight",
            dtype,
            &[vw, 3, self.patch, self.patch],
        );
        l.push(
            "vision_model.embeddings.position_embedding.weight",
            dtype,
            &[self.positions(), vw],
        );
        // Sic: the Hugging Face module is named `pre_layrnorm`.
        l.layer_norm("vision_model.pre_layrnorm", dtype, vw);
        encoder(
            &mut l,
            "vision_model.encoder",
            dtype,
            vw,
            self.vision_layers,
        );
        l.layer_norm("vision_model.post_layernorm", dtype, vw);
        l.push(
            "visual_projection.weight",
            dtype,
            &[self.projection_dim, vw],
        );
        l.push("text_projection.weight", dtype, &[self.projection_dim, tw]);
        l.push("logit_scale", dtype, &[]);
        l
    }

    /// The image tower: what the adapters load.
    pub fn vision_layout(&self, dtype: WeightDtype) -> Layout {
        self.layout(dtype)
            .select(&["vision_model.", "visual_projection."])
    }
}

/// A pre-norm transformer encoder of `layers` blocks of `width` with a 4× MLP.
fn encoder(l: &mut Layout, prefix: &str, dtype: WeightDtype, width: u64, layers: u64) {
    for i in 0..layers {
        let p = format!("{prefix}.layers.{i}");
        for proj in ["k_proj", "v_proj", "q_proj", "out_proj"] {
            l.linear(&format!("{p}.self_attn.{proj}"), dtype, width, width);
        }
        l.layer_norm(&format!("{p}.layer_norm1"), dtype, width);
        l.linear(&format!("{p}.mlp.fc1"), dtype, 4 * width, width);
        l.linear(&format!("{p}.mlp.fc2"), dtype, width, 4 * width);
        l.layer_norm(&format!("{p}.layer_norm2"), dtype, width);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_published_models() {
        // `sum(p.numel() for p in CLIPModel.from_pretrained(...).parameters())`.
        assert_eq!(
            ClipConfig::B32.layout(WeightDtype::F16).numel(),
            151_277_313
        );
        assert_eq!(
            ClipConfig::L14.layout(WeightDtype::F16).numel(),
            427_616_513
        );
    }

    #[test]
    fn image_towers() {
        let b = ClipConfig::B32.vision_layout(WeightDtype::F16);
        let l = ClipConfig::L14.vision_layout(WeightDtype::F16);
        assert_eq!(ClipConfig::B32.positions(), 50);
        assert_eq!(ClipConfig::L14.positions(), 257);
        assert_eq!(
            l.get("visual_projection.weight").unwrap().shape,
            [768, 1024]
        );
        assert_eq!(b.numel(), 87_849_216);
        assert_eq!(l.numel(), 303_966_208);
        assert!(b.tensors.iter().all(|t| !t.name.starts_with("text_")));
    }
}
