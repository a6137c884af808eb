//! The actor stage on a FLUX.1 export: the prompt through CLIP-L's text tower (pooled) and
//! T5's encoder, seeded noise, schnell's Euler steps through the transformer, the VAE's decoder,
//! an RGB image into the actor buffer — as diffusers' `FluxPipeline` does it
//! (`tests/data/flux/make_golden.py` is the reference, step for step). Every graph reads its
//! weights in place from the model's static region and runs with its activations in the
//! arena's scratch.

use vortex_registry::Dtype;
use vortex_vram::{Arena, OwnerId, StaticRegion};

use crate::clip_text::ClipTokenizer;
use crate::compute::{
    ActorStage, ComputeError, Implementation, Recipe, StageContext, StageImpl, check_dtype,
    check_rgb, check_size,
};
use crate::export::{Export, ExportedNetwork, FluxManifest, T5Ids};
use crate::weights::{HostWeights, ResidentWeights};
use vortex_runtime::{
    Graph, Input, Optimization, Output, OutputInto, Runtime, SessionConfig, Terminator,
};

/// The stage on one FLUX export.
#[derive(Debug)]
pub struct FluxNetwork {
    detail: String,
    manifest: FluxManifest,
    clip_text: Graph,
    t5: Graph,
    transformer: Graph,
    vae_decoder: Graph,
    tokenizer: ClipTokenizer,
    t5_tokenizer: T5Tokenizer,
}

/// What a prompt becomes before the denoising.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditioning {
    /// CLIP's 77 ids.
    pub clip_ids: Vec<i64>,
    /// T5's ids.
    pub t5_ids: Vec<i64>,
    /// CLIP's pooled embedding.
    pub pooled: Vec<f32>,
    /// T5's hidden states, `t5_ids.len() × width`.
    pub prompt_embeds: Vec<f32>,
}

/// How a prompt becomes T5's ids: the checkpoint's `tokenizer.json` (T5's SentencePiece
/// vocabulary through the `tokenizers` crate), cut and padded to the manifest's length as
/// `FluxPipeline` asks `T5TokenizerFast` to, or ByT5's bytes + 3 (the tiny fixture's).
#[derive(Debug)]
pub struct T5Tokenizer {
    ids: T5Ids,
    kind: T5Kind,
}

#[derive(Debug)]
enum T5Kind {
    Byt5,
    File {
        path: std::path::PathBuf,
        tokenizer: Box<tokenizers::Tokenizer>,
    },
}

impl T5Tokenizer {
    /// The tokenizer `ids` describes; its file, if any, is `dir/file`.
    pub fn open(dir: &std::path::Path, ids: &T5Ids) -> Result<Self, ComputeError> {
        let Some(file) = &ids.file else {
            return Ok(T5Tokenizer {
                ids: ids.clone(),
                kind: T5Kind::Byt5,
            });
        };
        let path = dir.join(file);
        let problem = |problem: String| ComputeError::T5Tokenizer {
            file: path.clone(),
            problem,
        };
        let mut tokenizer = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| problem(format!("not a tokenizers file: {e}")))?;
        let no_pad = || problem(format!("has no token of the padding id {}", ids.pad));
        let pad_id = u32::try_from(ids.pad).map_err(|_| no_pad())?;
        let pad_token = tokenizer.id_to_token(pad_id).ok_or_else(no_pad)?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: ids.max_length,
                ..Default::default()
            }))
            .map_err(|e| problem(format!("refused truncation to {}: {e}", ids.max_length)))?;
        tokenizer.with_padding(Some(tokenizers::PaddingParams {
            strategy: tokenizers::PaddingStrategy::Fixed(ids.max_length),
            pad_id,
            pad_token,
            ..Default::default()
        }));
        Ok(T5Tokenizer {
            ids: ids.clone(),
            kind: T5Kind::File {
                path,
                tokenizer: Box::new(tokenizer),
            },
        })
    }

    /// `max_length` ids of `prompt`, `</s>` after the text, padded.
    pub fn ids(&self, prompt: &str) -> Result<Vec<i64>, ComputeError> {
        let t5 = &self.ids;
        match &self.kind {
            T5Kind::Byt5 => {
                let mut ids: Vec<i64> = prompt
                    .bytes()
                    .take(t5.max_length - 1)
                    .map(|b| i64::from(b) + 3)
                    .collect();
                ids.push(t5.eos);
                ids.resize(t5.max_length, t5.pad);
                Ok(ids)
            }
            T5Kind::File { path, tokenizer } => {
                let encoding =
                    tokenizer
                        .encode(prompt, true)
                        .map_err(|e| ComputeError::T5Prompt {
                            file: path.clone(),
                            problem: e.to_string(),
                        })?;
                Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
            }
        }
    }
}

