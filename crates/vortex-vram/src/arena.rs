//! The [`Arena`]: one slab reserved from the backend at start, carved into a static region and
//! a scratch region.
//!
//! ```text
//! base                                  base + static_capacity                    base + size
//! | static: bump, never freed (weights, | scratch: O(1) sub-allocation (offset-allocator,  |
//! |  output buffers), rollback on load  |  256-byte units), RAII ScratchBuffer handles     |
//! ```
//!
//! Every request is counted by the [`VramTracker`] *before* the region is touched, so the hard
//! limit refuses it with nothing allocated; a request the region cannot fit rolls the count
//! back and fails with an [`OomReport`]. All offsets and sizes are multiples of
//! [`ALIGNMENT`].
//!
//! The arena watches its backend for a lost device (see [`DeviceHealth`]): after the first
//! [`BackendError::DeviceLost`](crate::BackendError::DeviceLost), allocations, copies and
//! residency checks fail at once with that error instead of reaching the device again.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use offset_allocator::{Allocation, Allocator};
use serde::Serialize;

use crate::backend::{Backend, DevicePtr, StreamId};
use crate::error::{OomReport, Region, VramError};
use crate::health::{DeviceHealth, Watched};
use crate::tracker::{OwnerId, Purpose, RawRecord, VramTracker};
use crate::units::Bytes;

/// Alignment of every arena allocation, in bytes; also the scratch allocator's unit.
pub const ALIGNMENT: u64 = 256;

/// Rounds `bytes` up to a multiple of [`ALIGNMENT`] (`None` on overflow).
pub const fn align_up(bytes: u64) -> Option<u64> {
    match bytes.checked_add(ALIGNMENT - 1) {
        Some(b) => Some(b & !(ALIGNMENT - 1)),
        None => None,
    }
}

/// Sizes of the arena's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaConfig {
    /// Bytes of the static region (weights, output buffers); rounded up to [`ALIGNMENT`].
    pub static_bytes: u64,
    /// Bytes of the scratch region; rounded up to [`ALIGNMENT`]; at most 1 TiB.
    pub scratch_bytes: u64,
    /// Most scratch allocations live at once.
    pub max_scratch_allocations: u32,
}

impl ArenaConfig {
    /// Default for [`ArenaConfig::max_scratch_allocations`].
    pub const DEFAULT_MAX_SCRATCH_ALLOCATIONS: u32 = 1 << 18;

    /// A config with the default allocation count.
    pub const fn new(static_bytes: u64, scratch_bytes: u64) -> Self {
        ArenaConfig {
            static_bytes,
            scratch_bytes,
            max_scratch_allocations: Self::DEFAULT_MAX_SCRATCH_ALLOCATIONS,
        }
    }
}

/// A named static region: a stretch of the slab that belongs to one owner for the life of the
/// process (or until a load transaction rolls back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StaticRegion {
    /// Device address (a multiple of [`ALIGNMENT`]).
    #[serde(skip)]
    pub ptr: DevicePtr,
    /// Bytes held (the request rounded up to [`ALIGNMENT`]).
    pub size: u64,
    /// Bytes asked for.
    pub requested: u64,
    /// What for.
    pub purpose: Purpose,
    /// The owner.
    #[serde(skip)]
    pub owner: OwnerId,
}

/// A point in the static region to roll back to, from [`Arena::static_checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticCheckpoint {
    regions: usize,
    cursor: u64,
}

/// Statistics of one region.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegionStats {
    /// Bytes the region spans.
    pub capacity: u64,
    /// Bytes handed out.
    pub used: u64,
    /// Bytes not handed out.
    pub free: u64,
    /// The largest request the region is sure to fit now.
    pub largest_free_block: u64,
    /// `1 - largest_free_block / free` (0 when nothing is free).
    pub fragmentation: f64,
    /// Live allocations.
    pub live: u64,
}

