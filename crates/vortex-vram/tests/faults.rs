//! Fault injection on the host backend: the Nth allocation fails, allocations above N bytes
//! fail, the device is lost. Each time nothing leaks and the error names the owner.

use std::sync::Arc;

use vortex_vram::{
    ArenaConfig, Backend, BackendError, DeviceBuffer, HostBackend, HostConfig, Purpose, Vram,
    VramConfig, VramError,
};

const OWNERS: [(&str, Purpose, u64); 5] = [
    ("flux", Purpose::ModelWeights, 6_000_000),
    ("liveportrait", Purpose::ModelWeights, 3_500_000),
    ("kokoro", Purpose::ModelWeights, 400_000),
    ("video_buffer", Purpose::OutputBuffer, 849_346),
    ("audio_buffer", Purpose::OutputBuffer, 4_320),
];

fn host() -> Arc<HostBackend> {
    Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()))
}

/// Slab first (allocation 1), then one dedicated buffer per owner (allocations 2..=6).
fn load(backend: &Arc<HostBackend>) -> Result<(Vram, Vec<DeviceBuffer>), VramError> {
    let vram = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20)),
    )?;
    let mut buffers = Vec::new();
    for (name, purpose, bytes) in OWNERS {
        let owner = vram.owner(name)?;
        buffers.push(vram.dedicated(owner, purpose, bytes)?);
    }
    Ok((vram, buffers))
}

#[test]
fn the_nth_allocation_fails_names_its_owner_and_leaks_nothing() {
    for n in 1..=(OWNERS.len() as u64 + 1) {
        let backend = host();
        backend.faults().fail_nth_allocation(n);
        let err = load(&backend).expect_err("the injected fault must surface");
        let expected_owner = if n == 1 {
            "arena"
        } else {
            OWNERS[n as usize - 2].0
        };
        match &err {
            VramError::Backend {
                owner,
                requested,
                source: BackendError::OutOfMemory { .. },
                ..
            } => {
                assert_eq!(&**owner, expected_owner, "allocation {n}");
                let want = if n == 1 {
                    2 << 20
                } else {
                    OWNERS[n as usize - 2].2
                };
                assert_eq!(*requested, want);
            }
            other => panic!("allocation {n}: expected a backend error, got {other}"),
        }
        assert!(
            err.to_string().contains(&format!("`{expected_owner}`")),
            "{err}"
        );
        // Everything built before the failure was dropped with the error: nothing is held.
        assert_eq!(
            backend.live_allocations(),
            0,
            "allocation {n} leaked device memory"
        );
        assert_eq!(backend.mem_info().unwrap().free, 12_884_901_888);
        // And the device is usable afterwards.
        backend.faults().fail_nth_allocation(0);
        let (vram, buffers) = load(&backend).unwrap();
        assert_eq!(backend.live_allocations(), 1 + OWNERS.len());
        drop((vram, buffers));
        assert_eq!(backend.live_allocations(), 0);
    }
}

#[test]
fn a_failed_dedicated_allocation_uncounts_its_bytes() {
    let backend = host();
    let vram = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(1 << 20, 0)),
    )
    .unwrap();
    let owner = vram.owner("liveportrait").unwrap();
    let kept = vram.dedicated(owner, Purpose::ModelWeights, 4096).unwrap();
    let (allocated, reserved) = (vram.tracker().allocated(), vram.tracker().reserved());
    backend.faults().fail_allocations_above(Some(1 << 20));
    let err = vram
        .dedicated(owner, Purpose::Workspace, (1 << 20) + 1)
        .unwrap_err();
    assert!(err.to_string().contains("`liveportrait`"), "{err}");
    assert_eq!(vram.tracker().allocated(), allocated);
    assert_eq!(vram.tracker().reserved(), reserved);
    assert_eq!(vram.tracker().owner_bytes(owner), 4096);
    drop(kept);
    assert_eq!(vram.tracker().owner_bytes(owner), 0);
    assert_eq!(vram.tracker().reserved(), 1 << 20);
}

#[test]
fn a_lost_device_is_reported_not_panicked_on() {
    let backend = host();
    let vram = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20)),
    )
    .unwrap();
    let owner = vram.owner("kokoro").unwrap();
    let scratch = vram
        .arena()
        .alloc_scratch(owner, Purpose::Scratch, 1000)
        .unwrap();
    backend.faults().set_device_lost(true);
    let snapshot = vram.monitor().snapshot("device_lost", Some(7));
    assert_eq!(snapshot.device_used, None);
    assert_eq!(snapshot.allocated, 1024);
    assert!(matches!(
        vram.monitor().preflight("a slot", 1),
        Err(VramError::Device(BackendError::DeviceLost { .. }))
    ));
    assert!(vram.arena().verify_residency().is_err());
    let err = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(1 << 20, 0)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("device lost"), "{err}");
    // Sub-allocation needs no device call, and teardown still returns everything.
    drop(scratch);
    drop(vram);
    assert_eq!(backend.live_allocations(), 0);
}

