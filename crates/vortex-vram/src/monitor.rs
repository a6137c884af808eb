//! [`VramMonitor`]: explicit limit checks, the pre-flight check against the device, snapshots,
//! leak detection and metrics publication, over a tracker and a backend.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::backend::{Backend, MemInfo};
use crate::error::VramError;
use crate::metrics as names;
use crate::tracker::{OwnerBytes, PressureObserver, Purpose, VramTracker};
use crate::units::Bytes;

/// Leak detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Compare against the baseline after every this many generations (at least 1).
    pub leak_check_every: u64,
    /// Warn when tracked bytes have grown by more than this since the baseline.
    pub leak_threshold: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            leak_check_every: 10,
            leak_threshold: 1 << 20,
        }
    }
}

/// What [`VramMonitor::check_limits`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LimitStatus {
    /// Usage is at or below the soft limit.
    Ok {
        /// Tracked bytes.
        current: u64,
        /// Bytes left before the soft limit.
        headroom: u64,
    },
    /// Usage is above the soft limit (the warning was emitted and the cleanups ran).
    AboveSoft {
        /// Tracked bytes.
        current: u64,
        /// The soft limit.
        soft_limit: u64,
        /// `current - soft_limit`.
        delta: u64,
    },
}

/// A moment of VRAM accounting, for logs and the `/vram` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VramSnapshot {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What happened: `"after_load"`, `"slot_start"`, …
    pub event: String,
    /// The slot, if the snapshot belongs to one.
    pub slot: Option<u64>,
    /// Tracked bytes.
    pub allocated: u64,
    /// Bytes held from the backend.
    pub reserved: u64,
    /// Most tracked bytes ever.
    pub peak: u64,
    /// Bytes in use on the device by every process (`None` if the device did not answer).
    pub device_used: Option<u64>,
    /// The device's total memory (`None` if the device did not answer).
    pub device_total: Option<u64>,
    /// Bytes per owner.
    pub owners: Vec<OwnerBytes>,
}

/// A leak warning: tracked bytes grew past the threshold since the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeakReport {
    /// Tracked bytes at the baseline.
    pub initial: u64,
    /// Tracked bytes now.
    pub current: u64,
    /// `current - initial`.
    pub delta: u64,
    /// Generations since the baseline.
    pub generations: u64,
}

#[derive(Debug, Default)]
struct LeakState {
    baseline: Option<u64>,
    generations: u64,
}

/// Watches a tracker and a device. See the module docs.
#[derive(Debug)]
pub struct VramMonitor {
    backend: Arc<dyn Backend>,
    tracker: Arc<VramTracker>,
    config: MonitorConfig,
    leak: Mutex<LeakState>,
    published: Mutex<HashSet<(Arc<str>, Purpose)>>,
}

impl VramMonitor {
    /// A monitor of `tracker`'s accounting on `backend`'s device.
    pub fn new(
        backend: Arc<dyn Backend>,
        tracker: Arc<VramTracker>,
        config: MonitorConfig,
    ) -> Self {
        VramMonitor {
            backend,
            tracker,
            config: MonitorConfig {
                leak_check_every: config.leak_check_every.max(1),
                ..config
            },
            leak: Mutex::new(LeakState::default()),
            published: Mutex::new(HashSet::new()),
        }
    }

    /// The tracker watched.
    pub fn tracker(&self) -> &Arc<VramTracker> {
        &self.tracker
    }

    /// Registers an emergency cleanup for the soft limit (see [`VramTracker::on_soft_limit`]).
    pub fn on_soft_limit(&self, observer: PressureObserver) {
        self.tracker.on_soft_limit(observer);
    }

    /// Where usage stands against the limits. Above the soft limit it warns, counts and runs
    /// the emergency cleanups, as a request crossing the limit does. Lock-free when below.
    #[inline]
    pub fn check_limits(&self) -> LimitStatus {
        let current = self.tracker.allocated();
        let soft_limit = self.tracker.limits().soft();
        if current <= soft_limit {
            return LimitStatus::Ok {
                current,
                headroom: soft_limit - current,
            };
        }
        self.tracker.soft_limit_reached(current, None, 0);
        LimitStatus::AboveSoft {
            current,
            soft_limit,
            delta: current - soft_limit,
        }
    }

    /// Whether `bytes` more could be recorded now without passing the hard limit. Reserves
    /// nothing: a request made afterwards is checked again, atomically.
    pub fn check_request(&self, bytes: u64) -> Result<(), VramError> {
        let current = self.tracker.allocated();
        let limit = self.tracker.limits().hard();
        if current.saturating_add(bytes) > limit {
            return Err(VramError::HardLimit {
                owner: Arc::from("(check)"),
                purpose: Purpose::Workspace,
                current,
                requested: bytes,
                limit,
            });
        }
        Ok(())
    }

