//! LivePortrait for real at a tiny config: the export in `tests/data/liveportrait/tiny/`
//! (written by `data/liveportrait/export_liveportrait.py --config tiny`) run by the video
//! stage's network against the PyTorch modules' goldens (`make_golden.py`): the source's pose
//! and keypoints, each retargeting network, a 4-frame clip (keypoints and frames), the lip
//! ratios from an audio envelope and the seed's natural motion.

mod common;

use std::path::PathBuf;

use common::{floats, loaded, max_diff};
use safetensors::SafeTensors;
use serde_json::Value;
use vortex_models::adapter::LivePortrait;
use vortex_models::liveportrait::network::{
    Drive, LivePortraitNetwork, lip_ratios, natural_motion,
};
use vortex_models::runtime::Runtime;
use vortex_models::stage::Stage;
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
