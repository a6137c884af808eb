//! LivePortrait (KwaiVGI/LivePortrait, human model): five networks, generated from
//! `models.yaml`'s hyperparameters and the module structure of `src/modules/`:
//! the appearance feature extractor (F), the motion extractor (M, a ConvNeXt-V2-tiny
//! backbone with pose/keypoint heads), the warping module (W, with its dense motion
//! hourglass), the SPADE generator (G, spectral-normalized convolutions) and the
//! stitching/retargeting MLPs (S). The five published `.pth` files are prefixed here by their
//! network's name. Batch-norm layers carry their running statistics and an I64 step counter,
//! as PyTorch state dicts do; dtype applies to everything else.
//!
//! [`network`] runs a LivePortrait export (`data/liveportrait/export_liveportrait.py`) as
//! the video stage.

pub mod network;

use crate::layout::{Layout, WeightDtype};

/// The hyperparameters LivePortrait's `models.yaml` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivePortraitConfig {
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Implicit keypoints.
    pub num_kp: u64,
    /// Base channels of F, W and G.
    pub block_expansion: u64,
    /// Channel cap of F, W and G.
    pub max_features: u64,
    /// Down blocks of F, W and G.
    pub num_down_blocks: u64,
    /// Channels of the 3-D appearance volume.
    pub reshape_channel: u64,
    /// Depth of the 3-D appearance volume.
    pub reshape_depth: u64,
    /// 3-D residual blocks in F.
    pub num_resblocks: u64,
    /// Dense motion hourglass: base channels, blocks, channel cap, compressed channels.
    pub dense_block_expansion: u64,
    /// Dense motion hourglass blocks.
    pub dense_num_blocks: u64,
    /// Dense motion hourglass channel cap.
    pub dense_max_features: u64,
    /// Dense motion compressed feature channels.
    pub compress: u64,
    /// ConvNeXt-V2 depths.
    pub convnext_depths: [u64; 4],
    /// ConvNeXt-V2 widths.
    pub convnext_dims: [u64; 4],
    /// Pose angle bins.
    pub num_bins: u64,
    /// Hidden channels of each SPADE normalization (128).
    pub spade_hidden: u64,
    /// Hidden widths of the stitching and lip retargeting MLPs (128, 128, 64).
    pub stitching_hidden: [u64; 3],
    /// Hidden widths of the eye retargeting MLP (256, 256, 128, 128, 64).
    pub eye_hidden: [u64; 5],
}

impl LivePortraitConfig {
    /// The human model of LivePortrait.
    pub const HUMAN: LivePortraitConfig = LivePortraitConfig {
        checkpoint: "KwaiVGI/LivePortrait (human)",
        num_kp: 21,
        block_expansion: 64,
        max_features: 512,
        num_down_blocks: 2,
        reshape_channel: 32,
        reshape_depth: 16,
        num_resblocks: 6,
        dense_block_expansion: 32,
        dense_num_blocks: 5,
        dense_max_features: 1024,
        compress: 4,
        convnext_depths: [3, 3, 9, 3],
        convnext_dims: [96, 192, 384, 768],
        num_bins: 66,
        spade_hidden: 128,
        stitching_hidden: [128, 128, 64],
        eye_hidden: [256, 256, 128, 128, 64],
    };

    /// A scaled-down LivePortrait with the same structure, for test fixtures.
    pub const TINY: LivePortraitConfig = LivePortraitConfig {
        checkpoint: "vortex/tiny-liveportrait (test fixture)",
        num_kp: 2,
        block_expansion: 4,
        max_features: 16,
        num_down_blocks: 2,
        reshape_channel: 2,
        reshape_depth: 2,
        num_resblocks: 1,
        dense_block_expansion: 2,
        dense_num_blocks: 2,
        dense_max_features: 8,
        compress: 1,
        convnext_depths: [1, 1, 1, 1],
        convnext_dims: [4, 8, 8, 8],
        num_bins: 4,
        spade_hidden: 4,
        stitching_hidden: [8, 8, 4],
        eye_hidden: [8, 8, 8, 8, 4],
    };