/// splitmix64, the noise generator's source (the golden script's, bit for bit).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The seed's noise in the unpacked latent order `[16, h, w]`: pairs of standard normals by
/// Box-Muller in f64 (`r cos θ`, then `r sin θ`), each rounded to f32.
pub fn noise(seed: u64, values: usize) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    let unit = 2f64.powi(-53);
    let mut out = Vec::with_capacity(values + 1);
    while out.len() < values {
        let (a, b) = (rng.next(), rng.next());
        let u1 = ((a >> 11) + 1) as f64 * unit;
        let u2 = (b >> 11) as f64 * unit;
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(values);
    out
}

/// `[c, h, w]` → `[(h/2)(w/2), 4c]`: 2×2 patches, channels first within a patch.
pub fn pack(latents: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(latents.len());
    for i in 0..h / 2 {
        for j in 0..w / 2 {
            for ch in 0..c {
                for di in 0..2 {
                    for dj in 0..2 {
                        out.push(latents[(ch * h + 2 * i + di) * w + 2 * j + dj]);
                    }
                }
            }
        }
    }
    out
}

/// The inverse of [`pack`].
pub fn unpack(packed: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; packed.len()];
    let mut k = 0;
    for i in 0..h / 2 {
        for j in 0..w / 2 {
            for ch in 0..c {
                for di in 0..2 {
                    for dj in 0..2 {
                        out[(ch * h + 2 * i + di) * w + 2 * j + dj] = packed[k];
                        k += 1;
                    }
                }
            }
        }
    }
    out
}

