//! The tracker: exact totals under concurrent updates, owner interning, reports.

use std::sync::{Arc, Barrier};
use std::thread;

use vortex_vram::{Limits, Purpose, VramError, VramTracker};

#[test]
fn concurrent_updates_give_exact_totals() {
    const THREADS: usize = 4;
    const ROUNDS: u64 = 20_000;
    let tracker = VramTracker::new(Limits::seed());
    let owners: Vec<_> = ["flux", "kokoro", "clip_b", "clip_l"]
        .iter()
        .map(|n| tracker.register_owner(n).unwrap())
        .collect();
    // Threads keep one record in a hundred alive, meet at the barrier so the totals can be
    // checked while those live, then release them.
    let counted = Barrier::new(THREADS + 1);
    let checked = Barrier::new(THREADS + 1);
    thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tracker, owner, counted, checked) = (&tracker, owners[t], &counted, &checked);
                s.spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..ROUNDS {
                        let size = 256 * (1 + (i * 7 + t as u64) % 16);
                        let purpose = Purpose::ALL[(i % 4) as usize];
                        let record = tracker.record(owner, purpose, size, size - 1).unwrap();
                        if i % 100 == 0 {
                            kept.push(record);
                        }
                    }
                    let kept_bytes: u64 = kept.iter().map(|r| r.size()).sum();
                    let kept_count = kept.len() as u64;
                    counted.wait();
                    checked.wait();
                    drop(kept);
                    (kept_bytes, kept_count)
                })
            })
            .collect();
        counted.wait();
        // Every thread is parked holding its records: the totals must be exact now. The
        // expected figures are recomputed here from the same size formula.
        let expected: Vec<(u64, u64)> = (0..THREADS as u64)
            .map(|t| {
                let kept = (0..ROUNDS).filter(|i| i % 100 == 0);
                (
                    kept.clone().map(|i| 256 * (1 + (i * 7 + t) % 16)).sum(),
                    kept.count() as u64,
                )
            })
            .collect();
        let total: u64 = expected.iter().map(|e| e.0).sum();
        assert_eq!(tracker.allocated(), total);
        assert_eq!(
            tracker.live_allocations(),
            expected.iter().map(|e| e.1).sum::<u64>()
        );
        for (t, owner) in owners.iter().enumerate() {
            assert_eq!(tracker.owner_bytes(*owner), expected[t].0);
        }
        let by_purpose: u64 = Purpose::ALL.iter().map(|&p| tracker.purpose_bytes(p)).sum();
        assert_eq!(by_purpose, total);
        assert!(tracker.peak() >= total);
        let report = tracker.report();
        assert_eq!(report.allocated, total);
        assert_eq!(report.owners.iter().map(|o| o.bytes).sum::<u64>(), total);
        checked.wait();
        for (t, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join().unwrap(), expected[t]);
        }
    });
    assert_eq!(tracker.allocated(), 0);
    assert_eq!(tracker.live_allocations(), 0);
    assert!(Purpose::ALL.iter().all(|&p| tracker.purpose_bytes(p) == 0));
}

#[test]
fn concurrent_requests_never_commit_past_the_hard_limit() {
    let tracker = Arc::new(VramTracker::new(
        Limits::new(vortex_vram::ByteSize(5_000), vortex_vram::ByteSize(10_000)).unwrap(),
    ));
    let owner = tracker.register_owner("o").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                let mut granted = 0u64;
                for _ in 0..10_000 {
                    match tracker.record(owner, Purpose::Scratch, 768, 768) {
                        Ok(record) => {
                            assert!(tracker.allocated() <= 10_000 + 3 * 768);
                            granted += 1;
                            drop(record);
                        }
                        Err(VramError::HardLimit { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
                granted
            })
        })
        .collect();
    let granted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(granted > 0);
    assert_eq!(tracker.allocated(), 0);
    assert!(
        tracker.peak() <= 10_000,
        "peak {} passed the hard limit",
        tracker.peak()
    );
}

