//! Reference implementations of the five models' stages: real data flow with the right shapes
//! and types, deterministic from the recipe and its seed, writing into buffers the caller
//! pre-allocated. They are stand-ins until the real networks land and are named as such
//! everywhere: nothing here is Flux, Kokoro, LivePortrait or CLIP inference.
//!
//! - actor ([`reference_actor`]): a procedural portrait from the prompt and seed, through a
//!   latent in the scratch region;
//! - audio ([`reference_audio`]): a waveform synthesized from the script, one tone burst per
//!   letter;
//! - video ([`reference_video`]): frames warped from the actor, the mouth and head driven by
//!   the audio envelope;
//! - verification ([`reference_embedding`]): an L2-normalized embedding (512 or 768 wide) of
//!   evenly spaced frames, by a fixed random projection of block colour means.
//!
//! Host memory: each function works through a caller-owned staging `Vec<u8>` that is reused
//! from slot to slot, so nothing is allocated per slot once it has grown to its largest size.

use serde::Serialize;
use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::{Arena, OwnerId, Purpose, StaticRegion, VramError};

/// What a slot is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    /// The slot's number.
    pub slot_id: u64,
    /// Seed of every stage.
    pub seed: u64,
    /// What the actor looks like.
    pub prompt: String,
    /// What the actor says.
    pub script: String,
}

/// Why a reference stage failed.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// Device memory: scratch, a copy, a bound.
    #[error(transparent)]
    Vram(#[from] VramError),
    /// The buffers' dtypes are ones the reference implementation does not write.
    #[error(
        "the reference implementation writes {what} as {supported:?}, but the buffer is {found:?}: set buffers.{key} = \"{supported:?}\""
    )]
    Dtype {
        /// Which buffer.
        what: &'static str,
        /// The config key.
        key: &'static str,
        /// What it writes.
        supported: Dtype,
        /// What the buffer is.
        found: Dtype,
    },
    /// A buffer smaller than its shape.
    #[error("the {what} buffer holds {have} bytes but its shape needs {need}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Bytes in the region.
        have: u64,
        /// Bytes the shape needs.
        need: u64,
    },
}

fn check_dtype(
    what: &'static str,
    key: &'static str,
    found: Dtype,
    supported: Dtype,
) -> Result<(), ComputeError> {
    if found == supported {
        Ok(())
    } else {
        Err(ComputeError::Dtype {
            what,
            key,
            supported,
            found,
        })
    }
}

fn check_size(what: &'static str, region: &StaticRegion, need: u64) -> Result<(), ComputeError> {
    if region.size < need {
        return Err(ComputeError::Shape {
            what,
            have: region.size,
            need,
        });
    }
    Ok(())
}

