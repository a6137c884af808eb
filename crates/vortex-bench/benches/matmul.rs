//! The machine's peak as ONNX Runtime reaches it: one 1024 × 1024 × 1024 f32 MatMul (2.15
//! GFLOP a call; `data/matmul_1024.onnx`, written by `data/make_matmul.py`) through
//! `vortex_runtime` on the CPU provider with the threads the network benchmarks use (2),
//! activations from the arena's scratch as theirs are. `cargo xtask bench` divides each
//! network's achieved rate (its counted work a call, `vortex-models/data/work/bench_work.json`,
//! over its measured time) by this one's, measured in the same run.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use vortex_runtime::{GraphWeights, Input, Output, Runtime, SessionConfig};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

/// The side of the square matrices.
const N: usize = 1024;

fn matmul(c: &mut Criterion) {
    let runtime = match Runtime::get(None) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("skipping the MatMul benchmark: no ONNX Runtime ({err})");
            return;
        }
    };
    let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/matmul_1024.onnx");
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(1 << 20, 64 << 20)),
    )
    .unwrap();
    let mut graph = runtime
        .graph(&graph, GraphWeights::new(), &SessionConfig::cpu(2))
        .unwrap();
    let owner = vram.owner("matmul").unwrap();
    let arena = vram.arena().clone();
    let a: Vec<f32> = (0..N * N)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let b: Vec<f32> = (0..N * N)
        .map(|i| ((i * 104_729) % 1000) as f32 / 1000.0)
        .collect();
    let mut y = Vec::with_capacity(N * N);
    let shape = [N, N];
    let mut group = c.benchmark_group(format!("matmul/{N}"));
    group.sample_size(20);
    group.bench_function("vortex", |bench| {
        bench.iter(|| {
            graph
                .run(
                    &arena,
                    owner,
                    &[Input::F32("A", &shape, &a), Input::F32("B", &shape, &b)],
                    &mut [Output::F32("Y", &mut y)],
                )
                .unwrap();
            assert_eq!(y.len(), N * N);
        })
    });
    group.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
