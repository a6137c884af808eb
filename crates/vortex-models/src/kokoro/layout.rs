//! Kokoro-82M (hexgrad/Kokoro-82M, `kokoro-v1_0.pth`): a StyleTTS 2 text-to-speech model with
//! an iSTFTNet decoder. The layout is generated from the model's `config.json`
//! hyperparameters and the module structure of the `kokoro` package (`KModel`: `bert`,
//! `bert_encoder`, `predictor`, `text_encoder`, `decoder`). The published checkpoint is a
//! PyTorch pickle of five state dicts; its safetensors conversion flattens them as
//! `{module}.{key}` with the `module.` prefix of DataParallel removed, which is the naming
//! here. Convolutions carry weight normalization (`weight_g`, `weight_v`).

use crate::layout::{Layout, WeightDtype};

/// The hyperparameters of Kokoro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KokoroConfig {
    /// Checkpoint name.
    pub checkpoint: &'static str,
    /// Phoneme vocabulary.
    pub n_token: u64,
    /// Hidden width.
    pub hidden_dim: u64,
    /// Style vector width.
    pub style_dim: u64,
    /// Layers of the text and duration encoders.
    pub n_layer: u64,
    /// Longest duration the predictor classifies.
    pub max_dur: u64,
    /// PL-BERT (ALBERT) hidden width.
    pub bert_hidden: u64,
    /// PL-BERT feed-forward width.
    pub bert_intermediate: u64,
    /// PL-BERT position embeddings.
    pub bert_positions: u64,
    /// ALBERT factorized embedding width.
    pub bert_embedding: u64,
    /// iSTFTNet: first upsampling layer's channels.
    pub upsample_initial_channel: u64,
    /// iSTFTNet: upsampling rates.
    pub upsample_rates: [u64; 2],
    /// iSTFTNet: upsampling kernel sizes.
    pub upsample_kernel_sizes: [u64; 2],
    /// iSTFTNet: residual block kernel sizes.
    pub resblock_kernel_sizes: [u64; 3],
    /// iSTFTNet: FFT size of the inverse STFT.
    pub istft_n_fft: u64,
    /// Decoder: width of its AdaIN residual blocks (1024).
    pub decoder_hidden: u64,
    /// Decoder: channels of the ASR residual (64).
    pub asr_channels: u64,
}

impl KokoroConfig {
    /// Kokoro-82M v1.0 (`config.json` of hexgrad/Kokoro-82M).
    pub const V1_0: KokoroConfig = KokoroConfig {
        checkpoint: "hexgrad/Kokoro-82M (kokoro-v1_0)",
        n_token: 178,
        hidden_dim: 512,
        style_dim: 128,
        n_layer: 3,
        max_dur: 50,
        bert_hidden: 768,
        bert_intermediate: 2048,
        bert_positions: 512,
        bert_embedding: 128,
        upsample_initial_channel: 512,
        upsample_rates: [10, 6],
        upsample_kernel_sizes: [20, 12],
        resblock_kernel_sizes: [3, 7, 11],
        istft_n_fft: 20,
        decoder_hidden: 1024,
        asr_channels: 64,
    };

    /// A scaled-down Kokoro with the same structure, for test fixtures.
    pub const TINY: KokoroConfig = KokoroConfig {
        checkpoint: "vortex/tiny-kokoro (test fixture)",
        n_token: 8,
        hidden_dim: 8,
        style_dim: 4,
        n_layer: 1,
        max_dur: 4,
        bert_hidden: 8,
        bert_intermediate: 16,
        bert_positions: 8,
        bert_embedding: 4,
        upsample_initial_channel: 8,
        upsample_rates: [2, 2],
        upsample_kernel_sizes: [4, 4],
        resblock_kernel_sizes: [3, 3, 3],
        istft_n_fft: 4,
        decoder_hidden: 8,
        asr_channels: 4,
    };

