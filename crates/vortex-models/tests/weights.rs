//! Weights: fixtures written by Python's safetensors package load and match their layouts;
//! the corpus of bad files gives clear errors naming the file and tensor, never a panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use vortex_models::clip::ClipConfig;
use vortex_models::flux::{FluxConfig, Packing};
use vortex_models::kokoro::KokoroConfig;
use vortex_models::layout::{Layout, WeightDtype};
use vortex_models::liveportrait::LivePortraitConfig;
use vortex_models::weights::{WeightError, WeightFile, WeightSource, load, resident_bytes, stamp};
use vortex_registry::{LoadContext, LoadError, Model, ModelRegistry};
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Vram, VramConfig};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The scaled-down layouts the fixtures hold.
fn fixtures() -> Vec<(&'static str, Layout)> {
    vec![
        ("tiny_clip", ClipConfig::TINY.layout(WeightDtype::F16)),
        (
            "tiny_flux_q4",
            FluxConfig::TINY.layout(Packing::MatMulNBits {
                block: 16,
                float: WeightDtype::F16,
            }),
        ),
        ("tiny_kokoro", KokoroConfig::TINY.layout(WeightDtype::F16)),
        (
            "tiny_liveportrait",
            LivePortraitConfig::TINY.layout(WeightDtype::F16),
        ),
    ]
}

#[test]
fn fixture_layouts_are_current() {
    for (name, layout) in fixtures() {
        let path = data().join(format!("{name}.layout.json"));
        let generated = serde_json::to_value(&layout).unwrap();
        if std::env::var_os("VORTEX_WRITE_LAYOUTS").is_some() {
            std::fs::write(&path, serde_json::to_string_pretty(&generated).unwrap()).unwrap();
        }
        let stored: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            stored, generated,
            "{name}: regenerate the fixtures (tests/data/make_fixtures.py)"
        );
    }
}

#[test]
fn python_written_fixtures_load_with_their_bytes() {
    for (name, layout) in fixtures() {
        let path = data().join(format!("{name}.safetensors"));
        let file = WeightFile::open(&path, &layout).unwrap();
        for (t, spec) in layout.tensors.iter().enumerate() {
            let bytes = file.tensor(&spec.name).unwrap();
            assert_eq!(bytes.len() as u64, spec.bytes());
            let expected = (0..bytes.len()).map(|k| ((7 * k + 13 * t) % 256) as u8);
            assert!(
                bytes.iter().copied().eq(expected),
                "{name}: {} differs",
                spec.name
            );
        }
    }
}

/// A model that loads the image tower of the tiny CLIP from a source.
struct TinyClip(
    WeightSource,
    Option<vortex_models::weights::ResidentWeights>,
);

impl Model for TinyClip {
    fn name(&self) -> &str {
        "clip_b"
    }
    fn budget(&self) -> u64 {
        1 << 20
    }
    fn weight_bytes(&self) -> u64 {
        ClipConfig::TINY.vision_layout(WeightDtype::F16).bytes()
    }
    fn load(&mut self, ctx: &mut LoadContext<'_>) -> Result<(), LoadError> {
        let checkpoint = ClipConfig::TINY.layout(WeightDtype::F16);
        let tower = ClipConfig::TINY.vision_layout(WeightDtype::F16);
        self.1 = Some(load(ctx, &checkpoint, &tower, &self.0)?);
        Ok(())
    }
}

fn vram() -> Vram {
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    Vram::new(backend, VramConfig::new(ArenaConfig::new(1 << 20, 0))).unwrap()
}

#[test]
fn the_image_tower_lands_in_the_arena_byte_for_byte() {
    let vram = vram();
    let path = data().join("tiny_clip.safetensors");
    let registry = ModelRegistry::load(
        vram.arena(),
        vec![Box::new(TinyClip(WeightSource::File(path.clone()), None))],
    )
    .unwrap();
    let model = registry.get::<TinyClip>().unwrap();
    let resident = model.1.as_ref().unwrap();
    let checkpoint = ClipConfig::TINY.layout(WeightDtype::F16);
    let file = WeightFile::open(&path, &checkpoint).unwrap();
    for spec in &resident.layout.tensors {
        let mut back = vec![0u8; spec.bytes() as usize];
        vram.arena()
            .download(
                &resident.region,
                resident.offset(&spec.name).unwrap(),
                &mut back,
            )
            .unwrap();
        assert_eq!(back, file.tensor(&spec.name).unwrap(), "{}", spec.name);
    }
    assert_eq!(
        registry.loaded()[0].measured,
        resident_bytes(&resident.layout)
    );
}

