//! FLUX.1-schnell's actor stage as the VRAM plan counts it: the transformer under the tensor
//! names of Black Forest Labs' checkpoint (`flux1-schnell.safetensors`: `double_blocks.*`,
//! `single_blocks.*`, …) generated from its hyperparameters, CLIP-L's text tower, T5-XXL's
//! encoder and the VAE's decoder, in 16 bits or with every Linear weight 4-bit for ONNX
//! Runtime's `com.microsoft.MatMulNBits` — what `data/flux/quantize_nbits.py` writes and the
//! actor's graphs read.
//!
//! MatMulNBits stores a Linear weight `W [N, K]` as `{W}.qweight` (U8 `[N, ⌈K/B⌉, B/2]`, two
//! 4-bit codes per byte), `{W}.scales` (the graph's 16-bit float, `[N, ⌈K/B⌉]`) and
//! `{W}.zero_points` (U8 `[N, ⌈⌈K/B⌉/2⌉]`, 4-bit packed), with blocks of `B` = 64 weights along
//! K. Biases, norms and embeddings stay 16-bit. These bytes are checked against
//! `data/flux/full_size_bytes.json`, which the script counts from diffusers' and transformers'
//! own modules (`quantize_nbits.py --sizes`).
//!
//! Where T5-XXL lives is decided from those bytes ([`FluxActor::t5_placement`]): with it on
//! the device the actor needs 9.52 GB of weights, more than a 12 GiB card can give it beside
//! the other four models, so the 3060 plan runs it on the CPU and only its `[256, 4096]`
//! output crosses over. Those are the fp16 graphs' bytes (the CUDA provider's); on the CPU
//! provider an export loads in f32 ([`Packing::NBITS_F32`]: 7.48 GB without T5, 3.17 GB of
//! T5), and the adapter places T5 from the export's own bytes the same way.
//!
//! [`network`] runs a FLUX export (`data/flux/export_flux.py`) as the actor stage.

pub mod network;

use crate::clip::ClipConfig;
use crate::layout::{Layout, WeightDtype};

/// Weights per MatMulNBits quantization block (along the input dimension).
pub const NBITS_BLOCK: u64 = 64;

/// How Linear weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Every tensor in 16 bits (bf16, as the official checkpoints ship).
    Bf16,
    /// Every Linear weight 4-bit for MatMulNBits in blocks of `block` along K, with scales in
    /// the graph's float type `float` and 4-bit zero points; everything else in `float`.
    MatMulNBits {
        /// Weights per block (a power of two, at least 16).
        block: u64,
        /// The graph's float type: F16 where the CUDA provider runs it, F32 on the CPU
        /// provider (what `export_flux.py` + `quantize_nbits.py` write by default, and what
        /// Vortex loads any FLUX export as on the CPU).
        float: WeightDtype,
    },
}

impl Packing {
    /// What the 3060 plan loads: 4-bit in blocks of 64, fp16 scales (the CUDA provider's
    /// graphs).
    pub const NBITS: Packing = Packing::MatMulNBits {
        block: NBITS_BLOCK,
        float: WeightDtype::F16,
    };

    /// What the CPU provider loads: 4-bit in blocks of 64, f32 scales and f32 elsewhere.
    pub const NBITS_F32: Packing = Packing::MatMulNBits {
        block: NBITS_BLOCK,
        float: WeightDtype::F32,
    };
}

/// Adds a Linear layer `{prefix}.weight [out, inp]` (and its bias) packed as `packing` says.
fn linear(l: &mut Layout, prefix: &str, packing: Packing, out: u64, inp: u64, bias: bool) {
    match packing {
        Packing::Bf16 => l.push(format!("{prefix}.weight"), WeightDtype::BF16, &[out, inp]),
        Packing::MatMulNBits { block, float } => {
            let blocks = inp.div_ceil(block);
            l.push(
                format!("{prefix}.weight.qweight"),
                WeightDtype::U8,
                &[out, blocks, block / 2],
            );
            l.push(format!("{prefix}.weight.scales"), float, &[out, blocks]);
            l.push(
                format!("{prefix}.weight.zero_points"),
                WeightDtype::U8,
                &[out, blocks.div_ceil(2)],
            );
        }
    }
    if bias {
        l.push(format!("{prefix}.bias"), packing.other(), &[out]);
    }
}

