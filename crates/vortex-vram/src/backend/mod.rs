//! The hardware layer: a [`Backend`] reserves raw device memory and answers questions about it.
//!
//! Following wgpu's hal, a backend validates nothing its caller could have checked (the arena
//! rounds, aligns and bounds requests before they get here) and returns only the errors the
//! caller could not foresee: out of memory, device lost, no device, a driver failure. Driver
//! errors are converted into [`BackendError`] inside the backend, so nothing from the driver's
//! own crate leaves `vortex-vram`.

use std::fmt;

mod host;
pub use host::{FaultInjector, HostBackend, HostConfig};

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub use cuda::CudaBackend;

/// An address in the backend's device address space. For the host backend it is a host
/// address; for CUDA a `CUdeviceptr`.
///
/// It is a plain number: nothing in safe code dereferences it, and the [`Backend`] methods
/// that read or write through one are `unsafe` with the contract spelled out. The arena and
/// [`DeviceBuffer`](crate::DeviceBuffer) hand out pointers they bounds-check before use.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevicePtr(u64);

impl DevicePtr {
    /// A pointer with the raw address `addr`, for backends and for questions such as
    /// [`Backend::is_resident`]. Making one is harmless: it is a number until it is handed to
    /// an `unsafe` copy, whose caller vouches for it.
    pub const fn from_raw(addr: u64) -> DevicePtr {
        DevicePtr(addr)
    }

    /// The address `bytes` past this one.
    pub const fn offset(self, bytes: u64) -> DevicePtr {
        DevicePtr(self.0 + bytes)
    }

    /// The raw address.
    pub const fn addr(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for DevicePtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevicePtr({:#x})", self.0)
    }
}

/// A queue of device work. Work on different streams may overlap on a GPU; the host backend
/// has one queue and does everything at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub u32);

/// A mark recorded on a stream, to know when the work before it is done and to time it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId(pub u32);

/// Free and total memory of a device, as the driver (or the host stand-in) reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemInfo {
    /// Bytes the device could still hand out.
    pub free: u64,
    /// Bytes the device has in all.
    pub total: u64,
}

impl MemInfo {
    /// Bytes in use on the device by every process, ours included.
    pub const fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

/// An error only the device could know about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The device could not supply the bytes.
    #[error("device out of memory: {requested} bytes requested, {free} bytes free")]
    OutOfMemory {
        /// Bytes asked for.
        requested: u64,
        /// Bytes the device reported free at the time.
        free: u64,
    },
    /// The device stopped answering; nothing on it can be trusted any more.
    #[error("device lost: {reason}")]
    DeviceLost {
        /// What the backend saw.
        reason: String,
    },
    /// No device answered at all.
    #[error("no device: {reason}")]
    NoDevice {
        /// What the backend saw and what to do about it.
        reason: String,
    },
    /// The backend was handed something it cannot use, such as a pointer it never gave out.
    #[error("invalid backend request: {what}")]
    InvalidValue {
        /// What was wrong.
        what: String,
    },
    /// Any other driver error, with the driver's own code and name.
    #[error("driver call {call} failed with error {code} ({name})")]
    Driver {
        /// The driver entry point that failed.
        call: &'static str,
        /// The driver's numeric error code.
        code: u32,
        /// The driver's name for it.
        name: String,
    },
}

/// A device that holds memory: the host stand-in or a CUDA GPU.
///
/// Allocation here is raw and rare (the arena reserves one slab at start); the hot paths
/// (sub-allocation, tracking, limits) never call the backend.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Short name of the backend kind: `"host"` or `"cuda"`.
    fn name(&self) -> &str;

    /// The device's own name, such as `"NVIDIA GeForce RTX 3060"` or `"host (rtx3060-12gb)"`.
    fn device_name(&self) -> String;

    /// Free and total device memory now.
    fn mem_info(&self) -> Result<MemInfo, BackendError>;

    /// Total device memory.
    fn total_memory(&self) -> Result<u64, BackendError> {
        self.mem_info().map(|info| info.total)
    }

    /// Free device memory now.
    fn free_memory(&self) -> Result<u64, BackendError> {
        self.mem_info().map(|info| info.free)
    }

    /// Reserves `bytes` (> 0) of device memory, aligned to at least 256 bytes.
    fn allocate(&self, bytes: u64) -> Result<DevicePtr, BackendError>;

    /// Returns memory to the device.
    ///
    /// # Safety
    /// `ptr` must have come from [`Backend::allocate`] on this backend with the same `bytes`,
    /// must not have been freed already, and nothing may use it afterwards.
    unsafe fn free(&self, ptr: DevicePtr, bytes: u64) -> Result<(), BackendError>;

