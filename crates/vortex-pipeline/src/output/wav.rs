//! 16-bit PCM WAV, mono.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes f32 samples in [-1, 1] (clamped) as 16-bit mono PCM at `rate`.
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    let data = samples.len() as u32 * 2;
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?; // PCM
    w.write_all(&1u16.to_le_bytes())?; // mono
    w.write_all(&rate.to_le_bytes())?;
    w.write_all(&(rate * 2).to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&16u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data.to_le_bytes())?;
    for &s in samples {
        w.write_all(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())?;
    }
    w.flush()
}