#[test]
fn owners_are_interned_once_and_the_table_has_a_size() {
    let tracker = VramTracker::with_max_owners(Limits::seed(), 2);
    let a = tracker.register_owner("flux").unwrap();
    assert_eq!(tracker.register_owner("flux").unwrap(), a);
    assert_eq!(tracker.owner_id("flux"), Some(a));
    assert_eq!(&*tracker.owner_name(a), "flux");
    tracker.register_owner("kokoro").unwrap();
    let err = tracker.register_owner("clip_b").unwrap_err();
    assert!(err.to_string().contains("room for 2 owners"), "{err}");
    assert!(tracker.register_owner("").is_err());
    assert!(tracker.register_owner("bad\nname").is_err());
}

#[test]
fn report_shows_owners_purposes_and_limits() {
    let tracker = VramTracker::new(Limits::seed());
    let flux = tracker.register_owner("flux").unwrap();
    let video = tracker.register_owner("video_buffer").unwrap();
    let _w = tracker
        .record(flux, Purpose::ModelWeights, 6_000_000_000, 6_000_000_000)
        .unwrap();
    let _s = tracker
        .record(flux, Purpose::Scratch, 1_000_000, 999_999)
        .unwrap();
    let _v = tracker
        .record(video, Purpose::OutputBuffer, 849_346_560, 849_346_560)
        .unwrap();
    let report = tracker.report();
    let text = report.to_string();
    for needle in [
        "flux",
        "model_weights",
        "6.00 GB",
        "video_buffer",
        "849.35 MB",
        "soft limit 11.00 GB",
        "hard limit 11.50 GB",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["allocated"],
        6_000_000_000u64 + 1_000_000 + 849_346_560
    );
    assert_eq!(json["owners"][0]["owner"], "flux");
    assert_eq!(json["owners"][0]["by_purpose"][1]["purpose"], "scratch");
    assert_eq!(json["owners"][1]["live"], 1);
    // Peaks by owner and purpose outlive the bytes (exact here: one thread).
    drop(_s);
    let report = tracker.report();
    assert_eq!(report.owners[0].bytes, 6_000_000_000);
    assert_eq!(report.owners[0].peak, 6_001_000_000);
    let scratch = report
        .purposes
        .iter()
        .find(|p| p.purpose == Purpose::Scratch)
        .unwrap();
    assert_eq!((scratch.bytes, scratch.peak), (0, 1_000_000));
}

#[test]
fn records_released_on_other_threads_and_more_threads_than_shards_stay_exact() {
    const THREADS: usize = 24; // more than the tracker's per-thread shards
    let tracker = VramTracker::new(Limits::seed());
    let owner = tracker.register_owner("liveportrait").unwrap();
    let other = tracker.register_owner("kokoro").unwrap();
    let _steady = tracker
        .record(other, Purpose::ModelWeights, 4096, 4096)
        .unwrap();
    // Each thread records 1,000 buffers and hands them to the next thread, which releases them.
    let batches: Vec<Vec<_>> = thread::scope(|s| {
        let made: Vec<_> = (0..THREADS)
            .map(|t| {
                let tracker = &tracker;
                s.spawn(move || {
                    (0..1000u64)
                        .map(|i| {
                            let size = 256 * (1 + (i + t as u64) % 8);
                            tracker.record(owner, Purpose::Scratch, size, size).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        made.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let expected: u64 = batches.iter().flatten().map(|r| r.size()).sum();
    assert_eq!(tracker.owner_bytes(owner), expected);
    assert_eq!(tracker.purpose_bytes(Purpose::Scratch), expected);
    assert_eq!(tracker.live_allocations(), THREADS as u64 * 1000 + 1);
    thread::scope(|s| {
        for batch in batches {
            s.spawn(move || drop(batch));
        }
    });
    assert_eq!(tracker.owner_bytes(owner), 0);
    assert_eq!(tracker.purpose_bytes(Purpose::Scratch), 0);
    assert_eq!(tracker.owner_bytes(other), 4096);
    assert_eq!(tracker.allocated(), 4096);
    assert_eq!(tracker.live_allocations(), 1);
    let report = tracker.report();
    assert_eq!(report.owners[0].live, 0);
    assert_eq!(report.owners[1].by_purpose[0].bytes, 4096);
}