#[test]
fn synthetic_weights_are_deterministic_from_the_seed() {
    let read = |seed| {
        let vram = vram();
        let registry = ModelRegistry::load(
            vram.arena(),
            vec![Box::new(TinyClip(WeightSource::Synthetic { seed }, None))],
        )
        .unwrap();
        let resident = registry.get::<TinyClip>().unwrap().1.clone().unwrap();
        let spec = &resident.layout.tensors[1];
        let mut head = vec![0u8; 64];
        vram.arena()
            .download(
                &resident.region,
                resident.offset(&spec.name).unwrap(),
                &mut head,
            )
            .unwrap();
        assert_eq!(head, stamp(seed, spec));
        head
    };
    assert_eq!(read(7), read(7));
    assert_ne!(read(7), read(8));
}

#[test]
fn the_bad_file_corpus_gives_clear_errors() {
    let layout = ClipConfig::TINY.layout(WeightDtype::F16);
    let cases = [
        ("truncated", "does not match the header"),
        ("empty", "header too small"),
        ("header_past_end", "invalid header length"),
        ("header_too_large", "header too large"),
        ("not_json", "invalid JSON"),
        ("not_utf8", "invalid UTF-8"),
        ("overlapping_offsets", "data offsets overlap"),
        ("offsets_past_end", "does not match the header"),
        ("wrong_dtype", "stored as U8, expected F16"),
        ("wrong_shape", "has shape"),
        ("duplicate_name", "named twice in the header"),
        ("missing_tensor", "missing from the file"),
        (
            "unexpected_tensor",
            "tensor `extra.weight` not part of this model's checkpoint",
        ),
    ];
    let on_disk = std::fs::read_dir(data().join("bad")).unwrap().count();
    assert_eq!(
        on_disk,
        cases.len(),
        "every corpus file has an expected error here"
    );
    for (name, fragment) in cases {
        let path = data().join(format!("bad/{name}.safetensors"));
        let err = WeightFile::open(&path, &layout).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(fragment),
            "{name}: {message:?} lacks {fragment:?}"
        );
        assert!(
            message.contains(&format!("{name}.safetensors")),
            "{name}: names the file: {message}"
        );
        if let WeightError::Tensor { tensor, .. } = &err {
            assert!(message.contains(&format!("`{tensor}`")));
        }
        // Through the registry it fails the load, names the model and releases everything.
        let vram = vram();
        let result = ModelRegistry::load(
            vram.arena(),
            vec![Box::new(TinyClip(WeightSource::File(path), None))],
        );
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("loading model `clip_b` failed")
                && err.contains("weights = \"synthetic\""),
            "{err}"
        );
        assert_eq!(vram.tracker().allocated(), 0);
    }
}

