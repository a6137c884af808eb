//! [`VramTracker`]: who holds which device bytes, for what, and whether the limits allow more.
//!
//! Every byte the arena hands out is recorded with an owner (`"flux"`, `"video_buffer"`, …) and
//! a [`Purpose`]. Recording and releasing are O(1) and lock-free: owners are interned once into
//! [`OwnerId`]s that index fixed tables, and a record carries its owner, purpose and size, so
//! releasing it needs no lookup.
//!
//! The total is one atomic counter: the limit check rides on the `fetch_add` that counts the
//! bytes (see [`Limits`]), so the total and its peak are exact at every moment. The breakdown
//! by owner and purpose lives in per-thread shards, each written by one thread with plain
//! loads and stores (threads past the shard count share one more shard, updated with
//! read-modify-write); readers sum the shards. A record may be released on another thread
//! than the one that made it: shard words wrap and their sum stays exact. Per-owner and
//! per-purpose figures are exact whenever no update is in flight (after a join, a barrier, a
//! slot); the per-owner and per-purpose peaks are taken from those sums at each record.

use std::fmt;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::error::VramError;
use crate::metrics as names;
use crate::sync::{AtomicU32, AtomicU64, Ordering, PeakCounter, SHARDS, bump, thread_slot};
use crate::units::{ByteSize, Bytes};

/// What an allocation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A model's resident weights.
    ModelWeights,
    /// A pre-allocated output buffer (actor image, audio, video).
    OutputBuffer,
    /// Short-lived working memory from the scratch region.
    Scratch,
    /// A model's own long-lived working memory (activations, caches).
    Workspace,
    /// Staging memory for transfers.
    Staging,
    /// Memory the driver context holds, recorded for accounting.
    Context,
    /// What a model's network allocates while it runs (the runtime's tensors), from scratch.
    Activations,
}

/// Number of [`Purpose`] variants.
const PURPOSES: usize = 7;

impl Purpose {
    /// Every purpose, in table order.
    pub const ALL: [Purpose; PURPOSES] = [
        Purpose::ModelWeights,
        Purpose::OutputBuffer,
        Purpose::Scratch,
        Purpose::Workspace,
        Purpose::Staging,
        Purpose::Context,
        Purpose::Activations,
    ];

    /// The name used in logs, snapshots and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::ModelWeights => "model_weights",
            Purpose::OutputBuffer => "output_buffer",
            Purpose::Scratch => "scratch",
            Purpose::Workspace => "workspace",
            Purpose::Staging => "staging",
            Purpose::Context => "context",
            Purpose::Activations => "activations",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The soft and hard limits on tracked bytes.
///
/// Usage *above* the soft limit warns (reaching it exactly does not); a request that would take
/// usage *above* the hard limit is refused before anything is allocated (reaching it exactly is
/// allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    soft: u64,
    hard: u64,
}

impl Limits {
    /// Largest hard limit accepted: 1 PiB, far above any device, low enough that counters
    /// cannot overflow.
    pub const MAX: u64 = 1 << 50;

    /// Limits with `soft < hard <= Limits::MAX`.
    pub fn new(soft: ByteSize, hard: ByteSize) -> Result<Self, VramError> {
        let (soft, hard) = (soft.bytes(), hard.bytes());
        if soft >= hard || hard > Self::MAX {
            return Err(VramError::InvalidLimits { soft, hard });
        }
        Ok(Limits { soft, hard })
    }

    /// The seed's limits: soft 11.0 GB, hard 11.5 GB.
    pub fn seed() -> Self {
        Limits {
            soft: 11_000_000_000,
            hard: 11_500_000_000,
        }
    }

    /// The soft limit in bytes.
    pub const fn soft(&self) -> u64 {
        self.soft
    }

    /// The hard limit in bytes.
    pub const fn hard(&self) -> u64 {
        self.hard
    }
}

/// An interned owner name; cheap to copy, valid for the tracker that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(u16);