/// One operation after the loss, named, and whether it failed with `DeviceLost`.
type Probe = (&'static str, fn(&Vram) -> bool);

fn is_lost<T>(result: Result<T, VramError>) -> bool {
    matches!(
        result,
        Err(VramError::Device(BackendError::DeviceLost { .. }))
    )
}

/// Operations that reach the device, each on a fresh `Vram` with one static region (first)
/// and room for scratch and dedicated buffers.
const PROBES: [Probe; 9] = [
    ("upload", |vram| {
        let region = vram.arena().static_regions()[0];
        is_lost(vram.arena().upload(&region, 0, &[1; 16]))
    }),
    ("download", |vram| {
        let region = vram.arena().static_regions()[0];
        is_lost(vram.arena().download(&region, 0, &mut [0; 16]))
    }),
    ("verify_residency", |vram| {
        is_lost(vram.arena().verify_residency())
    }),
    ("preflight", |vram| {
        is_lost(vram.monitor().preflight("a slot", 1))
    }),
    ("snapshot", |vram| {
        vram.monitor().snapshot("probe", None).device_used.is_none()
    }),
    ("synchronize_stream", |vram| {
        is_lost(
            vram.backend()
                .synchronize_stream(vortex_vram::StreamId(0))
                .map_err(VramError::from),
        )
    }),
    ("alloc_scratch", |vram| {
        let owner = vram.owner("kokoro").unwrap();
        is_lost(vram.arena().alloc_scratch(owner, Purpose::Scratch, 1000))
    }),
    ("alloc_static", |vram| {
        let owner = vram.owner("kokoro").unwrap();
        is_lost(
            vram.arena()
                .alloc_static(owner, Purpose::ModelWeights, 1000),
        )
    }),
    ("dedicated", |vram| {
        let owner = vram.owner("kokoro").unwrap();
        match vram.dedicated(owner, Purpose::Workspace, 4096) {
            Err(VramError::Backend { source, .. }) | Err(VramError::Device(source)) => {
                matches!(source, BackendError::DeviceLost { .. })
            }
            _ => false,
        }
    }),
];

#[test]
fn a_lost_device_is_remembered_and_not_asked_again() {
    // Whichever path first sees the loss (the arena, the monitor, a stream call, a dedicated
    // allocation), the Vram remembers it...
    for (first, lose) in PROBES {
        if matches!(first, "alloc_scratch" | "alloc_static") {
            continue; // sub-allocation asks no device, so it cannot be the first to see it
        }
        let backend = host();
        let vram = Vram::new(
            backend.clone(),
            VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20)),
        )
        .unwrap();
        let owner = vram.owner("kokoro").unwrap();
        let _weights = vram
            .arena()
            .alloc_static(owner, Purpose::ModelWeights, 4096)
            .unwrap();
        let scratch = vram
            .arena()
            .alloc_scratch(owner, Purpose::Scratch, 1000)
            .unwrap();
        let allocated = vram.tracker().allocated();
        assert_eq!(vram.device_lost(), None);

        backend.faults().set_device_lost(true);
        assert!(lose(&vram), "{first}: the injected loss must surface");
        let reason = vram
            .device_lost()
            .unwrap_or_else(|| panic!("{first}: the loss is not remembered"))
            .to_owned();
        assert!(reason.contains("injected fault"), "{first}: {reason}");
        assert_eq!(vram.arena().device_lost(), Some(reason.as_str()));
        assert_eq!(vram.health().device_lost(), Some(reason.as_str()));

        // ...and, though the backend answers again, every later operation fails with the
        // remembered loss without reaching it: any call that did would now succeed.
        backend.faults().set_device_lost(false);
        backend.faults().fail_nth_allocation(0); // restarts the attempt count
        for (then, probe) in PROBES {
            assert!(
                probe(&vram),
                "after {first}: {then} did not fail with the loss"
            );
        }
        let err = scratch.upload(0, &[1; 16]).unwrap_err();
        assert!(err.to_string().contains(&reason), "{err}");
        assert_eq!(
            backend.faults().attempts(),
            0,
            "an allocation reached the device"
        );
        assert_eq!(
            vram.tracker().allocated(),
            allocated,
            "nothing stays counted"
        );
        assert_eq!(vram.device_lost(), Some(reason.as_str()));

        // Teardown still returns the slab to the backend.
        drop(scratch);
        drop(vram);
        assert_eq!(backend.live_allocations(), 0, "{first}");
    }
}