impl FluxNetwork {
    /// Sessions over `weights` (the export's tensors, resident in `arena`, whose memory must be
    /// host-addressable for the CPU provider, device memory for the CUDA one).
    pub fn new(
        runtime: &'static Runtime,
        export: &Export,
        arena: &Arena,
        weights: &ResidentWeights,
        tokenizer: ClipTokenizer,
        session: &SessionConfig,
    ) -> Result<Self, ComputeError> {
        let ExportedNetwork::Flux(manifest) = export.network() else {
            return Err(ComputeError::WrongExport {
                dir: export.dir().to_owned(),
                found: export.kind(),
                wanted: "FLUX",
            });
        };
        // T5's tensors are not resident when the adapter put T5 on the CPU (its budget could
        // not hold them): they are read from the export into host memory here.
        // (The manifest's T5 component is `parts::T5`'s name: `FluxManifest` checks it.)
        let t5_prefix = crate::flux::parts::T5;
        let t5_host = if weights
            .layout
            .tensors
            .iter()
            .any(|t| t.name.starts_with(t5_prefix))
        {
            None
        } else {
            let t5 = export.resident_layout().select(&[t5_prefix]);
            Some(HostWeights::read(&export.weights(), &export.layout(), &t5)?)
        };
        let graph = |g: &crate::export::FluxGraph, optimization| -> Result<Graph, ComputeError> {
            let prefix = format!("{}.", g.component);
            // T5's graph keeps the host buffer its weights are read from, the others the arena.
            // T5 from host memory runs on the CPU provider whatever the device.
            let (tensors, on) = match &t5_host {
                Some(host) if prefix == t5_prefix => {
                    (host.graph_weights()?, SessionConfig::cpu(session.threads))
                }
                _ => (
                    weights.graph_weights(arena, |n| n.starts_with(&prefix))?,
                    *session,
                ),
            };
            let file = export.file(&g.file);
            Ok(runtime.graph_with(&file, tensors, &on, optimization)?)
        };
        let clip_text = graph(&manifest.graphs.clip_text, Optimization::All)?;
        let mut t5 = graph(&manifest.graphs.t5, Optimization::All)?;
        let mut transformer = graph(&manifest.graphs.transformer, Optimization::All)?;
        // Its GroupNorms scale on a channels-last view, which the transpose optimizer would
        // rewrite against the weights handed over in place (see `Optimization`).
        let mut vae_decoder = graph(
            &manifest.graphs.vae_decoder,
            Optimization::NoTransposePushing,
        )?;
        let t5_tokenizer = T5Tokenizer::open(export.dir(), &manifest.tokenizers.t5)?;
        // One stop for all four: a cancelled slot stops whichever runs.
        t5.share_stop(&clip_text);
        transformer.share_stop(&clip_text);
        vae_decoder.share_stop(&clip_text);
        let weights_kind = manifest.quantization.as_ref().map_or_else(
            || "f32 weights".to_owned(),
            |q| {
                format!(
                    "{} with {}-bit {} weights in blocks of {}",
                    q.graphs.join(" and "),
                    q.bits,
                    q.op,
                    q.block_size
                )
            },
        );
        let t5_where = match &t5_host {
            Some(host) => format!(
                "; T5 from host memory ({}), its budget too small for it",
                vortex_vram::Bytes(host.bytes())
            ),
            None => String::new(),
        };
        Ok(FluxNetwork {
            detail: format!(
                "FLUX.1 ({} steps; from {}; {weights_kind}{t5_where}) exported by export_flux.py, on ONNX Runtime's {} provider",
                manifest.scheduler.sigmas.len() - 1,
                manifest.source,
                session.provider.name()
            ),
            manifest: (**manifest).clone(),
            clip_text,
            t5,
            transformer,
            vae_decoder,
            tokenizer,
            t5_tokenizer,
        })
    }

    /// T5's ids of `prompt` (see [`T5Tokenizer::ids`]).
    pub fn t5_ids(&self, prompt: &str) -> Result<Vec<i64>, ComputeError> {
        self.t5_tokenizer.ids(prompt)
    }

    /// The prompt through both text encoders.
    pub fn condition(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        prompt: &str,
    ) -> Result<Conditioning, ComputeError> {
        let encoded = self
            .tokenizer
            .encode(prompt)
            .map_err(|e| ComputeError::Prompt(Box::new(e)))?;
        let clip_ids = encoded.ids().to_vec();
        let t5_ids = self.t5_ids(prompt)?;
        let mut pooled = Vec::new();
        self.clip_text.run(
            arena,
            owner,
            &[Input::I64("input_ids", &[1, clip_ids.len()], &clip_ids)],
            &mut [Output::F32("pooler_output", &mut pooled)],
        )?;
        let mut prompt_embeds = Vec::new();
        self.t5.run(
            arena,
            owner,
            &[Input::I64("input_ids", &[1, t5_ids.len()], &t5_ids)],
            &mut [Output::F32("last_hidden_state", &mut prompt_embeds)],
        )?;
        Ok(Conditioning {
            clip_ids,
            t5_ids,
            pooled,
            prompt_embeds,
        })
    }

    /// The start-up profile run's work: one image of the slot's size.
    pub fn profile(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        size: usize,
    ) -> Result<(), ComputeError> {
        self.generate(arena, owner, "a portrait", 0, size, &mut |_, _| {})
            .map(drop)
    }