impl OwnerId {
    /// The owner's index in its tracker's table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a soft-limit observer is told.
#[derive(Debug, Clone, Serialize)]
pub struct SoftLimitEvent {
    /// Tracked bytes right after the request that crossed (or the check that found) the limit.
    pub current: u64,
    /// The soft limit.
    pub soft_limit: u64,
    /// `current - soft_limit`.
    pub delta: u64,
    /// The owner whose request crossed the limit, if a request did.
    pub owner: Option<Arc<str>>,
    /// The bytes of that request (0 for an explicit check).
    pub requested: u64,
}

/// What [`VramTracker::count`] saw.
enum Counted {
    /// The calling thread's shard is the only one ever written; these are its new words.
    Alone { owner: u64, purpose: u64 },
    /// Other shards hold part of the counts: sum them.
    Shared,
}

/// Raises a peak to `now` if `now` is higher.
#[inline]
fn raise(peak: &AtomicU64, now: u64) {
    if now > peak.load(Ordering::Relaxed) {
        peak.fetch_max(now, Ordering::Relaxed);
    }
}

/// An emergency cleanup: called when usage passes the soft limit, frees what it can (scratch
/// caches and the like) and returns the bytes it freed.
pub type PressureObserver = Arc<dyn Fn(&SoftLimitEvent) -> u64 + Send + Sync>;

/// The breakdown of one thread's updates: per (owner, purpose) bytes and live records, per
/// owner bytes, per purpose bytes. Padded at both ends so no two shards share a cache line,
/// and each owner and purpose word has a line of its own, so a thread summing one owner's
/// words reads lines the other threads do not write unless they work for that owner.
#[derive(Debug)]
struct Shard {
    words: Box<[AtomicU64]>,
    owners: usize,
}

/// Words in a cache line.
const LINE: usize = 8;
/// Words of padding at each end of a shard.
const PAD: usize = LINE;

impl Shard {
    fn new(owners: usize) -> Self {
        let len = 2 * PAD + 2 * owners * PURPOSES + (owners + PURPOSES) * LINE;
        Shard {
            words: (0..len).map(|_| AtomicU64::new(0)).collect(),
            owners,
        }
    }

    #[inline]
    fn cell_bytes(&self, owner: usize, purpose: usize) -> &AtomicU64 {
        &self.words[PAD + owner * PURPOSES + purpose]
    }

    #[inline]
    fn cell_live(&self, owner: usize, purpose: usize) -> &AtomicU64 {
        &self.words[PAD + (self.owners + owner) * PURPOSES + purpose]
    }

    #[inline]
    fn owner(&self, owner: usize) -> &AtomicU64 {
        &self.words[PAD + 2 * self.owners * PURPOSES + owner * LINE]
    }

    #[inline]
    fn purpose(&self, purpose: usize) -> &AtomicU64 {
        &self.words[PAD + 2 * self.owners * PURPOSES + (self.owners + purpose) * LINE]
    }
}

/// Counts every tracked byte by owner and purpose, enforces [`Limits`], and runs the
/// emergency cleanups registered with [`VramTracker::on_soft_limit`].
pub struct VramTracker {
    limits: Limits,
    total: PeakCounter,
    /// Bytes held from the backend (slabs and dedicated allocations).
    reserved: PeakCounter,
    /// `SHARDS` single-writer shards, then the shared one.
    shards: Box<[Shard]>,
    /// Bit `i` set once shard `i` has been written.
    used_shards: AtomicU32,
    owner_peaks: Box<[AtomicU64]>,
    purpose_peaks: [AtomicU64; PURPOSES],
    max_owners: usize,
    names: RwLock<Vec<Arc<str>>>,
    observers: RwLock<Vec<PressureObserver>>,
    soft_violations: AtomicU64,
    hard_violations: AtomicU64,
    emergency_cleanups: AtomicU64,
}

impl fmt::Debug for VramTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VramTracker")
            .field("limits", &self.limits)
            .field("allocated", &self.allocated())
            .field("reserved", &self.reserved())
            .finish_non_exhaustive()
    }
}