/// Statistics of the whole arena.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ArenaStats {
    /// Bytes held from the backend (the slab).
    pub reserved: u64,
    /// Bytes handed out in both regions.
    pub allocated: u64,
    /// Bytes not handed out in either region.
    pub free: u64,
    /// The largest request one region or the other is sure to fit.
    pub largest_free_block: u64,
    /// `1 - largest_free_block / free` (0 when nothing is free).
    pub fragmentation: f64,
    /// The static region.
    pub static_region: RegionStats,
    /// The scratch region.
    pub scratch: RegionStats,
}

/// Fragmentation as the design defines it: `1 - largest free block / total free`.
pub fn fragmentation(largest_free_block: u64, free: u64) -> f64 {
    if free == 0 {
        0.0
    } else {
        1.0 - largest_free_block as f64 / free as f64
    }
}

struct StaticState {
    cursor: u64,
    regions: Vec<(StaticRegion, RawRecord)>,
}

struct ScratchState {
    allocator: Allocator,
    used_units: u64,
    live: u64,
}

struct ArenaInner {
    /// The backend given to [`Arena::new`], wrapped in a [`Watched`] over `health`.
    backend: Arc<dyn Backend>,
    health: Arc<DeviceHealth>,
    tracker: Arc<VramTracker>,
    base: DevicePtr,
    size: u64,
    static_capacity: u64,
    statics: Mutex<StaticState>,
    static_used: AtomicU64,
    scratch_capacity: u64,
    scratch: Mutex<ScratchState>,
}

/// Bytes a library holds outside every allocator, recorded in the tracker
/// ([`Arena::record_outside`]); released on drop.
pub struct OutsideRecord {
    tracker: Arc<VramTracker>,
    record: Option<RawRecord>,
}

impl OutsideRecord {
    /// The bytes recorded.
    pub fn bytes(&self) -> u64 {
        self.record.as_ref().map_or(0, |r| r.size)
    }
}

impl fmt::Debug for OutsideRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutsideRecord")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Drop for OutsideRecord {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            self.tracker.release_raw(record);
        }
    }
}