    /// Every tensor, stored as `dtype`.
    pub fn layout(&self, dtype: WeightDtype) -> Layout {
        let mut l = Layout::new(self.checkpoint);
        let d = dtype;
        // PL-BERT: ALBERT with one shared layer.
        let (e, h) = (self.bert_embedding, self.bert_hidden);
        l.push(
            "bert.embeddings.word_embeddings.weight",
            d,
            &[self.n_token, e],
        );
        l.push(
            "bert.embeddings.position_embeddings.weight",
            d,
            &[self.bert_positions, e],
        );
        l.push("bert.embeddings.token_type_embeddings.weight", d, &[2, e]);
        l.layer_norm("bert.embeddings.LayerNorm", d, e);
        l.linear("bert.encoder.embedding_hidden_mapping_in", d, h, e);
        let a = "bert.encoder.albert_layer_groups.0.albert_layers.0";
        l.layer_norm(&format!("{a}.full_layer_layer_norm"), d, h);
        for p in ["query", "key", "value", "dense"] {
            l.linear(&format!("{a}.attention.{p}"), d, h, h);
        }
        l.layer_norm(&format!("{a}.attention.LayerNorm"), d, h);
        l.linear(&format!("{a}.ffn"), d, self.bert_intermediate, h);
        l.linear(&format!("{a}.ffn_output"), d, h, self.bert_intermediate);
        l.linear("bert.pooler", d, h, h);
        l.linear("bert_encoder", d, self.hidden_dim, h);

        let (hid, sty) = (self.hidden_dim, self.style_dim);
        // Prosody predictor.
        for i in 0..self.n_layer {
            lstm(
                &mut l,
                &format!("predictor.text_encoder.lstms.{}", 2 * i),
                d,
                hid + sty,
                hid / 2,
            );
            l.linear(
                &format!("predictor.text_encoder.lstms.{}.fc", 2 * i + 1),
                d,
                2 * hid,
                sty,
            );
        }
        lstm(&mut l, "predictor.lstm", d, hid + sty, hid / 2);
        l.linear("predictor.duration_proj.linear_layer", d, self.max_dur, hid);
        lstm(&mut l, "predictor.shared", d, hid + sty, hid / 2);
        for branch in ["F0", "N"] {
            let p = format!("predictor.{branch}");
            adain_res_blk(&mut l, &format!("{p}.0"), d, hid, hid, sty, false);
            adain_res_blk(&mut l, &format!("{p}.1"), d, hid, hid / 2, sty, true);
            adain_res_blk(&mut l, &format!("{p}.2"), d, hid / 2, hid / 2, sty, false);
            conv(
                &mut l,
                &format!("predictor.{branch}_proj"),
                d,
                1,
                hid / 2,
                1,
                true,
            );
        }

        // Text encoder.
        l.push("text_encoder.embedding.weight", d, &[self.n_token, hid]);
        for i in 0..self.n_layer {
            wn_conv(
                &mut l,
                &format!("text_encoder.cnn.{i}.0"),
                d,
                hid,
                hid,
                5,
                true,
            );
            l.push(format!("text_encoder.cnn.{i}.1.gamma"), d, &[hid]);
            l.push(format!("text_encoder.cnn.{i}.1.beta"), d, &[hid]);
        }
        lstm(&mut l, "text_encoder.lstm", d, hid, hid / 2);

        // Decoder: AdaIN residual blocks, then the iSTFTNet generator.
        let (dh, asr) = (self.decoder_hidden, self.asr_channels);
        let gen_in = self.upsample_initial_channel;
        adain_res_blk(&mut l, "decoder.encode", d, hid + 2, dh, sty, false);
        for i in 0..3 {
            let p = format!("decoder.decode.{i}");
            adain_res_blk(&mut l, &p, d, dh + 2 + asr, dh, sty, false);
        }
        adain_res_blk(
            &mut l,
            "decoder.decode.3",
            d,
            dh + 2 + asr,
            gen_in,
            sty,
            true,
        );
        wn_conv(&mut l, "decoder.F0_conv", d, 1, 1, 3, true);
        wn_conv(&mut l, "decoder.N_conv", d, 1, 1, 3, true);
        wn_conv(&mut l, "decoder.asr_res.0", d, asr, hid, 1, true);
        let g = "decoder.generator";
        l.linear(&format!("{g}.m_source.l_linear"), d, 1, 9);
        let c0 = self.upsample_initial_channel;
        let mut ch = c0;
        for (i, &kernel) in self.upsample_kernel_sizes.iter().enumerate() {
            let (cin, cout) = (c0 >> i, c0 >> (i + 1));
            // ConvTranspose1d weights are [in, out, k]; weight norm over dim 0.
            l.push(format!("{g}.ups.{i}.weight_g"), d, &[cin, 1, 1]);
            l.push(format!("{g}.ups.{i}.weight_v"), d, &[cin, cout, kernel]);
            l.push(format!("{g}.ups.{i}.bias"), d, &[cout]);
            ch = cout;
        }
        for i in 0..self.upsample_rates.len() {
            let c = c0 >> (i + 1);
            for (j, &k) in self.resblock_kernel_sizes.iter().enumerate() {
                adain_res_block1(
                    &mut l,
                    &format!("{g}.resblocks.{}", 3 * i + j),
                    d,
                    c,
                    k,
                    sty,
                );
            }
            let last = i + 1 == self.upsample_rates.len();
            let stride: u64 = self.upsample_rates[i + 1..].iter().product();
            let kernel = if last { 1 } else { 2 * stride };
            conv(
                &mut l,
                &format!("{g}.noise_convs.{i}"),
                d,
                c,
                self.istft_n_fft + 2,
                kernel,
                true,
            );
            adain_res_block1(
                &mut l,
                &format!("{g}.noise_res.{i}"),
                d,
                c,
                if last { 11 } else { 7 },
                sty,
            );
        }
        wn_conv(
            &mut l,
            &format!("{g}.conv_post"),
            d,
            self.istft_n_fft + 2,
            ch,
            7,
            true,
        );
        l
    }
}

