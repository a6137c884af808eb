//! A frame to what CLIP's image tower reads, as `transformers`' `CLIPImageProcessor` makes it:
//! the shortest side resized to the tower's size with PIL's bicubic filter, the centre cropped
//! to a square, scaled to `[0, 1]` and normalized with CLIP's mean and deviation, channels
//! first.
//!
//! The resize is PIL's own algorithm (`Image.resize(…, BICUBIC)`, libImaging's `Resample.c`),
//! not an approximation: the filter (a = −0.5) widened by the scale when shrinking, its
//! weights in 22-bit fixed point, the horizontal pass into 8-bit rows, then the vertical pass.
//! A general-purpose resizer (`fast_image_resize`'s Catmull-Rom was tried) differs from it by
//! up to 7 levels of 255 on sharp edges; this matches it exactly. `tests/clip.rs` checks the
//! pixels against `CLIPImageProcessor`'s on frames of two shapes.

/// Why a frame could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {width}×{height} frame of {bytes} bytes cannot be prepared for CLIP: {reason}")]
pub struct PrepError {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Bytes given.
    pub bytes: usize,
    /// What is wrong.
    pub reason: String,
}

/// Prepares RGB frames for one image tower, reusing its buffers frame to frame.
#[derive(Debug)]
pub struct ImagePrep {
    size: u32,
    mean: [f32; 3],
    std: [f32; 3],
    /// The horizontal pass's rows.
    rows: Vec<u8>,
    /// The resized frame.
    resized: Vec<u8>,
}

/// PIL's fixed-point precision for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's bicubic filter (a = −0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One output pixel's source window and fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for `input` pixels to `output`.
fn taps(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| bicubic((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps {
                first: xmin,
                weights,
            }
        })
        .collect()
}

/// PIL's `clip8`: a fixed-point sum (with its rounding half added) to a byte.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's two-pass resize of an RGB image, `src` (`w × h`) into `dst` (`ow × oh`), through
/// `rows` (the horizontal pass's output).
fn resize_rgb(
    src: &[u8],
    (w, h): (usize, usize),
    dst: &mut Vec<u8>,
    (ow, oh): (usize, usize),
    rows: &mut Vec<u8>,
) {
    let half = 1i64 << (PRECISION_BITS - 1);
    let horizontal = taps(w, ow);
    let vertical = taps(h, oh);
    // Only the source rows the vertical pass reads go through the horizontal one.
    let first_row = vertical.first().map_or(0, |t| t.first);
    let last_row = vertical
        .last()
        .map_or(0, |t| t.first + t.weights.len())
        .max(first_row);
    rows.clear();
    rows.resize((last_row - first_row) * ow * 3, 0);
    if ow == w {
        rows.copy_from_slice(&src[first_row * w * 3..last_row * w * 3]);
    } else {
        for (y, row) in rows.chunks_exact_mut(ow * 3).enumerate() {
            let line = &src[(first_row + y) * w * 3..][..w * 3];
            for (x, t) in horizontal.iter().enumerate() {
                for c in 0..3 {
                    let sum = t.weights.iter().enumerate().fold(half, |s, (i, &k)| {
                        s + i64::from(line[(t.first + i) * 3 + c]) * i64::from(k)
                    });
                    row[x * 3 + c] = clip8(sum);
                }
            }
        }
    }
    dst.clear();
    dst.resize(ow * oh * 3, 0);
    if oh == h {
        dst.copy_from_slice(rows);
        return;
    }
    for (y, t) in vertical.iter().enumerate() {
        let base = t.first - first_row;
        for x in 0..ow * 3 {
            let sum = t.weights.iter().enumerate().fold(half, |s, (i, &k)| {
                s + i64::from(rows[(base + i) * ow * 3 + x]) * i64::from(k)
            });
            dst[y * ow * 3 + x] = clip8(sum);
        }
    }
}