    /// Every tensor of the five networks; floating tensors stored as `dtype`.
    pub fn layout(&self, dtype: WeightDtype) -> Layout {
        let mut l = Layout::new(self.checkpoint);
        let d = dtype;
        let (be, mf) = (self.block_expansion, self.max_features);

        // F: appearance feature extractor.
        let f = "appearance_feature_extractor";
        conv_bn(&mut l, &format!("{f}.first"), d, 2, be, 3, 3);
        let mut out = be;
        for i in 0..self.num_down_blocks {
            let cin = mf.min(be << i);
            out = mf.min(be << (i + 1));
            conv_bn(&mut l, &format!("{f}.down_blocks.{i}"), d, 2, out, cin, 3);
        }
        conv(&mut l, &format!("{f}.second"), d, &[mf, out, 1, 1]);
        let rc = self.reshape_channel;
        for i in 0..self.num_resblocks {
            let p = format!("{f}.resblocks_3d.3dr{i}");
            batch_norm(&mut l, &format!("{p}.norm1"), d, rc);
            conv(&mut l, &format!("{p}.conv1"), d, &[rc, rc, 3, 3, 3]);
            batch_norm(&mut l, &format!("{p}.norm2"), d, rc);
            conv(&mut l, &format!("{p}.conv2"), d, &[rc, rc, 3, 3, 3]);
        }

        // M: motion extractor, ConvNeXt-V2-tiny with LivePortrait's heads.
        let m = "motion_extractor.detector";
        let dims = self.convnext_dims;
        conv(
            &mut l,
            &format!("{m}.downsample_layers.0.0"),
            d,
            &[dims[0], 3, 4, 4],
        );
        l.layer_norm(&format!("{m}.downsample_layers.0.1"), d, dims[0]);
        for i in 1..4 {
            l.layer_norm(&format!("{m}.downsample_layers.{i}.0"), d, dims[i - 1]);
            conv(
                &mut l,
                &format!("{m}.downsample_layers.{i}.1"),
                d,
                &[dims[i], dims[i - 1], 2, 2],
            );
        }
        for (i, (&depth, &dim)) in self.convnext_depths.iter().zip(&dims).enumerate() {
            for j in 0..depth {
                let p = format!("{m}.stages.{i}.{j}");
                conv(&mut l, &format!("{p}.dwconv"), d, &[dim, 1, 7, 7]);
                l.layer_norm(&format!("{p}.norm"), d, dim);
                l.linear(&format!("{p}.pwconv1"), d, 4 * dim, dim);
                l.push(format!("{p}.grn.gamma"), d, &[1, 1, 1, 4 * dim]);
                l.push(format!("{p}.grn.beta"), d, &[1, 1, 1, 4 * dim]);
                l.linear(&format!("{p}.pwconv2"), d, dim, 4 * dim);
            }
        }
        let top = dims[3];
        l.layer_norm(&format!("{m}.norm"), d, top);
        let kp = self.num_kp;
        for (head, width) in [
            ("fc_kp", 3 * kp),
            ("fc_scale", 1),
            ("fc_pitch", self.num_bins),
            ("fc_yaw", self.num_bins),
            ("fc_roll", self.num_bins),
            ("fc_t", 3),
            ("fc_exp", 3 * kp),
        ] {
            l.linear(&format!("{m}.{head}"), d, width, top);
        }

        // W: warping module and its dense motion network.
        let w = "warping_module";
        let dm = format!("{w}.dense_motion_network");
        let (dbe, dmf, blocks) = (
            self.dense_block_expansion,
            self.dense_max_features,
            self.dense_num_blocks,
        );
        let hg_in = (kp + 1) * (self.compress + 1);
        for i in 0..blocks {
            let cin = if i == 0 { hg_in } else { dmf.min(dbe << i) };
            let cout = dmf.min(dbe << (i + 1));
            conv_bn(
                &mut l,
                &format!("{dm}.hourglass.encoder.down_blocks.{i}"),
                d,
                3,
                cout,
                cin,
                3,
            );
        }
        for (n, i) in (0..blocks).rev().enumerate() {
            let factor = if i == blocks - 1 { 1 } else { 2 };
            let cin = factor * dmf.min(dbe << (i + 1));
            let cout = dmf.min(dbe << i);
            conv_bn(
                &mut l,
                &format!("{dm}.hourglass.decoder.up_blocks.{n}"),
                d,
                3,
                cout,
                cin,
                3,
            );
        }
        let hg_out = dbe + hg_in;
        conv(
            &mut l,
            &format!("{dm}.hourglass.decoder.conv"),
            d,
            &[hg_out, hg_out, 3, 3, 3],
        );
        batch_norm(&mut l, &format!("{dm}.hourglass.decoder.norm"), d, hg_out);
        conv(&mut l, &format!("{dm}.mask"), d, &[kp + 1, hg_out, 7, 7, 7]);
        conv(
            &mut l,
            &format!("{dm}.compress"),
            d,
            &[self.compress, rc, 1, 1, 1],
        );
        batch_norm(&mut l, &format!("{dm}.norm"), d, self.compress);
        conv(
            &mut l,
            &format!("{dm}.occlusion"),
            d,
            &[1, hg_out * self.reshape_depth, 7, 7],
        );
        let wc = be << self.num_down_blocks;
        conv_bn(&mut l, &format!("{w}.third"), d, 2, wc, mf, 3);
        conv(&mut l, &format!("{w}.fourth"), d, &[wc, wc, 1, 1]);

        // G: SPADE decoder (upscale 2).
        let g = "spade_generator";
        let ic = mf.min(be << self.num_down_blocks);
        let sh = self.spade_hidden;
        conv(&mut l, &format!("{g}.fc"), d, &[2 * ic, ic, 3, 3]);
        for i in 0..6 {
            spade_block(
                &mut l,
                &format!("{g}.G_middle_{i}"),
                d,
                [2 * ic, 2 * ic, ic],
                sh,
            );
        }
        spade_block(&mut l, &format!("{g}.up_0"), d, [2 * ic, ic, ic], sh);
        spade_block(&mut l, &format!("{g}.up_1"), d, [ic, be, ic], sh);
        conv(&mut l, &format!("{g}.conv_img.0"), d, &[3 * 4, be, 3, 3]);

        // S: stitching and retargeting MLPs.
        let s = "stitching_retargeting_module";
        let stitching = &self.stitching_hidden[..];
        for (name, input, hidden, output) in [
            ("retarget_shoulder", 2 * 3 * kp, stitching, 3 * kp + 2),
            ("retarget_mouth", 3 * kp + 2, stitching, 3 * kp),
            ("retarget_eye", 3 * kp + 3, &self.eye_hidden[..], 3 * kp),
        ] {
            let mut width = input;
            for (i, &h) in hidden.iter().enumerate() {
                l.linear(&format!("{s}.{name}.mlp.{}", 2 * i), d, h, width);
                width = h;
            }
            l.linear(
                &format!("{s}.{name}.mlp.{}", 2 * hidden.len()),
                d,
                output,
                width,
            );
        }
        l
    }

