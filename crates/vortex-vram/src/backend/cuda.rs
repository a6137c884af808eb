//! The CUDA backend (feature `cuda`), over the driver API.
//!
//! Every driver function it calls is declared in [`driver`] with an integer result: cust_raw
//! types results as an enum of CUDA 11.4's codes, so a newer driver's code outside it (46,
//! 226, …) would be undefined behaviour, and cust maps codes it does not know (34, 803, 804)
//! to an unknown error. cust_raw still links libcuda and names the constants passed in. Uploads of 1 MiB or more go through two
//! pinned staging buffers on a non-blocking stream, so reading the source (a memory-mapped
//! weights file) overlaps the DMA. A context is current only on the thread
//! that made it current, so every call makes it current first (`cuCtxSetCurrent` is cheap).
//! Every driver error is converted here into [`BackendError`]; nothing from cust leaves.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Mutex;

use cust::sys as bindings;

use self::driver as cuda;

use super::{Backend, BackendError, DevicePtr, EventId, MemInfo, StreamId};

const NO_DEVICE_HELP: &str = "no CUDA device answered: check that the NVIDIA driver is loaded and a GPU is visible (nvidia-smi), \
     or run on the host backend";

/// Bytes of each of the two pinned staging buffers for host-to-device uploads.
pub const STAGING_BYTES: usize = 8 << 20;
/// Uploads at least this large go through the pinned staging buffers.
const STAGED_MIN: usize = 1 << 20;

/// Two pinned host buffers, a stream and an event per buffer: chunk `i` is copied (from the
/// caller's memory, a memory-mapped file for weights, so this is where the file is read) into
/// buffer `i % 2` while the asynchronous copy of chunk `i - 1` runs.
struct Staging {
    buffers: [*mut c_void; 2],
    events: [cuda::CUevent; 2],
    stream: cuda::CUstream,
}

// SAFETY: the raw handles are used only under the backend's `staging` mutex, with the
// backend's context made current first; the driver allows that from any thread.
unsafe impl Send for Staging {}

/// Raw stream and event handles, made on request and destroyed with the backend.
#[derive(Default)]
struct Queues {
    streams: Vec<cuda::CUstream>,
    events: Vec<cuda::CUevent>,
}

// SAFETY: as for Staging: used under the backend's mutex with its context current.
unsafe impl Send for Queues {}

/// A CUDA device and its primary context (retained here, released on drop).
pub struct CudaBackend {
    context: cuda::CUcontext,
    device: cuda::CUdevice,
    ordinal: u32,
    name: String,
    driver_version: u32,
    staging: Mutex<Option<Staging>>,
    queues: Mutex<Queues>,
}

// SAFETY: the context handle is only passed to the driver, which allows using a context
// from any thread; the mutable state is behind the mutexes.
unsafe impl Send for CudaBackend {}
// SAFETY: as above.
unsafe impl Sync for CudaBackend {}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CudaBackend {
    /// Initializes the driver and retains the primary context of device `ordinal`.
    pub fn new(ordinal: u32) -> Result<Self, BackendError> {
        // SAFETY: each out-pointer is valid for writes; the name buffer holds 256 bytes and
        // its length is passed.
        unsafe {
            check("cuInit", cuda::cuInit(0))?;
            let mut driver_version: c_int = 0;
            check(
                "cuDriverGetVersion",
                cuda::cuDriverGetVersion(&mut driver_version),
            )?;
            let mut count: c_int = 0;
            check("cuDeviceGetCount", cuda::cuDeviceGetCount(&mut count))?;
            let count = u32::try_from(count).unwrap_or(0);
            if ordinal >= count {
                return Err(BackendError::NoDevice {
                    reason: format!(
                        "device ordinal {ordinal} asked for but the driver sees {count} device(s): use an ordinal below {count}"
                    ),
                });
            }
            let mut device: cuda::CUdevice = 0;
            check(
                "cuDeviceGet",
                cuda::cuDeviceGet(&mut device, ordinal as c_int),
            )?;
            let mut name = [0 as c_char; 256];
            check(
                "cuDeviceGetName",
                cuda::cuDeviceGetName(name.as_mut_ptr(), name.len() as c_int, device),
            )?;
            let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
            let mut context: cuda::CUcontext = std::ptr::null_mut();
            check(
                "cuDevicePrimaryCtxRetain",
                cuda::cuDevicePrimaryCtxRetain(&mut context, device),
            )?;
            Ok(CudaBackend {
                context,
                device,
                ordinal,
                name,
                driver_version: u32::try_from(driver_version).unwrap_or(0),
                staging: Mutex::new(None),
                queues: Mutex::new(Queues::default()),
            })
        }
    }