/// A small, fast, seedable generator (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, salt: &str) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in salt.bytes() {
            state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Rng(state | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn resize(staging: &mut Vec<u8>, len: usize) -> &mut [u8] {
    staging.resize(len, 0);
    &mut staging[..len]
}

/// Latent side of the actor stage: the image side over 8, as Flux's VAE does.
pub fn latent_bytes(buffers: &OutputBuffers) -> u64 {
    let side = (buffers.image_size / 8).max(1);
    side * side * 16 * 2
}

/// The actor image (reference implementation): a procedural portrait from the prompt and
/// seed, written as `image_size² × channels` u8 into `actor`. Its latent lives in the scratch
/// region for the duration of the call.
pub fn reference_actor(
    arena: &Arena,
    owner: OwnerId,
    recipe: &Recipe,
    buffers: &OutputBuffers,
    actor: &StaticRegion,
    staging: &mut Vec<u8>,
) -> Result<(), ComputeError> {
    check_dtype(
        "the actor image",
        "actor_dtype",
        buffers.actor_dtype,
        Dtype::U8,
    )?;
    check_size("actor", actor, buffers.actor_bytes())?;
    let mut rng = Rng::new(recipe.seed, &recipe.prompt);
    // The latent: noise in scratch, read back as the portrait's parameters.
    let latent = arena.alloc_scratch(owner, Purpose::Scratch, latent_bytes(buffers))?;
    let noise: [u8; 64] = std::array::from_fn(|_| rng.next() as u8);
    latent.upload(0, &noise)?;
    let mut params = [0u8; 64];
    latent.download(0, &mut params)?;
    drop(latent);
    let p = |i: usize| f32::from(params[i]) / 255.0;
    let (n, c) = (buffers.image_size as usize, buffers.channels as usize);
    let background = [p(0), p(1), p(2)];
    let skin = [0.55 + 0.4 * p(3), 0.4 + 0.3 * p(4), 0.3 + 0.3 * p(5)];
    let (face_w, face_h) = (0.26 + 0.08 * p(6), 0.34 + 0.08 * p(7));
    let image = resize(staging, n * n * c);
    for y in 0..n {
        let fy = y as f32 / n as f32;
        for x in 0..n {
            let fx = x as f32 / n as f32;
            let (dx, dy) = ((fx - 0.5) / face_w, (fy - 0.52) / face_h);
            let in_face = dx * dx + dy * dy < 1.0;
            let eye =
                ((fx - 0.42).abs() < 0.03 || (fx - 0.58).abs() < 0.03) && (fy - 0.45).abs() < 0.02;
            let mouth = (fx - 0.5).abs() < 0.08 && (fy - 0.66).abs() < 0.015;
            for ch in 0..c {
                let k = ch.min(2);
                let v = if eye || mouth {
                    0.1
                } else if in_face {
                    skin[k] * (1.0 - 0.2 * dy.abs())
                } else {
                    background[k] * (0.6 + 0.4 * fy)
                };
                image[(y * n + x) * c + ch] = (v.clamp(0.0, 1.0) * 255.0) as u8;
            }
        }
    }
    arena.upload(actor, 0, image)?;
    Ok(())
}

/// The audio (reference implementation): `seconds × sample_rate` f32 samples synthesized from
/// the script, one 80 ms tone burst per letter (pitch from the letter and seed), silence for
/// spaces and after the script ends.
pub fn reference_audio(
    arena: &Arena,
    recipe: &Recipe,
    buffers: &OutputBuffers,
    audio: &StaticRegion,
    staging: &mut Vec<u8>,
) -> Result<(), ComputeError> {
    check_dtype("the audio", "audio_dtype", buffers.audio_dtype, Dtype::F32)?;
    check_size("audio", audio, buffers.audio_bytes())?;
    let rate = buffers.sample_rate as usize;
    let samples = (buffers.seconds * buffers.sample_rate) as usize;
    let burst = (rate * 80 / 1000).max(1);
    let mut rng = Rng::new(recipe.seed, "voice");
    let base = 110.0 + 60.0 * rng.unit();
    let letters = recipe.script.as_bytes();
    let tau = 2.0 * std::f32::consts::PI;
    // Per burst: a tone sin(w·k) under an envelope sin(π·k / burst), both advanced by rotation
    // (two multiply-adds a sample) instead of evaluating sin per sample.
    let mut tone = Rotor::default();
    let mut envelope = Rotor::default();
    // Write in chunks of at most 64 Ki samples through the staging buffer.
    let chunk = 65_536usize;
    let mut start = 0;
    while start < samples {
        let len = chunk.min(samples - start);
        let bytes = resize(staging, len * 4);
        for (i, out) in bytes.chunks_exact_mut(4).enumerate() {
            let s = start + i;
            let k = s % burst;
            let letter = letters.get(s / burst).copied().unwrap_or(b' ');
            let v = if letter.is_ascii_alphanumeric() {
                if k == 0 || i == 0 {
                    let pitch = base * (1.0 + f32::from(letter % 12) / 12.0);
                    tone = Rotor::at(tau * pitch / rate as f32, k);
                    envelope = Rotor::at(std::f32::consts::PI / burst as f32, k);
                }
                let v = 0.3 * envelope.sin * tone.sin;
                tone.advance();
                envelope.advance();
                v
            } else {
                0.0
            };
            out.copy_from_slice(&v.to_le_bytes());
        }
        arena.upload(audio, (start * 4) as u64, bytes)?;
        start += len;
    }
    Ok(())
}

/// sin and cos of `w·k`, advanced one `k` at a time by a rotation.
#[derive(Debug, Default, Clone, Copy)]
struct Rotor {
    sin: f32,
    cos: f32,
    step_sin: f32,
    step_cos: f32,
}

impl Rotor {
    fn at(w: f32, k: usize) -> Self {
        let phase = w * k as f32;
        Rotor {
            sin: phase.sin(),
            cos: phase.cos(),
            step_sin: w.sin(),
            step_cos: w.cos(),
        }
    }

    fn advance(&mut self) {
        let (s, c) = (self.sin, self.cos);
        self.sin = s * self.step_cos + c * self.step_sin;
        self.cos = c * self.step_cos - s * self.step_sin;
    }
}

/// Where frames go: frame `i` is written at `(i % capacity) × frame_bytes` of `region` (the
/// whole video buffer, or a device staging ring drained by `on_frame`).
#[derive(Debug, Clone, Copy)]
pub struct FrameTarget<'a> {
    /// The region frames are written into.
    pub region: &'a StaticRegion,
    /// Frames the region holds.
    pub capacity: u64,
}

