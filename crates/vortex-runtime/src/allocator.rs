//! The `OrtAllocator` Vortex registers on ONNX Runtime's environment: while a stage runs its
//! graph on this thread, every block the runtime asks for comes from the arena's scratch
//! region, recorded with the stage's model as owner and purpose `activations`.
//!
//! ONNX Runtime calls these callbacks through the C ABI, so nothing here may unwind: the
//! bodies cannot panic (locks ignore poisoning, arithmetic is checked) and are wrapped in
//! `catch_unwind` besides. ONNX Runtime 1.31 does not check for a null block (it crashes), so
//! a refused block is never answered with null: the run is told to stop (its terminate flag)
//! and the block is served from the heap, counted as overflow; the stage then fails with the
//! refusal.

use std::alloc::{Layout, alloc as heap_alloc, dealloc as heap_dealloc};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use ort::AsPointer;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::sys::{OrtAllocator, OrtMemoryInfo, OrtRunOptions};
use vortex_vram::{Arena, OwnerId, Purpose, ScratchBuffer, VramError};

/// Alignment of heap blocks (ONNX Runtime's `kAllocAlignment`); scratch blocks are 256-byte
/// aligned.
const HEAP_ALIGN: usize = 64;

/// Where this thread's runtime allocations go while a stage runs.
struct Target {
    arena: Arena,
    owner: OwnerId,
    run_options: *mut OrtRunOptions,
    refusal: Option<VramError>,
}

thread_local! {
    static TARGET: RefCell<Option<Target>> = const { RefCell::new(None) };
}

/// While alive, the runtime's allocations on this thread come from `arena`'s scratch under
/// `owner`. Dropping it restores the previous state.
pub(crate) struct Routed {
    previous: Option<Target>,
}

impl Routed {
    /// Routes this thread's allocations to `arena` (whose memory must be host-addressable)
    /// until the guard drops; a refusal terminates `run_options` (may be null).
    pub(crate) fn to(arena: &Arena, owner: OwnerId, run_options: *mut OrtRunOptions) -> Self {
        let previous = TARGET.with(|t| {
            t.borrow_mut().replace(Target {
                arena: arena.clone(),
                owner,
                run_options,
                refusal: None,
            })
        });
        Routed { previous }
    }

    /// The first refusal since the guard was made, if any.
    pub(crate) fn take_refusal(&self) -> Option<VramError> {
        TARGET.with(|t| t.borrow_mut().as_mut().and_then(|t| t.refusal.take()))
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        TARGET.with(|t| *t.borrow_mut() = previous);
    }
}

enum Block {
    Scratch(ScratchBuffer),
    Heap(Layout),
}

/// Bytes the runtime allocated outside the arena: on threads with no stage running (session
/// creation, the runtime's own pool threads) and as overflow after a refusal.
#[derive(Debug, Default)]
pub struct Untracked {
    /// Live now.
    pub live: AtomicUsize,
    /// Most live at once.
    pub peak: AtomicUsize,
    /// Every block ever served.
    pub total: AtomicU64,
    /// Blocks served after a refusal.
    pub overflow: AtomicU64,
}

/// What the allocator served from scratch, ever: blocks and bytes (requested sizes).
#[derive(Debug, Default)]
pub struct Served {
    pub blocks: AtomicU64,
    pub bytes: AtomicU64,
}

/// The allocator. `base` must stay the first field: ONNX Runtime hands back the
/// `*mut OrtAllocator` it was given, which is cast back to `*const ScratchAllocator`.
#[repr(C)]
pub(crate) struct ScratchAllocator {
    base: OrtAllocator,
    info: MemoryInfo<'static>,
    blocks: Mutex<HashMap<usize, Block>>,
    /// The CUDA device it serves; `None`: host memory.
    device: Option<u32>,
    pub(crate) untracked: Untracked,
    pub(crate) served: Served,
}