    /// A `size`×`size` RGB image (row-major, 3 bytes a pixel) of `prompt` from `seed`;
    /// `on_step(i, latents)` sees the packed latents after each step.
    pub fn generate(
        &mut self,
        arena: &Arena,
        owner: OwnerId,
        prompt: &str,
        seed: u64,
        size: usize,
        on_step: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<Vec<u8>, ComputeError> {
        let cond = self.condition(arena, owner, prompt)?;
        let (c, h, w) = (16, size / 8, size / 8);
        let tokens = (h / 2) * (w / 2);
        let text = cond.t5_ids.len();
        let mut x = pack(&noise(seed, c * h * w), c, h, w);
        let img_ids: Vec<f32> = (0..h / 2)
            .flat_map(|i| (0..w / 2).flat_map(move |j| [0.0, i as f32, j as f32]))
            .collect();
        let txt_ids = vec![0.0f32; text * 3];
        let width = cond.prompt_embeds.len() / text.max(1);
        // The velocity is written by ONNX Runtime straight into `v` each step (no output
        // tensor copied afterwards).
        let mut v = vec![0.0f32; x.len()];
        let sigmas = self.manifest.scheduler.sigmas.clone();
        for (i, pair) in sigmas.windows(2).enumerate() {
            let timestep = [pair[0]];
            self.transformer.run_into(
                arena,
                owner,
                &[
                    Input::F32("hidden_states", &[1, tokens, 4 * c], &x),
                    Input::F32(
                        "encoder_hidden_states",
                        &[1, text, width],
                        &cond.prompt_embeds,
                    ),
                    Input::F32("pooled_projections", &[1, cond.pooled.len()], &cond.pooled),
                    Input::F32("timestep", &[1], &timestep),
                    Input::F32("img_ids", &[tokens, 3], &img_ids),
                    Input::F32("txt_ids", &[text, 3], &txt_ids),
                ],
                &mut [OutputInto {
                    name: "noise_pred",
                    shape: &[1, tokens, 4 * c],
                    data: &mut v,
                }],
            )?;
            // Two roundings, as the scheduler's f32 tensors make them (no fused multiply-add).
            let dt = pair[1] - pair[0];
            for (x, v) in x.iter_mut().zip(&v) {
                let step = dt * v;
                *x += step;
            }
            on_step(i, &x);
        }
        let latents = self.manifest.latents.clone();
        let z: Vec<f32> = unpack(&x, c, h, w)
            .into_iter()
            .map(|v| v / latents.scaling_factor + latents.shift_factor)
            .collect();
        // The decoded image is written by ONNX Runtime straight into `image`.
        let plane = size * size;
        let mut image = vec![0.0f32; 3 * plane];
        self.vae_decoder.run_into(
            arena,
            owner,
            &[Input::F32("latents", &[1, c, h, w], &z)],
            &mut [OutputInto {
                name: "image",
                shape: &[1, 3, size, size],
                data: &mut image,
            }],
        )?;
        let mut rgb = vec![0u8; 3 * plane];
        for (p, px) in rgb.chunks_exact_mut(3).enumerate() {
            for (ch, out) in px.iter_mut().enumerate() {
                let v = (image[ch * plane + p] * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0;
                *out = v.round_ties_even() as u8;
            }
        }
        Ok(rgb)
    }
}

impl StageImpl for FluxNetwork {
    fn implementation(&self) -> Implementation {
        Implementation::network(&self.detail)
    }

    fn check_buffers(&self, buffers: &vortex_registry::OutputBuffers) -> Result<(), ComputeError> {
        check_dtype(
            "FLUX",
            "the actor image",
            "actor_dtype",
            buffers.actor_dtype,
            Dtype::U8,
        )?;
        check_rgb(buffers)?;
        if !buffers.image_size.is_multiple_of(16) || buffers.image_size == 0 {
            return Err(ComputeError::ImageSize {
                found: buffers.image_size,
            });
        }
        Ok(())
    }

    fn stopper(&self) -> Option<Terminator> {
        Some(self.clip_text.terminator())
    }
}

impl ActorStage for FluxNetwork {
    fn run(
        &mut self,
        cx: &mut StageContext<'_>,
        recipe: &Recipe,
        actor: &StaticRegion,
    ) -> Result<(), ComputeError> {
        self.check_buffers(cx.buffers)?;
        check_size("actor", actor, cx.buffers.actor_bytes())?;
        let size = cx.buffers.image_size as usize;
        let image = self.generate(
            cx.arena,
            cx.owner,
            &recipe.prompt,
            recipe.seed,
            size,
            &mut |_, _| {},
        )?;
        cx.arena.upload(actor, 0, &image)?;
        Ok(())
    }
}
