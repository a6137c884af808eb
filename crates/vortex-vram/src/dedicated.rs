//! [`DeviceBuffer`]: device memory taken straight from the backend, outside the arena, for an
//! owner that needs its own allocation. Tracked and limited like arena memory, and counted as
//! reserved while it lives.

use std::fmt;
use std::sync::Arc;

use crate::arena::align_up;
use crate::backend::{Backend, DevicePtr};
use crate::error::VramError;
use crate::tracker::{OwnerId, Purpose, RawRecord, VramTracker};

/// A dedicated device allocation, returned to the backend when dropped.
pub struct DeviceBuffer {
    backend: Arc<dyn Backend>,
    tracker: Arc<VramTracker>,
    ptr: DevicePtr,
    record: Option<RawRecord>,
    requested: u64,
}

impl DeviceBuffer {
    /// Records `bytes` for `owner` (refused at the hard limit with nothing allocated), then
    /// allocates them from `backend`. A backend failure uncounts the bytes and names the owner.
    pub fn allocate(
        backend: Arc<dyn Backend>,
        tracker: Arc<VramTracker>,
        owner: OwnerId,
        purpose: Purpose,
        bytes: u64,
    ) -> Result<Self, VramError> {
        let size =
            align_up(bytes)
                .filter(|_| bytes > 0)
                .ok_or_else(|| VramError::InvalidRequest {
                    what: format!(
                        "a dedicated allocation of {bytes} bytes: ask for 1 byte to 16 EB"
                    ),
                })?;
        let record = tracker.record_raw(owner, purpose, size)?;
        match backend.allocate(size) {
            Ok(ptr) => {
                tracker.add_reserved(size);
                Ok(DeviceBuffer {
                    backend,
                    tracker,
                    ptr,
                    record: Some(record),
                    requested: bytes,
                })
            }
            Err(source) => {
                tracker.release_raw(record);
                Err(VramError::Backend {
                    owner: tracker.owner_name(owner),
                    purpose: Some(purpose),
                    requested: bytes,
                    source,
                })
            }
        }
    }

    /// Device address.
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }

    /// Bytes held (the request rounded up to 256).
    pub fn size(&self) -> u64 {
        self.record.as_ref().map_or(0, |r| r.size)
    }

    /// Bytes asked for.
    pub fn requested(&self) -> u64 {
        self.requested
    }
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("ptr", &self.ptr)
            .field("size", &self.size())
            .finish()
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let Some(record) = self.record.take() else {
            return;
        };
        let size = record.size;
        // SAFETY: `ptr` came from `allocate` on this backend with `size` and is freed once.
        match unsafe { self.backend.free(self.ptr, size) } {
            Ok(()) => self.tracker.sub_reserved(size),
            Err(err) => tracing::error!(
                target: "vortex_vram",
                error = %err,
                "could not return a dedicated allocation to the device"
            ),
        }
        self.tracker.release_raw(record);
    }
}