/// A record of tracked bytes with no borrow of its tracker. Whoever holds one must hand it
/// back to [`VramTracker::release_raw`].
#[derive(Debug)]
#[must_use = "a raw record must be released or its bytes stay counted"]
pub(crate) struct RawRecord {
    pub(crate) owner: OwnerId,
    pub(crate) purpose: Purpose,
    pub(crate) size: u64,
}

/// Tracked bytes, released when dropped.
#[derive(Debug)]
#[must_use = "dropping a Tracked releases its bytes at once"]
pub struct Tracked<'t> {
    tracker: &'t VramTracker,
    owner: OwnerId,
    purpose: Purpose,
    size: u64,
    requested: u64,
}

impl Tracked<'_> {
    /// Bytes counted (the request rounded to the allocation granule).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes asked for.
    pub fn requested(&self) -> u64 {
        self.requested
    }

    /// The owner.
    pub fn owner(&self) -> OwnerId {
        self.owner
    }

    /// The purpose.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.tracker.release_raw(RawRecord {
            owner: self.owner,
            purpose: self.purpose,
            size: self.size,
        });
    }
}

impl VramTracker {
    /// Default number of owners a tracker has room for.
    pub const DEFAULT_MAX_OWNERS: usize = 64;

    /// A tracker with room for [`VramTracker::DEFAULT_MAX_OWNERS`] owners.
    pub fn new(limits: Limits) -> Self {
        Self::with_max_owners(limits, Self::DEFAULT_MAX_OWNERS)
    }

    /// A tracker with room for `max_owners` owners (at most 65,536).
    pub fn with_max_owners(limits: Limits, max_owners: usize) -> Self {
        let max_owners = max_owners.clamp(1, 1 << 16);
        VramTracker {
            limits,
            total: PeakCounter::new(),
            reserved: PeakCounter::new(),
            shards: (0..=SHARDS).map(|_| Shard::new(max_owners)).collect(),
            used_shards: AtomicU32::new(0),
            owner_peaks: (0..max_owners).map(|_| AtomicU64::new(0)).collect(),
            purpose_peaks: std::array::from_fn(|_| AtomicU64::new(0)),
            max_owners,
            names: RwLock::new(Vec::new()),
            observers: RwLock::new(Vec::new()),
            soft_violations: AtomicU64::new(0),
            hard_violations: AtomicU64::new(0),
            emergency_cleanups: AtomicU64::new(0),
        }
    }