impl ScratchAllocator {
    /// The CPU allocator (`device` `None`) or CUDA device `device`'s; boxed, because ONNX
    /// Runtime keeps its address.
    pub(crate) fn new(device: Option<u32>) -> ort::Result<Box<Self>> {
        let info = match device {
            None => MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            )?,
            Some(d) => MemoryInfo::new(
                AllocationDevice::CUDA,
                d as i32,
                AllocatorType::Device,
                MemoryType::Default,
            )?,
        };
        Ok(Box::new(ScratchAllocator {
            base: OrtAllocator {
                Alloc: Some(alloc_cb),
                Free: Some(free_cb),
                Info: Some(info_cb),
                Reserve: Some(reserve_cb),
                // SAFETY: `OrtAllocator::default` fills the version and leaves the optional
                // callbacks empty; it reads nothing.
                ..unsafe { OrtAllocator::default() }
            },
            info,
            blocks: Mutex::new(HashMap::new()),
            device,
            untracked: Untracked::default(),
            served: Served::default(),
        }))
    }

    pub(crate) fn as_ort(&mut self) -> *mut OrtAllocator {
        &mut self.base
    }

    pub(crate) fn memory_info(&self) -> *const OrtMemoryInfo {
        self.info.ptr()
    }

    fn alloc(&self, size: usize) -> *mut c_void {
        let size = size.max(1);
        let on_device = self.device.is_some();
        let from_scratch = TARGET.with(|t| {
            let mut t = t.borrow_mut();
            let target = t.as_mut()?;
            // The CPU allocator of a run on a device arena (a CUDA session's host-side
            // tensors: shapes, CPU inputs) serves the heap, counted as untracked.
            if !on_device && !target.arena.backend().host_addressable() {
                return None;
            }
            match target
                .arena
                .alloc_scratch(target.owner, Purpose::Activations, size as u64)
            {
                Ok(buffer) => Some(Ok(buffer)),
                Err(err) => {
                    if target.refusal.is_none() {
                        target.refusal = Some(err);
                    }
                    if !target.run_options.is_null() {
                        // SAFETY: the pointer is the live RunOptions of the run in progress on
                        // this thread (the guard outlives the run); setting its flag is an
                        // atomic store inside ONNX Runtime.
                        let status =
                            unsafe { (ort::api().RunOptionsSetTerminate)(target.run_options) };
                        if !status.0.is_null() {
                            // SAFETY: a status ONNX Runtime returned, released once.
                            unsafe { (ort::api().ReleaseStatus)(status.0) };
                        }
                    }
                    Some(Err(()))
                }
            }
        });
        // Memory the CPU cannot address is refused like a full arena (never answered with
        // null, which ONNX Runtime does not survive); `Graph::run` refuses such arenas first.
        let from_scratch = match from_scratch {
            Some(Ok(buffer)) if on_device => {
                let p = NonNull::new(buffer.ptr().addr() as usize as *mut u8);
                p.map_or(Some(Err(())), |p| Some(Ok((p, buffer))))
            }
            Some(Ok(buffer)) => match buffer.host_ptr() {
                Some(p) => Some(Ok((p, buffer))),
                None => Some(Err(())),
            },
            Some(Err(())) => Some(Err(())),
            None => None,
        };
        let (ptr, block) = match from_scratch {
            Some(Ok((p, buffer))) => {
                self.served.blocks.fetch_add(1, Ordering::Relaxed);
                self.served.bytes.fetch_add(size as u64, Ordering::Relaxed);
                (p.as_ptr(), Block::Scratch(buffer))
            }
            // Device memory has no heap to overflow into: a refused block (the run is already
            // told to stop) or a block outside any stage's run is answered with null, which
            // the CUDA provider reports as a failed allocation. Start-up's profile run sizes
            // scratch so that a slot's run is never refused.
            _ if on_device => return ptr::null_mut(),
            refused => {
                if refused.is_some() {
                    self.untracked.overflow.fetch_add(1, Ordering::Relaxed);
                }
                let Ok(layout) = Layout::from_size_align(size, HEAP_ALIGN) else {
                    return ptr::null_mut();
                };
                // SAFETY: `layout` has a non-zero size.
                let p = unsafe { heap_alloc(layout) };
                if p.is_null() {
                    return ptr::null_mut();
                }
                let live = self.untracked.live.fetch_add(size, Ordering::Relaxed) + size;
                self.untracked.peak.fetch_max(live, Ordering::Relaxed);
                self.untracked
                    .total
                    .fetch_add(size as u64, Ordering::Relaxed);
                (p, Block::Heap(layout))
            }
        };
        self.blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ptr as usize, block);
        ptr.cast()
    }

    fn free(&self, p: *mut c_void) {
        if p.is_null() {
            return;
        }
        let block = self
            .blocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(p as usize));
        match block {
            Some(Block::Scratch(buffer)) => drop(buffer),
            Some(Block::Heap(layout)) => {
                // SAFETY: `p` was returned by `heap_alloc(layout)` above and is freed once
                // (it was just removed from the table).
                unsafe { heap_dealloc(p.cast(), layout) };
                self.untracked
                    .live
                    .fetch_sub(layout.size(), Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// # Safety
/// `p` is the `base` field of a live `ScratchAllocator` (the address registered).
unsafe fn this<'a>(p: *const OrtAllocator) -> &'a ScratchAllocator {
    // SAFETY: `base` is the first field of the `#[repr(C)]` struct, so the addresses agree.
    unsafe { &*p.cast::<ScratchAllocator>() }
}

unsafe extern "system" fn alloc_cb(a: *mut OrtAllocator, size: usize) -> *mut c_void {
    // SAFETY: ONNX Runtime passes back the allocator it was given.
    catch_unwind(AssertUnwindSafe(|| unsafe { this(a) }.alloc(size))).unwrap_or(ptr::null_mut())
}

unsafe extern "system" fn reserve_cb(a: *const OrtAllocator, size: usize) -> *mut c_void {
    // SAFETY: as in `alloc_cb`.
    catch_unwind(AssertUnwindSafe(|| unsafe { this(a) }.alloc(size))).unwrap_or(ptr::null_mut())
}

unsafe extern "system" fn free_cb(a: *mut OrtAllocator, p: *mut c_void) {
    // SAFETY: as in `alloc_cb`.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { this(a) }.free(p)));
}

unsafe extern "system" fn info_cb(a: *const OrtAllocator) -> *const OrtMemoryInfo {
    // SAFETY: as in `alloc_cb`.
    catch_unwind(AssertUnwindSafe(|| unsafe { this(a) }.memory_info())).unwrap_or(ptr::null())
}
