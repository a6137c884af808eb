//! One conformance suite run over every backend, as RMM runs one suite over every memory
//! resource: allocation alignment and accounting, copies in every direction, memsets,
//! streams and events, residency, and an over-large request that changes nothing.
//!
//! The host backend always runs it; with `--features cuda` the CUDA backend runs it too when
//! a device answers (against the stub it skips with the reason printed).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use vortex_vram::{ALIGNMENT, Backend, BackendError, DevicePtr, HostBackend, HostConfig};

/// Every backend this build can reach, by name.
#[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
fn backends() -> Vec<(&'static str, Arc<dyn Backend>)> {
    let mut all: Vec<(&'static str, Arc<dyn Backend>)> = vec![(
        "host",
        Arc::new(HostBackend::new(HostConfig::rtx3060_12gb())),
    )];
    #[cfg(feature = "cuda")]
    match vortex_vram::CudaBackend::new(0) {
        Ok(cuda) => all.push(("cuda", Arc::new(cuda))),
        Err(err) => eprintln!("skipping the CUDA backend: {err}"),
    }
    all
}

const MIB: u64 = 1 << 20;

/// One test at a time: a CUDA device (real or emulated) is shared by the whole process, so
/// one test's allocations would show in another's free-memory figures.
fn device() -> MutexGuard<'static, ()> {
    static DEVICE: Mutex<()> = Mutex::new(());
    DEVICE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn allocations_are_aligned_counted_and_returned() {
    let _device = device();
    for (name, backend) in backends() {
        let before = backend.mem_info().unwrap();
        assert!(before.free <= before.total, "{name}");
        let ptr = backend.allocate(8 * MIB).unwrap();
        assert_eq!(ptr.addr() % ALIGNMENT, 0, "{name}: aligned to {ALIGNMENT}");
        assert!(backend.is_resident(ptr).unwrap(), "{name}");
        assert!(
            backend.is_resident(ptr.offset(8 * MIB - 1)).unwrap(),
            "{name}: interior"
        );
        let during = backend.mem_info().unwrap();
        assert!(
            before.free - during.free >= 8 * MIB,
            "{name}: {before:?} → {during:?}"
        );
        // SAFETY: `ptr` came from `allocate` above with the same size, and is not used again.
        unsafe { backend.free(ptr, 8 * MIB) }.unwrap();
        let after = backend.mem_info().unwrap();
        assert_eq!(after.total, before.total, "{name}");
        assert!(
            after.free >= before.free - MIB,
            "{name}: the bytes came back"
        );
    }
}

#[test]
fn copies_and_memsets_round_trip_in_every_direction() {
    let _device = device();
    for (name, backend) in backends() {
        let (a, b) = (
            backend.allocate(MIB).unwrap(),
            backend.allocate(MIB).unwrap(),
        );
        let data: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
        let mut back = vec![0u8; MIB as usize];
        // SAFETY: `a` and `b` are live allocations of MIB bytes from this backend; every
        // range below lies inside them.
        unsafe {
            backend.copy_to_device(a, &data).unwrap();
            backend.copy_device(b, a, MIB).unwrap();
            backend.copy_from_device(b, &mut back).unwrap();
        }
        assert_eq!(back, data, "{name}: host → device → device → host");
        // SAFETY: as above.
        unsafe {
            backend.memset(b.offset(16), 0xAB, 32).unwrap();
            backend.copy_from_device(b, &mut back[..64]).unwrap();
        }
        assert_eq!(&back[..16], &data[..16], "{name}: before the memset");
        assert!(back[16..48].iter().all(|&v| v == 0xAB), "{name}");
        assert_eq!(&back[48..64], &data[48..64], "{name}: after the memset");
        // SAFETY: both came from `allocate` with MIB bytes and are not used again.
        unsafe {
            backend.free(a, MIB).unwrap();
            backend.free(b, MIB).unwrap();
        }
    }
}

#[test]
fn queued_work_on_streams_is_done_after_its_event_and_timed() {
    let _device = device();
    for (name, backend) in backends() {
        let (a, b) = (
            backend.allocate(MIB).unwrap(),
            backend.allocate(MIB).unwrap(),
        );
        let stream = backend.create_stream().unwrap();
        let (start, end) = (
            backend.create_event().unwrap(),
            backend.create_event().unwrap(),
        );
        backend.record_event(start, stream).unwrap();
        // SAFETY: `a` and `b` are live MIB-byte allocations, kept until the stream is
        // synchronized below.
        unsafe {
            backend.memset_async(stream, a, 0x5A, MIB).unwrap();
            backend.copy_device_async(stream, b, a, MIB).unwrap();
        }
        backend.record_event(end, stream).unwrap();
        backend.synchronize_stream(stream).unwrap();
        assert!(
            backend.event_done(end).unwrap(),
            "{name}: done after synchronize"
        );
        let elapsed = backend.event_elapsed(start, end).unwrap();
        assert!(elapsed.as_secs() < 10, "{name}: {elapsed:?}");
        let mut back = vec![0u8; 4096];
        // SAFETY: `b` is a live MIB-byte allocation; the stream that wrote it is done.
        unsafe { backend.copy_from_device(b.offset(MIB - 4096), &mut back) }.unwrap();
        assert!(
            back.iter().all(|&v| v == 0x5A),
            "{name}: the queued copy ran in order"
        );
        // SAFETY: both came from `allocate` with MIB bytes and are not used again.
        unsafe {
            backend.free(a, MIB).unwrap();
            backend.free(b, MIB).unwrap();
        }
    }
}

#[test]
fn foreign_addresses_are_not_resident() {
    let _device = device();
    for (name, backend) in backends() {
        let host = [0u8; 64];
        let foreign = DevicePtr::from_raw(host.as_ptr() as u64);
        assert!(!backend.is_resident(foreign).unwrap_or(false), "{name}");
    }
}

#[test]
fn a_request_beyond_the_device_fails_with_out_of_memory_and_changes_nothing() {
    let _device = device();
    for (name, backend) in backends() {
        let before = backend.mem_info().unwrap();
        match backend.allocate(before.total + (1 << 30)) {
            Err(BackendError::OutOfMemory { requested, free }) => {
                assert_eq!(requested, before.total + (1 << 30), "{name}");
                assert!(free <= before.total, "{name}");
            }
            other => panic!("{name}: expected out of memory, got {other:?}"),
        }
        let after = backend.mem_info().unwrap();
        assert!(after.free + MIB >= before.free, "{name}: nothing kept");
        // And the device is still usable.
        let ptr = backend.allocate(MIB).unwrap();
        // SAFETY: `ptr` came from `allocate` with MIB bytes and is not used again.
        unsafe { backend.free(ptr, MIB) }.unwrap();
    }
}
