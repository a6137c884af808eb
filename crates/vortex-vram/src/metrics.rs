//! Names of the Prometheus metrics Vortex emits (DESIGN.md §5), and [`describe`], which gives
//! each its unit and help text once. Libraries emit through the `metrics` facade; only a binary
//! installs a recorder.

/// Gauge: bytes tracked as allocated to owners.
pub const VRAM_USAGE_BYTES: &str = "icn_vortex_vram_usage_bytes";
/// Gauge: bytes held from the device (slabs and dedicated allocations).
pub const VRAM_RESERVED_BYTES: &str = "icn_vortex_vram_reserved_bytes";
/// Gauge with labels `owner` and `purpose`: bytes held by one owner for one purpose.
pub const VRAM_OWNER_BYTES: &str = "icn_vortex_vram_owner_bytes";
/// Counter: times usage went above the soft limit.
pub const SOFT_LIMIT_VIOLATIONS: &str = "icn_vortex_vram_soft_limit_violations_total";
/// Counter: requests refused at the hard limit.
pub const HARD_LIMIT_VIOLATIONS: &str = "icn_vortex_vram_hard_limit_violations_total";
/// Counter: emergency cleanups run at the soft limit.
pub const EMERGENCY_CLEANUPS: &str = "icn_vortex_vram_emergency_cleanups_total";
/// Histogram: wall time of a whole slot.
pub const SLOT_DURATION_SECONDS: &str = "icn_vortex_slot_duration_seconds";
/// Histogram with label `stage`: wall time of one stage of a slot.
pub const STAGE_DURATION_SECONDS: &str = "icn_vortex_stage_duration_seconds";
/// Counter with label `outcome`: slots finished, by outcome.
pub const SLOTS_TOTAL: &str = "icn_vortex_slots_total";
/// Gauge with label `model` (`clip_b`, `clip_l`, `ensemble`): the last scored slot's CLIP
/// similarity between its frames and its prompt (a cosine, from -1 to 1; unitless, hence
/// `_ratio`).
pub const CLIP_SCORE: &str = "icn_vortex_clip_score_ratio";
/// Counter with label `verdict` (`pass`, `fail`, `unscored`): slots by CLIP verification.
pub const CLIP_VERDICTS_TOTAL: &str = "icn_vortex_clip_verdicts_total";

/// Describes every Vortex metric to the installed recorder, with its unit. Call once, after
/// installing the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        VRAM_USAGE_BYTES,
        Unit::Bytes,
        "VRAM tracked as allocated to owners"
    );
    describe_gauge!(
        VRAM_RESERVED_BYTES,
        Unit::Bytes,
        "VRAM held from the device"
    );
    describe_gauge!(
        VRAM_OWNER_BYTES,
        Unit::Bytes,
        "VRAM held by one owner for one purpose"
    );
    describe_counter!(
        SOFT_LIMIT_VIOLATIONS,
        Unit::Count,
        "times VRAM usage went above the soft limit"
    );
    describe_counter!(
        HARD_LIMIT_VIOLATIONS,
        Unit::Count,
        "VRAM requests refused at the hard limit"
    );
    describe_counter!(
        EMERGENCY_CLEANUPS,
        Unit::Count,
        "emergency cleanups run at the soft limit"
    );
    describe_histogram!(SLOT_DURATION_SECONDS, Unit::Seconds, "wall time of a slot");
    describe_histogram!(
        STAGE_DURATION_SECONDS,
        Unit::Seconds,
        "wall time of one stage of a slot"
    );
    describe_counter!(SLOTS_TOTAL, Unit::Count, "slots finished, by outcome");
    describe_gauge!(
        CLIP_SCORE,
        Unit::Count,
        "the last scored slot's CLIP similarity between its frames and its prompt"
    );
    describe_counter!(
        CLIP_VERDICTS_TOTAL,
        Unit::Count,
        "slots by CLIP verification verdict"
    );
}
