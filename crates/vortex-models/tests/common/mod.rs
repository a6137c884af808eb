//! What the network tests share: the committed tiny exports loaded into an arena, and reading
//! their Python goldens.

#![allow(dead_code)] // each test file uses a different part of it

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use vortex_models::adapter::{ModelSpec, adapter_for};
use vortex_models::export::Export;
use vortex_models::stage::Stage;
use vortex_models::weights::{WeightSource, resident_bytes};
use vortex_registry::ModelRegistry;
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

/// `tests/data/NAME` (`clip`, `flux`, `liveportrait`).
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `tests/data/NAME/tiny_golden.json`.
pub fn golden(name: &str) -> Value {
    let path = data(name).join("tiny_golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON array of integers.
pub fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// The largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The export in `dir` loaded as `stage`'s model into a host backend's arena with `scratch`
/// bytes of scratch.
pub fn loaded(stage: Stage, dir: &Path, scratch: u64) -> (Export, Vram, ModelRegistry) {
    let export = Export::open(dir).unwrap();
    let weights = resident_bytes(&export.resident_layout());
    loaded_within(stage, dir, scratch, weights + (1 << 20))
}

/// [`loaded`] under a model budget of `budget` bytes (the arena: the budget and a MiB).
pub fn loaded_within(
    stage: Stage,
    dir: &Path,
    scratch: u64,
    budget: u64,
) -> (Export, Vram, ModelRegistry) {
    let export = Export::open(dir).unwrap();
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(budget + (1 << 20), scratch)),
    )
    .unwrap();
    let spec = ModelSpec {
        budget,
        weights: WeightSource::Export(export.clone()),
    };
    let registry = ModelRegistry::load(vram.arena(), vec![adapter_for(stage, spec)]).unwrap();
    (export, vram, registry)
}
