//! PNG through the `png` crate.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use vortex_registry::OutputBuffers;

/// Writes an `image_size² × channels` u8 image as PNG.
pub fn write_png(path: &Path, b: &OutputBuffers, rgb: &[u8]) -> io::Result<()> {
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
