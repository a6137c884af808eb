//! LivePortrait for real at a tiny config: the export in `tests/data/liveportrait/tiny/`
//! (written by `data/liveportrait/export_liveportrait.py --config tiny`) run by the video
//! stage's network against the PyTorch modules' goldens (`make_golden.py`): the source's pose
//! and keypoints, each retargeting network, a 4-frame clip (keypoints and frames), the lip
//! ratios from an audio envelope and the seed's natural motion.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::SafeTensors;
use serde_json::Value;
use vortex_models::adapter::{LivePortrait, ModelSpec, adapter_for};
use vortex_models::export::Export;
use vortex_models::liveportrait::network::{
    Drive, LivePortraitNetwork, lip_ratios, natural_motion,
};
use vortex_models::runtime::Runtime;
use vortex_models::stage::Stage;
use vortex_models::weights::WeightSource;
use vortex_registry::ModelRegistry;
use vortex_vram::{ArenaConfig, HostBackend, HostConfig, Purpose, Vram, VramConfig};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/liveportrait")
}

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("tiny_golden.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
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

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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
    let export = Export::open(&dir().join("tiny")).unwrap();
    let backend = Arc::new(HostBackend::new(HostConfig::rtx3060_12gb()));
    let vram = Vram::new(
        backend,
        VramConfig::new(ArenaConfig::new(16 << 20, 128 << 20)),
    )
    .unwrap();
    let spec = ModelSpec {
        budget: 16 << 20,
        weights: WeightSource::Export(export.clone()),
    };
    let registry =
        ModelRegistry::load(vram.arena(), vec![adapter_for(Stage::Video, spec)]).unwrap();
    let weights = registry.get::<LivePortrait>().unwrap().weights().unwrap();
    let mut network = LivePortraitNetwork::new(
        Runtime::get(None).unwrap(),
        &export,
        vram.arena(),
        weights,
        2,
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
