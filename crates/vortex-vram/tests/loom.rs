//! Loom model of the tracker's hand-written atomics: the limit reservation (`fetch_add`, roll
//! back on refusal), the soft-limit crossing that exactly one request must see, and the peak.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p vortex-vram --test loom --release`
//! (`cargo xtask ci` does, with its own target folder).
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use vortex_vram::{ByteSize, Limits, Purpose, VramTracker};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn tracker(soft: u64, hard: u64) -> Arc<VramTracker> {
    Arc::new(VramTracker::with_max_owners(
        Limits::new(ByteSize(soft), ByteSize(hard)).unwrap(),
        2,
    ))
}

#[test]
fn two_requests_that_cannot_both_fit_admit_exactly_one() {
    model(|| {
        let tracker = tracker(50, 100);
        let owner = tracker.register_owner("a").unwrap();
        let spawn = |tracker: Arc<VramTracker>| {
            thread::spawn(move || {
                // Held (forgotten), so the two requests overlap in time.
                tracker
                    .record(owner, Purpose::Scratch, 60, 60)
                    .map(std::mem::forget)
                    .is_ok()
            })
        };
        let (a, b) = (spawn(tracker.clone()), spawn(tracker.clone()));
        let admitted = [a.join().unwrap(), b.join().unwrap()];
        // The first fetch_add always sees 0 and fits; the other sees 60 and cannot.
        assert_eq!(admitted.iter().filter(|&&x| x).count(), 1, "{admitted:?}");
        assert_eq!(tracker.allocated(), 60);
        assert_eq!(tracker.peak(), 60);
        assert_eq!(tracker.hard_limit_violations(), 1);
        assert_eq!(tracker.soft_limit_violations(), 1);
    });
}

#[test]
fn exactly_one_of_two_requests_sees_the_soft_crossing() {
    model(|| {
        let tracker = tracker(50, 100);
        let a = tracker.register_owner("a").unwrap();
        let b = tracker.register_owner("b").unwrap();
        let spawn = |tracker: Arc<VramTracker>, owner| {
            thread::spawn(move || {
                let record = tracker.record(owner, Purpose::Workspace, 30, 30).unwrap();
                let size = record.size();
                std::mem::forget(record); // keep the bytes for the checks below
                size
            })
        };
        let (ta, tb) = (spawn(tracker.clone(), a), spawn(tracker.clone(), b));
        assert_eq!(ta.join().unwrap() + tb.join().unwrap(), 60);
        assert_eq!(tracker.allocated(), 60);
        assert_eq!(tracker.peak(), 60);
        assert_eq!(tracker.owner_bytes(a), 30);
        assert_eq!(tracker.owner_bytes(b), 30);
        assert_eq!(tracker.purpose_bytes(Purpose::Workspace), 60);
        assert_eq!(tracker.soft_limit_violations(), 1);
        assert_eq!(tracker.hard_limit_violations(), 0);
    });
}

#[test]
fn a_release_racing_a_request_keeps_totals_exact() {
    model(|| {
        let tracker = tracker(500, 1000);
        let owner = tracker.register_owner("a").unwrap();
        // R takes 400 and gives it back; Q takes 700 and keeps it. Both fit only one at a time.
        let r = {
            let tracker = tracker.clone();
            thread::spawn(move || tracker.record(owner, Purpose::Scratch, 400, 400).is_ok())
        };
        let q = {
            let tracker = tracker.clone();
            thread::spawn(move || {
                tracker
                    .record(owner, Purpose::Workspace, 700, 700)
                    .map(std::mem::forget)
                    .is_ok()
            })
        };
        let (r, q) = (r.join().unwrap(), q.join().unwrap());
        assert!(r || q, "the first request always fits");
        assert_eq!(tracker.allocated(), if q { 700 } else { 0 });
        assert_eq!(tracker.purpose_bytes(Purpose::Scratch), 0);
        assert!(tracker.peak() <= 1000);
        assert_eq!(
            tracker.hard_limit_violations(),
            u64::from(!r) + u64::from(!q)
        );
    });
}
