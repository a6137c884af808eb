//! Cost profiles (per-model stage latency on a named GPU) and the time plan of a slot.
//!
//! A slot runs audio (Kokoro) and the actor image (Flux) concurrently, then video warping
//! (LivePortrait), then CLIP-B and CLIP-L verification concurrently. The time plan adds the
//! critical path and says whether the deadline can be met.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use crate::stage::Stage;
use crate::stage::StageMap;

/// One stage's cost: a fixed part plus a part per unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StageCost {
    /// Milliseconds whatever the work.
    pub fixed_ms: f64,
    /// Milliseconds per unit (per second of audio, per frame, per verified frame).
    pub per_unit_ms: f64,
}

impl StageCost {
    /// The cost of `units` of work.
    pub fn time(&self, units: u64) -> Duration {
        Duration::from_secs_f64((self.fixed_ms + self.per_unit_ms * units as f64).max(0.0) / 1e3)
    }
}

/// Stage costs of the five models on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostProfile {
    /// Profile name (`seed-targets`, `rtx3060-public`, `zero`).
    pub name: &'static str,
    /// The GPU the figures are for.
    pub gpu: &'static str,
    /// Per stage: audio per second of audio, actor per image, video per frame, the CLIP
    /// stages per verified frame.
    pub costs: StageMap<StageCost>,
}

impl CostProfile {
    /// Names of the shipped profiles.
    pub const NAMES: &'static [&'static str] = &["seed-targets", "rtx3060-public", "zero"];

    /// A shipped profile by name.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "seed-targets" => Some(Self::seed_targets()),
            "rtx3060-public" => Some(Self::rtx3060_public()),
            "zero" => Some(Self::zero()),
            _ => None,
        }
    }

    /// The seed's assumptions (DESIGN.md §4), the default.
    pub fn seed_targets() -> Self {
        CostProfile {
            name: "seed-targets",
            gpu: "RTX 3060 12 GiB (assumed)",
            costs: StageMap::from_fn(|stage| match stage {
                // Seed: "Kokoro audio about 2 s".
                Stage::Audio => StageCost {
                    fixed_ms: 2000.0,
                    per_unit_ms: 0.0,
                },
                // Seed: "Flux actor about 12 s".
                Stage::Actor => StageCost {
                    fixed_ms: 12_000.0,
                    per_unit_ms: 0.0,
                },
                // Seed: the whole slot under 15 s at P99 leaves warping about 0.5 s of fixed
                // cost plus 1.5 ms per frame (2.1 s for 1,080 frames): an assumption, not a figure.
                Stage::Video => StageCost {
                    fixed_ms: 500.0,
                    per_unit_ms: 1.5,
                },
                // Seed: CLIP verification last and short; 5 ms / 10 ms per frame on 8 frames.
                Stage::ClipB => StageCost {
                    fixed_ms: 50.0,
                    per_unit_ms: 5.0,
                },
                Stage::ClipL => StageCost {
                    fixed_ms: 100.0,
                    per_unit_ms: 10.0,
                },
            }),
        }
    }

    /// Public measurements, scaled to an RTX 3060 where they were taken on another GPU.
    pub fn rtx3060_public() -> Self {
        CostProfile {
            name: "rtx3060-public",
            gpu: "RTX 3060 12 GiB",
            costs: StageMap::from_fn(|stage| match stage {
                // Kokoro-82M runs far faster than real time on consumer GPUs (its model card and
                // community benchmarks put it near 100× real time): 10 ms per second of audio.
                Stage::Audio => StageCost {
                    fixed_ms: 150.0,
                    per_unit_ms: 10.0,
                },
                // FLUX.1-schnell 4-bit (the community's figures are NF4; Vortex loads
                // MatMulNBits, the same bits per weight), 4 steps at 512²: reports on 12 GB Ampere cards run
                // about 1 s per step at this size plus text encoding and VAE decode: ~6 s.
                Stage::Actor => StageCost {
                    fixed_ms: 6000.0,
                    per_unit_ms: 0.0,
                },
                // LivePortrait paper: 12.8 ms per frame on an RTX 4090. The 3060 has about a third
                // of the 4090's fp16 tensor throughput: ~40 ms per frame.
                Stage::Video => StageCost {
                    fixed_ms: 300.0,
                    per_unit_ms: 40.0,
                },
                // CLIP image towers at fp16, batch of frames: ~3 ms (B/32) and ~12 ms (L/14).
                Stage::ClipB => StageCost {
                    fixed_ms: 20.0,
                    per_unit_ms: 3.0,
                },
                Stage::ClipL => StageCost {
                    fixed_ms: 40.0,
                    per_unit_ms: 12.0,
                },
            }),
        }
    }

    /// No latency at all: for measuring the engine's own overhead.
    pub fn zero() -> Self {
        let zero = StageCost {
            fixed_ms: 0.0,
            per_unit_ms: 0.0,
        };
        CostProfile {
            name: "zero",
            gpu: "none",
            costs: StageMap::from_fn(|_| zero),
        }
    }
}

impl CostProfile {
    /// How long `stage` takes on `work` under this profile. The host backend emulates a stage
    /// by waiting this long times the configured time scale (the pipeline does the waiting,
    /// on tokio's clock, so deadline logic runs under a paused clock in tests).
    pub fn latency(&self, stage: Stage, work: SlotWork, time_scale: f64) -> Duration {
        let units = match stage {
            Stage::Audio => work.seconds,
            Stage::Actor => 1,
            Stage::Video => work.frames,
            Stage::ClipB | Stage::ClipL => work.verified_frames,
        };
        let base = self.costs[stage].time(units);
        base.mul_f64(time_scale.max(0.0))
    }
}