    /// Trainable parameters of each network (running statistics, step counters and
    /// spectral-norm power-iteration vectors are buffers, not parameters).
    pub fn network_params(&self) -> Vec<(&'static str, u64)> {
        const BUFFERS: [&str; 5] = [
            "running_mean",
            "running_var",
            "num_batches_tracked",
            "weight_u",
            "weight_v",
        ];
        let layout = self.layout(WeightDtype::F16);
        NETWORKS
            .iter()
            .map(|&net| {
                let params = layout
                    .tensors
                    .iter()
                    .filter(|t| t.name.starts_with(net))
                    .filter(|t| !BUFFERS.iter().any(|b| t.name.ends_with(b)))
                    .map(|t| t.numel())
                    .sum();
                (net, params)
            })
            .collect()
    }
}

/// The five networks, by prefix.
pub const NETWORKS: [&str; 5] = [
    "appearance_feature_extractor",
    "motion_extractor",
    "warping_module",
    "spade_generator",
    "stitching_retargeting_module",
];

fn conv(l: &mut Layout, prefix: &str, d: WeightDtype, shape: &[u64]) {
    l.push(format!("{prefix}.weight"), d, shape);
    l.push(format!("{prefix}.bias"), d, &shape[..1]);
}

fn batch_norm(l: &mut Layout, prefix: &str, d: WeightDtype, c: u64) {
    l.push(format!("{prefix}.weight"), d, &[c]);
    l.push(format!("{prefix}.bias"), d, &[c]);
    l.push(format!("{prefix}.running_mean"), d, &[c]);
    l.push(format!("{prefix}.running_var"), d, &[c]);
    l.push(
        format!("{prefix}.num_batches_tracked"),
        WeightDtype::I64,
        &[],
    );
}

