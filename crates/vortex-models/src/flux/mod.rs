//! FLUX.1-schnell's transformer: the tensor names of Black Forest Labs' checkpoint
//! (`flux1-schnell.safetensors`: `double_blocks.*`, `single_blocks.*`, …) generated from its
//! hyperparameters, in bf16 or in a 4-bit packed form.
//!
//! The packed form is Vortex's own layout of NF4 quantization as bitsandbytes does it (blocks
//! of 64 weights, double-quantized scales): every 2-D weight of the 57 transformer blocks is
//! stored as `{name}` (U8, two 4-bit codes per byte, shape `[out, in / 2]`),
//! `{name}.absmax` (U8, one 8-bit scale per block of 64) and `{name}.nested_absmax` (F32, one
//! per 256 scales). Everything else (biases, norms, embedders, the final layer) stays bf16.
//!
//! [`network`] runs a FLUX export (`data/flux/export_flux.py`) as the actor stage.

pub mod network;

use crate::layout::{Layout, WeightDtype};

/// The hyperparameters of a FLUX.1 transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FluxConfig {
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Latent channels after 2×2 packing.
    pub in_channels: u64,
    /// Width of the pooled CLIP vector.
    pub vec_in_dim: u64,
    /// Width of the T5 context.
    pub context_in_dim: u64,
    /// Hidden width.
    pub hidden: u64,
    /// MLP expansion.
    pub mlp_ratio: u64,
    /// Attention heads.
    pub heads: u64,
    /// Double-stream blocks.
    pub depth: u64,
    /// Single-stream blocks.
    pub depth_single: u64,
    /// Whether a guidance embedder exists (FLUX.1-dev has one, schnell does not).
    pub guidance_embed: bool,
}

/// Weights per quantization block.
pub const NF4_BLOCK: u64 = 64;
/// Scales per nested (second-level) block.
pub const NF4_NESTED_BLOCK: u64 = 256;

impl FluxConfig {
    /// FLUX.1-schnell.
    pub const SCHNELL: FluxConfig = FluxConfig {
        checkpoint: "black-forest-labs/FLUX.1-schnell (transformer)",
        in_channels: 64,
        vec_in_dim: 768,
        context_in_dim: 4096,
        hidden: 3072,
        mlp_ratio: 4,
        heads: 24,
        depth: 19,
        depth_single: 38,
        guidance_embed: false,
    };

    /// A scaled-down FLUX transformer with the same structure, for test fixtures.
    pub const TINY: FluxConfig = FluxConfig {
        checkpoint: "vortex/tiny-flux (test fixture)",
        in_channels: 8,
        vec_in_dim: 8,
        context_in_dim: 16,
        hidden: 32,
        mlp_ratio: 4,
        heads: 2,
        depth: 1,
        depth_single: 1,
        guidance_embed: false,
    };

    /// Width of one attention head.
    pub const fn head_dim(&self) -> u64 {
        self.hidden / self.heads
    }

