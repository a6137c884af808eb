//! The `vortex` command as a person runs it: JSON log lines on stdout, files under --out,
//! a plan with its SVG, and clear errors for bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Shipped;

fn small_config(dir: &Path) -> PathBuf {
    Shipped::small_slot()
        .with(&[
            // Two seconds of 32² frames: 8 frames in the y4m.
            ("buffers.image_size", "32"),
            ("buffers.seconds", "2"),
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
        "--y4m",
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
    // The snapshot's figures are fields of the log line, not a JSON document in a string.
    assert!(lines.iter().any(|l| {
        l["message"] == "vram snapshot" && l["event"] == "after_load" && l["allocated"].is_u64()
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

/// A JSON value with every number 0, string "" and bool false, and every list cut to its
/// first element: what a reader of the document can rely on.
fn shape(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Null => Value::Null,
        Value::Bool(_) => Value::Bool(false),
        Value::Number(_) => 0.into(),
        Value::String(_) => "".into(),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::Object(members) => {
            Value::Object(members.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// `vortex run --summary FILE`: the run summary as JSON, the same figures the people's summary
/// prints, shaped as the summary `cargo xtask bench` is tested against
/// (xtask/tests/data/run-summary.json).
#[test]
fn the_run_summary_is_what_the_bench_reads() {
    let dir = tempdir("summary");
    let config = small_config(&dir);
    let file = dir.join("summary.json");
    let output = vortex(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--slots",
        "3",
        "--summary",
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        (&summary["slots"], &summary["ok"], &summary["failed"]),
        (&3.into(), &3.into(), &0.into())
    );
    assert_eq!(summary["clip"]["unscored"], 3);
    assert_eq!(summary["clip"]["slots"].as_array().map(Vec::len), Some(3));
    let slot = &summary["slot"];
    let printed = format!(
        "slot     {:>10.1} {:>10.1}   deadline 15000 ms",
        slot["p50_ms"].as_f64().unwrap(),
        slot["p99_ms"].as_f64().unwrap()
    );
    assert!(
        stderr.contains(&printed),
        "{printed:?} missing from:\n{stderr}"
    );
    assert!(stderr.contains("3 slots, 3 ok, 0 failed"), "{stderr}");
    let bench: serde_json::Value =
        serde_json::from_str(include_str!("../../../xtask/tests/data/run-summary.json")).unwrap();
    assert_eq!(
        shape(&summary),
        shape(&bench),
        "the run summary changed shape: write xtask/tests/data/run-summary.json again (see xtask/src/bench.rs's test) and check what `cargo xtask bench` reads"
    );
    let _ = std::fs::remove_dir_all(&dir);
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
    // The time plan: the seed's figures as targets beside the RTX 3060's floors.
    assert!(
        stderr.contains("targets (seed-targets): critical path 14.30 s")
            && stderr.contains("floor on RTX 3060 12 GiB: critical path 27.64 s")
            && stderr.contains("no efficiency can meet this deadline on this card"),
        "{stderr}"
    );

    // --json: the same document on stdout, alone (the log lines go to stderr).
    let output = vortex(&["plan", "--json"]);
    assert!(output.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(doc["vram"]["device_capacity"], 12_884_901_888u64, "{doc}");
    assert_eq!(doc["time"]["critical_path_target_ms"], 14_300.0);
    assert_eq!(doc["time"]["device"]["preset"], "rtx3060-12gb");
    assert_eq!(doc["time"]["floor"]["fits"], false);
    assert_eq!(
        doc["time"]["stages"]["video"]["floor"]["rate"],
        "fp16_acc16"
    );
    assert_eq!(
        doc["implementations"]["audio"]["kind"], "network",
        "{}",
        doc["implementations"]
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"level\":\"INFO\""));
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

/// What decoding a file with the ffmpeg Vortex encodes with says about it (imageio-ffmpeg
/// ships no ffprobe).
#[derive(Debug)]
struct Probe {
    /// The container's stream lines (`Stream #0:0…: Video: h264 (High) …, yuv420p(tv, …)`).
    streams: Vec<String>,
    /// Video frames decoded, and the video's length in seconds.
    frames: u64,
    video_seconds: f64,
    /// The audio's length in seconds.
    audio_seconds: f64,
}

fn probe(file: &Path) -> Probe {
    let ffmpeg = vortex_pipeline::output::Ffmpeg::resolve(None).expect("the pinned ffmpeg");
    // One stream decoded to nothing; `-progress` reports what was decoded on stdout.
    let decode = |stream: &str| {
        let output = ffmpeg
            .command()
            .args(["-hide_banner", "-nostdin", "-i"])
            .arg(file)
            .args(["-map", stream, "-f", "null", "-", "-progress", "pipe:1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let progress = String::from_utf8_lossy(&output.stdout).into_owned();
        let last = |key: &str| {
            progress
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_default()
                .to_owned()
        };
        let time = last("out_time");
        let seconds = time.split(':').fold(0.0, |total, part| {
            total * 60.0 + part.parse::<f64>().unwrap_or(0.0)
        });
        (stderr, last("frame").parse().unwrap_or(0), seconds)
    };
    let (stderr, frames, video_seconds) = decode("0:v");
    let (_, _, audio_seconds) = decode("0:a");
    Probe {
        streams: stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("Stream #0:"))
            .map(str::to_owned)
            .collect(),
        frames,
        video_seconds,
        audio_seconds,
    }
}

#[test]
fn run_writes_a_playable_mp4_and_a_manifest_per_slot() {
    let dir = tempdir("mp4");
    // A whole 45 s slot at 24 fps (1,080 frames), on small frames so it encodes in moments.
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "64"),
            ("timing.verified_frames", "2"),
            ("timing.cost_profile", "\"zero\""),
        ])
        .write_into(&dir);
    let out = dir.join("out");
    let output = vortex(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--out",
        out.to_str().unwrap(),
        "--script",
        "Hello.",
        "--seed",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let slot = out.join("slot-0001");
    assert!(!slot.join("video.y4m").exists(), "no raw video by default");
    let probe = probe(&slot.join("video.mp4"));
    let stream = |kind: &str| {
        let found = probe.streams.iter().find(|s| s.contains(kind));
        found.unwrap_or_else(|| panic!("no {kind} stream in {probe:?}"))
    };
    let (video, audio) = (stream(": Video: "), stream(": Audio: "));
    assert!(video.contains(": Video: h264"), "{video}");
    assert!(audio.contains(": Audio: aac"), "{audio}");
    assert_eq!(probe.frames, 1080, "45 s at 24 fps");
    assert!(
        (probe.video_seconds - 45.0).abs() <= 1.0 / 24.0,
        "45 s ± a frame: {probe:?}"
    );
    assert!(
        (probe.audio_seconds - 45.0).abs() <= 1.0 / 24.0,
        "audio 45 s ± a frame: {probe:?}"
    );
    assert!(
        video.contains("yuv420p(tv, bt709"),
        "the colour range is tagged: {video}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(slot.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["recipe"]["script"], "Hello.");
    assert_eq!(manifest["recipe"]["seed"], 5);
    assert_eq!(manifest["implementations"]["actor"]["kind"], "reference");
    assert_eq!(manifest["reference_implementation"], true);
    assert_eq!(
        manifest["speech_sounds"], 0,
        "the reference audio times no sounds"
    );
    assert_eq!(
        manifest["vram_tracked_before"],
        manifest["vram_tracked_after"]
    );
    assert!(manifest["stages_ms"]["video"].as_f64().is_some());
}

#[test]
fn recipes_come_from_a_file_and_bad_ones_are_refused_before_anything_runs() {
    let dir = tempdir("recipes");
    let config = small_config(&dir);
    let out = dir.join("out");
    let jsonl = dir.join("tonight.jsonl");
    std::fs::write(
        &jsonl,
        "{\"slot_id\": 7, \"script\": \"Seven.\"}\n{\"slot_id\": 9, \"script\": \"Nine.\", \"seed\": 3}\n",
    )
    .unwrap();
    let run = |recipe: &Path, out: &Path| {
        vortex(&[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--recipe",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--y4m",
        ])
    };
    let output = run(&jsonl, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (id, seed) in [(7, 7), (9, 3)] {
        let text =
            std::fs::read_to_string(out.join(format!("slot-{id:04}/manifest.json"))).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(manifest["recipe"]["slot_id"], id, "{text}");
        assert_eq!(manifest["recipe"]["seed"], seed, "{text}");
    }
    let toml = dir.join("one.toml");
    std::fs::write(
        &toml,
        "slot_id = 3\nscript = \"Three.\"\nvoice = \"jf_alpha\"\n",
    )
    .unwrap();
    let output = run(&toml, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.join("slot-0003/manifest.json").is_file());

    // Refused, naming the line and the field, before a model is loaded or a file written.
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"slot_id\": 1, \"script\": \"One.\"}\n{\"slot_id\": 2, \"script\": \"Two.\", \"speed\": 2}\n").unwrap();
    let fresh = dir.join("fresh");
    let output = run(&bad, &fresh);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("line 2") && stderr.contains("unknown field `speed`"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("model loaded"));
    assert!(!fresh.exists(), "nothing written");

    // An --out that is a file.
    let file = dir.join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let output = run(&jsonl, &file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--out") && stderr.contains("cannot create the folder"),
        "{stderr}"
    );
}

#[test]
fn operator_errors_say_what_to_change() {
    let dir = tempdir("operator");
    // `vortex plan` with a weights file that is not there fails, naming the key.
    let config = Shipped::new()
        .with(&[("models.clip_b.weights", "\"missing.safetensors\"")])
        .write_into(&dir);
    let output = vortex(&["--config", config.to_str().unwrap(), "plan"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("models.clip_b.weights"), "{stderr}");

    // A weights path that is a folder, on the last model loaded: refused before any model
    // loads, saying what to give instead (a CLIP model reads a folder as an export).
    std::fs::create_dir_all(dir.join("a-folder")).unwrap();
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("models.clip_l.weights", "\"a-folder\""),
        ])
        .write_into(&dir);
    let output = vortex(&["--config", config.to_str().unwrap(), "run"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("models.clip_l.weights")
            && stderr.contains("clip.json")
            && stderr.contains("export_clip.py"),
        "{stderr}"
    );
    let config = Shipped::new()
        .with(&[("models.kokoro.weights", "\"a-folder\"")])
        .write_into(&dir);
    let output = vortex(&["--config", config.to_str().unwrap(), "run"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("kokoro") && stderr.contains("not a regular file"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("not a regular file").count(),
        1,
        "said once: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("model loaded"),
        "checked before loading: {stdout}"
    );

    // Without --config and without ./config.toml, the configuration built in: not a file of
    // the source tree the binary came from.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vortex"))
        .current_dir(&empty)
        .arg("plan")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("built into vortex"), "{stdout}");

    // RUST_LOG=off: no log lines; RUST_LOG=warn: no info lines.
    for (level, expect_info) in [("off", false), ("warn", false), ("info", true)] {
        let output = Command::new(env!("CARGO_BIN_EXE_vortex"))
            .env("RUST_LOG", level)
            .args(["--config", config.to_str().unwrap(), "plan"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout.contains("\"level\":\"INFO\""),
            expect_info,
            "{level}: {stdout}"
        );
    }
}

/// `vortex serve` with 64 file descriptors and 100 silent connections: it does not spin on
/// the failing accepts, and `/health` answers once the silent ones time out.
#[test]
fn serve_under_fd_exhaustion_neither_spins_nor_starves_the_probes() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = tempdir("fds");
    let config = small_config(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_vortex"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--addr",
            &addr,
        ])
        .args([
            "--out",
            dir.join("slots").to_str().unwrap(),
            "--idle-timeout",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let health = |timeout: std::time::Duration| -> Option<String> {
        let mut stream = TcpStream::connect(&addr).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    };
    let mut up = false;
    for _ in 0..200 {
        if health(std::time::Duration::from_secs(1)).is_some_and(|r| r.contains(" 200 ")) {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "vortex serve answered /health");
    let silent: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(
        silent.len() >= 64,
        "more connections than the server has descriptors"
    );
    let cpu = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let ticks = cpu() - before;
    let started = std::time::Instant::now();
    let answer = health(std::time::Duration::from_secs(10));
    let waited = started.elapsed();
    drop(silent);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        ticks < 100,
        "the server used {ticks} clock ticks of CPU in 2 s with its descriptors exhausted: it spins"
    );
    let answer = answer.expect("/health answered behind 100 silent connections");
    assert!(answer.contains(" 200 "), "{answer}");
    eprintln!("/health answered after {waited:?}; server CPU {ticks} ticks in 2 s");
}

/// `vortex doctor` on this machine (the host backend, the CPU provider): every environment
/// check passes, the pipeline starts, a slot is made, each stage is reported with what runs
/// it; `--json` gives the same document; a cache it cannot write fails with what to set.
#[test]
fn doctor_checks_the_machine_and_reports_every_stage() {
    let dir = tempdir("doctor");
    let config = small_config(&dir);
    let output = vortex(&["--config", config.to_str().unwrap(), "doctor", "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let start = stdout.find("{\n").expect("the report");
    let report: serde_json::Value = serde_json::from_str(&stdout[start..]).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["ok"] == true), "{report}");
    for name in [
        "cache",
        "ONNX Runtime",
        "espeak-ng",
        "ffmpeg",
        "the VRAM plan",
        "one slot",
    ] {
        assert!(checks.iter().any(|c| c["name"] == name), "{name}: {report}");
    }
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    assert!(
        stages
            .iter()
            .all(|s| s["plan_ms"].is_number() && s["latency_ms"].is_number())
    );
    // A cache that cannot be written: a failed check that says what to set, exit non-zero.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vortex"))
        .args(["--config", config.to_str().unwrap(), "doctor"])
        .env("VORTEX_CACHE", "/proc/vortex-cache")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("[FAIL] cache") && stderr.contains("set VORTEX_CACHE"),
        "{stderr}"
    );
}