    fn new_staging() -> Result<Staging, BackendError> {
        let mut staging = Staging {
            buffers: [std::ptr::null_mut(); 2],
            events: [std::ptr::null_mut(); 2],
            stream: std::ptr::null_mut(),
        };
        // SAFETY: out-pointers are valid; on failure what was made is released below.
        let made = (|| unsafe {
            // CU_STREAM_NON_BLOCKING = 1: no implicit sync with the legacy default stream.
            check(
                "cuStreamCreate",
                cuda::cuStreamCreate(&mut staging.stream, 1),
            )?;
            for i in 0..2 {
                check(
                    "cuMemAllocHost_v2",
                    cuda::cuMemAllocHost_v2(&mut staging.buffers[i], STAGING_BYTES),
                )?;
                // CU_EVENT_DISABLE_TIMING = 2.
                check(
                    "cuEventCreate",
                    cuda::cuEventCreate(&mut staging.events[i], 2),
                )?;
            }
            Ok(())
        })();
        match made {
            Ok(()) => Ok(staging),
            Err(err) => {
                release_staging(&staging);
                Err(err)
            }
        }
    }

    /// Uploads through the pinned staging buffers, overlapping the host-side read of chunk
    /// `i` with the DMA of chunk `i - 1`.
    ///
    /// # Safety
    /// As for [`Backend::copy_to_device`].
    unsafe fn staged_upload(&self, dst: DevicePtr, src: &[u8]) -> Result<(), BackendError> {
        let mut guard = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Self::new_staging()?);
        }
        let Some(staging) = guard.as_ref() else {
            unreachable!("staging was just made")
        };
        for (i, chunk) in src.chunks(STAGING_BYTES).enumerate() {
            let k = i % 2;
            // SAFETY: buffer k holds STAGING_BYTES ≥ chunk.len() bytes and the event says the
            // previous copy out of it finished; dst + offset lies inside the caller's range.
            unsafe {
                check(
                    "cuEventSynchronize",
                    cuda::cuEventSynchronize(staging.events[k]),
                )?;
                std::ptr::copy_nonoverlapping(
                    chunk.as_ptr(),
                    staging.buffers[k].cast::<u8>(),
                    chunk.len(),
                );
                let offset = (i * STAGING_BYTES) as u64;
                check(
                    "cuMemcpyHtoDAsync_v2",
                    cuda::cuMemcpyHtoDAsync_v2(
                        dst.0 + offset,
                        staging.buffers[k],
                        chunk.len(),
                        staging.stream,
                    ),
                )?;
                check(
                    "cuEventRecord",
                    cuda::cuEventRecord(staging.events[k], staging.stream),
                )?;
            }
        }
        // SAFETY: the stream is live.
        check("cuStreamSynchronize", unsafe {
            cuda::cuStreamSynchronize(staging.stream)
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// Host-to-device bandwidth in bytes per second: `bytes` copied from a pinned host buffer
    /// with one synchronous copy, best of three. The yardstick for weight uploads.
    pub fn measure_h2d_bandwidth(&self, bytes: usize) -> Result<f64, BackendError> {
        self.make_current()?;
        let mut host: *mut c_void = std::ptr::null_mut();
        // SAFETY: out-pointer valid; freed below.
        check("cuMemAllocHost_v2", unsafe {
            cuda::cuMemAllocHost_v2(&mut host, bytes)
        })?;
        let device = match self.allocate(bytes as u64) {
            Ok(ptr) => ptr,
            Err(err) => {
                // SAFETY: allocated just above.
                unsafe { cuda::cuMemFreeHost(host) };
                return Err(err);
            }
        };
        let mut best = f64::INFINITY;
        let mut result = Ok(());
        for _ in 0..3 {
            let started = std::time::Instant::now();
            // SAFETY: both buffers hold `bytes`.
            result = check("cuMemcpyHtoD_v2", unsafe {
                cuda::cuMemcpyHtoD_v2(device.0, host, bytes)
            });
            if result.is_err() {
                break;
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        // SAFETY: both were allocated above and are released once.
        unsafe {
            let _ = self.free(device, bytes as u64);
            cuda::cuMemFreeHost(host);
        }
        result.map(|()| bytes as f64 / best)
    }

    fn stream(&self, id: StreamId) -> Result<cuda::CUstream, BackendError> {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .streams
            .get(id.0 as usize)
            .copied()
            .ok_or_else(|| BackendError::InvalidValue {
                what: format!("stream {} was not made by this backend", id.0),
            })
    }

    fn event(&self, id: EventId) -> Result<cuda::CUevent, BackendError> {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .events
            .get(id.0 as usize)
            .copied()
            .ok_or_else(|| BackendError::InvalidValue {
                what: format!("event {} was not made by this backend", id.0),
            })
    }

    /// Makes this backend's context current on the calling thread.
    pub fn make_current(&self) -> Result<(), BackendError> {
        // SAFETY: the context was retained in `new` and is released only on drop.
        check("cuCtxSetCurrent", unsafe {
            cuda::cuCtxSetCurrent(self.context)
        })
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        "cuda"
    }

    fn device_name(&self) -> String {
        self.name.clone()
    }

    fn driver_version(&self) -> Option<u32> {
        Some(self.driver_version)
    }

    fn raw_stream(&self, stream: StreamId) -> Option<usize> {
        self.stream(stream).ok().map(|s| s as usize)
    }

    fn mem_info(&self) -> Result<MemInfo, BackendError> {
        self.make_current()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: both out-pointers are valid for writes.
        check("cuMemGetInfo_v2", unsafe {
            cuda::cuMemGetInfo_v2(&mut free, &mut total)
        })?;
        Ok(MemInfo {
            free: free as u64,
            total: total as u64,
        })
    }

    fn allocate(&self, bytes: u64) -> Result<DevicePtr, BackendError> {
        self.make_current()?;
        let size = usize::try_from(bytes).map_err(|_| BackendError::InvalidValue {
            what: format!("{bytes} bytes do not fit in usize"),
        })?;
        let mut ptr: cuda::CUdeviceptr = 0;
        // SAFETY: the out-pointer is valid; cuMemAlloc aligns to at least 256 bytes.
        let result = check("cuMemAlloc_v2", unsafe {
            cuda::cuMemAlloc_v2(&mut ptr, size)
        });
        match result {
            Ok(()) => Ok(DevicePtr(ptr)),
            Err(BackendError::Driver { code: 2, .. }) => Err(BackendError::OutOfMemory {
                requested: bytes,
                free: self.mem_info().map_or(0, |info| info.free),
            }),
            Err(err) => Err(err),
        }
    }

    unsafe fn free(&self, ptr: DevicePtr, _bytes: u64) -> Result<(), BackendError> {
        self.make_current()?;
        // SAFETY: the caller promises `ptr` came from `allocate` and is freed once.
        check("cuMemFree_v2", unsafe { cuda::cuMemFree_v2(ptr.0) })
    }

    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<(), BackendError> {
        self.make_current()?;
        if src.len() >= STAGED_MIN {
            // SAFETY: our caller upholds `copy_to_device`'s contract, which is the same.
            return unsafe { self.staged_upload(dst, src) };
        }
        // SAFETY: `src` is valid for `src.len()` bytes; our caller promises the destination
        // range lies inside a live allocation of this backend.
        check("cuMemcpyHtoD_v2", unsafe {
            cuda::cuMemcpyHtoD_v2(dst.0, src.as_ptr().cast::<c_void>(), src.len())
        })
    }

    unsafe fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), BackendError> {
        self.make_current()?;
        // SAFETY: `dst` is valid for writes of `dst.len()` bytes; our caller promises the source
        // range lies inside a live allocation of this backend.
        check("cuMemcpyDtoH_v2", unsafe {
            cuda::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast::<c_void>(), src.0, dst.len())
        })
    }

    unsafe fn copy_device(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError> {
        self.make_current()?;
        // SAFETY: our caller promises both ranges lie inside live allocations of this backend.
        check("cuMemcpyDtoD_v2", unsafe {
            cuda::cuMemcpyDtoD_v2(dst.0, src.0, len as usize)
        })
    }

    unsafe fn memset(&self, dst: DevicePtr, value: u8, len: u64) -> Result<(), BackendError> {
        self.make_current()?;
        // SAFETY: as for copy_device.
        check("cuMemsetD8_v2", unsafe {
            cuda::cuMemsetD8_v2(dst.0, value, len as usize)
        })
    }

    fn create_stream(&self) -> Result<StreamId, BackendError> {
        self.make_current()?;
        let mut stream: cuda::CUstream = std::ptr::null_mut();
        // SAFETY: out-pointer valid. CU_STREAM_NON_BLOCKING = 1.
        check("cuStreamCreate", unsafe {
            cuda::cuStreamCreate(&mut stream, 1)
        })?;
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.streams.push(stream);
        Ok(StreamId(queues.streams.len() as u32 - 1))
    }

    unsafe fn copy_device_async(
        &self,
        stream: StreamId,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError> {
        self.make_current()?;
        let stream = self.stream(stream)?;
        // SAFETY: the stream is live; our caller promises both ranges lie inside live
        // allocations that stay so until the stream's work is done.
        check("cuMemcpyDtoDAsync_v2", unsafe {
            cuda::cuMemcpyDtoDAsync_v2(dst.0, src.0, len as usize, stream)
        })
    }

    unsafe fn memset_async(
        &self,
        stream: StreamId,
        dst: DevicePtr,
        value: u8,
        len: u64,
    ) -> Result<(), BackendError> {
        self.make_current()?;
        let stream = self.stream(stream)?;
        // SAFETY: as for copy_device_async.
        check("cuMemsetD8Async", unsafe {
            cuda::cuMemsetD8Async(dst.0, value, len as usize, stream)
        })
    }

    fn create_event(&self) -> Result<EventId, BackendError> {
        self.make_current()?;
        let mut event: cuda::CUevent = std::ptr::null_mut();
        // SAFETY: out-pointer valid; flags 0 keep timing on.
        check("cuEventCreate", unsafe {
            cuda::cuEventCreate(&mut event, 0)
        })?;
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.events.push(event);
        Ok(EventId(queues.events.len() as u32 - 1))
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<(), BackendError> {
        self.make_current()?;
        let (event, stream) = (self.event(event)?, self.stream(stream)?);
        // SAFETY: both handles are live.
        check("cuEventRecord", unsafe {
            cuda::cuEventRecord(event, stream)
        })
    }

    fn event_done(&self, event: EventId) -> Result<bool, BackendError> {
        self.make_current()?;
        let event = self.event(event)?;
        // SAFETY: the handle is live. CUDA_ERROR_NOT_READY (600) means "not yet".
        match check("cuEventQuery", unsafe { cuda::cuEventQuery(event) }) {
            Ok(()) => Ok(true),
            Err(BackendError::Driver { code: 600, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn event_elapsed(
        &self,
        start: EventId,
        end: EventId,
    ) -> Result<std::time::Duration, BackendError> {
        self.make_current()?;
        let (start, end) = (self.event(start)?, self.event(end)?);
        let mut ms = 0f32;
        // SAFETY: both events are live and completed (the caller waited for `end`).
        check("cuEventElapsedTime", unsafe {
            cuda::cuEventElapsedTime(&mut ms, start, end)
        })?;
        Ok(std::time::Duration::from_secs_f64(
            f64::from(ms.max(0.0)) / 1e3,
        ))
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<(), BackendError> {
        self.make_current()?;
        let stream = self.stream(stream)?;
        // SAFETY: the stream is live.
        check("cuStreamSynchronize", unsafe {
            cuda::cuStreamSynchronize(stream)
        })
    }

    fn is_resident(&self, ptr: DevicePtr) -> Result<bool, BackendError> {
        self.make_current()?;
        let mut memory_type: u32 = 0;
        // SAFETY: MEMORY_TYPE is written as a 32-bit CUmemorytype into `memory_type`.
        let result = unsafe {
            cuda::cuPointerGetAttribute(
                (&mut memory_type as *mut u32).cast::<c_void>(),
                bindings::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE as c_int,
                ptr.0,
            )
        };
        match check("cuPointerGetAttribute", result) {
            Ok(()) => Ok(memory_type == bindings::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32),
            // A pointer the driver does not know (plain host memory) is not resident.
            Err(BackendError::Driver { code: 1, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn synchronize(&self) -> Result<(), BackendError> {
        self.make_current()?;
        // SAFETY: no arguments; the context is current.
        check("cuCtxSynchronize", unsafe { cuda::cuCtxSynchronize() })
    }
}

/// Frees what `new_staging` made (null handles are skipped).
fn release_staging(staging: &Staging) {
    // SAFETY: each handle is null or was made by the driver and is released once, here.
    unsafe {
        if !staging.stream.is_null() {
            cuda::cuStreamSynchronize(staging.stream);
            cuda::cuStreamDestroy_v2(staging.stream);
        }
        for i in 0..2 {
            if !staging.events[i].is_null() {
                cuda::cuEventDestroy_v2(staging.events[i]);
            }
            if !staging.buffers[i].is_null() {
                cuda::cuMemFreeHost(staging.buffers[i]);
            }
        }
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        let staging = self
            .staging
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let queues = std::mem::take(self.queues.get_mut().unwrap_or_else(|e| e.into_inner()));
        if self.make_current().is_ok() {
            if let Some(staging) = staging {
                release_staging(&staging);
            }
            // SAFETY: each handle was made by this backend and is destroyed once, here, after
            // its work is done; the `StreamId`s and `EventId`s naming them die with us.
            unsafe {
                for &stream in &queues.streams {
                    cuda::cuStreamSynchronize(stream);
                    cuda::cuStreamDestroy_v2(stream);
                }
                for &event in &queues.events {
                    cuda::cuEventDestroy_v2(event);
                }
            }
        }
        // SAFETY: retained once in `new`, released once here.
        unsafe { cuda::cuDevicePrimaryCtxRelease_v2(self.device) };
    }
}

/// Converts a raw driver result.
fn check(call: &'static str, code: c_int) -> Result<(), BackendError> {
    if code == 0 {
        return Ok(());
    }
    let mut name: *const c_char = std::ptr::null();
    // SAFETY: cuGetErrorName writes a pointer to a static string, or answers an error for a
    // code it does not know and leaves it null.
    unsafe { cuda::cuGetErrorName(code, &mut name) };
    let name = if name.is_null() {
        format!("CUDA error {code}")
    } else {
        // SAFETY: the driver's error names are static NUL-terminated strings.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    };
    Err(classify(call, code as u32, name))
}

fn classify(call: &'static str, code: u32, name: String) -> BackendError {
    match code {
        // NO_DEVICE, NOT_INITIALIZED, DEINITIALIZED, INVALID_DEVICE, STUB_LIBRARY,
        // DEVICE_UNAVAILABLE (exclusive-process or otherwise unavailable),
        // SYSTEM_DRIVER_MISMATCH, COMPAT_NOT_SUPPORTED_ON_DEVICE
        100 | 3 | 4 | 101 | 34 | 46 | 803 | 804 => BackendError::NoDevice {
            reason: format!("{call} returned {name} ({code}); {NO_DEVICE_HELP}"),
        },
        // ECC_UNCORRECTABLE, ILLEGAL_ADDRESS, LAUNCH_FAILED, HARDWARE_STACK_ERROR,
        // ILLEGAL_INSTRUCTION, UNKNOWN
        214 | 700 | 719 | 714 | 715 | 999 => BackendError::DeviceLost {
            reason: format!("{call} returned {name} ({code})"),
        },
        _ => BackendError::Driver { call, code, name },
    }
}

/// The driver entry points this backend calls, declared as `cuda.h` (CUDA 12) declares them
/// but with the result as a plain integer: any code a driver returns is a valid value.
/// Handles are opaque pointers; sizes are `size_t`.
#[allow(non_snake_case, non_camel_case_types)]
mod driver {
    use std::ffi::{c_char, c_int, c_uint, c_void};

    pub type CUresult = c_int;
    pub type CUdevice = c_int;
    pub type CUdeviceptr = u64;
    pub type CUcontext = *mut c_void;
    pub type CUstream = *mut c_void;
    pub type CUevent = *mut c_void;

    #[link(name = "cuda")]
    unsafe extern "C" {
        pub fn cuInit(flags: c_uint) -> CUresult;
        pub fn cuDriverGetVersion(version: *mut c_int) -> CUresult;
        pub fn cuGetErrorName(error: CUresult, name: *mut *const c_char) -> CUresult;
        pub fn cuDeviceGetCount(count: *mut c_int) -> CUresult;
        pub fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult;
        pub fn cuDeviceGetName(name: *mut c_char, len: c_int, device: CUdevice) -> CUresult;
        pub fn cuDevicePrimaryCtxRetain(context: *mut CUcontext, device: CUdevice) -> CUresult;
        pub fn cuDevicePrimaryCtxRelease_v2(device: CUdevice) -> CUresult;
        pub fn cuCtxSetCurrent(context: CUcontext) -> CUresult;
        pub fn cuCtxSynchronize() -> CUresult;
        pub fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult;
        pub fn cuMemAlloc_v2(ptr: *mut CUdeviceptr, bytes: usize) -> CUresult;
        pub fn cuMemFree_v2(ptr: CUdeviceptr) -> CUresult;
        pub fn cuMemAllocHost_v2(ptr: *mut *mut c_void, bytes: usize) -> CUresult;
        pub fn cuMemFreeHost(ptr: *mut c_void) -> CUresult;
        pub fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize) -> CUresult;
        pub fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize) -> CUresult;
        pub fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> CUresult;
        pub fn cuMemsetD8_v2(dst: CUdeviceptr, value: u8, count: usize) -> CUresult;
        pub fn cuMemcpyHtoDAsync_v2(
            dst: CUdeviceptr,
            src: *const c_void,
            bytes: usize,
            stream: CUstream,
        ) -> CUresult;
        pub fn cuMemcpyDtoDAsync_v2(
            dst: CUdeviceptr,
            src: CUdeviceptr,
            bytes: usize,
            stream: CUstream,
        ) -> CUresult;
        pub fn cuMemsetD8Async(
            dst: CUdeviceptr,
            value: u8,
            count: usize,
            stream: CUstream,
        ) -> CUresult;
        pub fn cuStreamCreate(stream: *mut CUstream, flags: c_uint) -> CUresult;
        pub fn cuStreamDestroy_v2(stream: CUstream) -> CUresult;
        pub fn cuStreamSynchronize(stream: CUstream) -> CUresult;
        pub fn cuEventCreate(event: *mut CUevent, flags: c_uint) -> CUresult;
        pub fn cuEventDestroy_v2(event: CUevent) -> CUresult;
        pub fn cuEventRecord(event: CUevent, stream: CUstream) -> CUresult;
        pub fn cuEventQuery(event: CUevent) -> CUresult;
        pub fn cuEventSynchronize(event: CUevent) -> CUresult;
        pub fn cuEventElapsedTime(ms: *mut f32, start: CUevent, end: CUevent) -> CUresult;
        pub fn cuPointerGetAttribute(
            data: *mut c_void,
            attribute: c_int,
            ptr: CUdeviceptr,
        ) -> CUresult;
    }
}

#[cfg(test)]
mod tests {
    use super::{BackendError, classify};

    #[test]
    fn driver_codes_of_a_stub_or_mismatched_driver_are_no_device_and_35_is_not_one() {
        for code in [34, 46, 100, 803, 804] {
            let err = classify("cuInit", code, format!("code {code}"));
            assert!(
                matches!(err, BackendError::NoDevice { .. }),
                "{code}: {err:?}"
            );
        }
        // 35 is the runtime API's cudaErrorInsufficientDriver, not a driver code.
        assert!(matches!(
            classify("cuInit", 35, "CUDA error 35".into()),
            BackendError::Driver { code: 35, .. }
        ));
    }
}
