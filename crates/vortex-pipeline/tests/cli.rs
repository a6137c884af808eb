//! The `vortex` command as a person runs it: JSON log lines on stdout, files under --out,
//! a plan with its SVG, and clear errors for bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Shipped;

fn small_config(dir: &Path) -> PathBuf {
    Shipped::new()
        .with(&[
            // Orchestration tests: the reference audio (any sample rate, no fetch).
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "32"),
            ("buffers.seconds", "2"),
            ("buffers.fps", "4"),
            ("buffers.staging_frames", "2"),
            ("timing.verified_frames", "2"),
            ("timing.cost_profile", "\"zero\""),
        ])
        .write_into(dir)
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vortex-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vortex(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vortex"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_logs_json_lines_and_writes_slot_files() {
    let dir = tempdir("run");
    let config = small_config(&dir);
    let out = dir.join("out");
    let output = vortex(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--slots",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("reference implementations"))
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with("model loaded"))
            .count(),
        5
    );
    assert_eq!(messages.iter().filter(|m| **m == "slot done").count(), 2);
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.starts_with("stage done"))
            .count(),
        10
    );
    assert!(lines.iter().any(|l| {
        l["snapshot"]
            .as_str()
            .is_some_and(|s| s.contains("after_load"))
    }));
    for name in ["actor.png", "audio.wav", "video.y4m"] {
        let file = out.join("slot-0002").join(name);
        assert!(
            file.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "{} missing",
            file.display()
        );
    }
    let png = std::fs::read(out.join("slot-0001/actor.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let wav = std::fs::read(out.join("slot-0001/audio.wav")).unwrap();
    assert_eq!(wav.len(), 44 + 2 * 2 * 24_000);
    let y4m = std::fs::read(out.join("slot-0001/video.y4m")).unwrap();
    assert!(y4m.starts_with(b"YUV4MPEG2 W32 H32 F4:1"));
    assert_eq!(
        y4m.len(),
        "YUV4MPEG2 W32 H32 F4:1 Ip A1:1 C444\n".len() + 8 * (6 + 3 * 32 * 32)
    );
    for needle in ["2 slots, 2 ok, 0 failed", "P50 ms", "VRAM tracked before"] {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
}

#[test]
fn plan_prints_both_plans_and_draws_the_layout() {
    let dir = tempdir("plan");
    let svg = dir.join("plan.svg");
    let output = vortex(&["plan", "--svg", svg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("10.96 GB") && stderr.contains("critical path 14.30 s"),
        "{stderr}"
    );
    let drawn = std::fs::read_to_string(svg).unwrap();
    assert!(drawn.starts_with("<svg") && drawn.contains("flux") && drawn.contains("hard 11.50 GB"));
}

#[test]
fn bad_input_fails_with_what_to_change() {
    let dir = tempdir("bad");
    let config = dir.join("config.toml");
    std::fs::write(&config, "[vram]\nsoft_limit = 11\n").unwrap();
    let output = vortex(&["--config", config.to_str().unwrap(), "plan"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("config.toml"),
        "{stderr}"
    );
    let output = vortex(&["--config", "/nonexistent.toml", "run"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent.toml"));
    let output = vortex(&["run", "--slots", "zero"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'zero'"));
}
