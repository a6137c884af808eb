//! The video (reference implementation): the actor shifted and its mouth darkened by the
//! audio envelope, not LivePortrait.

use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::Arena;

use super::helpers::{Rng, check_dtype, check_size, resize};
use crate::compute::{ComputeError, FrameTarget, Recipe, VideoInputs};

/// The video (reference implementation): every frame is the actor image shifted by a head bob
/// and with the mouth opened by the audio envelope of that frame's samples. After each frame
/// is written, `on_frame(index, offset)` runs (to drain a staging ring, or to check for
/// cancellation).
pub fn reference_video(
    arena: &Arena,
    recipe: &Recipe,
    buffers: &OutputBuffers,
    inputs: VideoInputs<'_>,
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
    let (actor, audio) = (inputs.actor, inputs.audio);
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