/// The video (reference implementation): every frame is the actor image shifted by a head bob
/// and with the mouth opened by the audio envelope of that frame's samples. After each frame
/// is written, `on_frame(index, offset)` runs (to drain a staging ring, or to check for
/// cancellation).
#[allow(clippy::too_many_arguments)]
pub fn reference_video(
    arena: &Arena,
    recipe: &Recipe,
    buffers: &OutputBuffers,
    actor: &StaticRegion,
    audio: &StaticRegion,
    target: FrameTarget<'_>,
    staging: &mut Vec<u8>,
    on_frame: &mut dyn FnMut(u64, u64) -> Result<(), ComputeError>,
) -> Result<(), ComputeError> {
    check_dtype("the video", "video_dtype", buffers.video_dtype, Dtype::U8)?;
    let frame_bytes = buffers.frame_bytes() as usize;
    check_size("video", target.region, target.capacity * frame_bytes as u64)?;
    let (n, c) = (buffers.image_size as usize, buffers.channels as usize);
    let samples_per_frame = (buffers.sample_rate / buffers.fps.max(1)) as usize;
    let mut rng = Rng::new(recipe.seed, "motion");
    let sway = 1.0 + 2.0 * rng.unit();
    // staging = [actor | frame | audio window]
    let window = samples_per_frame * 4;
    resize(staging, 2 * frame_bytes + window);
    let (actor_px, rest) = staging.split_at_mut(frame_bytes);
    let (frame, samples) = rest.split_at_mut(frame_bytes);
    arena.download(actor, 0, actor_px)?;
    for i in 0..buffers.frames() {
        let first = i as usize * samples_per_frame;
        arena.download(audio, (first * 4) as u64, samples)?;
        let energy = samples
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs())
            .sum::<f32>()
            / samples_per_frame.max(1) as f32;
        let open = (energy * 8.0).min(1.0);
        let t = i as f32 / buffers.fps.max(1) as f32;
        let bob = (sway * (2.0 * std::f32::consts::PI * 0.5 * t).sin()).round() as isize;
        for y in 0..n {
            let src_y = (y as isize - bob).clamp(0, n as isize - 1) as usize;
            let fy = y as f32 / n as f32;
            let mouth_row = (fy - 0.66).abs() < 0.015 + 0.03 * open;
            for x in 0..n {
                let fx = x as f32 / n as f32;
                let dark = mouth_row && (fx - 0.5).abs() < 0.08;
                for ch in 0..c {
                    let v = actor_px[(src_y * n + x) * c + ch];
                    frame[(y * n + x) * c + ch] = if dark { v / 4 } else { v };
                }
            }
        }
        let offset = (i % target.capacity) * frame_bytes as u64;
        arena.upload(target.region, offset, frame)?;
        on_frame(i, offset)?;
    }
    Ok(())
}

/// Fetches frame `index` of a slot into a buffer: from the device or from host memory.
pub type FrameReader<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), ComputeError> + 'a;

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
#[allow(clippy::too_many_arguments)]
pub fn reference_embedding(
    projection: &EmbeddingProjection,
    buffers: &OutputBuffers,
    frames: u64,
    verified: u64,
    read_frame: &mut FrameReader<'_>,
    staging: &mut Vec<u8>,
    out: &mut [f32],
) -> Result<(), ComputeError> {
    check_dtype("the video", "video_dtype", buffers.video_dtype, Dtype::U8)?;
    let frame_bytes = buffers.frame_bytes() as usize;
    let (n, c) = (buffers.image_size as usize, buffers.channels as usize);
    let frames = frames.max(1);
    let verified = verified.clamp(1, frames);
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
