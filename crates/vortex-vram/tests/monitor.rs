//! The monitor: snapshots as JSON through tracing, leak detection, metrics with their units.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use vortex_vram::{
    ArenaConfig, ByteSize, HostBackend, HostConfig, Limits, MonitorConfig, Purpose, Vram,
    VramConfig, metrics as names,
};

fn vram(monitor: MonitorConfig) -> Vram {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let mut config = VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20));
    config.monitor = monitor;
    Vram::new(backend, config).unwrap()
}

#[test]
fn snapshot_has_the_accounting_and_serializes() {
    let vram = vram(MonitorConfig::default());
    let flux = vram.owner("flux").unwrap();
    let video = vram.owner("video_buffer").unwrap();
    vram.arena()
        .alloc_static(flux, Purpose::ModelWeights, 500_000)
        .unwrap();
    vram.arena()
        .alloc_static(video, Purpose::OutputBuffer, 100_000)
        .unwrap();
    let snapshot = vram.monitor().snapshot("after_load", Some(3));
    assert_eq!(snapshot.event, "after_load");
    assert_eq!(snapshot.slot, Some(3));
    assert_eq!(snapshot.allocated, 500_224 + 100_096);
    assert_eq!(snapshot.reserved, 2 << 20);
    assert_eq!(snapshot.device_used, Some(2 << 20));
    assert_eq!(snapshot.device_total, Some(12_884_901_888));
    assert!(snapshot.timestamp_ms > 1_700_000_000_000);
    let owners: Vec<_> = snapshot
        .owners
        .iter()
        .map(|o| (&*o.owner, o.bytes))
        .collect();
    assert_eq!(owners, [("flux", 500_224), ("video_buffer", 100_096)]);
    let json: serde_json::Value = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["owners"][1]["owner"], "video_buffer");
    assert_eq!(json["device_used"], 2 << 20);
}

