//! `vortex-bench`: criterion benchmarks of Vortex (not published). The benchmarks live in
//! `benches/`; this library holds the baselines they compare against, written once and tested
//! so that a ratio against them means something.

use std::collections::HashMap;
use std::sync::Mutex;

/// The tracker a C++ team would write first: one mutex around a map from pointer to record,
/// the record owning what it describes (owner name, purpose, size, requested), plus running
/// totals per owner. The baseline of the `tracker/record_release` benchmark.
#[derive(Debug, Default)]
pub struct MutexHashMapTracker {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<u64, Record>,
    by_owner: HashMap<String, u64>,
    total: u64,
}

#[derive(Debug)]
struct Record {
    owner: String,
    #[allow(dead_code)] // kept for reports, as a real record would be
    purpose: u8,
    size: u64,
    #[allow(dead_code)]
    requested: u64,
}

impl MutexHashMapTracker {
    /// Records `size` bytes at `ptr` for `owner`.
    pub fn record(&self, ptr: u64, owner: &str, purpose: u8, size: u64, requested: u64) {
        let mut state = self.inner.lock().unwrap();
        state.records.insert(
            ptr,
            Record {
                owner: owner.to_owned(),
                purpose,
                size,
                requested,
            },
        );
        match state.by_owner.get_mut(owner) {
            Some(bytes) => *bytes += size,
            None => {
                state.by_owner.insert(owner.to_owned(), size);
            }
        }
        state.total += size;
    }

    /// Releases the record at `ptr`; returns its size (0 if there was none).
    pub fn release(&self, ptr: u64) -> u64 {
        let mut state = self.inner.lock().unwrap();
        let Some(record) = state.records.remove(&ptr) else {
            return 0;
        };
        if let Some(bytes) = state.by_owner.get_mut(&record.owner) {
            *bytes -= record.size;
        }
        state.total -= record.size;
        record.size
    }

    /// Bytes recorded now.
    pub fn total(&self) -> u64 {
        self.inner.lock().unwrap().total
    }

    /// Bytes recorded now for `owner`.
    pub fn owner_bytes(&self, owner: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .by_owner
            .get(owner)
            .copied()
            .unwrap_or(0)
    }
}

/// Sizes the scratch benchmarks cycle through: 256 B to 16 KiB, a fixed pseudo-random
/// sequence so every function sees the same requests.
pub fn scratch_sizes(count: usize) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            256 + state % (16 * 1024 - 256)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_tracker_counts_like_a_tracker() {
        let tracker = MutexHashMapTracker::default();
        tracker.record(1, "flux", 0, 100, 99);
        tracker.record(2, "clip", 1, 50, 50);
        tracker.record(3, "flux", 2, 25, 1);
        assert_eq!(tracker.total(), 175);
        assert_eq!(tracker.owner_bytes("flux"), 125);
        assert_eq!(tracker.release(1), 100);
        assert_eq!(tracker.release(1), 0);
        assert_eq!(tracker.owner_bytes("flux"), 25);
        assert_eq!(tracker.total(), 75);
    }

    #[test]
    fn scratch_sizes_are_deterministic_and_in_range() {
        let sizes = scratch_sizes(1000);
        assert_eq!(sizes, scratch_sizes(1000));
        assert!(sizes.iter().all(|&s| (256..16 * 1024).contains(&s)));
        assert!(sizes.iter().any(|&s| s > 8 * 1024) && sizes.iter().any(|&s| s < 4 * 1024));
    }
}
