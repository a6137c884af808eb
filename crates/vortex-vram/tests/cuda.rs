//! The CUDA backend. Built against the stub libcuda (`cargo xtask cuda-stub`) these take the
//! no-device path and check that its error says what to do; against the emulated driver
//! (`cargo xtask cuda-emu`) and on a machine with a GPU they run against the device. On the
//! emulator, which says so in its device name, only what needs real hardware is skipped.
#![cfg(feature = "cuda")]

use std::sync::Arc;

use vortex_vram::{
    ArenaConfig, Backend, BackendError, ByteSize, CudaBackend, DevicePtr, Limits, Purpose, Vram,
    VramConfig, VramError,
};

/// The backend, or `None` after printing why the device tests are skipped.
fn device() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(backend) => Some(backend),
        Err(BackendError::NoDevice { reason }) => {
            eprintln!("skipping CUDA device tests: {reason}");
            None
        }
        Err(other) => panic!("expected a device or a clear no-device error, got: {other}"),
    }
}

/// The emulated driver's device name (`cargo xtask cuda-emu`).
const EMULATOR: &str = "Vortex CUDA emulator";

#[test]
fn no_device_error_says_what_to_do() {
    match CudaBackend::new(0) {
        Ok(backend) => eprintln!(
            "a device answered ({}): no no-device path to check",
            backend.device_name()
        ),
        Err(err) => {
            let message = err.to_string();
            assert!(matches!(err, BackendError::NoDevice { .. }), "{message}");
            assert!(
                message.contains("cuInit"),
                "names the failing call: {message}"
            );
            assert!(
                message.contains("nvidia-smi") && message.contains("host backend"),
                "{message}"
            );
        }
    }
}

#[test]
fn an_ordinal_past_the_devices_is_refused() {
    match CudaBackend::new(u32::MAX) {
        Err(BackendError::NoDevice { reason }) => assert!(!reason.is_empty()),
        other => panic!("expected NoDevice, got {other:?}"),
    }
}

#[test]
fn mem_info_is_sane() {
    let Some(backend) = device() else { return };
    let info = backend.mem_info().unwrap();
    assert!(info.total > 0 && info.free <= info.total, "{info:?}");
}

#[test]
fn slab_is_resident_and_host_memory_is_not() {
    let Some(backend) = device() else { return };
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let vram = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(64 << 20, 64 << 20)),
    )
    .unwrap();
    let owner = vram.owner("weights").unwrap();
    let region = vram
        .arena()
        .alloc_static(owner, Purpose::ModelWeights, 1 << 20)
        .unwrap();
    let scratch = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 4096)
        .unwrap();
    assert!(vram.arena().verify_residency().unwrap().is_empty());
    assert!(backend.is_resident(region.ptr).unwrap());
    assert!(backend.is_resident(scratch.ptr()).unwrap());
    let host = vec![0u8; 4096];
    assert!(
        !backend
            .is_resident(DevicePtr::from_raw(host.as_ptr() as u64))
            .unwrap()
    );
    backend.synchronize().unwrap();
}

#[test]
fn a_request_beyond_capacity_fails_with_the_breakdown_and_leaves_the_device_usable() {
    let Some(backend) = device() else { return };
    let total = backend.mem_info().unwrap().total;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let mut config = VramConfig::new(ArenaConfig::new(1 << 20, 0));
    // Limits far above the card, so the device itself refuses.
    config.limits = Limits::new(ByteSize(Limits::MAX - 1), ByteSize(Limits::MAX)).unwrap();
    let vram = Vram::new(backend.clone(), config).unwrap();
    let owner = vram.owner("too_big").unwrap();
    let err = vram
        .dedicated(owner, Purpose::Workspace, total * 2)
        .unwrap_err();
    match &err {
        VramError::Backend {
            owner,
            requested,
            source: BackendError::OutOfMemory { free, .. },
            ..
        } => {
            assert_eq!((&**owner, *requested), ("too_big", total * 2));
            assert!(*free <= total);
        }
        other => panic!("expected a backend out-of-memory error, got {other}"),
    }
    eprintln!("{err}");
    assert_eq!(
        vram.tracker().owner_bytes(owner),
        0,
        "nothing stays counted"
    );
    let ok = vram.dedicated(owner, Purpose::Workspace, 1 << 20).unwrap();
    assert!(backend.is_resident(ok.ptr()).unwrap());
}

#[test]
fn staged_uploads_round_trip() {
    let Some(backend) = device() else { return };
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(64 << 20, 0))).unwrap();
    let owner = vram.owner("weights").unwrap();
    // Three full 8 MiB staging chunks and a partial one.
    let bytes = (3 << 23) + 12_345;
    let region = vram
        .arena()
        .alloc_static(owner, Purpose::ModelWeights, bytes)
        .unwrap();
    let data: Vec<u8> = (0..bytes).map(|i| (i * 31 % 251) as u8).collect();
    vram.arena().upload(&region, 0, &data).unwrap();
    let mut back = vec![0u8; bytes as usize];
    vram.arena().download(&region, 0, &mut back).unwrap();
    assert!(back == data, "the staged upload came back different");
}

#[test]
fn weight_uploads_reach_most_of_the_host_to_device_bandwidth() {
    let Some(backend) = device() else { return };
    if backend.device_name() == EMULATOR {
        eprintln!(
            "skipping the bandwidth ratio: the emulator's copies are memcpy, not DMA over PCIe"
        );
        return;
    }
    let bytes = 256 << 20;
    let bandwidth = backend.measure_h2d_bandwidth(bytes).unwrap();
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(bytes as u64, 0))).unwrap();
    let owner = vram.owner("weights").unwrap();
    let region = vram
        .arena()
        .alloc_static(owner, Purpose::ModelWeights, bytes as u64)
        .unwrap();
    // Pageable memory, as a memory-mapped weights file is.
    let data = vec![7u8; bytes];
    vram.arena().upload(&region, 0, &data).unwrap(); // warm the staging buffers
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        vram.arena().upload(&region, 0, &data).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
    }
    let upload = bytes as f64 / best;
    eprintln!(
        "h2d bandwidth {:.2} GB/s, staged upload {:.2} GB/s ({:.0}%)",
        bandwidth / 1e9,
        upload / 1e9,
        100.0 * upload / bandwidth
    );
    assert!(
        upload >= 0.8 * bandwidth,
        "upload {upload:.3e} B/s is under 80% of {bandwidth:.3e} B/s"
    );
}
