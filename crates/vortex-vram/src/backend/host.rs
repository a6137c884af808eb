//! The host backend: a working stand-in for a GPU, in the spirit of wgpu's noop backend.
//!
//! It has a capacity (a named preset or any figure), subtracts a configurable context
//! overhead the way a CUDA context eats into a real card, and really holds memory for every
//! allocation: anonymous private mappings, backed lazily by the kernel, so reserving 11.5 GB
//! costs nothing until a page is touched. Faults can be injected at run time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::MmapMut;

use super::{Backend, BackendError, DevicePtr, MemInfo};

/// Capacity and name of the device the host backend stands in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Name of the preset or device, shown in logs and reports.
    pub name: String,
    /// Total device memory in bytes.
    pub capacity: u64,
    /// Bytes the (emulated) driver context holds before anything is allocated.
    pub context_overhead: u64,
}

impl HostConfig {
    /// Names of the capacity presets [`HostConfig::preset`] knows: the cards the time plan
    /// has peak rates for (`vortex_models::physics::DevicePeaks`), each at its nominal memory.
    pub const PRESETS: &'static [&'static str] = &[
        "rtx3060-12gb",
        "rtx3090-24gb",
        "rtx4090-24gb",
        "a100-80gb",
        "h100-80gb",
    ];

    /// An RTX 3060 12 GiB: 12,884,901,888 bytes, no context overhead.
    pub fn rtx3060_12gb() -> Self {
        HostConfig {
            name: "rtx3060-12gb".to_owned(),
            capacity: 12_884_901_888,
            context_overhead: 0,
        }
    }

    /// A preset by name, or `None` if there is no such preset (see [`HostConfig::PRESETS`]).
    pub fn preset(name: &str) -> Option<Self> {
        const GIB: u64 = 1 << 30;
        let capacity = match name {
            "rtx3060-12gb" => return Some(Self::rtx3060_12gb()),
            "rtx3090-24gb" | "rtx4090-24gb" => 24 * GIB,
            "a100-80gb" | "h100-80gb" => 80 * GIB,
            _ => return None,
        };
        Some(HostConfig {
            name: name.to_owned(),
            capacity,
            context_overhead: 0,
        })
    }

    /// The same device with `bytes` held by the context.
    pub fn with_context_overhead(mut self, bytes: u64) -> Self {
        self.context_overhead = bytes;
        self
    }
}

/// Faults to inject into a [`HostBackend`], settable at any time from any thread.
#[derive(Debug)]
pub struct FaultInjector {
    /// 1-based index of the allocation to fail; 0 for none.
    fail_nth: AtomicU64,
    /// Allocations larger than this fail; `u64::MAX` for none.
    fail_above: AtomicU64,
    device_lost: AtomicBool,
    /// Allocations attempted so far (the count the N of `fail_nth` refers to).
    attempts: AtomicU64,
}

impl Default for FaultInjector {
    fn default() -> Self {
        FaultInjector {
            fail_nth: AtomicU64::new(0),
            fail_above: AtomicU64::new(u64::MAX),
            device_lost: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
        }
    }
}

impl FaultInjector {
    /// Makes the `n`th allocation from now (1-based) fail as out of memory; `0` clears it.
    pub fn fail_nth_allocation(&self, n: u64) {
        self.attempts.store(0, Ordering::SeqCst);
        self.fail_nth.store(n, Ordering::SeqCst);
    }