impl Packing {
    /// The dtype of what is not a Linear weight: bf16 beside bf16 weights, the scales' float
    /// type beside MatMulNBits (one float type per graph).
    const fn other(self) -> WeightDtype {
        match self {
            Packing::Bf16 => WeightDtype::BF16,
            Packing::MatMulNBits { float, .. } => float,
        }
    }
}

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

    /// Every tensor of the transformer, stored as `packing` says.
    pub fn layout(&self, packing: Packing) -> Layout {
        let other = packing.other();
        let h = self.hidden;
        let mlp = h * self.mlp_ratio;
        let mut l = Layout::new(self.checkpoint);
        let lin = |l: &mut Layout, prefix: &str, out: u64, inp: u64| {
            linear(l, prefix, packing, out, inp, true);
        };
        lin(&mut l, "img_in", h, self.in_channels);
        lin(&mut l, "time_in.in_layer", h, 256);
        lin(&mut l, "time_in.out_layer", h, h);
        if self.guidance_embed {
            lin(&mut l, "guidance_in.in_layer", h, 256);
            lin(&mut l, "guidance_in.out_layer", h, h);
        }
        lin(&mut l, "vector_in.in_layer", h, self.vec_in_dim);
        lin(&mut l, "vector_in.out_layer", h, h);
        lin(&mut l, "txt_in", h, self.context_in_dim);
        let qk_norms = |l: &mut Layout, p: &str| {
            for norm in ["query_norm", "key_norm"] {
                l.push(format!("{p}.norm.{norm}.scale"), other, &[self.head_dim()]);
            }
        };
        for i in 0..self.depth {
            for stream in ["img", "txt"] {
                let p = format!("double_blocks.{i}.{stream}");
                lin(&mut l, &format!("{p}_mod.lin"), 6 * h, h);
                lin(&mut l, &format!("{p}_attn.qkv"), 3 * h, h);
                qk_norms(&mut l, &format!("{p}_attn"));
                lin(&mut l, &format!("{p}_attn.proj"), h, h);
                lin(&mut l, &format!("{p}_mlp.0"), mlp, h);
                lin(&mut l, &format!("{p}_mlp.2"), h, mlp);
            }
        }
        for i in 0..self.depth_single {
            let p = format!("single_blocks.{i}");
            lin(&mut l, &format!("{p}.linear1"), 3 * h + mlp, h);
            lin(&mut l, &format!("{p}.linear2"), h, h + mlp);
            qk_norms(&mut l, &p);
            lin(&mut l, &format!("{p}.modulation.lin"), 3 * h, h);
        }
        lin(&mut l, "final_layer.adaLN_modulation.1", 2 * h, h);
        lin(&mut l, "final_layer.linear", self.in_channels, h);
        l
    }
}

/// The hyperparameters of a T5 encoder (transformers' `T5EncoderModel` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct T5Config {
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Token ids.
    pub vocab: u64,
    /// Width.
    pub d_model: u64,
    /// Width of one head.
    pub d_kv: u64,
    /// Heads.
    pub heads: u64,
    /// Gated-GELU feed-forward width.
    pub d_ff: u64,
    /// Blocks.
    pub layers: u64,
    /// Relative-position buckets (block 0 holds the bias table).
    pub buckets: u64,
}

impl T5Config {
    /// T5 v1.1 XXL's encoder, FLUX.1's `text_encoder_2`.
    pub const XXL: T5Config = T5Config {
        checkpoint: "google/t5-v1_1-xxl (encoder; FLUX.1's text_encoder_2)",
        vocab: 32_128,
        d_model: 4096,
        d_kv: 64,
        heads: 64,
        d_ff: 10_240,
        layers: 24,
        buckets: 32,
    };

