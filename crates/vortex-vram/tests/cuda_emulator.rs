//! The CUDA backend against the emulated driver (`cargo xtask cuda-emu`): driver faults it
//! can inject (init failures, error codes newer than cust_raw's, out of memory at the Nth
//! allocation, a lost device), handles released with the backend, the deferred mode, and
//! misuse reports. The emulator's control symbol is found with `dlsym`; on the stub or a real
//! driver it is absent and these tests skip with the reason printed.
#![cfg(feature = "cuda")]

use std::ffi::{CString, c_char, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use vortex_vram::{
    ArenaConfig, Backend, BackendError, CudaBackend, Purpose, Vram, VramConfig, VramError,
};

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

type Control = unsafe extern "C" fn(*const c_char, i64) -> i64;

/// The emulator's control function, holding the lock that keeps these tests from changing
/// the process-wide emulator under each other; `None` after printing why they skip.
struct Emulator {
    control: Control,
    _serial: MutexGuard<'static, ()>,
}

static SERIAL: Mutex<()> = Mutex::new(());

impl Emulator {
    fn get() -> Option<Emulator> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let name = c"vortex_emu_control";
        // SAFETY: RTLD_DEFAULT (null) searches the process's global scope; the name is a
        // NUL-terminated string.
        let symbol = unsafe { dlsym(std::ptr::null_mut(), name.as_ptr()) };
        if symbol.is_null() {
            eprintln!(
                "skipping emulator tests: no {} in the process (a real driver or the stub)",
                name.to_string_lossy()
            );
            return None;
        }
        // SAFETY: the emulator defines `long long vortex_emu_control(const char *, long long)`.
        let control = unsafe { std::mem::transmute::<*mut c_void, Control>(symbol) };
        let emulator = Emulator {
            control,
            _serial: serial,
        };
        emulator.set("reset", 0);
        Some(emulator)
    }

    fn set(&self, key: &str, value: i64) -> i64 {
        let key = CString::new(key).expect("no NUL in a key");
        // SAFETY: `key` is NUL-terminated and outlives the call; the function only reads it.
        let out = unsafe { (self.control)(key.as_ptr(), value) };
        assert!(out >= 0, "the emulator refused the key {key:?}");
        out
    }

    fn get_count(&self, key: &str) -> i64 {
        self.set(key, 0)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.set("reset", 0);
        self.set("deferred", 0);
        self.set("misuse_abort", 1);
    }
}

fn backend() -> Arc<dyn Backend> {
    Arc::new(CudaBackend::new(0).expect("the emulator answers"))
}

fn check_init_failure(emulator: &Emulator, code: i64, expected: fn(&BackendError) -> bool) {
    emulator.set("init_error", code);
    let err = CudaBackend::new(0).expect_err("cuInit fails");
    emulator.set("init_error", 0);
    let message = err.to_string();
    assert!(expected(&err), "cuInit returning {code}: {err:?}");
    assert!(
        message.contains(&code.to_string()) && message.contains("cuInit"),
        "names the call and the code: {message}"
    );
}

#[test]
fn init_failures_of_a_stub_or_mismatched_driver_are_no_device() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    // STUB_LIBRARY, NO_DEVICE, SYSTEM_DRIVER_MISMATCH, COMPAT_NOT_SUPPORTED_ON_DEVICE, and
    // DEVICE_UNAVAILABLE (CUDA 12, outside cust_raw's enum).
    for code in [34, 100, 803, 804, 46] {
        check_init_failure(
            &emulator,
            code,
            |e| matches!(e, BackendError::NoDevice { reason } if reason.contains("nvidia-smi")),
        );
    }
}

#[test]
fn a_driver_code_newer_than_the_bindings_is_reported_with_its_number() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    check_init_failure(&emulator, 226, |e| {
        matches!(
            e,
            BackendError::Driver {
                call: "cuInit",
                code: 226,
                ..
            }
        )
    });
}

#[test]
fn streams_events_and_staging_are_released_with_the_backend() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    let counts = || {
        [
            "live_streams",
            "live_events",
            "live_pinned",
            "live_allocations",
        ]
        .map(|key| (key, emulator.get_count(key)))
    };
    let leaks = emulator.get_count("leak_reports");
    let before = counts();
    let backend = backend();
    let ptr = backend.allocate(4 << 20).unwrap();
    let _streams = [
        backend.create_stream().unwrap(),
        backend.create_stream().unwrap(),
    ];
    let _events = [
        backend.create_event().unwrap(),
        backend.create_event().unwrap(),
    ];
    // A staged upload: two pinned buffers, their stream and events.
    // SAFETY: `ptr` is a live 4 MiB allocation of this backend.
    unsafe { backend.copy_to_device(ptr, &[1u8; 2 << 20]) }.unwrap();
    let during = counts();
    assert!(
        during.iter().zip(&before).all(|(d, b)| d.1 > b.1),
        "{before:?} → {during:?}"
    );
    // SAFETY: allocated above with this size, not used again.
    unsafe { backend.free(ptr, 4 << 20) }.unwrap();
    drop(backend);
    assert_eq!(
        emulator.get_count("leak_reports"),
        leaks,
        "nothing left for the context's release to find"
    );
    assert_eq!(counts(), before, "everything the backend made is released");
}