    /// Makes every allocation of more than `bytes` fail as out of memory; `None` clears it.
    pub fn fail_allocations_above(&self, bytes: Option<u64>) {
        self.fail_above
            .store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Reports the device lost (or found again) on every call from now on.
    pub fn set_device_lost(&self, lost: bool) {
        self.device_lost.store(lost, Ordering::SeqCst);
    }

    /// Allocations attempted since the last [`FaultInjector::fail_nth_allocation`].
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    fn check_lost(&self) -> Result<(), BackendError> {
        if self.device_lost.load(Ordering::SeqCst) {
            Err(BackendError::DeviceLost {
                reason: "injected fault: the host backend reports the device lost".to_owned(),
            })
        } else {
            Ok(())
        }
    }

    /// Whether this allocation attempt should fail.
    fn should_fail(&self, bytes: u64) -> bool {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        attempt == self.fail_nth.load(Ordering::SeqCst)
            || bytes > self.fail_above.load(Ordering::SeqCst)
    }
}

/// A GPU stand-in that really holds memory. See the module docs.
#[derive(Debug)]
pub struct HostBackend {
    config: HostConfig,
    /// Bytes handed out, context overhead excluded.
    allocated: AtomicU64,
    /// Live mappings by start address.
    mappings: Mutex<BTreeMap<u64, MmapMut>>,
    faults: FaultInjector,
}

impl HostBackend {
    /// A host backend with the given capacity.
    pub fn new(config: HostConfig) -> Self {
        HostBackend {
            config,
            allocated: AtomicU64::new(0),
            mappings: Mutex::new(BTreeMap::new()),
            faults: FaultInjector::default(),
        }
    }

    /// The capacity this backend was made with.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The fault injector of this backend.
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Number of live allocations.
    pub fn live_allocations(&self) -> usize {
        self.lock().len()
    }