/// `SameBlock2d`/`DownBlock2d`/`DownBlock3d`/`UpBlock3d`: a convolution and a batch norm.
fn conv_bn(l: &mut Layout, prefix: &str, d: WeightDtype, dims: u32, out: u64, inp: u64, k: u64) {
    let mut shape = vec![out, inp];
    shape.extend(std::iter::repeat_n(k, dims as usize));
    conv(l, &format!("{prefix}.conv"), d, &shape);
    batch_norm(l, &format!("{prefix}.norm"), d, out);
}

/// A spectral-normalized convolution: `weight_orig` plus the power-iteration vectors.
fn sn_conv(l: &mut Layout, prefix: &str, d: WeightDtype, out: u64, inp: u64, k: u64, bias: bool) {
    if bias {
        l.push(format!("{prefix}.bias"), d, &[out]);
    }
    l.push(format!("{prefix}.weight_orig"), d, &[out, inp, k, k]);
    l.push(format!("{prefix}.weight_u"), d, &[out]);
    l.push(format!("{prefix}.weight_v"), d, &[inp * k * k]);
}

/// `SPADE(norm_nc, label_nc)` with `hidden` channels.
fn spade(l: &mut Layout, prefix: &str, d: WeightDtype, norm_nc: u64, label_nc: u64, hidden: u64) {
    conv(
        l,
        &format!("{prefix}.mlp_shared.0"),
        d,
        &[hidden, label_nc, 3, 3],
    );
    conv(
        l,
        &format!("{prefix}.mlp_gamma"),
        d,
        &[norm_nc, hidden, 3, 3],
    );
    conv(
        l,
        &format!("{prefix}.mlp_beta"),
        d,
        &[norm_nc, hidden, 3, 3],
    );
}

/// `SPADEResnetBlock(fin, fout, 'spadespectralinstance', label_nc)` with SPADE `hidden`.
fn spade_block(l: &mut Layout, p: &str, d: WeightDtype, channels: [u64; 3], hidden: u64) {
    let [fin, fout, label_nc] = channels;
    let fmiddle = fin.min(fout);
    sn_conv(l, &format!("{p}.conv_0"), d, fmiddle, fin, 3, true);
    sn_conv(l, &format!("{p}.conv_1"), d, fout, fmiddle, 3, true);
    if fin != fout {
        sn_conv(l, &format!("{p}.conv_s"), d, fout, fin, 1, false);
    }
    spade(l, &format!("{p}.norm_0"), d, fin, label_nc, hidden);
    spade(l, &format!("{p}.norm_1"), d, fmiddle, label_nc, hidden);
    if fin != fout {
        spade(l, &format!("{p}.norm_s"), d, fin, label_nc, hidden);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_130_million_parameters_in_five_networks() {
        let config = LivePortraitConfig::HUMAN;
        // Published as about 130M parameters over the five networks (DESIGN.md §3). Per
        // network: F 0.84M, M 28.1M (ConvNeXt-V2-tiny is 28.6M with its ImageNet head),
        // W 45.5M, G 55.4M, S 0.23M.
        let per_net: Vec<u64> = config.network_params().iter().map(|(_, n)| *n).collect();
        assert_eq!(
            per_net,
            [836_224, 28_118_728, 45_529_829, 55_365_388, 227_263]
        );
        let total: u64 = per_net.iter().sum();
        assert!((125_000_000..135_000_000).contains(&total), "{total}");
        let layout = config.layout(WeightDtype::F16);
        let head = layout
            .get("motion_extractor.detector.fc_exp.weight")
            .unwrap();
        assert_eq!(head.shape, [63, 768]);
        let bn = layout
            .get("warping_module.third.norm.num_batches_tracked")
            .unwrap();
        assert_eq!((bn.dtype, bn.numel()), (WeightDtype::I64, 1));
    }
}
