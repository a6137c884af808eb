//! LivePortrait's frame rate: one frame of warping + SPADE (the per-frame cost of the video
//! stage), Vortex (the exported graph on ONNX Runtime through `ort`, weights in place in the
//! arena, activations from scratch) against Python onnxruntime on the same graph file with the
//! same session settings, and with onnxruntime's ENABLE_ALL, measured in the same run; and the
//! bytes the sessions' creation put outside the arena.
//!
//! Export: the directory in `VORTEX_LIVEPORTRAIT_EXPORT` (write a full-size one with
//! `data/liveportrait/export_liveportrait.py --config official --out DIR`; random weights are
//! fine for speed), else the tiny test fixture.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vortex_runtime::SessionConfig;

use criterion::{Criterion, criterion_group, criterion_main};
use vortex_bench::python::{self, Worker};
use vortex_bench::{Interleaved, OutsideArena};
use vortex_models::adapter::{LivePortrait, ModelSpec, adapter_for};
use vortex_models::export::Export;
use vortex_models::liveportrait::network::{Drive, LivePortraitNetwork};
use vortex_models::stage::Stage;
use vortex_models::weights::{WeightSource, resident_bytes};
use vortex_registry::ModelRegistry;
use vortex_runtime::Runtime;
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn liveportrait(c: &mut Criterion) {
    let dir = std::env::var("VORTEX_LIVEPORTRAIT_EXPORT").map_or_else(
        |_| workspace().join("crates/vortex-models/tests/data/liveportrait/tiny"),
        PathBuf::from,
    );
    let runtime = match Runtime::get(None) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("skipping the LivePortrait benchmark: no ONNX Runtime ({err})");
            return;
        }
    };
    let export = match Export::open(&dir) {
        Ok(export) => export,
        Err(err) => {
            eprintln!("skipping the LivePortrait benchmark: {err}");
            return;
        }
    };
    let weights = resident_bytes(&export.resident_layout());
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(weights + (64 << 20), 4 << 30)),
    )
    .unwrap();
    let spec = ModelSpec {
        budget: weights + (4 << 30),
        weights: WeightSource::Export(export.clone()),
    };
    let registry =
        ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::Video, spec)]).unwrap();
    let resident = registry.get::<LivePortrait>().unwrap().weights().unwrap();
    let name = dir
        .file_name()
        .map_or("liveportrait".into(), |n| n.to_string_lossy().into_owned());
    let (network, outside) = OutsideArena::measure(
        || runtime.untracked_bytes().0 as u64,
        || {
            LivePortraitNetwork::new(
                runtime,
                &export,
                vram.arena(),
                resident,
                &SessionConfig::cpu(2),
            )
        },
    );
    let mut network = network.unwrap();
    // The sessions run Optimization::NoWeightCopies (no constant folding, no Conv fusions, no
    // NCHWc reorders), so what the runtime allocates outside the arena while they are created
    // should be small next to the weights: this says how much.
    eprintln!("{}", outside.report(&name, weights));
    let arena = vram.arena().clone();
    let owner = vram.owner("liveportrait").unwrap();
    let side = network.frame_size() / 2;
    let image: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let src = network.prepare(&arena, owner, &image).unwrap();
    let drive = Drive {
        lip: 0.3,
        head: [1.0, -2.0, 0.5],
        blink: 0.0,
    };
    let x_d = network
        .driving_keypoints(&arena, owner, &src, drive)
        .unwrap();
    // The baseline draws the same frame: Vortex's inputs, written for it to read.
    let inputs = workspace().join("target/vortex-bench/liveportrait-inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    for (input, values) in [
        ("feature_3d", &src.features[..]),
        ("kp_source", &src.x_s[..]),
        ("kp_driving", &x_d[..]),
    ] {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(inputs.join(format!("{input}.f32")), bytes).unwrap();
    }
    let mut group = c.benchmark_group(format!("liveportrait/{name}/frame"));
    group.sample_size(10);
    group.bench_function("vortex", |b| {
        b.iter(|| {
            network.render(&arena, owner, &src, &x_d).unwrap();
        })
    });
    // Two baselines on the same inputs: the same graph with Vortex's settings (the
    // like-for-like one: its optimizations, denormals as zero), and with onnxruntime's
    // defaults at ENABLE_ALL, which folds and reorders copies of the weights outside any arena
    // and computes denormals (what a Python user gets).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/liveportrait_worker.py");
    for (mode, label) in [
        ("same", "python_onnxruntime"),
        ("all", "python_onnxruntime_enable_all"),
    ] {
        match python::onnxruntime_site(&workspace()).and_then(|site| {
            Worker::start(
                &script,
                &[dir.as_os_str(), inputs.as_os_str(), mode.as_ref()],
                Some(&site),
            )
        }) {
            Ok(mut worker) => {
                eprintln!("baseline: Python onnxruntime {}", worker.banner);
                // The figure the goal is judged by: frames of both in alternation, so the
                // machine's drifting load falls on both alike.
                let rounds = std::env::var("VORTEX_BENCH_ROUNDS")
                    .ok()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(6);
                let pairs = Interleaved::measure(
                    rounds,
                    || network.render(&arena, owner, &src, &x_d).map(drop).unwrap(),
                    || assert_eq!(worker.run(), 1),
                );
                eprintln!("{name} frame: {}", pairs.report("vortex", label));
                group.bench_function(label, |b| b.iter(|| assert_eq!(worker.run(), 1)));
            }
            Err(why) => eprintln!("no Python baseline ({mode}): {why}"),
        }
    }
    group.finish();
}

criterion_group!(benches, liveportrait);
criterion_main!(benches);