    /// Every tensor: the Linear weights (no biases in T5) packed as `packing` says, the token
    /// embedding (a gather, not a product) and the RMS norms in 16 bits.
    pub fn layout(&self, packing: Packing) -> Layout {
        let other = packing.other();
        let (d, inner) = (self.d_model, self.heads * self.d_kv);
        let mut l = Layout::new(self.checkpoint);
        l.push("shared.weight", other, &[self.vocab, d]);
        for i in 0..self.layers {
            let p = format!("encoder.block.{i}.layer");
            for proj in ["q", "k", "v"] {
                linear(
                    &mut l,
                    &format!("{p}.0.SelfAttention.{proj}"),
                    packing,
                    inner,
                    d,
                    false,
                );
            }
            linear(
                &mut l,
                &format!("{p}.0.SelfAttention.o"),
                packing,
                d,
                inner,
                false,
            );
            if i == 0 {
                l.push(
                    format!("{p}.0.SelfAttention.relative_attention_bias.weight"),
                    other,
                    &[self.buckets, self.heads],
                );
            }
            l.push(format!("{p}.0.layer_norm.weight"), other, &[d]);
            for wi in ["wi_0", "wi_1"] {
                linear(
                    &mut l,
                    &format!("{p}.1.DenseReluDense.{wi}"),
                    packing,
                    self.d_ff,
                    d,
                    false,
                );
            }
            linear(
                &mut l,
                &format!("{p}.1.DenseReluDense.wo"),
                packing,
                d,
                self.d_ff,
                false,
            );
            l.push(format!("{p}.1.layer_norm.weight"), other, &[d]);
        }
        l.push("encoder.final_layer_norm.weight", other, &[d]);
        l
    }
}

/// The hyperparameters of FLUX.1's VAE decoder (diffusers' `AutoencoderKL`, decoder only: the
/// actor decodes latents and never encodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeDecoderConfig {
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Latent channels.
    pub latent_channels: u64,
    /// Channels of the up blocks, lowest resolution last reversed (diffusers'
    /// `block_out_channels`, encoder order).
    pub block_out_channels: [u64; 4],
    /// Resnets per up block, less one (diffusers' `layers_per_block`).
    pub layers_per_block: u64,
}

impl VaeDecoderConfig {
    /// FLUX.1's autoencoder.
    pub const FLUX: VaeDecoderConfig = VaeDecoderConfig {
        checkpoint: "black-forest-labs/FLUX.1-schnell (vae decoder)",
        latent_channels: 16,
        block_out_channels: [128, 256, 512, 512],
        layers_per_block: 2,
    };

    /// Every tensor of `decoder.*`, stored as `dtype`.
    pub fn layout(&self, dtype: WeightDtype) -> Layout {
        let mut l = Layout::new(self.checkpoint);
        let conv = |l: &mut Layout, p: &str, out: u64, inp: u64, k: u64| {
            l.push(format!("{p}.weight"), dtype, &[out, inp, k, k]);
            l.push(format!("{p}.bias"), dtype, &[out]);
        };
        let resnet = |l: &mut Layout, p: &str, inp: u64, out: u64| {
            l.layer_norm(&format!("{p}.norm1"), dtype, inp);
            conv(l, &format!("{p}.conv1"), out, inp, 3);
            l.layer_norm(&format!("{p}.norm2"), dtype, out);
            conv(l, &format!("{p}.conv2"), out, out, 3);
            if inp != out {
                conv(l, &format!("{p}.conv_shortcut"), out, inp, 1);
            }
        };
        let top = self.block_out_channels[3];
        conv(&mut l, "decoder.conv_in", top, self.latent_channels, 3);
        for r in 0..2 {
            resnet(&mut l, &format!("decoder.mid_block.resnets.{r}"), top, top);
        }
        let a = "decoder.mid_block.attentions.0";
        l.layer_norm(&format!("{a}.group_norm"), dtype, top);
        for proj in ["to_q", "to_k", "to_v", "to_out.0"] {
            l.linear(&format!("{a}.{proj}"), dtype, top, top);
        }
        let mut prev = top;
        for (i, &out) in self.block_out_channels.iter().rev().enumerate() {
            for r in 0..=self.layers_per_block {
                let inp = if r == 0 { prev } else { out };
                resnet(
                    &mut l,
                    &format!("decoder.up_blocks.{i}.resnets.{r}"),
                    inp,
                    out,
                );
            }
            if i < 3 {
                conv(
                    &mut l,
                    &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                    out,
                    out,
                    3,
                );
            }
            prev = out;
        }
        l.layer_norm("decoder.conv_norm_out", dtype, prev);
        conv(&mut l, "decoder.conv_out", 3, prev, 3);
        l
    }
}