/// The slab and its two regions. Cloning shares the same arena.
#[derive(Clone)]
pub struct Arena {
    inner: Arc<ArenaInner>,
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("base", &self.inner.base)
            .field("size", &self.inner.size)
            .field("static_capacity", &self.inner.static_capacity)
            .field("scratch_capacity", &self.inner.scratch_capacity)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Arena {
    /// Reserves the slab from `backend` after a pre-flight check of the device's free memory.
    /// Counts it as reserved in `tracker`.
    ///
    /// The arena keeps `backend` wrapped so that a lost device is remembered (see
    /// [`Arena::device_lost`]); [`Arena::backend`] returns the wrapped one.
    pub fn new(
        backend: Arc<dyn Backend>,
        tracker: Arc<VramTracker>,
        config: ArenaConfig,
    ) -> Result<Self, VramError> {
        let health = Arc::new(DeviceHealth::default());
        let backend: Arc<dyn Backend> = Arc::new(Watched::new(backend, Arc::clone(&health)));
        let invalid = |what: String| VramError::InvalidRequest { what };
        let static_capacity = align_up(config.static_bytes)
            .ok_or_else(|| invalid("the static region size overflows".to_owned()))?;
        let scratch_capacity = align_up(config.scratch_bytes)
            .filter(|&b| b / ALIGNMENT <= u64::from(u32::MAX))
            .ok_or_else(|| {
                invalid(format!(
                    "scratch region of {} bytes: it can be at most {} bytes",
                    config.scratch_bytes,
                    u64::from(u32::MAX) * ALIGNMENT
                ))
            })?;
        let size = static_capacity
            .checked_add(scratch_capacity)
            .filter(|&s| s > 0)
            .ok_or_else(|| {
                invalid("an arena needs a static or scratch region of at least 1 byte".to_owned())
            })?;
        if config.max_scratch_allocations == 0 {
            return Err(invalid(
                "max_scratch_allocations is 0: allow at least one scratch allocation".to_owned(),
            ));
        }
        let info = backend.mem_info()?;
        if size > info.free {
            return Err(VramError::Preflight {
                what: format!(
                    "the arena slab (static {} + scratch {})",
                    Bytes(static_capacity),
                    Bytes(scratch_capacity)
                ),
                required: size,
                available: info.free,
                total: info.total,
                remediation: format!(
                    "shrink the static or scratch region by {} or more, or stop the other processes using the device",
                    Bytes(size - info.free)
                ),
            });
        }
        let base = backend
            .allocate(size)
            .map_err(|source| VramError::Backend {
                owner: Arc::from("arena"),
                purpose: None,
                requested: size,
                source,
            })?;
        tracker.add_reserved(size);
        let units = (scratch_capacity / ALIGNMENT) as u32;
        tracing::info!(
            target: "vortex_vram",
            backend = backend.name(),
            device = backend.device_name(),
            reserved = size,
            static_bytes = static_capacity,
            scratch_bytes = scratch_capacity,
            "arena slab reserved: {} (static {}, scratch {})",
            Bytes(size),
            Bytes(static_capacity),
            Bytes(scratch_capacity)
        );
        Ok(Arena {
            inner: Arc::new(ArenaInner {
                backend,
                health,
                tracker,
                base,
                size,
                static_capacity,
                statics: Mutex::new(StaticState {
                    cursor: 0,
                    regions: Vec::new(),
                }),
                static_used: AtomicU64::new(0),
                scratch_capacity,
                scratch: Mutex::new(ScratchState {
                    allocator: Allocator::with_max_allocs(units, config.max_scratch_allocations),
                    used_units: 0,
                    live: 0,
                }),
            }),
        })
    }

    /// The tracker this arena counts into.
    pub fn tracker(&self) -> &Arc<VramTracker> {
        &self.inner.tracker
    }

    /// The backend the slab came from, as the arena sees it: every call through it is
    /// watched for a lost device and refused once one was reported (see
    /// [`Arena::device_lost`]). Use it, not the backend given to [`Arena::new`], for stream
    /// and event calls, so that a loss they report is remembered too.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Why the device was lost, once any backend call through this arena (or its
    /// [`Vram`](crate::Vram), monitor and dedicated buffers) reported it; `None` while the
    /// device answers. Never cleared. Once it is `Some`, allocations, copies, sweeps and
    /// residency checks fail at once with [`VramError::Device`] holding
    /// [`BackendError::DeviceLost`](crate::BackendError::DeviceLost) and this reason, without
    /// calling the backend; dropping buffers and the arena still returns memory to it.
    pub fn device_lost(&self) -> Option<&str> {
        self.inner.health.device_lost()
    }

    /// The shared device health behind [`Arena::device_lost`], for readers that outlive a
    /// borrow of the arena (a readiness probe).
    pub fn health(&self) -> &Arc<DeviceHealth> {
        &self.inner.health
    }

    /// Start of the slab.
    pub fn base(&self) -> DevicePtr {
        self.inner.base
    }

    /// Bytes of the slab.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// Bump-allocates a static region for `owner`. Static regions are never freed; a load that
    /// fails part-way rolls back to a [`StaticCheckpoint`] instead.
    ///
    /// Start-up path: takes a short lock.
    pub fn alloc_static(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        bytes: u64,
    ) -> Result<StaticRegion, VramError> {
        let inner = &*self.inner;
        inner.health.check()?;
        let size = checked_size(bytes)?;
        let record = inner.tracker.record_raw(owner, purpose, size)?;
        let mut statics = lock(&inner.statics);
        let cursor = statics.cursor;
        if inner.static_capacity - cursor < size {
            drop(statics);
            inner.tracker.release_raw(record);
            let free = inner.static_capacity - cursor;
            return Err(self.out_of_memory(owner, purpose, Region::Static, bytes, free, free));
        }
        let region = StaticRegion {
            ptr: inner.base.offset(cursor),
            size,
            requested: bytes,
            purpose,
            owner,
        };
        statics.cursor = cursor + size;
        statics.regions.push((region, record));
        inner.static_used.store(cursor + size, Ordering::Relaxed);
        Ok(region)
    }

    /// Copies `data` into `region` at `offset` (bounds-checked against the region, and the
    /// region against the static regions this arena has handed out).
    pub fn upload(&self, region: &StaticRegion, offset: u64, data: &[u8]) -> Result<(), VramError> {
        let ptr = self.region_range(region, offset, data.len())?;
        // SAFETY: `region_range` checked that the range lies inside the static part of this
        // arena's slab, one live allocation of this backend (the slab is freed only when the
        // last handle on the arena drops, and `&self` is one).
        Ok(unsafe { self.inner.backend.copy_to_device(ptr, data) }?)
    }

    /// Copies `out.len()` bytes of `region` at `offset` into `out` (bounds-checked as for
    /// [`Arena::upload`]).
    pub fn download(
        &self,
        region: &StaticRegion,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), VramError> {
        let ptr = self.region_range(region, offset, out.len())?;
        // SAFETY: as in `upload`: the range lies inside this arena's live slab.
        Ok(unsafe { self.inner.backend.copy_from_device(ptr, out) }?)
    }

    /// Where `offset..offset + len` of `region` is in the device's address space, for a
    /// library that reads it in place on the device (ONNX Runtime's CUDA provider).
    /// Bounds-checked as for [`Arena::upload`]. The range stays valid while any handle on this
    /// arena lives.
    pub fn device_range(
        &self,
        region: &StaticRegion,
        offset: u64,
        len: usize,
    ) -> Result<DevicePtr, VramError> {
        self.region_range(region, offset, len)
    }

    /// Records `bytes` that a library holds on this arena's device outside every allocator
    /// (ONNX Runtime's CUDA provider: cuBLAS/cuDNN workspaces, its context, its capped
    /// arena), measured by the caller with the driver's free memory, under `owner` and
    /// `purpose`: counted against the hard limit like any allocation (refused above it), and
    /// visible in the tracker, so the tracked total adds up to the driver's. Released when the
    /// returned record drops.
    pub fn record_outside(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        bytes: u64,
    ) -> Result<OutsideRecord, VramError> {
        let record = self.inner.tracker.record_raw(owner, purpose, bytes)?;
        Ok(OutsideRecord {
            tracker: Arc::clone(&self.inner.tracker),
            record: Some(record),
        })
    }

    /// Whether `other` is a handle on this very arena.
    pub fn same_arena(&self, other: &Arena) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Where `offset..offset + len` of `region` is in host memory, when the backend's memory
    /// is host-addressable ([`Backend::host_addressable`]: the host stand-in), so a CPU
    /// runtime can read weights in place; `None` on a GPU. Bounds-checked as for
    /// [`Arena::upload`]. The pointer stays valid while any handle on this arena lives (the
    /// slab is freed only with the last one); what is written through it is the caller's
    /// business, as for a device pointer.
    pub fn host_ptr(
        &self,
        region: &StaticRegion,
        offset: u64,
        len: usize,
    ) -> Result<Option<NonNull<u8>>, VramError> {
        let ptr = self.region_range(region, offset, len)?;
        if !self.inner.backend.host_addressable() {
            return Ok(None);
        }
        Ok(NonNull::new(ptr.addr() as usize as *mut u8))
    }

    /// Reads all of `region` on the device by copying it, chunk by chunk, into `through` (a
    /// scratch buffer of this arena), which is first cleared with a memset: the memory traffic
    /// of a stage that reads its model's weights once. The work is queued on `stream` (the
    /// host backend does it at once). Returns the bytes copied.
    ///
    /// # Safety
    /// The work may still be running when this returns. Until the work queued on `stream` has
    /// finished (see [`Backend::synchronize_stream`] and [`Backend::event_done`]), `through`
    /// must not be dropped, and `region` must not be rolled back (see
    /// [`Arena::rollback_static`]), so that the device never writes into or reads from memory
    /// handed to someone else, or freed with the slab. This holds even if this call fails
    /// part-way, since some chunks may be queued already.
    pub unsafe fn sweep(
        &self,
        region: &StaticRegion,
        through: &ScratchBuffer,
        stream: StreamId,
    ) -> Result<u64, VramError> {
        if !Arc::ptr_eq(&through.arena, &self.inner) {
            return Err(VramError::InvalidRequest {
                what: "a sweep through a scratch buffer of another arena".to_owned(),
            });
        }
        let chunk = through.size();
        if chunk == 0 {
            return Ok(0);
        }
        self.region_range(region, 0, 0)?;
        let backend = &self.inner.backend;
        // SAFETY: `through` is a live scratch buffer of this arena (checked above), `chunk`
        // bytes inside its slab; the caller keeps it alive until the stream's work is done.
        unsafe { backend.memset_async(stream, through.ptr(), 0, chunk) }?;
        let mut done = 0;
        while done < region.size {
            let len = chunk.min(region.size - done);
            // SAFETY: the destination is the first `len <= chunk` bytes of `through`, as
            // above; the source lies inside `region`, which `region_range` found among the
            // static regions handed out from this slab, and which the caller keeps from being
            // rolled back until the stream's work is done.
            unsafe {
                backend.copy_device_async(stream, through.ptr(), region.ptr.offset(done), len)
            }?;
            done += len;
        }
        Ok(done)
    }

    /// The static regions handed out so far, in order.
    pub fn static_regions(&self) -> Vec<StaticRegion> {
        lock(&self.inner.statics)
            .regions
            .iter()
            .map(|(region, _)| *region)
            .collect()
    }

    /// Marks the static region's current end, to roll back to.
    pub fn static_checkpoint(&self) -> StaticCheckpoint {
        let statics = lock(&self.inner.statics);
        StaticCheckpoint {
            regions: statics.regions.len(),
            cursor: statics.cursor,
        }
    }

    /// Releases every static region handed out since `checkpoint` and returns their bytes.
    /// Their addresses must not be used afterwards. Meant for a load that failed part-way,
    /// with no other static allocation running at the same time.
    pub fn rollback_static(&self, checkpoint: StaticCheckpoint) -> u64 {
        let inner = &*self.inner;
        let mut statics = lock(&inner.statics);
        if checkpoint.regions > statics.regions.len() {
            return 0;
        }
        let released: Vec<_> = statics.regions.drain(checkpoint.regions..).collect();
        statics.cursor = checkpoint.cursor;
        inner
            .static_used
            .store(checkpoint.cursor, Ordering::Relaxed);
        drop(statics);
        let mut freed = 0;
        for (region, record) in released {
            freed += region.size;
            inner.tracker.release_raw(record);
        }
        freed
    }

    /// Takes `bytes` from the scratch region for `owner`; the bytes come back when the
    /// [`ScratchBuffer`] drops. O(1): a limit check on atomics, then the offset allocator under
    /// a short, normally uncontended lock.
    #[inline]
    pub fn alloc_scratch(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        bytes: u64,
    ) -> Result<ScratchBuffer, VramError> {
        let inner = &*self.inner;
        inner.health.check()?;
        let size = checked_size(bytes)?;
        let units = size / ALIGNMENT;
        if units > u64::from(u32::MAX) {
            let (free, largest) = self.scratch_free();
            return Err(self.out_of_memory(owner, purpose, Region::Scratch, bytes, free, largest));
        }
        let record = inner.tracker.record_raw(owner, purpose, size)?;
        let allocation = {
            let mut scratch = lock(&inner.scratch);
            let allocation = scratch.allocator.allocate(units as u32);
            if allocation.is_some() {
                scratch.used_units += units;
                scratch.live += 1;
            }
            allocation
        };
        match allocation {
            Some(allocation) => Ok(ScratchBuffer {
                arena: Arc::clone(&self.inner),
                ptr: inner
                    .base
                    .offset(inner.static_capacity + u64::from(allocation.offset) * ALIGNMENT),
                allocation,
                record: Some(record),
                requested: bytes,
            }),
            None => {
                inner.tracker.release_raw(record);
                let (free, largest) = self.scratch_free();
                Err(self.out_of_memory(owner, purpose, Region::Scratch, bytes, free, largest))
            }
        }
    }

    fn scratch_free(&self) -> (u64, u64) {
        let scratch = lock(&self.inner.scratch);
        let report = scratch.allocator.storage_report();
        (
            self.inner.scratch_capacity - scratch.used_units * ALIGNMENT,
            u64::from(report.largest_free_region) * ALIGNMENT,
        )
    }

    #[cold]
    fn out_of_memory(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        region: Region,
        requested: u64,
        free: u64,
        largest_free_block: u64,
    ) -> VramError {
        let tracker = &self.inner.tracker;
        let mut top_owners: Vec<_> = tracker
            .owners()
            .into_iter()
            .filter(|o| o.bytes > 0)
            .map(|o| (o.owner, o.bytes))
            .collect();
        top_owners.sort_by_key(|o| std::cmp::Reverse(o.1));
        top_owners.truncate(5);
        VramError::OutOfMemory(Box::new(OomReport {
            owner: tracker.owner_name(owner),
            purpose,
            region,
            requested,
            capacity: match region {
                Region::Static => self.inner.static_capacity,
                Region::Scratch => self.inner.scratch_capacity,
            },
            free,
            largest_free_block,
            fragmentation: fragmentation(largest_free_block, free),
            allocated: tracker.allocated(),
            reserved: tracker.reserved(),
            top_owners,
        }))
    }

    /// Statistics of both regions.
    pub fn stats(&self) -> ArenaStats {
        let inner = &*self.inner;
        let (static_used, static_live) = {
            let statics = lock(&inner.statics);
            (statics.cursor, statics.regions.len() as u64)
        };
        let static_free = inner.static_capacity - static_used;
        let static_region = RegionStats {
            capacity: inner.static_capacity,
            used: static_used,
            free: static_free,
            largest_free_block: static_free,
            fragmentation: 0.0,
            live: static_live,
        };
        let scratch = {
            let scratch = lock(&inner.scratch);
            let used = scratch.used_units * ALIGNMENT;
            let free = inner.scratch_capacity - used;
            let largest =
                u64::from(scratch.allocator.storage_report().largest_free_region) * ALIGNMENT;
            RegionStats {
                capacity: inner.scratch_capacity,
                used,
                free,
                largest_free_block: largest,
                fragmentation: fragmentation(largest, free),
                live: scratch.live,
            }
        };
        let free = static_region.free + scratch.free;
        let largest = static_region
            .largest_free_block
            .max(scratch.largest_free_block);
        ArenaStats {
            reserved: inner.size,
            allocated: static_region.used + scratch.used,
            free,
            largest_free_block: largest,
            fragmentation: fragmentation(largest, free),
            static_region,
            scratch,
        }
    }

    /// Asks the backend whether every static region and the scratch region are device
    /// memory; returns the addresses that are not. Fails at once if the device was lost.
    pub fn verify_residency(&self) -> Result<Vec<DevicePtr>, VramError> {
        let backend = &self.inner.backend;
        let mut pointers: Vec<DevicePtr> = self
            .static_regions()
            .iter()
            .map(|region| region.ptr)
            .collect();
        if self.inner.scratch_capacity > 0 {
            pointers.push(self.inner.base.offset(self.inner.static_capacity));
        }
        let mut missing = Vec::new();
        for ptr in pointers {
            if !backend.is_resident(ptr)? {
                missing.push(ptr);
            }
        }
        Ok(missing)
    }
}

impl Arena {
    /// The device range `offset..offset + len` of `region`, after checking that it lies
    /// inside the region and that the region lies inside the static regions handed out so far
    /// (a `StaticRegion` is plain data: one from another arena, made up, or rolled back is
    /// refused here rather than handed to the backend).
    fn region_range(
        &self,
        region: &StaticRegion,
        offset: u64,
        len: usize,
    ) -> Result<DevicePtr, VramError> {
        let inner = &*self.inner;
        let start = region.ptr.addr().checked_sub(inner.base.addr());
        let handed_out = inner.static_used.load(Ordering::Relaxed);
        if start
            .and_then(|start| start.checked_add(region.size))
            .is_none_or(|end| end > handed_out)
        {
            return Err(VramError::InvalidRequest {
                what: format!(
                    "a region of {} bytes at {:?} that this arena did not hand out (or rolled back)",
                    region.size, region.ptr
                ),
            });
        }
        match offset.checked_add(len as u64) {
            Some(end) if end <= region.size => Ok(region.ptr.offset(offset)),
            _ => Err(VramError::InvalidRequest {
                what: format!(
                    "{len} bytes at offset {offset} do not fit in a region of {} bytes",
                    region.size
                ),
            }),
        }
    }
}

fn checked_size(bytes: u64) -> Result<u64, VramError> {
    if bytes == 0 {
        return Err(VramError::InvalidRequest {
            what: "an allocation of zero bytes: ask for at least one byte".to_owned(),
        });
    }
    align_up(bytes).ok_or_else(|| VramError::InvalidRequest {
        what: format!("an allocation of {bytes} bytes overflows when aligned"),
    })
}

impl Drop for ArenaInner {
    fn drop(&mut self) {
        let statics = std::mem::take(&mut lock(&self.statics).regions);
        for (_, record) in statics {
            self.tracker.release_raw(record);
        }
        // SAFETY: the slab came from `allocate` on this backend with this size; every handle
        // into it (ScratchBuffer) holds an Arc to this inner, so none is left.
        let freed = unsafe { self.backend.free(self.base, self.size) };
        match freed {
            Ok(()) => self.tracker.sub_reserved(self.size),
            Err(err) => tracing::error!(
                target: "vortex_vram",
                error = %err,
                "could not return the arena slab to the device"
            ),
        }
    }
}

/// Scratch memory, returned to the arena when dropped.
pub struct ScratchBuffer {
    arena: Arc<ArenaInner>,
    allocation: Allocation,
    ptr: DevicePtr,
    record: Option<RawRecord>,
    requested: u64,
}

impl ScratchBuffer {
    /// Device address (a multiple of [`ALIGNMENT`]).
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }

    /// The buffer's host address when the backend's memory is host-addressable (see
    /// [`Arena::host_ptr`]); `None` on a GPU. Valid until the buffer drops.
    pub fn host_ptr(&self) -> Option<NonNull<u8>> {
        if !self.arena.backend.host_addressable() {
            return None;
        }
        NonNull::new(self.ptr.addr() as usize as *mut u8)
    }

    /// Bytes held (the request rounded up to [`ALIGNMENT`]).
    pub fn size(&self) -> u64 {
        self.record.as_ref().map_or(0, |r| r.size)
    }

    /// Bytes asked for.
    pub fn requested(&self) -> u64 {
        self.requested
    }

    /// Copies `data` into this buffer at `offset` (bounds-checked).
    pub fn upload(&self, offset: u64, data: &[u8]) -> Result<(), VramError> {
        let ptr = self.range(offset, data.len())?;
        // SAFETY: `range` checked the bytes lie inside this buffer's allocation, which is in
        // the arena's slab; the buffer holds the arena, so the slab is live.
        Ok(unsafe { self.arena.backend.copy_to_device(ptr, data) }?)
    }

    /// Copies `out.len()` bytes at `offset` of this buffer into `out` (bounds-checked).
    pub fn download(&self, offset: u64, out: &mut [u8]) -> Result<(), VramError> {
        let ptr = self.range(offset, out.len())?;
        // SAFETY: as in `upload`.
        Ok(unsafe { self.arena.backend.copy_from_device(ptr, out) }?)
    }

    fn range(&self, offset: u64, len: usize) -> Result<DevicePtr, VramError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size() => Ok(self.ptr.offset(offset)),
            _ => Err(VramError::InvalidRequest {
                what: format!(
                    "{len} bytes at offset {offset} do not fit in a scratch buffer of {} bytes",
                    self.size()
                ),
            }),
        }
    }
}

impl fmt::Debug for ScratchBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScratchBuffer")
            .field("ptr", &self.ptr)
            .field("size", &self.size())
            .field("requested", &self.requested)
            .finish()
    }
}

impl Drop for ScratchBuffer {
    #[inline]
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        let units = record.size / ALIGNMENT;
        {
            let mut scratch = lock(&self.arena.scratch);
            scratch.allocator.free(self.allocation);
            scratch.used_units -= units;
            scratch.live -= 1;
        }
        self.arena.tracker.release_raw(record);
    }
}