#[test]
fn out_of_memory_at_the_nth_allocation_changes_nothing_and_the_next_succeeds() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    let backend = backend();
    let vram = Vram::new(
        backend.clone(),
        VramConfig::new(ArenaConfig::new(1 << 20, 0)),
    )
    .unwrap();
    let owner = vram.owner("workspace").unwrap();
    let before = backend.mem_info().unwrap();
    emulator.set("fail_alloc_at", 1);
    match vram.dedicated(owner, Purpose::Workspace, 8 << 20) {
        Err(VramError::Backend {
            source: BackendError::OutOfMemory { requested, .. },
            ..
        }) => assert_eq!(requested, 8 << 20),
        other => panic!("expected the injected out of memory, got {other:?}"),
    }
    assert_eq!(backend.mem_info().unwrap(), before, "nothing taken");
    assert_eq!(vram.tracker().owner_bytes(owner), 0, "nothing counted");
    let buffer = vram.dedicated(owner, Purpose::Workspace, 8 << 20).unwrap();
    assert!(backend.is_resident(buffer.ptr()).unwrap());
}

#[test]
fn a_lost_device_is_reported_and_remembered() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    let backend = backend();
    let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(1 << 20, 1 << 20))).unwrap();
    let owner = vram.owner("actor").unwrap();
    emulator.set("device_lost_after", 0);
    let err = vram
        .arena()
        .alloc_static(owner, Purpose::ModelWeights, 4096)
        .and_then(|region| vram.arena().upload(&region, 0, &[1; 64]))
        .unwrap_err();
    assert!(vram.device_lost().is_some(), "remembered: {err}");
    emulator.set("reset", 0);
    assert!(
        vram.arena().verify_residency().is_err(),
        "later calls are refused without reaching the driver"
    );
}

#[test]
fn deferred_work_runs_only_when_waited_for() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    emulator.set("deferred", 1);
    let backend = backend();
    let ptr = backend.allocate(1 << 20).unwrap();
    let stream = backend.create_stream().unwrap();
    let event = backend.create_event().unwrap();
    assert!(backend.event_done(event).unwrap(), "never recorded: done");
    // SAFETY: `ptr` is a live 1 MiB allocation, freed only after the stream is synchronized.
    unsafe { backend.memset_async(stream, ptr, 0x77, 1 << 20) }.unwrap();
    backend.record_event(event, stream).unwrap();
    let mut back = [0u8; 16];
    // SAFETY: as above; reading without waiting is allowed, only its content is unspecified.
    unsafe { backend.copy_from_device(ptr, &mut back) }.unwrap();
    assert_eq!(back, [0; 16], "queued work has not run: nothing waited");
    assert!(
        !backend.event_done(event).unwrap(),
        "first query: not ready"
    );
    backend.synchronize_stream(stream).unwrap();
    assert!(backend.event_done(event).unwrap());
    // SAFETY: the stream is done.
    unsafe { backend.copy_from_device(ptr, &mut back) }.unwrap();
    assert_eq!(back, [0x77; 16]);
    // SAFETY: allocated above, the stream is done, not used again.
    unsafe { backend.free(ptr, 1 << 20) }.unwrap();
}

#[test]
fn events_follow_the_drivers_documented_answers() {
    let Some(_emulator) = Emulator::get() else {
        return;
    };
    let backend = backend();
    let stream = backend.create_stream().unwrap();
    let (start, end) = (
        backend.create_event().unwrap(),
        backend.create_event().unwrap(),
    );
    match backend.event_elapsed(start, end) {
        Err(BackendError::Driver { code: 400, .. }) => {}
        other => panic!("never recorded: expected CUDA_ERROR_INVALID_HANDLE, got {other:?}"),
    }
    backend.record_event(start, stream).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    backend.record_event(end, stream).unwrap();
    backend.synchronize_stream(stream).unwrap();
    let elapsed = backend.event_elapsed(start, end).unwrap();
    // Real timestamps, 20 ms apart on the host: the bound leaves room for the emulator's
    // stream worker being scheduled late on a loaded machine (seen: 12.8 ms with three
    // builds running on two cores), and still fails a constant or zero timestamp.
    assert!(
        elapsed >= std::time::Duration::from_millis(5),
        "real timestamps: {elapsed:?}"
    );
}

#[test]
fn misuse_is_reported_not_silently_done() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    emulator.set("misuse_abort", 0);
    let backend = backend();
    let ptr = backend.allocate(4096).unwrap();
    let reports = || emulator.get_count("misuse_reports");
    let before = reports();
    let mut back = [0u8; 64];
    // SAFETY: deliberately out of contract, on the emulator only (the control symbol was
    // found): it checks every range against its allocations and touches nothing.
    let overrun = unsafe { backend.copy_from_device(ptr.offset(4096 - 32), &mut back) };
    assert!(
        matches!(overrun, Err(BackendError::Driver { code: 1, .. })),
        "{overrun:?}"
    );
    // SAFETY: as above; the first free is in contract.
    unsafe {
        backend.free(ptr, 4096).unwrap();
        let after_free = backend.copy_from_device(ptr, &mut back);
        assert!(after_free.is_err(), "use after free: {after_free:?}");
        assert!(backend.free(ptr, 4096).is_err(), "double free");
    }
    assert_eq!(reports() - before, 3, "each misuse reported once");
}

/// The backend reports the driver's version as the driver gives it, so the layer above can
/// refuse a driver too old for ONNX Runtime's CUDA provider with the figure.
#[test]
fn the_driver_version_is_reported_as_the_driver_gives_it() {
    let Some(emulator) = Emulator::get() else {
        return;
    };
    assert_eq!(backend().driver_version(), Some(13000));
    emulator.set("driver_version", 12040);
    assert_eq!(backend().driver_version(), Some(12040));
}
