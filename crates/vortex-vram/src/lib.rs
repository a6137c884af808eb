//! `vortex-vram`: the lowest layer of Vortex. It knows how many bytes of device memory the
//! process holds, who holds them and why, and refuses what would pass the limits before
//! anything is allocated.
//!
//! - [`backend`]: the [`Backend`] trait, the always-built [`HostBackend`] (a working GPU
//!   stand-in with lazily backed memory and fault injection) and, with the `cuda` feature, the
//!   `CudaBackend` over the CUDA driver API (declared here with integer results; `cust` links it).
//! - [`Arena`]: one slab reserved at start; a static region (bump, for weights and output
//!   buffers) and a scratch region (O(1) sub-allocation with RAII [`ScratchBuffer`]s).
//! - [`VramTracker`]: lock-free accounting by owner and [`Purpose`], current and peak, with the
//!   soft and hard [`Limits`] enforced on the same atomic.
//! - [`VramMonitor`]: explicit checks, pre-flight against the device, snapshots, leak detection,
//!   metrics ([`metrics`] has the names).
//! - [`Vram`]: the three built together from one [`VramConfig`].
//! - [`DeviceHealth`]: a lost device is remembered. The first
//!   [`BackendError::DeviceLost`] any call through a [`Vram`] (or [`Arena`]) sees is kept for
//!   good ([`Vram::device_lost`]), and later device operations fail fast with it.
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
//! - A [`DevicePtr`] is a plain number; the backend methods that copy through one are
//!   `unsafe`, and the arena and [`DeviceBuffer`] bounds-check before they call them.
//! - Once the device is reported lost, no new device operation reaches the backend; only
//!   teardown (`free`) still does.

#![doc = include_str!("../README.md")]

pub mod arena;
pub mod backend;
mod dedicated;
pub mod error;
mod health;
pub mod metrics;
pub mod monitor;
mod sync;
pub mod tracker;
pub mod units;

use std::sync::Arc;

pub use arena::{
    ALIGNMENT, Arena, ArenaConfig, ArenaStats, OutsideRecord, ScratchBuffer, StaticRegion,
};
#[cfg(feature = "cuda")]
pub use backend::CudaBackend;
pub use backend::{
    Backend, BackendError, DevicePtr, EventId, HostBackend, HostConfig, MemInfo, StreamId,
};
pub use dedicated::DeviceBuffer;
pub use error::{OomReport, Region, VramError};
pub use health::DeviceHealth;
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
    ///
    /// The arena, the monitor and dedicated buffers all call `backend` through the arena's
    /// watch (see [`Vram::device_lost`]).
    pub fn new(backend: Arc<dyn Backend>, config: VramConfig) -> Result<Self, VramError> {
        let tracker = Arc::new(VramTracker::with_max_owners(
            config.limits,
            config.max_owners,
        ));
        let arena = Arena::new(backend, Arc::clone(&tracker), config.arena)?;
        let backend = Arc::clone(arena.backend());
        let monitor = VramMonitor::new(Arc::clone(&backend), Arc::clone(&tracker), config.monitor);
        Ok(Vram {
            backend,
            tracker,
            arena,
            monitor,
        })
    }

    /// The backend, as the arena watches it (see [`Arena::backend`]): calls through it that
    /// report the device lost are remembered, and refused afterwards.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Why the device was lost, once any backend call through this `Vram` (arena, monitor,
    /// dedicated buffers, or [`Vram::backend`]) returned [`BackendError::DeviceLost`]; `None`
    /// while the device answers. It is never cleared: after a loss every new allocation,
    /// copy, pre-flight and residency check fails at once with that `DeviceLost` error
    /// (as [`VramError::Device`]) without calling the backend. Dropping buffers and the
    /// `Vram` still returns their memory to the backend.
    pub fn device_lost(&self) -> Option<&str> {
        self.arena.device_lost()
    }

    /// The shared [`DeviceHealth`] behind [`Vram::device_lost`], to clone into a reader that
    /// should not hold the `Vram` (such as a readiness probe).
    pub fn health(&self) -> &Arc<DeviceHealth> {
        self.arena.health()
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

    /// A dedicated allocation outside the arena (see [`DeviceBuffer::allocate`]). Fails at
    /// once, with nothing counted, if the device was lost.
    pub fn dedicated(
        &self,
        owner: OwnerId,
        purpose: Purpose,
        bytes: u64,
    ) -> Result<DeviceBuffer, VramError> {
        self.health().check()?;
        DeviceBuffer::allocate(
            Arc::clone(&self.backend),
            Arc::clone(&self.tracker),
            owner,
            purpose,
            bytes,
        )
    }
}