    /// The limits this tracker enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Interns an owner name. Registering a name twice gives the same id.
    pub fn register_owner(&self, name: &str) -> Result<OwnerId, VramError> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(VramError::InvalidRequest {
                what: format!(
                    "owner name {name:?}: use a non-empty name without control characters"
                ),
            });
        }
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = names.iter().position(|n| &**n == name) {
            return Ok(OwnerId(i as u16));
        }
        if names.len() == self.max_owners {
            return Err(VramError::TooManyOwners {
                name: name.to_owned(),
                max: self.max_owners,
            });
        }
        names.push(Arc::from(name));
        Ok(OwnerId((names.len() - 1) as u16))
    }

    /// The id of a registered owner.
    pub fn owner_id(&self, name: &str) -> Option<OwnerId> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .position(|n| &**n == name)
            .map(|i| OwnerId(i as u16))
    }

    /// The name of an owner id (`"?"` for an id this tracker did not issue).
    pub fn owner_name(&self, owner: OwnerId) -> Arc<str> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .get(owner.index())
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }

    /// Registers an emergency cleanup, run on the thread whose request crosses the soft limit
    /// (and by explicit checks that find usage above it), before that request returns.
    pub fn on_soft_limit(&self, observer: PressureObserver) {
        self.observers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(observer);
    }

    /// Records `size` bytes (the granule-rounded `requested`) for `owner` and `purpose`,
    /// refusing with [`VramError::HardLimit`] if they would take usage above the hard limit.
    /// The bytes are released when the returned [`Tracked`] drops.
    pub fn record(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        size: u64,
        requested: u64,
    ) -> Result<Tracked<'_>, VramError> {
        let RawRecord {
            owner,
            purpose,
            size,
        } = self.record_raw(owner, purpose, size)?;
        Ok(Tracked {
            tracker: self,
            owner,
            purpose,
            size,
            requested,
        })
    }

    /// [`VramTracker::record`] without the borrow; the caller releases.
    #[inline]
    pub(crate) fn record_raw(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        size: u64,
    ) -> Result<RawRecord, VramError> {
        if owner.index() >= self.max_owners {
            return Err(VramError::InvalidRequest {
                what: format!("owner id {} was not issued by this tracker", owner.0),
            });
        }
        let now = match self.total.try_add(size, self.limits.hard) {
            Ok(now) => now,
            Err(current) => return Err(self.refuse(owner, purpose, size, current)),
        };
        let (owner_now, purpose_now) = match self.count(owner, purpose, size, 1) {
            // Only this thread's shard was ever written: its words are the totals.
            Counted::Alone { owner, purpose } => (owner, purpose),
            Counted::Shared => (
                self.sum(|shard| shard.owner(owner.index())),
                self.sum(|shard| shard.purpose(purpose.index())),
            ),
        };
        raise(&self.owner_peaks[owner.index()], owner_now);
        raise(&self.purpose_peaks[purpose.index()], purpose_now);
        let soft = self.limits.soft;
        if now > soft && now - size <= soft {
            self.soft_limit_reached(now, Some(owner), size);
        }
        Ok(RawRecord {
            owner,
            purpose,
            size,
        })
    }

    /// Releases a record made by [`VramTracker::record_raw`].
    #[inline]
    pub(crate) fn release_raw(&self, record: RawRecord) {
        let RawRecord {
            owner,
            purpose,
            size,
        } = record;
        self.count(owner, purpose, size.wrapping_neg(), 1u64.wrapping_neg());
        self.total.sub(size);
    }

    /// Adds `bytes` and `live` (wrapping) to the calling thread's shard.
    #[inline]
    fn count(&self, owner: OwnerId, purpose: Purpose, bytes: u64, live: u64) -> Counted {
        let slot = thread_slot();
        let shared = slot >= SHARDS;
        let bit = 1u32 << slot;
        let mut used = self.used_shards.load(Ordering::Relaxed);
        if used & bit == 0 {
            used = self.used_shards.fetch_or(bit, Ordering::Relaxed) | bit;
        }
        let shard = &self.shards[slot];
        let (o, p) = (owner.index(), purpose.index());
        bump(shard.cell_bytes(o, p), bytes, shared);
        bump(shard.cell_live(o, p), live, shared);
        bump(shard.owner(o), bytes, shared);
        bump(shard.purpose(p), bytes, shared);
        if used == bit && !shared {
            Counted::Alone {
                owner: shard.owner(o).load(Ordering::Relaxed),
                purpose: shard.purpose(p).load(Ordering::Relaxed),
            }
        } else {
            Counted::Shared
        }
    }

    /// The sum of one word over every shard written so far.
    #[inline]
    fn sum(&self, word: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        let mut used = self.used_shards.load(Ordering::Relaxed);
        let mut sum = 0u64;
        while used != 0 {
            let i = used.trailing_zeros() as usize;
            used &= used - 1;
            sum = sum.wrapping_add(word(&self.shards[i]).load(Ordering::Relaxed));
        }
        sum
    }

    /// Counts bytes reserved from the backend.
    pub(crate) fn add_reserved(&self, bytes: u64) {
        self.reserved.add(bytes);
    }

    /// Uncounts bytes returned to the backend.
    pub(crate) fn sub_reserved(&self, bytes: u64) {
        self.reserved.sub(bytes);
    }

    #[cold]
    fn refuse(&self, owner: OwnerId, purpose: Purpose, requested: u64, current: u64) -> VramError {
        self.hard_violations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::HARD_LIMIT_VIOLATIONS).increment(1);
        let owner = self.owner_name(owner);
        let limit = self.limits.hard;
        tracing::warn!(
            target: "vortex_vram",
            owner = &*owner,
            purpose = purpose.as_str(),
            current,
            requested,
            limit,
            "VRAM request refused: it would pass the hard limit"
        );
        VramError::HardLimit {
            owner,
            purpose,
            current,
            requested,
            limit,
        }
    }

    /// Warns, counts and runs the emergency cleanups. `current` is the usage that passed the
    /// soft limit; `owner` the one whose request did it, if any.
    #[cold]
    pub(crate) fn soft_limit_reached(&self, current: u64, owner: Option<OwnerId>, requested: u64) {
        self.soft_violations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::SOFT_LIMIT_VIOLATIONS).increment(1);
        let soft_limit = self.limits.soft;
        let event = SoftLimitEvent {
            current,
            soft_limit,
            delta: current - soft_limit,
            owner: owner.map(|o| self.owner_name(o)),
            requested,
        };
        tracing::warn!(
            target: "vortex_vram",
            current,
            soft_limit,
            delta = event.delta,
            owner = event.owner.as_deref().unwrap_or(""),
            requested,
            "VRAM usage is above the soft limit"
        );
        let observers = self
            .observers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if observers.is_empty() {
            return;
        }
        let before = self.allocated();
        let freed: u64 = observers.iter().map(|observer| observer(&event)).sum();
        let after = self.allocated();
        self.emergency_cleanups.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(names::EMERGENCY_CLEANUPS).increment(1);
        tracing::warn!(
            target: "vortex_vram",
            freed,
            before,
            after,
            "emergency cleanup freed {} ({} -> {})",
            Bytes(freed),
            Bytes(before),
            Bytes(after)
        );
    }

    /// Tracked bytes now.
    #[inline]
    pub fn allocated(&self) -> u64 {
        self.total.current()
    }

    /// Most tracked bytes ever held at once.
    pub fn peak(&self) -> u64 {
        self.total.peak()
    }

    /// Bytes held from the backend now.
    pub fn reserved(&self) -> u64 {
        self.reserved.current()
    }

    /// Times usage passed the soft limit (requests that crossed it, checks that found it).
    pub fn soft_limit_violations(&self) -> u64 {
        self.soft_violations.load(Ordering::Relaxed)
    }

    /// Requests refused at the hard limit.
    pub fn hard_limit_violations(&self) -> u64 {
        self.hard_violations.load(Ordering::Relaxed)
    }

    /// Times the emergency cleanups ran.
    pub fn emergency_cleanups(&self) -> u64 {
        self.emergency_cleanups.load(Ordering::Relaxed)
    }

    /// Bytes now held by one owner.
    pub fn owner_bytes(&self, owner: OwnerId) -> u64 {
        if owner.index() >= self.max_owners {
            return 0;
        }
        self.sum(|shard| shard.owner(owner.index()))
    }

    /// Bytes now held for one purpose.
    pub fn purpose_bytes(&self, purpose: Purpose) -> u64 {
        self.sum(|shard| shard.purpose(purpose.index()))
    }

    /// Live records.
    pub fn live_allocations(&self) -> u64 {
        let owners = self.names.read().unwrap_or_else(|e| e.into_inner()).len();
        (0..owners)
            .flat_map(|o| (0..PURPOSES).map(move |p| (o, p)))
            .fold(0u64, |sum, (o, p)| {
                sum.wrapping_add(self.sum(|shard| shard.cell_live(o, p)))
            })
    }

    /// Bytes of every registered owner, in registration order: the light form of
    /// [`VramTracker::owners`].
    pub fn owner_totals(&self) -> Vec<OwnerBytes> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .enumerate()
            .map(|(o, name)| OwnerBytes {
                owner: name.clone(),
                bytes: self.sum(|shard| shard.owner(o)),
            })
            .collect()
    }

    /// Usage of every registered owner, in registration order.
    pub fn owners(&self) -> Vec<OwnerUsage> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .enumerate()
            .map(|(o, name)| {
                let by_purpose = Purpose::ALL
                    .iter()
                    .filter_map(|&purpose| {
                        let p = purpose.index();
                        let live = self.sum(|shard| shard.cell_live(o, p));
                        (live > 0).then(|| PurposeBytes {
                            purpose,
                            bytes: self.sum(|shard| shard.cell_bytes(o, p)),
                            live,
                        })
                    })
                    .collect::<Vec<_>>();
                OwnerUsage {
                    owner: name.clone(),
                    bytes: self.sum(|shard| shard.owner(o)),
                    peak: self.owner_peaks[o].load(Ordering::Relaxed),
                    live: by_purpose.iter().map(|p| p.live).sum(),
                    by_purpose,
                }
            })
            .collect()
    }

    /// A full usage report: totals, limits, owners and purposes. Displays as a table.
    pub fn report(&self) -> UsageReport {
        let owners = self.owners();
        UsageReport {
            allocated: self.allocated(),
            peak: self.peak(),
            reserved: self.reserved(),
            live: owners.iter().map(|o| o.live).sum(),
            soft_limit: self.limits.soft,
            hard_limit: self.limits.hard,
            owners,
            purposes: Purpose::ALL
                .iter()
                .map(|&purpose| PurposeUsage {
                    purpose,
                    bytes: self.purpose_bytes(purpose),
                    peak: self.purpose_peaks[purpose.index()].load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// Bytes and live records of one owner for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeBytes {
    /// The purpose.
    pub purpose: Purpose,
    /// Bytes held now.
    pub bytes: u64,
    /// Live records.
    pub live: u64,
}

/// One owner's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerBytes {
    /// The owner's name.
    pub owner: Arc<str>,
    /// Bytes held now.
    pub bytes: u64,
}

/// One owner's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerUsage {
    /// The owner's name.
    pub owner: Arc<str>,
    /// Bytes held now.
    pub bytes: u64,
    /// Most bytes ever held at once.
    pub peak: u64,
    /// Live records.
    pub live: u64,
    /// Bytes by purpose, for the purposes with live records.
    pub by_purpose: Vec<PurposeBytes>,
}

/// One purpose's usage across owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeUsage {
    /// The purpose.
    pub purpose: Purpose,
    /// Bytes held now.
    pub bytes: u64,
    /// Most bytes ever held at once.
    pub peak: u64,
}