impl ImagePrep {
    /// For a tower reading `size`×`size` images normalized with `mean` and `std`.
    pub fn new(size: u32, mean: [f32; 3], std: [f32; 3]) -> Self {
        ImagePrep {
            size,
            mean,
            std,
            rows: Vec::new(),
            resized: Vec::new(),
        }
    }

    /// Values one prepared frame takes: `3 × size × size`.
    pub fn values(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// The size the shortest side is resized to, and the other side (`int(size × long /
    /// short)`, as `transformers` computes it).
    fn resized_dims(&self, width: u32, height: u32) -> (u32, u32) {
        let s = f64::from(self.size);
        if width <= height {
            (self.size, (s * f64::from(height) / f64::from(width)) as u32)
        } else {
            ((s * f64::from(width) / f64::from(height)) as u32, self.size)
        }
    }

    /// Writes frame `rgb` (`width × height` pixels, 3 bytes each, row-major) into `out`
    /// ([`ImagePrep::values`] values, channels first).
    pub fn prepare(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut [f32],
    ) -> Result<(), PrepError> {
        let err = |reason: String| PrepError {
            width,
            height,
            bytes: rgb.len(),
            reason,
        };
        if width == 0 || height == 0 {
            return Err(err("it has no pixels".to_owned()));
        }
        if out.len() != self.values() {
            return Err(err(format!(
                "the output holds {} values, the tower reads {}",
                out.len(),
                self.values()
            )));
        }
        let pixels = width as usize * height as usize;
        if rgb.len() != pixels * 3 {
            return Err(err(format!(
                "it needs {} bytes (3 a pixel, row-major)",
                pixels * 3
            )));
        }
        let (rw, rh) = self.resized_dims(width, height);
        resize_rgb(
            rgb,
            (width as usize, height as usize),
            &mut self.resized,
            (rw as usize, rh as usize),
            &mut self.rows,
        );
        let n = self.size as usize;
        let (top, left) = ((rh as usize - n) / 2, (rw as usize - n) / 2);
        let plane = n * n;
        for y in 0..n {
            let row = &self.resized[((top + y) * rw as usize + left) * 3..][..n * 3];
            for (x, px) in row.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * plane + y * n + x] =
                        (f32::from(px[c]) / 255.0 - self.mean[c]) / self.std[c];
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_side_becomes_the_size_and_the_centre_is_kept() {
        let prep = ImagePrep::new(32, [0.0; 3], [1.0; 3]);
        assert_eq!(prep.resized_dims(64, 48), (42, 32));
        assert_eq!(prep.resized_dims(48, 64), (32, 42));
        assert_eq!(prep.resized_dims(512, 512), (32, 32));
    }

    #[test]
    fn a_flat_frame_stays_flat_and_is_normalized() {
        let mut prep = ImagePrep::new(8, [0.5, 0.25, 0.0], [0.5, 0.25, 1.0]);
        let rgb: Vec<u8> = [255u8, 0, 51].repeat(20 * 12);
        let mut out = vec![0.0; prep.values()];
        prep.prepare(&rgb, 20, 12, &mut out).unwrap();
        assert!(out[..64].iter().all(|&v| (v - 1.0).abs() < 1e-6));
        assert!(out[64..128].iter().all(|&v| (v + 1.0).abs() < 1e-6));
        assert!(out[128..].iter().all(|&v| (v - 0.2).abs() < 1e-6));
    }

    #[test]
    fn frames_that_are_not_rgb_are_refused() {
        let mut prep = ImagePrep::new(8, [0.0; 3], [1.0; 3]);
        let mut out = vec![0.0; prep.values()];
        assert!(prep.prepare(&[0; 10], 4, 4, &mut out).is_err());
        assert!(prep.prepare(&[], 0, 4, &mut out).is_err());
        assert!(prep.prepare(&[0; 48], 4, 4, &mut out[1..]).is_err());
    }
}