/// A subscriber that keeps the fields of every event, by name.
#[derive(Default)]
struct Capture(Mutex<Vec<std::collections::BTreeMap<String, String>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit(std::collections::BTreeMap<String, String>);
        impl tracing::field::Visit for Visit {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut visit = Visit(Default::default());
        event.record(&mut visit);
        self.0.lock().unwrap().push(visit.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn emitted_snapshots_are_flat_fields_not_a_json_string() {
    let vram = vram(MonitorConfig::default());
    let owner = vram.owner("clip_l").unwrap();
    let _scratch = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 1000)
        .unwrap();
    let capture = Arc::new(Capture::default());
    tracing::subscriber::with_default(capture.clone(), || {
        vram.monitor().emit_snapshot("slot_end", Some(12));
    });
    let lines = capture.0.lock().unwrap();
    assert_eq!(lines.len(), 1);
    let fields = &lines[0];
    assert_eq!(fields["event"], "slot_end");
    assert_eq!(fields["slot"], "12");
    assert_eq!(fields["allocated"], "1024");
    assert!(fields["owners"].contains("clip_l=1024"), "{fields:?}");
    assert!(
        !fields.contains_key("snapshot"),
        "no JSON document in a string field"
    );
}

#[test]
fn leak_detection_warns_only_past_the_threshold_on_the_check_generation() {
    let vram = vram(MonitorConfig {
        leak_check_every: 5,
        leak_threshold: 4096,
    });
    let monitor = vram.monitor();
    let owner = vram.owner("liveportrait").unwrap();
    let _weights = vram
        .arena()
        .alloc_static(owner, Purpose::ModelWeights, 10_000)
        .unwrap();
    monitor.set_leak_baseline();
    let mut leaked = Vec::new();
    let mut reports = Vec::new();
    for generation in 1..=15u64 {
        // Generation 1..=3 leak 1 KiB each (under the threshold by generation 5);
        // from generation 6 on, 2 KiB more each.
        let bytes = if generation <= 3 {
            1024
        } else if generation >= 6 {
            2048
        } else {
            0
        };
        if bytes > 0 {
            leaked.push(
                vram.arena()
                    .alloc_scratch(owner, Purpose::Scratch, bytes)
                    .unwrap(),
            );
        }
        if let Some(report) = monitor.generation_completed() {
            reports.push(report);
        }
    }
    let seen: Vec<_> = reports.iter().map(|r| (r.generations, r.delta)).collect();
    // Generation 5: 3 KiB (quiet). 10: 3 + 5*2 = 13 KiB. 15: 3 + 10*2 = 23 KiB.
    assert_eq!(seen, [(10, 13 * 1024), (15, 23 * 1024)]);
    assert_eq!(reports[0].initial, 10_240);
    assert_eq!(reports[0].current, 10_240 + 13 * 1024);
    drop(leaked);
    monitor.set_leak_baseline();
    for _ in 0..5 {
        assert_eq!(monitor.generation_completed(), None);
    }
}

/// A recorder that keeps descriptions and counter values.
#[derive(Default)]
struct Recording {
    described: Mutex<Vec<(String, Option<Unit>)>>,
    counters: Mutex<Vec<(String, Arc<AtomicU64>)>>,
    gauges: Mutex<Vec<(Key, Arc<metrics::atomics::AtomicU64>)>>,
}

impl Recording {
    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        self.described
            .lock()
            .unwrap()
            .push((key.as_str().to_owned(), unit));
    }
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let value = Arc::new(AtomicU64::new(0));
        self.counters
            .lock()
            .unwrap()
            .push((key.name().to_owned(), value.clone()));
        Counter::from_arc(value)
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let value = Arc::new(metrics::atomics::AtomicU64::new(0));
        self.gauges
            .lock()
            .unwrap()
            .push((key.clone(), value.clone()));
        Gauge::from_arc(value)
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn every_metric_is_described_once_with_its_unit() {
    let recording = Recording::default();
    metrics::with_local_recorder(&recording, names::describe);
    let described = recording.described.lock().unwrap();
    let mut seen: Vec<_> = described.iter().map(|(n, _)| n.as_str()).collect();
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "a metric was described twice");
    for (name, unit) in described.iter() {
        let want = if name.ends_with("_bytes") {
            Unit::Bytes
        } else if name.ends_with("_seconds") {
            Unit::Seconds
        } else if name.ends_with("_ratio") {
            // Unitless gauges (a cosine similarity).
            Unit::Count
        } else {
            assert!(name.ends_with("_total"), "{name}: counters end in _total");
            Unit::Count
        };
        assert_eq!(unit.as_ref(), Some(&want), "{name}");
        assert!(name.starts_with("icn_vortex_"), "{name}");
    }
    assert_eq!(described.len(), 11);
}

#[test]
fn limit_counters_and_owner_gauges_reach_the_recorder() {
    let recording = Recording::default();
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let mut config = VramConfig::new(ArenaConfig::new(8192, 8192));
    config.limits = Limits::new(ByteSize(4096), ByteSize(8192)).unwrap();
    let vram = Vram::new(backend, config).unwrap();
    let owner = vram.owner("flux").unwrap();
    metrics::with_local_recorder(&recording, || {
        let _a = vram
            .arena()
            .alloc_static(owner, Purpose::ModelWeights, 6000)
            .unwrap();
        assert!(
            vram.arena()
                .alloc_scratch(owner, Purpose::Scratch, 4000)
                .is_err()
        );
        vram.monitor().publish_metrics();
    });
    assert_eq!(recording.counter(names::SOFT_LIMIT_VIOLATIONS), 1);
    assert_eq!(recording.counter(names::HARD_LIMIT_VIOLATIONS), 1);
    let gauges = recording.gauges.lock().unwrap();
    let owner_gauge = gauges
        .iter()
        .find(|(k, _)| k.name() == names::VRAM_OWNER_BYTES)
        .expect("owner gauge published");
    let labels: Vec<_> = owner_gauge
        .0
        .labels()
        .map(|l| (l.key(), l.value()))
        .collect();
    assert_eq!(labels, [("owner", "flux"), ("purpose", "model_weights")]);
    assert_eq!(
        f64::from_bits(owner_gauge.1.load(Ordering::Relaxed)),
        6144.0
    );
}
