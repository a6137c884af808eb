//! Benchmarks of vortex-vram's hot paths, each against a baseline in the same group.
//!
//! - `tracker/record_release/{vortex,mutex_hashmap}/{1,2}`: one record and its release, with 1
//!   or 2 threads doing it at once (time per pair as one thread sees it).
//! - `scratch/alloc_free/{vortex,offset_allocator,system}/{100,10000,100000}`: free one live
//!   allocation and make a new one, with that many allocations live.
//! - `monitor/check_limits`, `monitor/snapshot_10_owners`: an explicit limit check and a
//!   snapshot of ten owners, without I/O.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use vortex_bench::{MutexHashMapTracker, scratch_sizes};
use vortex_vram::{
    ArenaConfig, HostBackend, HostConfig, Limits, Purpose, Vram, VramConfig, VramTracker,
};

/// Runs `work(thread, iters)` on `threads` threads started together; returns the wall time.
fn concurrently(threads: usize, iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (start, work) = (&start, &work);
            s.spawn(move || {
                start.wait();
                work(t, iters);
            });
        }
        start.wait();
        let began = Instant::now();
        // The scope joins every thread before returning.
        began
    })
    .elapsed()
}

fn tracker(c: &mut Criterion) {
    let mut group = c.benchmark_group("tracker/record_release");
    for threads in [1usize, 2] {
        let tracker = VramTracker::new(Limits::seed());
        let owners: Vec<_> = (0..threads)
            .map(|t| tracker.register_owner(&format!("owner{t}")).unwrap())
            .collect();
        group.bench_function(BenchmarkId::new("vortex", threads), |b| {
            b.iter_custom(|iters| {
                concurrently(threads, iters, |t, iters| {
                    for i in 0..iters {
                        let size = 256 + (i & 0xff) * 256;
                        let record = tracker
                            .record(owners[t], Purpose::Scratch, size, size)
                            .unwrap();
                        drop(black_box(record));
                    }
                })
            })
        });
        let baseline = MutexHashMapTracker::default();
        let names: Vec<String> = (0..threads).map(|t| format!("owner{t}")).collect();
        group.bench_function(BenchmarkId::new("mutex_hashmap", threads), |b| {
            b.iter_custom(|iters| {
                concurrently(threads, iters, |t, iters| {
                    for i in 0..iters {
                        let ptr = (t as u64) << 48 | i;
                        let size = 256 + (i & 0xff) * 256;
                        baseline.record(ptr, &names[t], 2, size, size);
                        black_box(baseline.release(ptr));
                    }
                })
            })
        });
    }
    group.finish();
}

fn scratch(c: &mut Criterion) {
    let mut group = c.benchmark_group("scratch/alloc_free");
    group.measurement_time(Duration::from_secs(3));
    for population in [100usize, 10_000, 100_000] {
        let sizes = scratch_sizes(population.max(4096));
        let next = |i: usize| sizes[i % sizes.len()];

        // Vortex: tracked, limit-checked, RAII handles from the arena's scratch region.
        let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
        let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(0, 3_000_000_000))).unwrap();
        let owner = vram.owner("bench").unwrap();
        let arena = vram.arena();
        let mut live: Vec<_> = (0..population)
            .map(|i| {
                Some(
                    arena
                        .alloc_scratch(owner, Purpose::Scratch, next(i))
                        .unwrap(),
                )
            })
            .collect();
        let mut cursor = 0usize;
        group.bench_function(BenchmarkId::new("vortex", population), |b| {
            b.iter(|| {
                let slot = cursor % population;
                cursor += 1;
                // Free one, then allocate its replacement: one pair, population unchanged.
                live[slot] = None;
                live[slot] = Some(
                    arena
                        .alloc_scratch(owner, Purpose::Scratch, next(cursor))
                        .unwrap(),
                );
            })
        });
        drop(live);

        // The bare offset-allocator crate, same units (256 B), no tracking, no lock.
        let mut bare = offset_allocator::Allocator::<u32>::with_max_allocs(
            (3_000_000_000u64 / 256) as u32,
            1 << 18,
        );
        let mut live: Vec<_> = (0..population)
            .map(|i| bare.allocate(next(i).div_ceil(256) as u32).unwrap())
            .collect();
        let mut cursor = 0usize;
        group.bench_function(BenchmarkId::new("offset_allocator", population), |b| {
            b.iter(|| {
                let slot = cursor % population;
                cursor += 1;
                bare.free(live[slot]);
                live[slot] = bare.allocate(next(cursor).div_ceil(256) as u32).unwrap();
            })
        });

        // Rust's global allocator, same sizes.
        let mut live: Vec<Vec<u8>> = (0..population)
            .map(|i| Vec::with_capacity(next(i) as usize))
            .collect();
        let mut cursor = 0usize;
        group.bench_function(BenchmarkId::new("system", population), |b| {
            b.iter(|| {
                let slot = cursor % population;
                cursor += 1;
                live[slot] = Vec::new();
                live[slot] = Vec::with_capacity(next(cursor) as usize);
                black_box(live[slot].as_ptr());
            })
        });
    }
    group.finish();
}

fn monitor(c: &mut Criterion) {
    let mut group = c.benchmark_group("monitor");
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(backend, VramConfig::new(ArenaConfig::new(1 << 30, 1 << 20))).unwrap();
    let mut regions = Vec::new();
    for name in [
        "flux",
        "liveportrait",
        "kokoro",
        "clip_b",
        "clip_l",
        "actor_buffer",
        "audio_buffer",
        "video_buffer",
        "scratch",
        "context",
    ] {
        let owner = vram.owner(name).unwrap();
        regions.push(
            vram.arena()
                .alloc_static(owner, Purpose::ModelWeights, 50 << 20)
                .unwrap(),
        );
    }
    let monitor = vram.monitor();
    group.bench_function("check_limits", |b| {
        b.iter(|| black_box(monitor.check_limits()))
    });
    group.bench_function("snapshot_10_owners", |b| {
        b.iter(|| black_box(monitor.snapshot("bench", Some(1))))
    });
    group.finish();
}

criterion_group!(benches, tracker, scratch, monitor);
criterion_main!(benches);
