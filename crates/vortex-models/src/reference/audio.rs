//! The audio (reference implementation): tone bursts per letter, not Kokoro.

use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::{Arena, StaticRegion};

use super::helpers::{Rng, check_dtype, check_size, resize};
use crate::compute::{ComputeError, Recipe};

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
