//! The pipeline on a CUDA device: every tracked region resident, and 100 slots with no growth
//! in the driver's free memory. Skips with a printed reason when no device answers.
#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use common::Shipped;

use vortex_pipeline::config::Config;
use vortex_pipeline::{Recipe, VortexPipeline};
use vortex_vram::{Backend, BackendError, CudaBackend};

fn config() -> Config {
    Shipped::new()
        .with(&[
            // Orchestration tests: the reference audio (any sample rate, no fetch).
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "128"),
            ("buffers.seconds", "4"),
            ("timing.cost_profile", "\"zero\""),
        ])
        .config()
}

/// One pipeline on the device at a time: each reserves most of it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_hundred_slots_on_the_device_do_not_grow_its_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let backend = match CudaBackend::new(0) {
        Ok(backend) => Arc::new(backend),
        Err(BackendError::NoDevice { reason }) => {
            eprintln!("skipping CUDA pipeline test: {reason}");
            return;
        }
        Err(other) => panic!("{other}"),
    };
    let mut pipeline = VortexPipeline::with_backend(config(), backend.clone()).unwrap();
    assert!(
        pipeline
            .vram()
            .arena()
            .verify_residency()
            .unwrap()
            .is_empty(),
        "every region is device memory"
    );
    let recipe = |slot| Recipe {
        slot_id: slot,
        seed: slot,
        prompt: "p".into(),
        script: "hello there".into(),
        ..Recipe::default()
    };
    pipeline.generate_slot(&recipe(0)).await.unwrap(); // first-use allocations of the driver
    let free = backend.mem_info().unwrap().free;
    let tracked = pipeline.vram().tracker().allocated();
    for slot in 1..=100 {
        pipeline.generate_slot(&recipe(slot)).await.unwrap();
    }
    assert_eq!(
        backend.mem_info().unwrap().free,
        free,
        "driver free memory changed over 100 slots"
    );
    assert_eq!(pipeline.vram().tracker().allocated(), tracked);
}

/// `long long vortex_emu_control(const char *key, long long value)`, the emulated driver's
/// control (`cargo xtask cuda-emu`); `None` on the stub or a real driver.
fn emulator_control() -> Option<unsafe extern "C" fn(*const std::ffi::c_char, i64) -> i64> {
    unsafe extern "C" {
        fn dlsym(
            handle: *mut std::ffi::c_void,
            symbol: *const std::ffi::c_char,
        ) -> *mut std::ffi::c_void;
    }
    // SAFETY: RTLD_DEFAULT (null) searches the process's global scope; the name is a
    // NUL-terminated string.
    let symbol = unsafe { dlsym(std::ptr::null_mut(), c"vortex_emu_control".as_ptr()) };
    // SAFETY: the emulator defines `long long vortex_emu_control(const char *, long long)`.
    (!symbol.is_null()).then(|| unsafe {
        std::mem::transmute::<
            *mut std::ffi::c_void,
            unsafe extern "C" fn(*const std::ffi::c_char, i64) -> i64,
        >(symbol)
    })
}

/// A network on a CUDA device whose driver is older than CUDA 13 (ONNX Runtime 1.31's CUDA
/// provider) is refused at start-up with the driver's figure and what to do, before anything
/// is fetched, and the pipeline keeps no device memory. Emulated driver only (its version is
/// set through its control); skipped on the stub and on a real driver.
#[tokio::test]
async fn a_network_on_a_driver_older_than_cuda_13_is_refused_with_its_figure() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(control) = emulator_control() else {
        eprintln!("skipping: not the emulated driver (its version cannot be set)");
        return;
    };
    let set = |key: &std::ffi::CStr, value: i64| {
        // SAFETY: `key` is NUL-terminated and outlives the call; the control only reads it.
        unsafe { control(key.as_ptr(), value) }
    };
    set(c"driver_version", 12040);
    let backend = Arc::new(CudaBackend::new(0).expect("the emulator answers"));
    let export = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vortex-models/tests/data/clip/tiny")
        .canonicalize()
        .unwrap();
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            (
                "models.clip_b.weights",
                &format!("{:?}", export.to_str().unwrap()),
            ),
            ("buffers.image_size", "128"),
            ("buffers.seconds", "4"),
            ("timing.cost_profile", "\"zero\""),
        ])
        .config();
    let err = match VortexPipeline::with_backend(config, backend.clone()) {
        Ok(_) => panic!("a driver older than CUDA 13 was accepted"),
        Err(err) => err.to_string(),
    };
    set(c"reset", 0);
    assert!(
        err.contains("CUDA 12.4") && err.contains("CUDA 13.0") && err.contains("r580"),
        "{err}"
    );
    assert_eq!(
        set(c"live_allocations", 0),
        0,
        "the refused pipeline kept device memory"
    );
}