/// The work in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotWork {
    /// Seconds of audio and video.
    pub seconds: u64,
    /// Video frames.
    pub frames: u64,
    /// Frames CLIP verifies.
    pub verified_frames: u64,
}

/// A slot's critical path over per-stage times `at`: `max(audio, actor) + video +
/// max(clip_b, clip_l)`, the order the pipeline runs them in (audio ‖ actor, then video, then
/// clip_b ‖ clip_l). For the profile's times ([`TimePlan`]) and the device's floors
/// ([`crate::physics`]) alike.
pub fn critical_path<T>(at: impl Fn(Stage) -> T) -> T
where
    T: Copy + PartialOrd + std::ops::Add<Output = T>,
{
    let max = |a: T, b: T| if b > a { b } else { a };
    max(at(Stage::Audio), at(Stage::Actor))
        + at(Stage::Video)
        + max(at(Stage::ClipB), at(Stage::ClipL))
}

/// Stage times of a slot and its critical path against the deadline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimePlan {
    /// The profile used.
    pub profile: &'static str,
    /// Each stage's time.
    pub stages: StageMap<Duration>,
    /// `max(audio, actor) + video + max(clip_b, clip_l)`.
    pub critical_path: Duration,
    /// The slot deadline.
    pub deadline: Duration,
}

impl TimePlan {
    /// The plan of `work` under `profile`.
    pub fn new(profile: &CostProfile, work: SlotWork, deadline: Duration) -> Self {
        let stages = StageMap::from_fn(|stage| profile.latency(stage, work, 1.0));
        TimePlan {
            profile: profile.name,
            critical_path: critical_path(|stage| stages[stage]),
            stages,
            deadline,
        }
    }

    /// Whether the critical path fits in the deadline.
    pub fn meets_deadline(&self) -> bool {
        self.critical_path <= self.deadline
    }
}

impl fmt::Display for TimePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        writeln!(f, "time plan ({}):", self.profile)?;
        writeln!(
            f,
            "  audio (kokoro)        {:>10}  ┐ concurrent",
            s(self.stages[Stage::Audio])
        )?;
        writeln!(
            f,
            "  actor (flux)          {:>10}  ┘",
            s(self.stages[Stage::Actor])
        )?;
        writeln!(
            f,
            "  video (liveportrait)  {:>10}",
            s(self.stages[Stage::Video])
        )?;
        writeln!(
            f,
            "  verify (clip_b)       {:>10}  ┐ concurrent",
            s(self.stages[Stage::ClipB])
        )?;
        writeln!(
            f,
            "  verify (clip_l)       {:>10}  ┘",
            s(self.stages[Stage::ClipL])
        )?;
        write!(
            f,
            "  critical path {} against a deadline of {}: {}",
            s(self.critical_path),
            s(self.deadline),
            if self.meets_deadline() {
                format!(
                    "meets it with {} to spare",
                    s(self.deadline - self.critical_path)
                )
            } else {
                format!(
                    "misses it by {}; choose a faster profile or device, fewer frames, or a longer deadline",
                    s(self.critical_path - self.deadline)
                )
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: SlotWork = SlotWork {
        seconds: 45,
        frames: 1080,
        verified_frames: 8,
    };

    #[test]
    fn seed_targets_fit_fifteen_seconds() {
        let plan = TimePlan::new(&CostProfile::seed_targets(), SLOT, Duration::from_secs(15));
        // max(2, 12) + (0.5 + 1.5·1080 ms) + max(0.05 + 0.04, 0.1 + 0.08) = 12 + 2.12 + 0.18 s.
        assert_eq!(plan.critical_path, Duration::from_millis(14_300));
        assert!(plan.meets_deadline());
        assert!(
            plan.to_string().contains("meets it with 0.70 s to spare"),
            "{plan}"
        );
    }

    #[test]
    fn public_figures_miss_the_seed_deadline_and_say_so() {
        let plan = TimePlan::new(
            &CostProfile::rtx3060_public(),
            SLOT,
            Duration::from_secs(15),
        );
        // max(0.6, 6) + (0.3 + 43.2) + max(0.044, 0.136) s = 49.636 s.
        assert_eq!(plan.critical_path, Duration::from_millis(49_636));
        assert!(!plan.meets_deadline());
        assert!(plan.to_string().contains("misses it by 34.64 s"), "{plan}");
    }

    #[test]
    fn latency_scales_with_the_time_scale() {
        let seed = CostProfile::seed_targets();
        assert_eq!(
            seed.latency(Stage::Actor, SLOT, 1.0),
            Duration::from_secs(12)
        );
        assert_eq!(
            seed.latency(Stage::Actor, SLOT, 0.001),
            Duration::from_millis(12)
        );
        assert_eq!(
            seed.latency(Stage::Video, SLOT, 1.0),
            Duration::from_millis(2120)
        );
        assert_eq!(seed.latency(Stage::Audio, SLOT, -1.0), Duration::ZERO);
    }

    #[test]
    fn profiles_by_name() {
        for name in CostProfile::NAMES {
            assert_eq!(CostProfile::by_name(name).unwrap().name, *name);
        }
        assert!(CostProfile::by_name("rtx4090").is_none());
        let zero = TimePlan::new(&CostProfile::zero(), SLOT, Duration::from_secs(1));
        assert_eq!(zero.critical_path, Duration::ZERO);
    }
}
