//! The actor image (reference implementation): a procedural portrait, not FLUX.

use vortex_registry::{Dtype, OutputBuffers};
use vortex_vram::{Arena, OwnerId, Purpose, StaticRegion};

use super::helpers::{Rng, check_dtype, check_size, resize};
use crate::compute::{ComputeError, Recipe};

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
