//! CLIP's image tower: image embeddings per second for a batch of 8 frames (the slot's
//! verification), Vortex (the exported graph on ONNX Runtime through `ort`, weights in place
//! in the arena, activations from scratch) against Python onnxruntime on the same graph file
//! with the same session settings, and against `transformers`' CLIPModel on torch CPU where
//! torch is installed, all measured in the same run. `clip/NAME/…` time one batch; images a
//! second are 8 over that time.
//!
//! Exports: the directories in `VORTEX_CLIP_EXPORTS` (comma-separated; write full-size ones
//! with `data/clip/export_clip.py --config b32|l14 --out DIR`, random weights are fine for
//! speed), else the tiny test fixture. The onnxruntime baseline installs the pinned wheel into
//! `target/vortex-bench/py`; the torch baseline uses the machine's python3 as it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vortex_runtime::SessionConfig;

use criterion::{Criterion, criterion_group, criterion_main};
use vortex_bench::OutsideArena;
use vortex_bench::python::{self, Worker};
use vortex_models::adapter::{ClipB, ModelSpec, adapter_for};
use vortex_models::clip::network::ClipNetwork;
use vortex_models::clip_text::clip_tokenizer;
use vortex_models::export::{Export, ExportedNetwork};
use vortex_models::stage::Stage;
use vortex_models::weights::{WeightSource, resident_bytes};
use vortex_registry::ModelRegistry;
use vortex_runtime::{Runtime, fetch};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

/// Frames a slot verifies.
const BATCH: usize = 8;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn exports() -> Vec<PathBuf> {
    match std::env::var("VORTEX_CLIP_EXPORTS") {
        Ok(dirs) if !dirs.trim().is_empty() => dirs.split(',').map(PathBuf::from).collect(),
        _ => vec![workspace().join("crates/vortex-models/tests/data/clip/tiny")],
    }
}

fn worker(kind: &str, dir: &Path, site: Option<&Path>) -> Result<Worker, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/clip_worker.py");
    let batch = BATCH.to_string();
    let worker = Worker::start(
        &script,
        &[kind.as_ref(), dir.as_os_str(), batch.as_ref()],
        site,
    )?;
    eprintln!("baseline {kind}: {}", worker.banner);
    Ok(worker)
}

fn clip(c: &mut Criterion) {
    let runtime = match Runtime::get(None) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("skipping the CLIP benchmark: no ONNX Runtime ({err})");
            return;
        }
    };
    let tokenizer = match clip_tokenizer(&fetch::cache_dir()) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("skipping the CLIP benchmark: no tokenizer ({err})");
            return;
        }
    };
    for dir in exports() {
        let export = match Export::open(&dir) {
            Ok(export) => export,
            Err(err) => {
                eprintln!("skipping {}: {err}", dir.display());
                continue;
            }
        };
        let ExportedNetwork::Clip(manifest) = export.network() else {
            eprintln!("skipping {}: not a CLIP export", dir.display());
            continue;
        };
        let name = dir
            .file_name()
            .map_or("clip".into(), |n| n.to_string_lossy().into_owned());
        let weights = resident_bytes(&export.layout());
        let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
        let vram = Vram::new(
            backend,
            VramConfig::new(ArenaConfig::new(weights + (64 << 20), 2 << 30)),
        )
        .unwrap();
        let spec = ModelSpec {
            budget: weights + (2 << 30),
            weights: WeightSource::Export(export.clone()),
        };
        let registry =
            ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::ClipB, spec)]).unwrap();
        let resident = registry.get::<ClipB>().unwrap().weights().unwrap();
        let (network, outside) = OutsideArena::measure(
            || runtime.untracked_bytes().0 as u64,
            || {
                ClipNetwork::new(
                    runtime,
                    "clip_b",
                    &export,
                    vram.arena(),
                    resident,
                    tokenizer.clone(),
                    &SessionConfig::cpu(2),
                )
            },
        );
        let mut network = network.unwrap();
        eprintln!("{}", outside.report(&name, weights));
        let owner = vram.owner("clip_b").unwrap();
        let size = manifest.vision.image_size as usize;
        let pixels: Vec<f32> = (0..BATCH * 3 * size * size)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let dim = manifest.projection_dim as usize;

        let mut group = c.benchmark_group(format!("clip/{name}"));
        group.sample_size(10);
        group.throughput(criterion::Throughput::Elements(BATCH as u64));
        group.bench_function("vortex", |b| {
            b.iter(|| {
                let embeds = network
                    .image_embeddings(vram.arena(), owner, &pixels)
                    .unwrap();
                assert_eq!(embeds.len(), BATCH * dim);
            })
        });
        match python::onnxruntime_site(&workspace())
            .and_then(|site| worker("ort", &dir, Some(&site)))
        {
            Ok(mut python) => {
                group.bench_function("python_onnxruntime", |b| {
                    b.iter(|| assert_eq!(python.run(), BATCH))
                });
            }
            Err(why) => eprintln!("no Python onnxruntime baseline: {why}"),
        }
        match worker("torch", &dir, None) {
            Ok(mut torch) => {
                group.bench_function("transformers_torch", |b| {
                    b.iter(|| assert_eq!(torch.run(), BATCH))
                });
            }
            Err(why) => {
                eprintln!("no torch baseline (python3 needs torch and transformers): {why}")
            }
        }
        group.finish();
    }
}

criterion_group!(benches, clip);
criterion_main!(benches);
