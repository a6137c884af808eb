//! `cargo xtask gpu-check [--out DIR] [--config FILE] [--slots N]`: the check an operator runs
//! on their card. It builds the cuda-feature GPU tests (linked against the stub libcuda, run
//! against the machine's driver), lets Vortex fetch ONNX Runtime's GPU build and the CUDA 13 /
//! cuDNN 9 wheels into its cache on first use, runs `crates/vortex-pipeline/tests/gpu.rs` on
//! the tiny exports (and, with `--config`, slots of that configuration, such as one naming
//! full-size exports, with `vortex run --backend cuda`), and writes `report.md` and
//! `report.json` in DIR (default `target/gpu-check`).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, cuda_stub, workspace_root};

/// What the caller asked for.
#[derive(Debug, Default)]
pub struct Options {
    /// Where the report goes.
    pub out: Option<PathBuf>,
    /// A configuration whose slots to run on the device too (`vortex run --backend cuda`).
    pub config: Option<PathBuf>,
    /// Slots of that configuration.
    pub slots: u32,
}

/// The log line the CUDA provider writes when it ignores a weight handed over in place.
const IGNORED_WEIGHT: &str = "Cannot use user supplied initializer";

pub fn gpu_check(options: &Options) -> Result<()> {
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/gpu-check"));
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let device = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,driver_version",
            "--format=csv,noheader",
        ])
        .output();
    let device = match device {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => bail!(
            "nvidia-smi did not answer: gpu-check runs on the machine with the NVIDIA GPU and its driver (r580 or newer for CUDA 13)"
        ),
    };
    let stub = workspace_root().join("target/cuda-stub");
    cuda_stub(&stub)?;
    let checks = out.join("checks.jsonl");
    let _ = fs::remove_file(&checks);
    let mut log = String::new();
    let mut steps = Vec::new();
    let mut step = |name: &str, cmd: &mut Command| -> Result<()> {
        eprintln!("$ {cmd:?}");
        let output = cmd
            .env("CUDA_LIBRARY_PATH", &stub)
            .env_remove("LD_LIBRARY_PATH")
            .env("VORTEX_GPU_REPORT", &checks)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("could not start {cmd:?}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprint!("{text}");
        let _ = writeln!(log, "== {name}\n{text}");
        steps.push((name.to_owned(), output.status.success()));
        Ok(())
    };
    step(
        "GPU tests (crates/vortex-pipeline/tests/gpu.rs, tiny exports)",
        cargo().args([
            "test",
            "-p",
            "vortex-pipeline",
            "--features",
            "cuda",
            "--test",
            "gpu",
            "--",
            "--test-threads=1",
            "--nocapture",
        ]),
    )?;
    if let Some(config) = &options.config {
        let summary = out.join("slots.json");
        step(
            &format!("{} slots of {}", options.slots.max(1), config.display()),
            cargo()
                .args([
                    "run",
                    "--release",
                    "-p",
                    "vortex-pipeline",
                    "--features",
                    "cli,cuda",
                    "--bin",
                    "vortex",
                    "--",
                    "--config",
                ])
                .arg(config)
                .args(["run", "--backend", "cuda", "--slots"])
                .arg(options.slots.max(1).to_string())
                .arg("--summary")
                .arg(&summary)
                .arg("--out")
                .arg(out.join("slots")),
        )?;
    }
    fs::write(out.join("log.txt"), &log)?;
    let lines = fs::read_to_string(&checks).unwrap_or_default();
    let (md, json) = report(&device, &steps, &log, &lines);
    fs::write(out.join("report.md"), &md)?;
    fs::write(out.join("report.json"), &json)?;
    eprintln!("\n{md}\nwritten: {}", out.join("report.md").display());
    if steps.iter().any(|(_, ok)| !ok) || log.contains(IGNORED_WEIGHT) {
        bail!(
            "a GPU check failed: see {}",
            out.join("report.md").display()
        );
    }
    Ok(())
}

/// `report.md` and `report.json` from the device line, each step's outcome, the log and the
/// checks' JSON lines.
pub fn report(device: &str, steps: &[(String, bool)], log: &str, checks: &str) -> (String, String) {
    let mut md = String::new();
    let _ = writeln!(md, "# Vortex GPU check\n\ndevice: {device}\n");
    let _ = writeln!(md, "| step | result |\n|---|---|");
    for (name, ok) in steps {
        let _ = writeln!(md, "| {name} | {} |", if *ok { "passed" } else { "FAILED" });
    }
    let tests: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|l| l.strip_prefix("test "))
        .filter_map(|l| l.rsplit_once(" ... "))
        .collect();
    let skipped: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("skipping: "))
        .collect();
    let _ = writeln!(md, "\n| test | result |\n|---|---|");
    for (name, result) in &tests {
        let _ = writeln!(md, "| {name} | {result} |");
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            md,
            "\nSkipped (these prove nothing): {}",
            skipped.join("; ")
        );
    }
    let ignored = log.matches(IGNORED_WEIGHT).count();
    let _ = writeln!(
        md,
        "\n(a) weights read in place: the session log has {ignored} \"{IGNORED_WEIGHT}\" line(s) (must be 0)"
    );
    let _ = writeln!(md, "\n## Figures\n");
    for line in checks.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(md, "- `{line}`");
    }
    let steps_json: Vec<String> = steps
        .iter()
        .map(|(name, ok)| format!("{{\"step\":{},\"passed\":{ok}}}", quote(name)))
        .collect();
    let checks_json: Vec<&str> = checks.lines().filter(|l| !l.trim().is_empty()).collect();
    let json = format!(
        "{{\"device\":{},\"steps\":[{}],\"ignored_weight_lines\":{ignored},\"skipped\":{},\"checks\":[{}]}}\n",
        quote(device),
        steps_json.join(","),
        skipped.len(),
        checks_json.join(",")
    );
    (md, json)
}

/// `s` as a JSON string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_passed_what_skipped_and_counts_ignored_weights() {
        let log = "== GPU tests\nrunning 3 tests\ntest a_weights ... ok\ntest frame_time ... FAILED\nskipping: the CUDA provider's wheels cannot be fetched here\n[W:onnxruntime] Cannot use user supplied initializer with name: (w)\n";
        let checks =
            "{\"check\":\"e_frame_time\",\"figures\":{\"plain\":{\"frames_per_second\":30.0}}}\n";
        let (md, json) = report(
            "NVIDIA GeForce RTX 3060, 12288 MiB, 580.65.06",
            &[("GPU tests".to_owned(), false)],
            log,
            checks,
        );
        assert!(md.contains("| GPU tests | FAILED |"), "{md}");
        assert!(md.contains("| a_weights | ok |") && md.contains("| frame_time | FAILED |"));
        assert!(md.contains("Skipped (these prove nothing)"), "{md}");
        assert!(
            md.contains("has 1 \"Cannot use user supplied initializer\""),
            "{md}"
        );
        assert!(md.contains("frames_per_second"), "{md}");
        assert!(json.contains("\"ignored_weight_lines\":1"), "{json}");
        assert!(json.contains("\"passed\":false") && json.contains("\"skipped\":1"));
        assert!(
            json.starts_with("{\"device\":\"NVIDIA GeForce RTX 3060"),
            "{json}"
        );
    }

    #[test]
    fn strings_are_quoted_as_json() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