    /// Checks that the device has `required` bytes free for `what` before anything is
    /// allocated; refuses with required, available and what to change.
    pub fn preflight(&self, what: &str, required: u64) -> Result<MemInfo, VramError> {
        let info = self.backend.mem_info()?;
        if required > info.free {
            let short = required - info.free;
            return Err(VramError::Preflight {
                what: what.to_owned(),
                required,
                available: info.free,
                total: info.total,
                remediation: format!(
                    "free {} on the device (other processes hold {}), or shrink the plan by that much: \
                     smaller output buffers, video buffer in pinned host memory, or a smaller scratch region",
                    Bytes(short),
                    Bytes(info.used())
                ),
            });
        }
        Ok(info)
    }

    /// Takes a snapshot without I/O to the log.
    pub fn snapshot(&self, event: &str, slot: Option<u64>) -> VramSnapshot {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let device = self.backend.mem_info().ok();
        VramSnapshot {
            timestamp_ms,
            event: event.to_owned(),
            slot,
            allocated: self.tracker.allocated(),
            reserved: self.tracker.reserved(),
            peak: self.tracker.peak(),
            device_used: device.map(|d| d.used()),
            device_total: device.map(|d| d.total),
            owners: self.tracker.owner_totals(),
        }
    }

    /// Takes a snapshot and emits it as one JSON object through `tracing` (target
    /// `vortex_vram::snapshot`, field `snapshot`).
    pub fn emit_snapshot(&self, event: &str, slot: Option<u64>) -> VramSnapshot {
        let snapshot = self.snapshot(event, slot);
        if !tracing::enabled!(target: "vortex_vram::snapshot", tracing::Level::INFO) {
            return snapshot;
        }
        // Flat fields, so a JSON log line carries numbers, not a JSON document in a string;
        // the owners as `name=bytes` pairs.
        let owners = snapshot
            .owners
            .iter()
            .map(|o| format!("{}={}", o.owner, o.bytes))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(
            target: "vortex_vram::snapshot",
            event,
            slot,
            allocated = snapshot.allocated,
            reserved = snapshot.reserved,
            peak = snapshot.peak,
            device_used = snapshot.device_used,
            device_total = snapshot.device_total,
            owners = %owners,
            "vram snapshot"
        );
        snapshot
    }

    /// Takes the current tracked bytes as the leak baseline and restarts the generation count.
    pub fn set_leak_baseline(&self) {
        let mut leak = self.leak.lock().unwrap_or_else(PoisonError::into_inner);
        leak.baseline = Some(self.tracker.allocated());
        leak.generations = 0;
    }

    /// Counts one generation (one slot). Every `leak_check_every` generations, compares
    /// tracked bytes with the baseline (taken now if none was set) and warns when they grew
    /// by more than `leak_threshold`.
    pub fn generation_completed(&self) -> Option<LeakReport> {
        let current = self.tracker.allocated();
        let mut leak = self.leak.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(initial) = leak.baseline else {
            leak.baseline = Some(current);
            leak.generations = 0;
            return None;
        };
        leak.generations += 1;
        if !leak
            .generations
            .is_multiple_of(self.config.leak_check_every)
        {
            return None;
        }
        let delta = current.saturating_sub(initial);
        if delta <= self.config.leak_threshold {
            return None;
        }
        let report = LeakReport {
            initial,
            current,
            delta,
            generations: leak.generations,
        };
        tracing::warn!(
            target: "vortex_vram",
            initial,
            current,
            delta,
            generations = report.generations,
            "possible VRAM leak: tracked bytes grew by {} over {} generations",
            Bytes(delta),
            report.generations
        );
        Some(report)
    }

    /// Sets the VRAM gauges: usage, reserved, and bytes per owner and purpose (zero for a
    /// pair that held bytes before and holds none now).
    pub fn publish_metrics(&self) {
        metrics::gauge!(names::VRAM_USAGE_BYTES).set(self.tracker.allocated() as f64);
        metrics::gauge!(names::VRAM_RESERVED_BYTES).set(self.tracker.reserved() as f64);
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut now = HashSet::new();
        for owner in self.tracker.owners() {
            for p in &owner.by_purpose {
                metrics::gauge!(
                    names::VRAM_OWNER_BYTES,
                    "owner" => owner.owner.to_string(),
                    "purpose" => p.purpose.as_str()
                )
                .set(p.bytes as f64);
                now.insert((owner.owner.clone(), p.purpose));
            }
        }
        for (owner, purpose) in published.difference(&now) {
            metrics::gauge!(
                names::VRAM_OWNER_BYTES,
                "owner" => owner.to_string(),
                "purpose" => purpose.as_str()
            )
            .set(0.0);
        }
        *published = now;
    }
}