#[test]
fn a_missing_file_says_so() {
    let err = WeightFile::open(
        Path::new("/nonexistent/clip.safetensors"),
        &ClipConfig::TINY.layout(WeightDtype::F16),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read weights file /nonexistent/clip.safetensors"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any corruption of a good file gives Ok or a clear error: never a panic, never a read
    /// past the mapping.
    #[test]
    fn corrupted_files_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<Option<usize>>()) {
        let good = std::fs::read(data().join("tiny_clip.safetensors")).unwrap();
        let mut bytes = good.clone();
        for (at, value) in edits {
            // Bias edits toward the header, where they matter most.
            let at = if at % 2 == 0 { at % 600.min(bytes.len()) } else { at % bytes.len() };
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let dir = std::env::temp_dir().join(format!("vortex-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fuzz.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let layout = ClipConfig::TINY.layout(WeightDtype::F16);
        if let Err(err) = WeightFile::open(&path, &layout) {
            prop_assert!(err.to_string().contains("fuzz.safetensors"));
        }
    }
}

#[test]
fn a_folder_or_a_fifo_as_weights_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("vortex-notfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("weights.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    let layout =
        vortex_models::clip::ClipConfig::TINY.layout(vortex_models::layout::WeightDtype::F16);
    let mut paths = vec![dir.clone()];
    if made.is_ok_and(|s| s.success()) {
        paths.push(fifo);
    }
    for path in paths {
        let err = WeightFile::open(&path, &layout).unwrap_err().to_string();
        assert!(
            err.contains("not a regular file"),
            "{}: {err}",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tensor_whose_offsets_disagree_with_its_shape_is_named() {
    let layout = ClipConfig::TINY.layout(WeightDtype::F16);
    let first = &layout.tensors[0];
    // One tensor, F16 of its shape, but with offsets two bytes short of it.
    let bytes = first.bytes();
    let header = format!(
        r#"{{"{}":{{"dtype":"F16","shape":{:?},"data_offsets":[0,{}]}}}}"#,
        first.name,
        first.shape,
        bytes - 2
    );
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.resize(file.len() + bytes as usize - 2, 0);
    let path =
        std::env::temp_dir().join(format!("vortex-offsets-{}.safetensors", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let err = WeightFile::open(&path, &layout).unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains(&format!("tensor `{}`", first.name)), "{err}");
    assert!(err.contains("offsets"), "{err}");
}

#[test]
fn float_conversions_on_load_are_halfs() {
    use vortex_models::weights::convert;
    let values = [
        0.0f32,
        -0.0,
        1.0,
        -2.5,
        65504.0,
        1e-8,
        3.140625,
        f32::INFINITY,
    ];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    for (dtype, narrow) in [
        (
            WeightDtype::BF16,
            convert(&f32_bytes, WeightDtype::F32, WeightDtype::BF16).unwrap(),
        ),
        (
            WeightDtype::F16,
            convert(&f32_bytes, WeightDtype::F32, WeightDtype::F16).unwrap(),
        ),
    ] {
        assert_eq!(narrow.len(), 2 * values.len());
        let back = convert(&narrow, dtype, WeightDtype::F32).unwrap();
        for (k, v) in values.iter().enumerate() {
            let got = f32::from_le_bytes(back[4 * k..4 * k + 4].try_into().unwrap());
            let want = match dtype {
                WeightDtype::BF16 => half::bf16::from_f32(*v).to_f32(),
                _ => half::f16::from_f32(*v).to_f32(),
            };
            assert_eq!(got.to_bits(), want.to_bits(), "{dtype:?} {v}");
        }
    }
    // Fixed bit patterns (IEEE 754 / bfloat16 by hand, not through `half`): 3.140625 is
    // 0x4049 in bf16 and 0x4248 in f16; 65504, f16's largest, is 0x7BFF; -2.5 is 0xC020 in
    // bf16 and 0xC100 in f16.
    let bits = |bytes: Vec<u8>| -> Vec<u16> {
        bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    };
    let picked: Vec<u8> = [3.140625f32, 65504.0, -2.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bf = bits(convert(&picked, WeightDtype::F32, WeightDtype::BF16).unwrap());
    assert_eq!(bf, [0x4049, 0x4780, 0xC020]);
    let h = bits(convert(&picked, WeightDtype::F32, WeightDtype::F16).unwrap());
    assert_eq!(h, [0x4248, 0x7BFF, 0xC100]);
    let back = convert(&[0x49, 0x40], WeightDtype::BF16, WeightDtype::F32).unwrap();
    assert_eq!(back, 3.140625f32.to_le_bytes());
    // bf16 keeps f32's exponent: 1e-8 survives; f16 flushes it to zero.
    let bf = convert(&1e-8f32.to_le_bytes(), WeightDtype::F32, WeightDtype::BF16).unwrap();
    assert!(half::bf16::from_le_bytes([bf[0], bf[1]]).to_f32() > 0.0);
    // Round to nearest even: 1 + 2^-8 is halfway between two bf16 values and goes to 1.
    let tie = convert(
        &(1.0f32 + 1.0 / 256.0).to_le_bytes(),
        WeightDtype::F32,
        WeightDtype::BF16,
    );
    assert_eq!(tie.unwrap(), half::bf16::ONE.to_le_bytes());
    // Integers and packed codes are never converted.
    assert_eq!(convert(&[1, 2], WeightDtype::U8, WeightDtype::F32), None);
    assert_eq!(convert(&[0; 4], WeightDtype::F32, WeightDtype::I8), None);
}