    /// Every tensor, bf16 throughout (`packed = false`) or with the block weights NF4-packed.
    pub fn layout(&self, packed: bool) -> Layout {
        let bf16 = WeightDtype::BF16;
        let h = self.hidden;
        let mlp = h * self.mlp_ratio;
        let mut l = Layout::new(self.checkpoint);
        // A linear layer of a transformer block: packed when asked, with a bf16 bias.
        let block_linear = |l: &mut Layout, prefix: &str, out: u64, inp: u64| {
            if packed {
                let name = format!("{prefix}.weight");
                let numel = out * inp;
                let scales = numel.div_ceil(NF4_BLOCK);
                l.push(name.clone(), WeightDtype::U8, &[out, inp / 2]);
                l.push(format!("{name}.absmax"), WeightDtype::U8, &[scales]);
                l.push(
                    format!("{name}.nested_absmax"),
                    WeightDtype::F32,
                    &[scales.div_ceil(NF4_NESTED_BLOCK)],
                );
                l.push(format!("{prefix}.bias"), bf16, &[out]);
            } else {
                l.linear(prefix, bf16, out, inp);
            }
        };
        l.linear("img_in", bf16, h, self.in_channels);
        l.linear("time_in.in_layer", bf16, h, 256);
        l.linear("time_in.out_layer", bf16, h, h);
        if self.guidance_embed {
            l.linear("guidance_in.in_layer", bf16, h, 256);
            l.linear("guidance_in.out_layer", bf16, h, h);
        }
        l.linear("vector_in.in_layer", bf16, h, self.vec_in_dim);
        l.linear("vector_in.out_layer", bf16, h, h);
        l.linear("txt_in", bf16, h, self.context_in_dim);
        for i in 0..self.depth {
            for stream in ["img", "txt"] {
                let p = format!("double_blocks.{i}.{stream}");
                block_linear(&mut l, &format!("{p}_mod.lin"), 6 * h, h);
                block_linear(&mut l, &format!("{p}_attn.qkv"), 3 * h, h);
                l.push(
                    format!("{p}_attn.norm.query_norm.scale"),
                    bf16,
                    &[self.head_dim()],
                );
                l.push(
                    format!("{p}_attn.norm.key_norm.scale"),
                    bf16,
                    &[self.head_dim()],
                );
                block_linear(&mut l, &format!("{p}_attn.proj"), h, h);
                block_linear(&mut l, &format!("{p}_mlp.0"), mlp, h);
                block_linear(&mut l, &format!("{p}_mlp.2"), h, mlp);
            }
        }
        for i in 0..self.depth_single {
            let p = format!("single_blocks.{i}");
            block_linear(&mut l, &format!("{p}.linear1"), 3 * h + mlp, h);
            block_linear(&mut l, &format!("{p}.linear2"), h, h + mlp);
            l.push(
                format!("{p}.norm.query_norm.scale"),
                bf16,
                &[self.head_dim()],
            );
            l.push(format!("{p}.norm.key_norm.scale"), bf16, &[self.head_dim()]);
            block_linear(&mut l, &format!("{p}.modulation.lin"), 3 * h, h);
        }
        l.linear("final_layer.adaLN_modulation.1", bf16, 2 * h, h);
        l.linear("final_layer.linear", bf16, self.in_channels, h);
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand from the rule in the module docs. Block weights: 19 double blocks × 2 streams ×
    /// 18·h² plus 38 single blocks × 15·h² = 1254·h² = 11,834,228,736 weights (h = 3072):
    /// 5,917,114,368 bytes of codes + 184,909,824 scales + 2,889,216 nested scales. The other
    /// 56,949,824 parameters in bf16: 113,899,648 bytes.
    const PACKED_SCHNELL_BYTES: u64 = 5_917_114_368 + 184_909_824 + 2_889_216 + 113_899_648;

    #[test]
    fn schnell_has_about_twelve_billion_parameters() {
        let layout = FluxConfig::SCHNELL.layout(false);
        // FLUX.1 is published as a 12B-parameter transformer (bf16 file: 23.8 GB). FLUX.1-dev
        // counts 11,901,408,320 parameters; schnell lacks dev's guidance embedder
        // (256·3072 + 3072 + 3072·3072 + 3072 = 10,229,760 of them).
        assert_eq!(layout.numel(), 11_891_178_560);
        assert_eq!(layout.bytes(), 2 * 11_891_178_560);
        let dev = FluxConfig {
            guidance_embed: true,
            ..FluxConfig::SCHNELL
        };
        assert_eq!(dev.layout(false).numel(), 11_901_408_320);
        assert_eq!(
            layout
                .get("double_blocks.18.txt_mlp.2.weight")
                .unwrap()
                .shape,
            [3072, 12288]
        );
        assert_eq!(
            layout.get("single_blocks.37.linear1.weight").unwrap().shape,
            [21504, 3072]
        );
    }

    #[test]
    fn packed_is_a_little_over_half_a_byte_per_parameter() {
        let packed = FluxConfig::SCHNELL.layout(true);
        let bytes = packed.bytes();
        // 4 bits per block weight + one byte per 64 + 4 bytes per 16,384; bf16 for the rest.
        assert_eq!(bytes, PACKED_SCHNELL_BYTES);
        let w = packed.get("single_blocks.0.linear2.weight").unwrap();
        assert_eq!(
            (w.dtype, w.shape.clone()),
            (WeightDtype::U8, vec![3072, 7680])
        );
        let scales = packed.get("single_blocks.0.linear2.weight.absmax").unwrap();
        assert_eq!(scales.shape, [3072 * 15360 / 64]);
    }
}
