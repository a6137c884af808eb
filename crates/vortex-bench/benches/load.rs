//! Weight loading throughput: a 1 GiB safetensors file in the page cache loaded into the host
//! backend (mapped, checked against its layout, copied tensor by tensor into a fresh arena)
//! against reading the same file into memory with `std::fs::read`, in one criterion group
//! `load/1GiB` with functions `vortex` and `std_read`. Target: vortex ≥ 0.9 of std's speed.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vortex_models::adapter::{Flux, ModelSpec};
use vortex_models::layout::{Layout, WeightDtype};
use vortex_models::weights::WeightSource;
use vortex_registry::{Model, ModelRegistry};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

const TENSORS: u64 = 16;
const TENSOR_BYTES: u64 = 64 << 20;

fn layout() -> Layout {
    let mut layout = Layout::new("bench/1GiB");
    for i in 0..TENSORS {
        layout.push(
            format!("blocks.{i}.weight"),
            WeightDtype::U8,
            &[TENSOR_BYTES],
        );
    }
    layout
}

/// Writes the file once (header by hand: one U8 tensor after another).
fn write_file(path: &Path, layout: &Layout) {
    if path.metadata().map(|m| m.len()).unwrap_or(0) > TENSORS * TENSOR_BYTES {
        return;
    }
    let mut header = String::from("{");
    for (i, t) in layout.tensors.iter().enumerate() {
        let start = i as u64 * TENSOR_BYTES;
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{}\":{{\"dtype\":\"U8\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            t.name,
            TENSOR_BYTES,
            start,
            start + TENSOR_BYTES
        ));
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    for _ in 0..TENSORS * TENSOR_BYTES / chunk.len() as u64 {
        file.write_all(&chunk).unwrap();
    }
    file.flush().unwrap();
}

fn load(c: &mut Criterion) {
    let path = std::env::temp_dir().join("vortex-bench-1GiB.safetensors");
    let layout = layout();
    write_file(&path, &layout);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    // Into the page cache.
    drop(std::fs::read(&path).unwrap());

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(file_bytes));
    group.bench_function("1GiB/vortex", |b| {
        b.iter(|| {
            let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
            let vram = Vram::new(
                backend,
                VramConfig::new(ArenaConfig::new(TENSORS * TENSOR_BYTES, 0)),
            )
            .unwrap();
            let spec = ModelSpec {
                budget: TENSORS * TENSOR_BYTES,
                weights: WeightSource::File(path.clone()),
            };
            let model: Box<dyn Model> =
                Box::new(Flux::with_layouts(spec, layout.clone(), layout.clone()));
            let registry = ModelRegistry::load(vram.arena(), vec![model]).unwrap();
            assert_eq!(registry.loaded()[0].measured, TENSORS * TENSOR_BYTES);
            (registry, vram)
        })
    });
    group.bench_function("1GiB/std_read", |b| {
        b.iter(|| std::hint::black_box(std::fs::read(&path).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
