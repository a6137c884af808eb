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