    /// Copies `data` into device memory at `ptr`. Fails unless the whole range lies inside one
    /// live allocation.
    pub fn write(&self, ptr: DevicePtr, data: &[u8]) -> Result<(), BackendError> {
        self.faults.check_lost()?;
        let mut mappings = self.lock();
        let (map, start) = Self::range_mut(&mut mappings, ptr, data.len() as u64)?;
        map[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// Copies device memory at `ptr` into `out`. Fails unless the whole range lies inside one
    /// live allocation.
    pub fn read(&self, ptr: DevicePtr, out: &mut [u8]) -> Result<(), BackendError> {
        self.faults.check_lost()?;
        let mut mappings = self.lock();
        let (map, start) = Self::range_mut(&mut mappings, ptr, out.len() as u64)?;
        out.copy_from_slice(&map[start..start + out.len()]);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, MmapMut>> {
        self.mappings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn range_mut(
        mappings: &mut BTreeMap<u64, MmapMut>,
        ptr: DevicePtr,
        len: u64,
    ) -> Result<(&mut MmapMut, usize), BackendError> {
        let outside = || BackendError::InvalidValue {
            what: format!("{len} bytes at {ptr:?} are not inside one live allocation"),
        };
        let (&base, map) = mappings
            .range_mut(..=ptr.0)
            .next_back()
            .ok_or_else(outside)?;
        let start = ptr.0 - base;
        if start
            .checked_add(len)
            .is_none_or(|end| end > map.len() as u64)
        {
            return Err(outside());
        }
        Ok((map, start as usize))
    }

    fn usable(&self) -> u64 {
        self.config
            .capacity
            .saturating_sub(self.config.context_overhead)
    }
}

impl Backend for HostBackend {
    fn name(&self) -> &str {
        "host"
    }

    fn device_name(&self) -> String {
        format!("host ({})", self.config.name)
    }

    fn mem_info(&self) -> Result<MemInfo, BackendError> {
        self.faults.check_lost()?;
        let allocated = self.allocated.load(Ordering::SeqCst);
        Ok(MemInfo {
            free: self.usable().saturating_sub(allocated),
            total: self.config.capacity,
        })
    }

    fn allocate(&self, bytes: u64) -> Result<DevicePtr, BackendError> {
        self.faults.check_lost()?;
        if bytes == 0 {
            return Err(BackendError::InvalidValue {
                what: "an allocation of zero bytes".to_owned(),
            });
        }
        let usable = self.usable();
        let out_of_memory = |allocated: u64| BackendError::OutOfMemory {
            requested: bytes,
            free: usable.saturating_sub(allocated),
        };
        if self.faults.should_fail(bytes) {
            return Err(out_of_memory(self.allocated.load(Ordering::SeqCst)));
        }
        // Take the capacity first, atomically, so concurrent allocations cannot overshoot it.
        self.allocated
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |allocated| {
                allocated.checked_add(bytes).filter(|&sum| sum <= usable)
            })
            .map_err(out_of_memory)?;
        let mapping = usize::try_from(bytes)
            .ok()
            .and_then(|len| MmapMut::map_anon(len).ok());
        let Some(mapping) = mapping else {
            let allocated = self.allocated.fetch_sub(bytes, Ordering::SeqCst) - bytes;
            return Err(out_of_memory(allocated));
        };
        // Anonymous mappings are page aligned, so 256-byte alignment holds.
        let addr = mapping.as_ptr() as u64;
        self.lock().insert(addr, mapping);
        Ok(DevicePtr(addr))
    }

    unsafe fn free(&self, ptr: DevicePtr, bytes: u64) -> Result<(), BackendError> {
        let mut mappings = self.lock();
        match mappings.get(&ptr.0) {
            Some(map) if map.len() as u64 == bytes => {}
            Some(map) => {
                return Err(BackendError::InvalidValue {
                    what: format!(
                        "free of {bytes} bytes at {ptr:?}, which was allocated with {} bytes",
                        map.len()
                    ),
                });
            }
            None => {
                return Err(BackendError::InvalidValue {
                    what: format!("free of {ptr:?}, which this backend did not allocate"),
                });
            }
        }
        mappings.remove(&ptr.0);
        self.allocated.fetch_sub(bytes, Ordering::SeqCst);
        Ok(())
    }

    // The copies below check every range against the live mappings (as `write` and `read`
    // do) and fail with `InvalidValue` instead of touching memory outside them, so on this
    // backend they are sound even when the caller breaks the trait's contract.

    unsafe fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<(), BackendError> {
        self.write(dst, src)
    }

    unsafe fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<(), BackendError> {
        self.read(src, dst)
    }

    unsafe fn copy_device(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        len: u64,
    ) -> Result<(), BackendError> {
        self.faults.check_lost()?;
        let mut mappings = self.lock();
        let src_at = {
            let (map, start) = Self::range_mut(&mut mappings, src, len)?;
            map.as_ptr() as u64 + start as u64
        };
        let (map, start) = Self::range_mut(&mut mappings, dst, len)?;
        let dst_at = map.as_mut_ptr() as u64 + start as u64;
        // SAFETY: both ranges were checked to lie inside live mappings, which stay mapped while
        // the lock is held; `copy` allows overlap.
        unsafe { std::ptr::copy(src_at as *const u8, dst_at as *mut u8, len as usize) };
        Ok(())
    }

    unsafe fn memset(&self, dst: DevicePtr, value: u8, len: u64) -> Result<(), BackendError> {
        self.faults.check_lost()?;
        let mut mappings = self.lock();
        let (map, start) = Self::range_mut(&mut mappings, dst, len)?;
        map[start..start + len as usize].fill(value);
        Ok(())
    }

    fn emulates_latency(&self) -> bool {
        true
    }

    fn host_addressable(&self) -> bool {
        true
    }

    fn is_resident(&self, ptr: DevicePtr) -> Result<bool, BackendError> {
        self.faults.check_lost()?;
        let mappings = self.lock();
        Ok(mappings
            .range(..=ptr.0)
            .next_back()
            .is_some_and(|(&base, map)| ptr.0 - base < map.len() as u64))
    }

    fn synchronize(&self) -> Result<(), BackendError> {
        self.faults.check_lost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_known_by_its_name() {
        for name in HostConfig::PRESETS {
            assert_eq!(HostConfig::preset(name).unwrap().name, *name);
        }
        assert_eq!(
            HostConfig::preset("rtx4090-24gb").unwrap().capacity,
            24 << 30
        );
        assert_eq!(HostConfig::preset("h100-80gb").unwrap().capacity, 80 << 30);
        assert!(HostConfig::preset("rtx5090").is_none());
    }

    #[test]
    fn reserving_most_of_the_card_costs_nothing_until_touched() {
        let backend = HostBackend::new(HostConfig::rtx3060_12gb());
        let bytes = 11_500_000_000;
        let ptr = backend.allocate(bytes).unwrap();
        assert_eq!(ptr.0 % 256, 0);
        let info = backend.mem_info().unwrap();
        assert_eq!(info.total, 12_884_901_888);
        assert_eq!(info.free, 12_884_901_888 - bytes);
        backend.write(ptr.offset(bytes - 4), &[1, 2, 3, 4]).unwrap();
        let mut out = [0; 4];
        backend.read(ptr.offset(bytes - 4), &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(backend.write(ptr.offset(bytes - 3), &[0; 4]).is_err());
        unsafe { backend.free(ptr, bytes).unwrap() };
        assert_eq!(backend.mem_info().unwrap().free, 12_884_901_888);
    }

    #[test]
    fn context_overhead_is_not_free() {
        let backend = HostBackend::new(HostConfig::rtx3060_12gb().with_context_overhead(300 << 20));
        assert_eq!(
            backend.mem_info().unwrap().free,
            12_884_901_888 - (300 << 20)
        );
        let err = backend
            .allocate(12_884_901_888 - (300 << 20) + 1)
            .unwrap_err();
        assert!(matches!(err, BackendError::OutOfMemory { .. }), "{err}");
    }

    #[test]
    fn residency_and_bad_frees() {
        let backend = HostBackend::new(HostConfig::rtx3060_12gb());
        let ptr = backend.allocate(4096).unwrap();
        assert!(backend.is_resident(ptr).unwrap());
        assert!(backend.is_resident(ptr.offset(4095)).unwrap());
        assert!(!backend.is_resident(ptr.offset(4096)).unwrap());
        let stack = 0u64;
        assert!(
            !backend
                .is_resident(DevicePtr(&stack as *const u64 as u64))
                .unwrap()
        );
        assert!(unsafe { backend.free(ptr, 4095) }.is_err());
        assert!(unsafe { backend.free(DevicePtr(8), 4096) }.is_err());
        unsafe { backend.free(ptr, 4096).unwrap() };
        assert_eq!(backend.live_allocations(), 0);
    }

    #[test]
    fn device_to_device_copies_and_memset() {
        let backend = HostBackend::new(HostConfig::rtx3060_12gb());
        let (a, b) = (
            backend.allocate(4096).unwrap(),
            backend.allocate(4096).unwrap(),
        );
        backend.write(a, &[1, 2, 3, 4]).unwrap();
        // SAFETY: `a` and `b` are live 4096-byte allocations of this backend and nothing else
        // touches them; the ranges lie inside them.
        unsafe {
            backend.copy_device(b.offset(100), a, 4).unwrap();
            backend.memset(b, 9, 2).unwrap();
        }
        let mut out = [0; 4];
        backend.read(b.offset(100), &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        backend.read(b, &mut out).unwrap();
        assert_eq!(out, [9, 9, 0, 0]);
        // SAFETY: the ranges run past the allocations, which breaks the trait's contract, but
        // the host backend checks every range and refuses without touching memory.
        unsafe {
            assert!(backend.copy_device(b.offset(4095), a, 2).is_err());
            assert!(backend.memset(a, 0, 4097).is_err());
        }
        assert!(backend.emulates_latency());
    }

    #[test]
    fn injected_faults() {
        let backend = HostBackend::new(HostConfig::rtx3060_12gb());
        backend.faults().fail_nth_allocation(2);
        let a = backend.allocate(256).unwrap();
        assert!(matches!(
            backend.allocate(256),
            Err(BackendError::OutOfMemory { requested: 256, .. })
        ));
        let b = backend.allocate(256).unwrap();
        backend.faults().fail_allocations_above(Some(1024));
        assert!(backend.allocate(1025).is_err());
        let c = backend.allocate(1024).unwrap();
        backend.faults().set_device_lost(true);
        assert!(matches!(
            backend.mem_info(),
            Err(BackendError::DeviceLost { .. })
        ));
        assert!(matches!(
            backend.allocate(256),
            Err(BackendError::DeviceLost { .. })
        ));
        assert!(backend.synchronize().is_err());
        backend.faults().set_device_lost(false);
        for (ptr, bytes) in [(a, 256), (b, 256), (c, 1024)] {
            unsafe { backend.free(ptr, bytes).unwrap() };
        }
        assert_eq!(backend.mem_info().unwrap().free, 12_884_901_888);
    }
}
