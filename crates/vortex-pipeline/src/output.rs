//! Files a person can look at and listen to: the actor as PNG, the audio as 16-bit WAV, the
//! video as Y4M (YUV 4:4:4), and the VRAM plan as SVG.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use vortex_registry::{OutputBuffers, Placement, VramPlan};

use crate::pipeline::GenerationResult;

/// Writes `actor.png`, `audio.wav` and `video.y4m` of one slot into `dir`.
pub fn write_slot(
    dir: &Path,
    buffers: &OutputBuffers,
    result: &GenerationResult<'_>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_png(&dir.join("actor.png"), buffers, result.actor_image)?;
    write_wav(
        &dir.join("audio.wav"),
        buffers.sample_rate as u32,
        result.audio_waveform,
    )?;
    write_y4m(&dir.join("video.y4m"), buffers, result.video_frames)
}

fn write_png(path: &Path, b: &OutputBuffers, rgb: &[u8]) -> io::Result<()> {
    let side = b.image_size as u32;
    let mut encoder = png::Encoder::new(BufWriter::new(File::create(path)?), side, side);
    encoder.set_color(match b.channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        4 => png::ColorType::Rgba,
        _ => png::ColorType::Rgb,
    });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    writer.write_image_data(rgb).map_err(io::Error::other)
}

fn write_wav(path: &Path, rate: u32, samples: &[f32]) -> io::Result<()> {
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

fn write_y4m(path: &Path, b: &OutputBuffers, frames: &[u8]) -> io::Result<()> {
    let n = b.image_size as usize;
    let c = b.channels as usize;
    let mut w = BufWriter::new(File::create(path)?);
    writeln!(w, "YUV4MPEG2 W{n} H{n} F{}:1 Ip A1:1 C444", b.fps)?;
    let mut planes = vec![0u8; 3 * n * n];
    for frame in frames.chunks_exact(n * n * c) {
        for (i, px) in frame.chunks_exact(c).enumerate() {
            let (r, g, bl) = if c >= 3 {
                (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]))
            } else {
                (f32::from(px[0]), f32::from(px[0]), f32::from(px[0]))
            };
            // BT.601 full range.
            planes[i] = (0.299 * r + 0.587 * g + 0.114 * bl)
                .round()
                .clamp(0.0, 255.0) as u8;
            planes[n * n + i] = (128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * bl)
                .round()
                .clamp(0.0, 255.0) as u8;
            planes[2 * n * n + i] = (128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * bl)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
        w.write_all(b"FRAME\n")?;
        w.write_all(&planes)?;
    }
    w.flush()
}

/// The VRAM layout as SVG: one block per owner, to scale, with the soft limit, the hard limit
/// and the device's capacity as lines.
pub fn plan_svg(plan: &VramPlan) -> String {
    let (width, height, left) = (900.0, 120.0 + 22.0 * plan.entries.len() as f64, 40.0);
    let scale = (width - 2.0 * left) / plan.device_capacity.max(plan.device_total()) as f64;
    let colours = [
        "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
        "#9c755f", "#bab0ac",
    ];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"20\" font-size=\"14\">VRAM plan: {} of {}</text>\n",
        vortex_vram::Bytes(plan.device_total()),
        vortex_vram::Bytes(plan.device_capacity)
    );
    let mut x = left;
    for (i, e) in plan.entries.iter().enumerate() {
        let w = e.device_bytes as f64 * scale;
        let colour = colours[i % colours.len()];
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"40\" width=\"{w:.1}\" height=\"40\" fill=\"{colour}\" stroke=\"white\"><title>{} {}</title></rect>\n",
            e.owner,
            vortex_vram::Bytes(e.device_bytes)
        ));
        let y = 110.0 + 22.0 * i as f64;
        let place = match e.placement {
            Placement::Device => String::new(),
            Placement::PinnedHost { staging_frames } => {
                format!(" (ring of {staging_frames} frames; video in pinned host memory)")
            }
        };
        svg.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\">{} — {}{place}</text>\n",
            y - 10.0,
            left + 18.0,
            y,
            e.owner,
            vortex_vram::Bytes(e.device_bytes)
        ));
        x += w;
    }
    for (label, bytes, colour) in [
        ("soft", plan.limits.soft(), "#d4a017"),
        ("hard", plan.limits.hard(), "#c0392b"),
        ("device", plan.device_capacity, "black"),
    ] {
        let lx = left + bytes as f64 * scale;
        svg.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"30\" x2=\"{lx:.1}\" y2=\"90\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"4 2\"/><text x=\"{:.1}\" y=\"100\" fill=\"{colour}\" text-anchor=\"middle\">{label} {}</text>\n",
            lx,
            vortex_vram::Bytes(bytes)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
