//! Atomics of the hot paths, swapped for loom's under `--cfg loom` so the model test in
//! `tests/loom.rs` explores their interleavings.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Number of per-thread shards a tracker keeps; threads past this share one more shard that
/// is updated with read-modify-write atomics. (At most 31: shards in use are a `u32` mask.)
pub(crate) const SHARDS: usize = 16;

/// The shard slot of the calling thread: `0..SHARDS` for a slot of its own (single writer),
/// `SHARDS` for the shared one. Slots are process-wide and go back to a free list when their
/// thread exits, so a slot never has two live writers.
#[cfg(not(loom))]
#[inline]
pub(crate) fn thread_slot() -> usize {
    use std::sync::Mutex;

    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    struct Slot(usize);
    impl Slot {
        fn acquire() -> Slot {
            let reused = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
            Slot(reused.unwrap_or_else(|| {
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .min(SHARDS)
            }))
        }
    }
    impl Drop for Slot {
        fn drop(&mut self) {
            if self.0 < SHARDS {
                FREE.lock().unwrap_or_else(|e| e.into_inner()).push(self.0);
            }
        }
    }
    thread_local! {
        static SLOT: Slot = Slot::acquire();
    }
    // During thread teardown the slot may be gone: use the shared shard then.
    SLOT.try_with(|slot| slot.0).unwrap_or(SHARDS)
}

/// Under loom every model thread runs on one OS thread, so thread-locals cannot tell them
/// apart: all of them use the shared (read-modify-write) shard.
#[cfg(loom)]
#[inline]
pub(crate) fn thread_slot() -> usize {
    SHARDS
}

/// Adds `delta` (wrapping; a release adds the two's complement) to a shard word. A word of an
/// owned shard has one writer, so a plain load and store suffice; the shared shard needs RMW.
#[inline]
pub(crate) fn bump(word: &AtomicU64, delta: u64, shared: bool) {
    if shared {
        word.fetch_add(delta, Ordering::Relaxed);
    } else {
        word.store(
            word.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    }
}

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
