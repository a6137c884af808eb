//! Soft and hard limits at exactly the limit and one byte past, emergency cleanup, pre-flight.

use std::sync::{Arc, Mutex};

use vortex_vram::{
    ArenaConfig, ByteSize, HostBackend, HostConfig, LimitStatus, Limits, Purpose, ScratchBuffer,
    SoftLimitEvent, Vram, VramConfig, VramError, VramTracker,
};

const SOFT: u64 = 11_000_000_000;
const HARD: u64 = 11_500_000_000;

fn seed_tracker() -> VramTracker {
    VramTracker::new(Limits::new("11.0GB".parse().unwrap(), "11.5GB".parse().unwrap()).unwrap())
}

#[test]
fn limits_parse_from_text_with_units() {
    let limits = Limits::new("10.5GiB".parse().unwrap(), "11.5GB".parse().unwrap()).unwrap();
    assert_eq!(limits.soft(), 11_274_289_152);
    assert_eq!(limits.hard(), HARD);
    assert_eq!(Limits::seed(), seed_tracker().limits());
    for (soft, hard) in [(HARD, HARD), (HARD + 1, HARD), (1, (1 << 50) + 1)] {
        let err = Limits::new(ByteSize(soft), ByteSize(hard)).unwrap_err();
        assert!(matches!(err, VramError::InvalidLimits { .. }));
        assert!(
            err.to_string().contains("must be below the hard limit"),
            "{err}"
        );
    }
}

#[test]
fn hard_limit_allows_exactly_the_limit_and_refuses_one_byte_more() {
    let tracker = seed_tracker();
    let flux = tracker.register_owner("flux").unwrap();
    let video = tracker.register_owner("video_buffer").unwrap();
    let weights = tracker
        .record(flux, Purpose::ModelWeights, HARD - 1000, HARD - 1000)
        .unwrap();
    let err = tracker
        .record(video, Purpose::OutputBuffer, 1001, 1001)
        .unwrap_err();
    match &err {
        VramError::HardLimit {
            owner,
            current,
            requested,
            limit,
            ..
        } => {
            assert_eq!(
                (&**owner, *current, *requested, *limit),
                ("video_buffer", HARD - 1000, 1001, HARD)
            );
        }
        other => panic!("expected HardLimit, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("above the hard limit of 11.50 GB")
            && message.contains("raise the hard limit"),
        "{message}"
    );
    assert_eq!(
        tracker.allocated(),
        HARD - 1000,
        "the refused request left nothing behind"
    );
    assert_eq!(tracker.hard_limit_violations(), 1);
    let exact = tracker
        .record(video, Purpose::OutputBuffer, 1000, 1000)
        .unwrap();
    assert_eq!(tracker.allocated(), HARD);
    assert!(tracker.record(video, Purpose::Scratch, 1, 1).is_err());
    assert_eq!(tracker.hard_limit_violations(), 2);
    drop((weights, exact));
    assert_eq!(tracker.allocated(), 0);
    assert_eq!(tracker.peak(), HARD);
}

#[test]
fn a_request_larger_than_the_limit_is_refused_without_overflow() {
    let tracker = seed_tracker();
    let owner = tracker.register_owner("x").unwrap();
    let _held = tracker.record(owner, Purpose::Scratch, 10, 10).unwrap();
    for bytes in [HARD + 1, u64::MAX / 2, u64::MAX] {
        assert!(matches!(
            tracker.record(owner, Purpose::Scratch, bytes, bytes),
            Err(VramError::HardLimit { current: 10, .. })
        ));
    }
    assert_eq!(tracker.allocated(), 10);
}

#[test]
fn soft_limit_warns_one_byte_past_not_at_it_and_runs_the_cleanup() {
    let tracker = Arc::new(seed_tracker());
    let events: Arc<Mutex<Vec<SoftLimitEvent>>> = Arc::default();
    let seen = Arc::clone(&events);
    tracker.on_soft_limit(Arc::new(move |event| {
        seen.lock().unwrap().push(event.clone());
        0
    }));
    let flux = tracker.register_owner("flux").unwrap();
    let at_soft = tracker
        .record(flux, Purpose::ModelWeights, SOFT, SOFT)
        .unwrap();
    assert_eq!(
        tracker.soft_limit_violations(),
        0,
        "reaching the soft limit exactly is fine"
    );
    assert!(events.lock().unwrap().is_empty());
    let past = tracker.record(flux, Purpose::Workspace, 1, 1).unwrap();
    assert_eq!(tracker.soft_limit_violations(), 1);
    assert_eq!(tracker.emergency_cleanups(), 1);
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            (e.current, e.soft_limit, e.delta, e.requested),
            (SOFT + 1, SOFT, 1, 1)
        );
        assert_eq!(e.owner.as_deref(), Some("flux"));
    }
    // Staying above the limit is not a new crossing; dropping below and crossing again is.
    let more = tracker.record(flux, Purpose::Workspace, 5, 5).unwrap();
    assert_eq!(tracker.soft_limit_violations(), 1);
    drop((past, more));
    let again = tracker.record(flux, Purpose::Workspace, 2, 2).unwrap();
    assert_eq!(tracker.soft_limit_violations(), 2);
    drop((again, at_soft));
}

