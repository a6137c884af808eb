//! A whole slot on the host backend.
//!
//! - `slot/overhead/zero_latency`: the `zero` cost profile and small buffers (16×16, 1 s at
//!   800 Hz, 2 frames), so what is measured is the engine: five reference stages, the joins,
//!   the timeout, the limit check, leak accounting, logs and metrics. Target ≤ 50 µs.
//! - `slot/seed_targets/x0.1`: the `seed-targets` profile at time scale 0.1 on the same
//!   shapes. Its critical path is 1,261.3 ms (2 s ‖ 12 s, then 0.503 s, then 0.055 s ‖ 0.11 s,
//!   all × 0.1); the wall time should be within 2% of it (tokio's timers round each of the
//!   three phases up to the next millisecond).

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use vortex_pipeline::config::Config;
use vortex_pipeline::{Recipe, VortexPipeline};

/// The shipped configuration, compiled in so the benchmark binary runs anywhere.
const SHIPPED: &str = include_str!("../../../config.toml");

fn config(profile: &str, time_scale: &str) -> Config {
    let text = SHIPPED
        .replace("image_size = 512", "image_size = 16")
        .replace("seconds = 45", "seconds = 1")
        .replace("sample_rate = 24000", "sample_rate = 800")
        .replace("fps = 24", "fps = 2")
        .replace("staging_frames = 24", "staging_frames = 1")
        .replace("verified_frames = 8", "verified_frames = 1")
        .replace(
            "cost_profile = \"seed-targets\"",
            &format!("cost_profile = \"{profile}\""),
        )
        .replace("time_scale = 0.8", &format!("time_scale = {time_scale}"))
        // The engine's own overhead: the reference audio, not the network.
        .replace("weights = \"kokoro-82m-int8\"", "weights = \"synthetic\"");
    assert!(!text.contains("kokoro-82m-int8\"\n"), "the edit matched");
    Config::parse(&text, Path::new("config.toml")).unwrap()
}

fn slot(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let recipe = Recipe {
        slot_id: 1,
        seed: 1,
        prompt: "a presenter".to_owned(),
        script: "hello".to_owned(),
        ..Recipe::default()
    };
    let mut run = |group: &str, id: &str, pipeline: &mut VortexPipeline, samples: usize| {
        let mut group = c.benchmark_group(group);
        group.sample_size(samples);
        group.bench_function(id, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    pipeline
                        .generate_slot(&recipe)
                        .await
                        .unwrap()
                        .generation_time_ms
                })
            })
        });
        group.finish();
    };
    let mut zero = VortexPipeline::new(config("zero", "1.0")).unwrap();
    run("slot/overhead", "zero_latency", &mut zero, 100);
    let mut seed = VortexPipeline::new(config("seed-targets", "0.1")).unwrap();
    let critical = seed.time_plan().critical_path.mul_f64(0.1);
    println!(
        "critical path at time scale 0.1: {:.3} ms",
        critical.as_secs_f64() * 1e3
    );
    run("slot/seed_targets", "x0.1", &mut seed, 10);
}

criterion_group!(benches, slot);
criterion_main!(benches);