/// Where T5-XXL's encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T5Placement {
    /// On the device, beside the transformer.
    Device,
    /// On the CPU, in host memory; only its output crosses to the device.
    Cpu,
}

/// Everything the actor stage reads: the transformer, both text encoders and the VAE decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FluxActor {
    /// The transformer.
    pub transformer: FluxConfig,
    /// CLIP-L (its text tower is read: the pooled prompt vector).
    pub clip: ClipConfig,
    /// T5's encoder.
    pub t5: T5Config,
    /// The VAE's decoder.
    pub vae: VaeDecoderConfig,
    /// How the transformer's and T5's Linear weights are stored.
    pub packing: Packing,
}

/// Name prefixes of the actor's parts in its layout (as in the diffusers repository's folders).
pub mod parts {
    /// The transformer.
    pub const TRANSFORMER: &str = "transformer.";
    /// CLIP-L's text tower.
    pub const CLIP_TEXT: &str = "text_encoder.";
    /// T5's encoder.
    pub const T5: &str = "text_encoder_2.";
    /// The VAE's decoder.
    pub const VAE: &str = "vae.";
}

impl FluxActor {
    /// FLUX.1-schnell as the 3060 plan loads it: the transformer and T5 with 4-bit
    /// MatMulNBits weights, CLIP-L's text tower and the VAE decoder in 16 bits.
    pub const SCHNELL: FluxActor = FluxActor {
        transformer: FluxConfig::SCHNELL,
        clip: ClipConfig::L14,
        t5: T5Config::XXL,
        vae: VaeDecoderConfig::FLUX,
        packing: Packing::NBITS,
    };

    /// T5's encoder alone.
    pub fn t5_layout(&self) -> Layout {
        self.t5.layout(self.packing)
    }