/// Everything the tracker knows, at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// Tracked bytes now.
    pub allocated: u64,
    /// Most tracked bytes ever.
    pub peak: u64,
    /// Bytes held from the backend.
    pub reserved: u64,
    /// Live records.
    pub live: u64,
    /// The soft limit.
    pub soft_limit: u64,
    /// The hard limit.
    pub hard_limit: u64,
    /// Per owner.
    pub owners: Vec<OwnerUsage>,
    /// Per purpose.
    pub purposes: Vec<PurposeUsage>,
}

impl fmt::Display for UsageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<14} {:>12} {:>12} {:>6}",
            "owner", "purpose", "bytes", "peak", "live"
        )?;
        for owner in &self.owners {
            writeln!(
                f,
                "{:<16} {:<14} {:>12} {:>12} {:>6}",
                owner.owner,
                "",
                Bytes(owner.bytes).to_string(),
                Bytes(owner.peak).to_string(),
                owner.live
            )?;
            for p in &owner.by_purpose {
                writeln!(
                    f,
                    "{:<16} {:<14} {:>12} {:>12} {:>6}",
                    "",
                    p.purpose.as_str(),
                    Bytes(p.bytes).to_string(),
                    "",
                    p.live
                )?;
            }
        }
        writeln!(
            f,
            "{:<16} {:<14} {:>12} {:>12} {:>6}",
            "total",
            "",
            Bytes(self.allocated).to_string(),
            Bytes(self.peak).to_string(),
            self.live
        )?;
        write!(
            f,
            "reserved {}; soft limit {} ({} headroom); hard limit {}",
            Bytes(self.reserved),
            Bytes(self.soft_limit),
            Bytes(self.soft_limit.saturating_sub(self.allocated)),
            Bytes(self.hard_limit)
        )
    }
}