#[test]
fn emergency_cleanup_frees_scratch_caches() {
    // Hard 2 MiB, soft 1 MiB; a 768 KiB scratch cache, then weights that cross the soft limit.
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let mut config = VramConfig::new(ArenaConfig::new(2 << 20, 2 << 20));
    config.limits = Limits::new("1MiB".parse().unwrap(), "2MiB".parse().unwrap()).unwrap();
    let vram = Vram::new(backend, config).unwrap();
    let cache_owner = vram.owner("clip_cache").unwrap();
    let cache: Arc<Mutex<Vec<ScratchBuffer>>> = Arc::default();
    cache.lock().unwrap().push(
        vram.arena()
            .alloc_scratch(cache_owner, Purpose::Scratch, 768 << 10)
            .unwrap(),
    );
    let held = Arc::clone(&cache);
    vram.monitor().on_soft_limit(Arc::new(move |_event| {
        let freed: Vec<_> = held.lock().unwrap().drain(..).collect();
        freed.iter().map(ScratchBuffer::size).sum()
    }));
    let flux = vram.owner("flux").unwrap();
    let weights = vram
        .arena()
        .alloc_static(flux, Purpose::ModelWeights, 512 << 10)
        .unwrap();
    assert_eq!(vram.tracker().emergency_cleanups(), 1);
    assert!(
        cache.lock().unwrap().is_empty(),
        "the cleanup released the cache"
    );
    assert_eq!(vram.tracker().allocated(), weights.size);
    assert_eq!(vram.arena().stats().scratch.used, 0);
}

#[test]
fn check_limits_reports_where_usage_stands() {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let mut config = VramConfig::new(ArenaConfig::new(4096, 4096));
    config.limits = Limits::new(ByteSize(2048), ByteSize(4096)).unwrap();
    let vram = Vram::new(backend, config).unwrap();
    let owner = vram.owner("o").unwrap();
    let monitor = vram.monitor();
    assert_eq!(
        monitor.check_limits(),
        LimitStatus::Ok {
            current: 0,
            headroom: 2048
        }
    );
    let a = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 2048)
        .unwrap();
    assert_eq!(
        monitor.check_limits(),
        LimitStatus::Ok {
            current: 2048,
            headroom: 0
        }
    );
    let violations = vram.tracker().soft_limit_violations();
    let b = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 256)
        .unwrap();
    assert_eq!(
        monitor.check_limits(),
        LimitStatus::AboveSoft {
            current: 2304,
            soft_limit: 2048,
            delta: 256
        }
    );
    assert_eq!(vram.tracker().soft_limit_violations(), violations + 2);
    assert!(monitor.check_request(4096 - 2304).is_ok());
    assert!(matches!(
        monitor.check_request(4096 - 2304 + 1),
        Err(VramError::HardLimit {
            current: 2304,
            limit: 4096,
            ..
        })
    ));
    drop((a, b));
}

#[test]
fn hard_limit_refuses_before_the_arena_is_touched() {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let mut config = VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20));
    config.limits = Limits::new(ByteSize(1 << 19), ByteSize(1 << 20)).unwrap();
    let vram = Vram::new(backend, config).unwrap();
    let owner = vram.owner("o").unwrap();
    let before = vram.arena().stats();
    let err = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, (1 << 20) + 1)
        .unwrap_err();
    assert!(matches!(err, VramError::HardLimit { .. }), "{err}");
    let err = vram
        .arena()
        .alloc_static(owner, Purpose::ModelWeights, (1 << 20) + 1)
        .unwrap_err();
    assert!(matches!(err, VramError::HardLimit { .. }), "{err}");
    assert_eq!(vram.arena().stats(), before);
    assert_eq!(vram.tracker().allocated(), 0);
}

#[test]
fn preflight_refuses_a_slab_the_device_cannot_hold() {
    let backend = Arc::new(HostBackend::new(
        HostConfig::rtx3060_12gb().with_context_overhead(400_000_000),
    ));
    // 11.65 GB: the seed's models plus a u8 video buffer.
    let config = VramConfig::new(ArenaConfig::new(11_650_000_000, 0));
    let plan = Vram::new(backend.clone(), config).unwrap();
    drop(plan);
    let config = VramConfig::new(ArenaConfig::new(12_500_000_000, 0));
    let err = Vram::new(backend.clone(), config).unwrap_err();
    match &err {
        VramError::Preflight {
            required,
            available,
            total,
            ..
        } => {
            assert_eq!(*required, 12_500_000_000);
            assert_eq!(*available, 12_884_901_888 - 400_000_000);
            assert_eq!(*total, 12_884_901_888);
        }
        other => panic!("expected Preflight, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("shrink the static or scratch region by 15.10 MB"),
        "{message}"
    );
    assert_eq!(backend.live_allocations(), 0, "nothing was allocated");
    let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(1 << 20, 0))).unwrap();
    let err = vram
        .monitor()
        .preflight("the video buffer", 13_000_000_000)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("pre-flight: the video buffer needs 13.00 GB"),
        "{message}"
    );
    assert!(message.contains("pinned host memory"), "{message}");
}
