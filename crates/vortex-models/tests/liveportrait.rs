//! LivePortrait for real at a tiny config: the export in `tests/data/liveportrait/tiny/`
//! (written by `data/liveportrait/export_liveportrait.py --config tiny`) run by the video
//! stage's network against the PyTorch modules' goldens (`make_golden.py`): the source's pose
//! and keypoints, each retargeting network, a 4-frame clip (keypoints and frames), the lip
//! ratios from an audio envelope and the seed's natural motion.

mod common;

use std::path::PathBuf;
use vortex_runtime::SessionConfig;

use common::{floats, loaded, max_diff};
use safetensors::SafeTensors;
use serde_json::Value;
use vortex_models::adapter::LivePortrait;
use vortex_models::liveportrait::network::{
    Drive, LIP_MAX, LivePortraitNetwork, Mark, lip_ratios, lip_ratios_timed, natural_motion,
    viseme_openness,
};
use vortex_models::stage::Stage;
use vortex_runtime::Runtime;
use vortex_vram::Purpose;

fn dir() -> PathBuf {
    common::data("liveportrait")
}

fn golden() -> Value {
    common::golden("liveportrait")
}

/// A tensor of `tiny_golden.safetensors`.
fn tensor(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(dir().join("tiny_golden.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// With Kokoro's timing the mouth follows the sounds, not just the loudness: at the same
/// energy it is shut for "m", widest for "a", held through a length mark, shut in silence.
#[test]
fn the_mouth_follows_the_sounds_kokoro_says() {
    use vortex_models::compute::{SpeechSound, SpeechTiming};
    // 24 kHz at 24 fps: 1,000 samples a frame. "m a m ˈaː" 4 frames each (the stress mark
    // before the second a, the length mark after it), then a pause.
    let rate = 24_000;
    let sounds: Vec<SpeechSound> = [('m', 0, 4), ('a', 4, 8), ('m', 8, 11), ('ˈ', 11, 12)]
        .into_iter()
        .chain([('a', 12, 14), ('ː', 14, 16), ('.', 16, 20)])
        .map(|(symbol, a, b)| SpeechSound {
            symbol,
            start: a * 1000,
            end: b * 1000,
        })
        .collect();
    let speech = SpeechTiming { sounds };
    // The same loudness for all 16 spoken frames, silence after.
    let samples: Vec<f32> = (0..24_000)
        .map(|i| {
            if i < 16_000 {
                0.5 * ((i % 2) as f32 * 2.0 - 1.0)
            } else {
                0.0
            }
        })
        .collect();
    let lips = lip_ratios_timed(&samples, &speech, rate, 24, 24);
    assert_eq!(lips.len(), 24);
    // Inside each sound (a frame away from its neighbours' blend).
    for f in [1, 2, 9] {
        assert!(lips[f] < 0.01, "m at frame {f}: {}", lips[f]);
    }
    // The stress mark opens for the vowel it stands before, not the m before it.
    assert!(lips[11] > 0.6 * LIP_MAX, "ˈ at frame 11: {}", lips[11]);
    for f in [5, 6, 13, 14] {
        assert!(
            (lips[f] - LIP_MAX).abs() < 1e-6,
            "a at frame {f}: {}",
            lips[f]
        );
    }
    assert!(
        lips[17..].iter().all(|&l| l == 0.0),
        "silence: {:?}",
        &lips[17..]
    );
    // Between an m and an a the mouth is on its way: neither shut nor wide.
    assert!(lips[4] > 0.05 && lips[4] < LIP_MAX, "{}", lips[4]);
    // The energy alone would hold it open through the m's.
    let flat = lip_ratios(&samples, rate, 24, 24);
    assert!(flat[1] > 0.4 && flat[9] > 0.4);
    assert_eq!(viseme_openness('ː'), Err(Mark::Before));
    assert_eq!(viseme_openness('ˈ'), Err(Mark::After));
    assert_eq!(viseme_openness('b'), Ok(0.0));
}

#[test]
fn the_lip_ratios_follow_the_audio_energy_and_the_motion_is_the_seeds() {
    let golden = golden();
    let env = &golden["audio_envelope"];
    let audio = tensor("audio");
    let ratios = lip_ratios(
        &audio,
        env["sample_rate"].as_u64().unwrap(),
        env["fps"].as_u64().unwrap(),
        env["lip_ratio"].as_array().unwrap().len(),
    );
    let want = floats(&env["lip_ratio"]);
    assert!(max_diff(&ratios, &want) < 1e-6, "{ratios:?} vs {want:?}");
    // The mouth opens with the energy: louder frames, wider ratios.
    let energy = floats(&env["rms"]);
    for (i, j) in (0..energy.len()).flat_map(|i| (0..energy.len()).map(move |j| (i, j))) {
        if energy[i] < energy[j] {
            assert!(ratios[i] <= ratios[j], "frame {i} vs {j}");
        }
    }
    assert!(ratios.iter().any(|&r| r > 0.4) && ratios.contains(&0.0));

    let m = &golden["natural_motion"];
    let motion = natural_motion(
        m["seed"].as_u64().unwrap(),
        m["n_frames"].as_u64().unwrap() as usize,
        m["fps"].as_u64().unwrap(),
    );
    let head: Vec<f32> = motion.iter().flat_map(|(h, _)| *h).collect();
    let blink: Vec<f32> = motion.iter().map(|(_, b)| *b).collect();
    assert!(max_diff(&head, &floats(&m["head"])) < 1e-5);
    assert!(max_diff(&blink, &floats(&m["blink"])) < 1e-5);
    assert!(blink.iter().any(|&b| b > 0.5), "a blink within 4 s");
}

#[test]
fn the_source_and_a_driven_clip_match_the_pytorch_modules() {
    let golden = golden();
    let (export, vram, registry) = loaded(Stage::Video, &dir().join("tiny"), 128 << 20);
    let weights = registry.get::<LivePortrait>().unwrap().weights().unwrap();
    let mut network = LivePortraitNetwork::new(
        Runtime::get(None).unwrap(),
        &export,
        vram.arena(),
        weights,
        &SessionConfig::cpu(2),
    )
    .unwrap();
    let arena = vram.arena().clone();
    let owner = vram.owner("liveportrait").unwrap();
    let before = vram.tracker().allocated();

    let src = network.prepare(&arena, owner, &tensor("image")).unwrap();
    let d = max_diff(&src.features, &tensor("feature_3d"));
    assert!(d < 1e-4, "features {d}");
    let s = &golden["source"];
    for (i, key) in ["pitch_deg", "yaw_deg", "roll_deg"].iter().enumerate() {
        let want = s[key].as_f64().unwrap() as f32;
        assert!(
            (src.pose[i] - want).abs() < 1e-3,
            "{key}: {} vs {want}",
            src.pose[i]
        );
    }
    assert!(max_diff(&src.x_s, &floats(&s["x_s"])) < 1e-5, "x_s");

    let clip = &golden["clip"];
    let frames = tensor("clip_frames");
    let per = frames.len() / 4;
    for (i, f) in clip["frames"].as_array().unwrap().iter().enumerate() {
        let head = floats(&f["head"]);
        let drive = Drive {
            lip: f["lip_ratio"].as_f64().unwrap() as f32,
            head: [head[0], head[1], head[2]],
            blink: f["blink"].as_f64().unwrap() as f32,
        };
        let x_d = network
            .driving_keypoints(&arena, owner, &src, drive)
            .unwrap();
        let d = max_diff(&x_d, &floats(&f["x_d"]));
        assert!(d < 1e-5, "frame {i}: x_d {d}");
        let frame = network.render(&arena, owner, &src, &x_d).unwrap();
        let d = max_diff(frame, &frames[i * per..(i + 1) * per]);
        assert!(d < 1e-4, "frame {i}: pixels {d}");
    }
    assert_eq!(vram.tracker().allocated(), before);
    assert_eq!(vram.tracker().purpose_bytes(Purpose::Activations), 0);
}

/// The f16 export (`export_liveportrait.py --config tiny --dtype f16`, in
/// `tests/data/liveportrait/tiny-f16/`): its weights stay as the file holds them (F16, the
/// normalizations' F32) instead of being widened on load, about half the f32 export's bytes,
/// which `f16_resident_bytes` predicts from the f32 one; and on the CPU provider, which lacks
/// f16 kernels for most of its ops, choosing the stage's implementation is refused with what to
/// change (before any session is made).
#[test]
fn an_f16_export_keeps_its_weights_in_16_bits_and_runs_on_the_cuda_provider_only() {
    use vortex_models::choose::{RuntimeSettings, SlotShapes, StageSet};
    use vortex_models::compute::ComputeError;
    use vortex_models::export::{Export, ExportDtype};
    use vortex_models::layout::WeightDtype;
    use vortex_models::weights::resident_bytes;
    use vortex_registry::OutputBuffers;
    use vortex_vram::StreamId;

    let f32_export = Export::open(&dir().join("tiny")).unwrap();
    let f16_dir = dir().join("tiny-f16");
    let f16_export = Export::open(&f16_dir).unwrap();
    assert_eq!(f32_export.dtype(), ExportDtype::F32);
    assert_eq!(f16_export.dtype(), ExportDtype::F16);
    let layout = f16_export.resident_layout();
    let mut by_type = std::collections::BTreeMap::new();
    for t in &layout.tensors {
        *by_type.entry(format!("{:?}", t.dtype)).or_insert(0usize) += 1;
    }
    // 412 tensors; the graphs read all but the batch norms' step counters; the six
    // LayerNormalization's weights and biases (kept float32 by the export) are the F32 ones.
    let f32_names: Vec<&str> = layout
        .tensors
        .iter()
        .filter(|t| t.dtype == WeightDtype::F32)
        .map(|t| t.name.as_str())
        .collect();
    assert!(
        f32_names.iter().all(|n| n.contains("norm")),
        "{f32_names:?}"
    );
    assert!(by_type["F16"] > 10 * f32_names.len(), "{by_type:?}");
    let (f32_bytes, f16_bytes) = (
        resident_bytes(&f32_export.resident_layout()),
        resident_bytes(&layout),
    );
    assert!(
        (f16_bytes as f64) < 0.55 * f32_bytes as f64,
        "{f16_bytes} vs {f32_bytes}"
    );
    let predicted = f32_export.f16_resident_bytes();
    assert!(
        predicted <= f16_bytes && f16_bytes - predicted < 4096,
        "predicted {predicted}, found {f16_bytes}"
    );

    // CLIP's and FLUX's f16 exports (`--dtype f16` of their scripts) open the same way: their
    // weights as the file holds them (FLUX's T5 keeps one Linear in f32, as transformers does).
    for (rel, f32_tensors) in [("clip/tiny-f16", 0), ("flux/tiny-f16", 1)] {
        let export = Export::open(&common::data(rel)).unwrap();
        assert_eq!(export.dtype(), ExportDtype::F16, "{rel}");
        let layout = export.resident_layout();
        let wide = layout
            .tensors
            .iter()
            .filter(|t| t.dtype == WeightDtype::F32)
            .count();
        assert_eq!(wide, f32_tensors, "{rel}");
        assert!(layout.tensors.len() > 50, "{rel}");
    }

    let (_, vram, registry) = common::loaded(Stage::Video, &f16_dir, 64 << 20);
    let buffers = OutputBuffers::seed();
    let streams = vortex_models::stage::StageMap::from_fn(|_| StreamId(0));
    let err = StageSet::choose(
        &registry,
        vram.arena(),
        &RuntimeSettings::default(),
        SlotShapes {
            buffers: &buffers,
            verified_frames: 1,
            streams: &streams,
        },
    )
    .unwrap_err();
    assert!(matches!(err, ComputeError::F16OnCpu { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("tiny-f16")
            && message.contains("device.backend = \"cuda\"")
            && message.contains("--dtype f32"),
        "{message}"
    );
}
