//! `vortex-vram`: the lowest layer of Vortex. It knows how many bytes of device memory the
//! process holds, who holds them and why, and refuses what would pass the limits before
//! anything is allocated.
//!
//! - [`backend`]: the [`Backend`] trait, the always-built [`HostBackend`] (a working GPU
//!   stand-in with lazily backed memory and fault injection) and, with the `cuda` feature, the
//!   `CudaBackend` over `cust`.
//! - [`Arena`]: one slab reserved at start; a static region (bump, for weights and output
//!   buffers) and a scratch region (O(1) sub-allocation with RAII [`ScratchBuffer`]s).
//! - [`VramTracker`]: lock-free accounting by owner and [`Purpose`], current and peak, with the
//!   soft and hard [`Limits`] enforced on the same atomic.
//! - [`VramMonitor`]: explicit checks, pre-flight against the device, snapshots, leak detection,
//!   metrics ([`metrics`] has the names).
//! - [`Vram`]: the three built together from one [`VramConfig`].
//!
//! # Feature flags
//! - `cuda` (off by default): the CUDA backend. It needs `libcuda` to link; `cargo xtask
//!   cuda-stub` makes a stub for machines without CUDA (see DESIGN.md §2).
//!
//! # Invariants
//! - Only this crate names `cust`; no cust type, error or pointer leaves it.
//! - Every device byte the process holds came through this crate and is counted in the tracker
//!   with an owner and a purpose (the slab as reserved, what is carved from it as allocated).
//! - A request is counted against the hard limit *before* the backend or a region is touched,
//!   and uncounted if it then fails.
//! - The hot paths (tracker record/release, limit checks, scratch alloc/free) allocate nothing
//!   and take no lock but the scratch allocator's short one.

#![doc = include_str!("../README.md")]

pub mod arena;
pub mod backend;
mod dedicated;
pub mod error;
pub mod metrics;
pub mod monitor;
mod sync;
pub mod tracker;
pub mod units;

use std::sync::Arc;

pub use arena::{ALIGNMENT, Arena, ArenaConfig, ArenaStats, ScratchBuffer, StaticRegion};
#[cfg(feature = "cuda")]
pub use backend::CudaBackend;
pub use backend::{
    Backend, BackendError, DevicePtr, EventId, HostBackend, HostConfig, MemInfo, StreamId,
};
pub use dedicated::DeviceBuffer;
pub use error::{OomReport, Region, VramError};
pub use monitor::{LeakReport, LimitStatus, MonitorConfig, VramMonitor, VramSnapshot};
pub use tracker::{Limits, OwnerId, Purpose, SoftLimitEvent, Tracked, UsageReport, VramTracker};
pub use units::{ByteSize, Bytes};

/// Everything [`Vram::new`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VramConfig {
    /// Soft and hard limits on tracked bytes.
    pub limits: Limits,
    /// Region sizes of the slab.
    pub arena: ArenaConfig,
    /// Leak detection.
    pub monitor: MonitorConfig,
    /// Room in the tracker's owner table.
    pub max_owners: usize,
}

impl VramConfig {
    /// Seed limits, the given region sizes, default monitoring.
    pub fn new(arena: ArenaConfig) -> Self {
        VramConfig {
            limits: Limits::seed(),
            arena,
            monitor: MonitorConfig::default(),
            max_owners: VramTracker::DEFAULT_MAX_OWNERS,
        }
    }
}

/// The backend, tracker, arena and monitor of one device, built together.
#[derive(Debug)]
pub struct Vram {
    backend: Arc<dyn Backend>,
    tracker: Arc<VramTracker>,
    arena: Arena,
    monitor: VramMonitor,
}

impl Vram {
    /// Reserves the slab on `backend` (after the pre-flight check) and sets up the tracker and
    /// monitor. Nothing is reserved if this fails.
    pub fn new(backend: Arc<dyn Backend>, config: VramConfig) -> Result<Self, VramError> {
        let tracker = Arc::new(VramTracker::with_max_owners(
            config.limits,
            config.max_owners,
        ));
        let arena = Arena::new(Arc::clone(&backend), Arc::clone(&tracker), config.arena)?;
        let monitor = VramMonitor::new(Arc::clone(&backend), Arc::clone(&tracker), config.monitor);
        Ok(Vram {
            backend,
            tracker,
            arena,
            monitor,
        })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The tracker.
    pub fn tracker(&self) -> &Arc<VramTracker> {
        &self.tracker
    }

    /// The arena.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// The monitor.
    pub fn monitor(&self) -> &VramMonitor {
        &self.monitor
    }

    /// Interns an owner name (see [`VramTracker::register_owner`]).
    pub fn owner(&self, name: &str) -> Result<OwnerId, VramError> {
        self.tracker.register_owner(name)
    }

    /// A dedicated allocation outside the arena (see [`DeviceBuffer::allocate`]).
    pub fn dedicated(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        bytes: u64,
    ) -> Result<DeviceBuffer, VramError> {
        DeviceBuffer::allocate(
            Arc::clone(&self.backend),
            Arc::clone(&self.tracker),
            owner,
            purpose,
            bytes,
        )
    }
}
