//! Device lost is remembered, as wgpu-core does: once any backend call through a [`Vram`] or
//! [`Arena`] reports [`BackendError::DeviceLost`], its [`DeviceHealth`] says so for good, and
//! every later call fails fast with the same error instead of asking the device again.
//!
//! The arena wraps the backend it is given in a [`Watched`] backend that checks and records
//! around every call; [`Arena::backend`] and [`Vram::backend`] hand out that wrapper, so the
//! monitor, dedicated buffers and the callers' own stream and event calls are watched too.
//!
//! [`Vram`]: crate::Vram
//! [`Vram::backend`]: crate::Vram::backend
//! [`Arena`]: crate::Arena
//! [`Arena::backend`]: crate::Arena::backend

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::backend::{Backend, BackendError, DevicePtr, EventId, MemInfo, StreamId};

/// Whether the device is still there. Set once, by the first [`BackendError::DeviceLost`] a
/// watched backend call returns, and never cleared: nothing on a lost device can be trusted
/// again, even if the driver later answers. Shared (`Arc`) by an arena, its [`Vram`] and
/// whatever reads it, such as a readiness probe; reading is one atomic load.
///
/// [`Vram`]: crate::Vram
#[derive(Default)]
pub struct DeviceHealth {
    lost: OnceLock<String>,
}

impl DeviceHealth {
    /// Why the device was lost (the backend's reason from the first report), or `None` while
    /// it answers.
    pub fn device_lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// The remembered loss as an error, or `Ok` while the device answers.
    #[inline]
    pub(crate) fn check(&self) -> Result<(), BackendError> {
        match self.lost.get() {
            None => Ok(()),
            Some(reason) => Err(lost(reason)),
        }
    }

    /// Passes `result` through, remembering a device loss it reports.
    pub(crate) fn observe<T>(&self, result: Result<T, BackendError>) -> Result<T, BackendError> {
        if let Err(BackendError::DeviceLost { reason }) = &result {
            self.mark_lost(reason);
        }
        result
    }

    #[cold]
    fn mark_lost(&self, reason: &str) {
        if self.lost.set(reason.to_owned()).is_ok() {
            tracing::error!(
                target: "vortex_vram",
                reason,
                "device lost: every further device operation of this arena will fail"
            );
        }
    }
}

#[cold]
fn lost(reason: &str) -> BackendError {
    BackendError::DeviceLost {
        reason: reason.to_owned(),
    }
}

impl fmt::Debug for DeviceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceHealth")
            .field("lost", &self.lost.get())
            .finish()
    }
}

/// A backend whose every call is checked against, and recorded in, a [`DeviceHealth`]. After
/// a loss, calls fail with the remembered error without reaching the device, except `free`,
/// which always goes through so that teardown returns what it can.
#[derive(Debug)]
pub(crate) struct Watched {
    inner: Arc<dyn Backend>,
    health: Arc<DeviceHealth>,
}

impl Watched {
    pub(crate) fn new(inner: Arc<dyn Backend>, health: Arc<DeviceHealth>) -> Self {
        Watched { inner, health }
    }

    #[inline]
    fn call<T>(
        &self,
        f: impl FnOnce(&dyn Backend) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.health.check()?;
        self.health.observe(f(&*self.inner))
    }
}

impl Backend for Watched {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn device_name(&self) -> String {
        self.inner.device_name()
    }

    fn driver_version(&self) -> Option<u32> {
        self.inner.driver_version()
    }

    fn raw_stream(&self, stream: StreamId) -> Option<usize> {
        self.inner.raw_stream(stream)
    }

    fn mem_info(&self) -> Result<MemInfo, BackendError> {
        self.call(|b| b.mem_info())
    }

    fn total_memory(&self) -> Result<u64, BackendError> {
        self.call(|b| b.total_memory())
    }

    fn free_memory(&self) -> Result<u64, BackendError> {
        self.call(|b| b.free_memory())
    }

    fn allocate(&self, bytes: u64) -> Result<DevicePtr, BackendError> {
        self.call(|b| b.allocate(bytes))
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: u64) -> Result<(), BackendError> {
        // SAFETY: our caller upholds `free`'s contract; `inner` is the backend that allocated.
        self.health.observe(unsafe { self.inner.free(ptr, bytes) })
    }

    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<(), BackendError> {
        // SAFETY: our caller upholds `copy_to_device`'s contract for this backend, whose
        // allocations are `inner`'s.
        self.call(|b| unsafe { b.copy_to_device(dst, src) })
    }

    unsafe fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), BackendError> {
        // SAFETY: as for `copy_to_device`.
        self.call(|b| unsafe { b.copy_from_device(src, dst) })
    }

    unsafe fn copy_device(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError> {
        // SAFETY: as for `copy_to_device`.
        self.call(|b| unsafe { b.copy_device(dst, src, len) })
    }

    unsafe fn memset(&self, dst: DevicePtr, value: u8, len: u64) -> Result<(), BackendError> {
        // SAFETY: as for `copy_to_device`.
        self.call(|b| unsafe { b.memset(dst, value, len) })
    }

    fn emulates_latency(&self) -> bool {
        self.inner.emulates_latency()
    }

    fn host_addressable(&self) -> bool {
        self.inner.host_addressable()
    }

    fn create_stream(&self) -> Result<StreamId, BackendError> {
        self.call(|b| b.create_stream())
    }

    unsafe fn copy_device_async(
        &self,
        stream: StreamId,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError> {
        // SAFETY: as for `copy_to_device`.
        self.call(|b| unsafe { b.copy_device_async(stream, dst, src, len) })
    }

    unsafe fn memset_async(
        &self,
        stream: StreamId,
        dst: DevicePtr,
        value: u8,
        len: u64,
    ) -> Result<(), BackendError> {
        // SAFETY: as for `copy_to_device`.
        self.call(|b| unsafe { b.memset_async(stream, dst, value, len) })
    }

    fn create_event(&self) -> Result<EventId, BackendError> {
        self.call(|b| b.create_event())
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<(), BackendError> {
        self.call(|b| b.record_event(event, stream))
    }

    fn event_done(&self, event: EventId) -> Result<bool, BackendError> {
        self.call(|b| b.event_done(event))
    }

    fn event_elapsed(&self, start: EventId, end: EventId) -> Result<Duration, BackendError> {
        self.call(|b| b.event_elapsed(start, end))
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<(), BackendError> {
        self.call(|b| b.synchronize_stream(stream))
    }

    fn is_resident(&self, ptr: DevicePtr) -> Result<bool, BackendError> {
        self.call(|b| b.is_resident(ptr))
    }

    fn synchronize(&self) -> Result<(), BackendError> {
        self.call(|b| b.synchronize())
    }
}
