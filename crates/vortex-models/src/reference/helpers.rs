//! What the reference implementations share: a seedable generator, buffer checks, staging.

use vortex_registry::Dtype;

use crate::compute::ComputeError;

/// [`crate::compute::check_dtype`] for the reference implementations.
pub(crate) fn check_dtype(
    what: &'static str,
    key: &'static str,
    found: Dtype,
    supported: Dtype,
) -> Result<(), ComputeError> {
    crate::compute::check_dtype("reference", what, key, found, supported)
}

pub(crate) use crate::compute::check_size;

/// A small, fast, seedable generator (xorshift64*).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, salt: &str) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in salt.bytes() {
            state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Rng(state | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub(crate) fn resize(staging: &mut Vec<u8>, len: usize) -> &mut [u8] {
    staging.resize(len, 0);
    &mut staging[..len]
}
