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

#[tokio::test]
async fn a_hundred_slots_on_the_device_do_not_grow_its_memory() {
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