/// A bidirectional single-layer LSTM.
fn lstm(l: &mut Layout, prefix: &str, d: WeightDtype, input: u64, hidden: u64) {
    for suffix in ["", "_reverse"] {
        l.push(
            format!("{prefix}.weight_ih_l0{suffix}"),
            d,
            &[4 * hidden, input],
        );
        l.push(
            format!("{prefix}.weight_hh_l0{suffix}"),
            d,
            &[4 * hidden, hidden],
        );
        l.push(format!("{prefix}.bias_ih_l0{suffix}"), d, &[4 * hidden]);
        l.push(format!("{prefix}.bias_hh_l0{suffix}"), d, &[4 * hidden]);
    }
}

/// A plain Conv1d.
fn conv(l: &mut Layout, prefix: &str, d: WeightDtype, out: u64, inp: u64, k: u64, bias: bool) {
    l.push(format!("{prefix}.weight"), d, &[out, inp, k]);
    if bias {
        l.push(format!("{prefix}.bias"), d, &[out]);
    }
}

/// A weight-normalized Conv1d.
fn wn_conv(l: &mut Layout, prefix: &str, d: WeightDtype, out: u64, inp: u64, k: u64, bias: bool) {
    l.push(format!("{prefix}.weight_g"), d, &[out, 1, 1]);
    l.push(format!("{prefix}.weight_v"), d, &[out, inp, k]);
    if bias {
        l.push(format!("{prefix}.bias"), d, &[out]);
    }
}

/// StyleTTS 2's `AdainResBlk1d`.
fn adain_res_blk(l: &mut Layout, p: &str, d: WeightDtype, cin: u64, cout: u64, sty: u64, up: bool) {
    wn_conv(l, &format!("{p}.conv1"), d, cout, cin, 3, true);
    wn_conv(l, &format!("{p}.conv2"), d, cout, cout, 3, true);
    l.linear(&format!("{p}.norm1.fc"), d, 2 * cin, sty);
    l.linear(&format!("{p}.norm2.fc"), d, 2 * cout, sty);
    if cin != cout {
        wn_conv(l, &format!("{p}.conv1x1"), d, cout, cin, 1, false);
    }
    if up {
        // Depthwise ConvTranspose1d(cin, cin, 3, groups = cin): weight [cin, 1, 3].
        l.push(format!("{p}.pool.weight_g"), d, &[cin, 1, 1]);
        l.push(format!("{p}.pool.weight_v"), d, &[cin, 1, 3]);
        l.push(format!("{p}.pool.bias"), d, &[cin]);
    }
}

/// iSTFTNet's `AdaINResBlock1` with dilations (1, 3, 5).
fn adain_res_block1(l: &mut Layout, p: &str, d: WeightDtype, ch: u64, k: u64, sty: u64) {
    for i in 0..3 {
        wn_conv(l, &format!("{p}.convs1.{i}"), d, ch, ch, k, true);
    }
    for i in 0..3 {
        wn_conv(l, &format!("{p}.convs2.{i}"), d, ch, ch, k, true);
    }
    for i in 0..3 {
        l.linear(&format!("{p}.adain1.{i}.fc"), d, 2 * ch, sty);
    }
    for i in 0..3 {
        l.linear(&format!("{p}.adain2.{i}.fc"), d, 2 * ch, sty);
    }
    for i in 0..3 {
        l.push(format!("{p}.alpha1.{i}"), d, &[1, ch, 1]);
    }
    for i in 0..3 {
        l.push(format!("{p}.alpha2.{i}"), d, &[1, ch, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_82_million_parameters() {
        let layout = KokoroConfig::V1_0.layout(WeightDtype::F16);
        // Published as 82M: `sum(p.numel())` over KModel gives 81,763,410 (the fp32
        // checkpoint is 327 MB).
        assert_eq!(layout.numel(), 81_763_410);
        assert_eq!(layout.bytes(), 2 * 81_763_410);
        assert_eq!(
            layout
                .get("decoder.generator.ups.1.weight_v")
                .unwrap()
                .shape,
            [256, 128, 12]
        );
    }
}