    /// Copies host bytes to device memory at `dst` and waits for the copy to finish.
    ///
    /// The copies and memsets below are `unsafe` because a backend may write or read through
    /// the device pointer unchecked (CUDA does; the host backend checks). Other device work
    /// touching an overlapping range at the same time is not undefined behaviour, since device
    /// bytes are plain bytes, but leaves their contents unspecified: keep it apart.
    ///
    /// # Safety
    /// `dst..dst + src.len()` must lie inside one allocation from [`Backend::allocate`] on
    /// this backend that has not been freed.
    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<(), BackendError>;

    /// Copies device memory at `src` into `dst` and waits for the copy to finish.
    ///
    /// # Safety
    /// `src..src + dst.len()` must lie inside one allocation from [`Backend::allocate`] on
    /// this backend that has not been freed.
    unsafe fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), BackendError>;

    /// Copies `len` bytes from `src` to `dst`, both device memory, and waits for the copy.
    ///
    /// # Safety
    /// Each of `src..src + len` and `dst..dst + len` must lie inside one allocation from
    /// [`Backend::allocate`] on this backend that has not been freed.
    unsafe fn copy_device(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError>;

    /// Sets `len` bytes at `dst` to `value` and waits for it.
    ///
    /// # Safety
    /// `dst..dst + len` must lie inside one allocation from [`Backend::allocate`] on this
    /// backend that has not been freed.
    unsafe fn memset(&self, dst: DevicePtr, value: u8, len: u64) -> Result<(), BackendError>;

    /// The CUDA driver's version as `cuDriverGetVersion` gives it (`13000` = CUDA 13.0), for a
    /// backend over a driver; `None` for the host stand-in.
    fn driver_version(&self) -> Option<u32> {
        None
    }

    /// The driver's handle of `stream` (a `CUstream`, as an address) for a library that queues
    /// work on it (ONNX Runtime's CUDA provider); `None` where there is no driver stream.
    fn raw_stream(&self, stream: StreamId) -> Option<usize> {
        let _ = stream;
        None
    }

    /// Whether the addresses this backend hands out are host addresses that host code may
    /// read and write (the host stand-in), so a CPU runtime can compute on them in place.
    fn host_addressable(&self) -> bool {
        false
    }

    /// Whether this backend stands in for a GPU whose stage latencies are emulated (the host
    /// backend) rather than measured on a real device.
    fn emulates_latency(&self) -> bool {
        false
    }

    /// A new stream, kept until the backend drops.
    fn create_stream(&self) -> Result<StreamId, BackendError> {
        Ok(StreamId(0))
    }

    /// Queues a device-to-device copy on `stream`.
    ///
    /// # Safety
    /// As for [`Backend::copy_device`], and for longer: neither range may be freed (nor, in
    /// the arena, handed to another owner) until the work queued on `stream` so far has
    /// finished (see [`Backend::synchronize_stream`] and [`Backend::event_done`]).
    unsafe fn copy_device_async(
        &self,
        stream: StreamId,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError> {
        let _ = stream;
        // SAFETY: the caller upholds `copy_device_async`'s contract, which includes
        // `copy_device`'s.
        unsafe { self.copy_device(dst, src, len) }
    }

    /// Queues a memset on `stream`.
    ///
    /// # Safety
    /// As for [`Backend::memset`], and for longer: the range may not be freed (nor, in the
    /// arena, handed to another owner) until the work queued on `stream` so far has finished.
    unsafe fn memset_async(
        &self,
        stream: StreamId,
        dst: DevicePtr,
        value: u8,
        len: u64,
    ) -> Result<(), BackendError> {
        let _ = stream;
        // SAFETY: the caller upholds `memset_async`'s contract, which includes `memset`'s.
        unsafe { self.memset(dst, value, len) }
    }

    /// A new timing event, kept until the backend drops.
    fn create_event(&self) -> Result<EventId, BackendError> {
        Ok(EventId(0))
    }

    /// Records `event` on `stream`: it completes when the work queued before it does.
    fn record_event(&self, event: EventId, stream: StreamId) -> Result<(), BackendError> {
        let _ = (event, stream);
        Ok(())
    }

    /// Whether the work before `event`'s last recording is done.
    fn event_done(&self, event: EventId) -> Result<bool, BackendError> {
        let _ = event;
        Ok(true)
    }

    /// Device time between two completed events (zero where nothing runs asynchronously).
    fn event_elapsed(
        &self,
        start: EventId,
        end: EventId,
    ) -> Result<std::time::Duration, BackendError> {
        let _ = (start, end);
        Ok(std::time::Duration::ZERO)
    }

    /// Waits until the work queued on `stream` is done.
    fn synchronize_stream(&self, stream: StreamId) -> Result<(), BackendError> {
        let _ = stream;
        self.synchronize()
    }

    /// Whether `ptr` points into device memory that this backend holds.
    fn is_resident(&self, ptr: DevicePtr) -> Result<bool, BackendError>;

    /// Waits until all work queued on the device has finished.
    fn synchronize(&self) -> Result<(), BackendError>;
}
