//! Atomics of the hot paths, swapped for loom's under `--cfg loom` so the model test in
//! `tests/loom.rs` explores their interleavings.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// A byte counter with a high-water mark, padded to its own cache line.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct PeakCounter {
    current: AtomicU64,
    peak: AtomicU64,
}

impl PeakCounter {
    pub(crate) fn new() -> Self {
        PeakCounter {
            current: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Adds `bytes`; returns the new value.
    #[inline]
    pub(crate) fn add(&self, bytes: u64) -> u64 {
        let now = self.current.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.raise_peak(now);
        now
    }

    /// Adds `bytes` unless the sum would pass `limit`. On refusal nothing stays added and the
    /// value seen before the attempt comes back as the error.
    ///
    /// This is RMM's limiting adaptor: reserve with `fetch_add`, roll back with `fetch_sub`. A
    /// concurrent request may be refused while another one's rolled-back bytes are briefly
    /// counted; no sequence of requests ever leaves more than `limit` committed.
    #[inline]
    pub(crate) fn try_add(&self, bytes: u64, limit: u64) -> Result<u64, u64> {
        if bytes > limit {
            return Err(self.current.load(Ordering::Acquire));
        }
        let before = self.current.fetch_add(bytes, Ordering::AcqRel);
        let now = before + bytes;
        if now > limit {
            self.current.fetch_sub(bytes, Ordering::AcqRel);
            return Err(before);
        }
        self.raise_peak(now);
        Ok(now)
    }

    #[inline]
    pub(crate) fn sub(&self, bytes: u64) -> u64 {
        self.current.fetch_sub(bytes, Ordering::AcqRel) - bytes
    }

    #[inline]
    fn raise_peak(&self, now: u64) {
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}