    /// What lives on the device: every part, with T5 only when `t5` says so; names prefixed
    /// by part ([`parts`]).
    pub fn layout(&self, t5: T5Placement) -> Layout {
        let mut l = Layout::new(
            "black-forest-labs/FLUX.1-schnell (actor: transformer, text encoders, VAE decoder)",
        );
        let other = self.packing.other();
        l.extend_prefixed(parts::TRANSFORMER, &self.transformer.layout(self.packing));
        l.extend_prefixed(
            parts::CLIP_TEXT,
            &self.clip.layout(other).select(&["text_model."]),
        );
        if t5 == T5Placement::Device {
            l.extend_prefixed(parts::T5, &self.t5_layout());
        }
        l.extend_prefixed(parts::VAE, &self.vae.layout(other));
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::resident_bytes;

    /// Where T5 runs for the checkpoint's layout under `budget` (the adapter's rule).
    fn placement(actor: &FluxActor, budget: u64) -> T5Placement {
        crate::adapter::t5_placement(&actor.layout(T5Placement::Device), budget)
    }

    /// `data/flux/full_size_bytes.json`: what `quantize_nbits.py --sizes` counts from
    /// diffusers' and transformers' own modules on torch's meta device.
    fn python_figures() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/flux/full_size_bytes.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn schnell_has_about_twelve_billion_parameters() {
        let layout = FluxConfig::SCHNELL.layout(Packing::Bf16);
        let figures = python_figures();
        // FLUX.1 is published as a 12B-parameter transformer (bf16 file: 23.8 GB). FLUX.1-dev
        // counts 11,901,408,320 parameters; schnell lacks dev's guidance embedder
        // (256·3072 + 3072 + 3072·3072 + 3072 = 10,229,760 of them).
        assert_eq!(layout.numel(), 11_891_178_560);
        assert_eq!(layout.numel(), figures["transformer"]["parameters"]);
        assert_eq!(layout.bytes(), 2 * 11_891_178_560);
        let dev = FluxConfig {
            guidance_embed: true,
            ..FluxConfig::SCHNELL
        };
        assert_eq!(dev.layout(Packing::Bf16).numel(), 11_901_408_320);
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
    fn the_4_bit_bytes_are_what_the_python_modules_count() {
        // Black Forest Labs' fused names here, diffusers' split ones in the script: the same
        // rows and K, so the same bytes, to the byte.
        let figures = python_figures();
        let bytes = |key: &str, field: &str| figures[key][field].as_u64().unwrap();
        let transformer = FluxConfig::SCHNELL.layout(Packing::NBITS);
        assert_eq!(
            transformer.bytes(),
            bytes("transformer", "nbits_b64_fp16_scales_zp_bytes")
        );
        let t5 = T5Config::XXL.layout(Packing::NBITS);
        let t5_key = "text_encoder_2 (T5-XXL encoder)";
        assert_eq!(t5.bytes(), bytes(t5_key, "nbits_b64_fp16_scales_zp_bytes"));
        assert_eq!(
            T5Config::XXL.layout(Packing::Bf16).numel(),
            bytes(t5_key, "parameters")
        );
        let vae = VaeDecoderConfig::FLUX.layout(WeightDtype::F16);
        assert_eq!(vae.numel(), bytes("vae decoder only", "parameters"));
        let actor = FluxActor::SCHNELL;
        let totals = &figures["actor_totals"];
        assert_eq!(
            actor.layout(T5Placement::Cpu).bytes(),
            totals["transformer_nbits + clip_16bit + vae_decoder_16bit (t5 on the CPU)"]
        );
        assert_eq!(
            actor.layout(T5Placement::Device).bytes(),
            totals["transformer_nbits + t5_nbits + clip_16bit + vae_decoder_16bit"]
        );
        // One tensor by hand: single_blocks.0.linear2 is [3072, 15360]: 240 blocks of 64.
        let w = transformer
            .get("single_blocks.0.linear2.weight.qweight")
            .unwrap();
        assert_eq!(
            (w.dtype, w.shape.clone()),
            (WeightDtype::U8, vec![3072, 240, 32])
        );
        let zp = transformer
            .get("single_blocks.0.linear2.weight.zero_points")
            .unwrap();
        assert_eq!(zp.shape, [3072, 120]);
    }

    /// What the CPU provider loads (scales and every non-Linear tensor in f32): the fp16
    /// figures above plus 2 more bytes for each scale and each other parameter.
    #[test]
    fn an_f32_export_costs_the_fp16_bytes_plus_its_wider_scales_and_others() {
        let figures = python_figures();
        let f32_bytes = |key: &str| {
            let fig = &figures[key];
            let linear = fig["linear_weight_parameters"].as_u64().unwrap();
            let other = fig["other_parameters"].as_u64().unwrap();
            fig["nbits_b64_fp16_scales_zp_bytes"].as_u64().unwrap()
                + 2 * linear / NBITS_BLOCK
                + 2 * other
        };
        let transformer = FluxConfig::SCHNELL.layout(Packing::NBITS_F32);
        assert_eq!(transformer.bytes(), f32_bytes("transformer"));
        let t5 = T5Config::XXL.layout(Packing::NBITS_F32);
        assert_eq!(t5.bytes(), f32_bytes("text_encoder_2 (T5-XXL encoder)"));
        let cpu_export = FluxActor {
            packing: Packing::NBITS_F32,
            ..FluxActor::SCHNELL
        };
        // 7.48 GB on the device without T5 (over the 3060 plan's 7.1 GB actor budget), 3.17 GB
        // of T5 in host memory: the figures README gives for a CPU-provider export.
        let device = resident_bytes(&cpu_export.layout(T5Placement::Cpu));
        assert_eq!(device / 10_000_000, 748, "{device}");
        assert_eq!(resident_bytes(&t5) / 10_000_000, 316, "{}", t5.bytes());
        assert_eq!(placement(&cpu_export, 7_100_000_000), T5Placement::Cpu);
    }

    #[test]
    fn t5_goes_to_the_cpu_when_the_actor_budget_cannot_hold_it() {
        let actor = FluxActor::SCHNELL;
        let with_t5 = resident_bytes(&actor.layout(T5Placement::Device));
        let without = resident_bytes(&actor.layout(T5Placement::Cpu));
        // 9.52 GB with T5, 6.76 GB without (plus 256-byte alignment per tensor).
        assert!(
            (9_519_000_000..9_521_000_000).contains(&with_t5),
            "{with_t5}"
        );
        assert!(
            (6_759_000_000..6_761_000_000).contains(&without),
            "{without}"
        );
        assert_eq!(placement(&actor, 7_100_000_000), T5Placement::Cpu);
        assert_eq!(placement(&actor, with_t5), T5Placement::Device);
        assert_eq!(placement(&actor, with_t5 - 1), T5Placement::Cpu);
    }
}
