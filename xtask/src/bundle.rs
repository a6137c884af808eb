//! `cargo xtask gpu-bundle [DIR]`: the cuda-feature test executables, the benchmark binaries
//! and the `vortex` binary built here (against the stub libcuda), in one folder with a script
//! that runs them on a machine that has the NVIDIA driver and no Rust toolchain.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::{cargo, cuda_stub, workspace_root};

const RUN_SH: &str = r##"#!/usr/bin/env bash
# Runs Vortex's GPU checks with the real driver's libcuda.so.1 (no Rust toolchain needed) and
# writes report.txt beside this script. Usage: ./run.sh [SLOTS]
set -u
cd "$(dirname "$0")"
unset LD_LIBRARY_PATH
slots="${1:-20}"
report=report.txt
: > "$report"
say() { printf '%s\n' "$*" | tee -a "$report"; }
say "# Vortex GPU bundle report"
say "date: $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$report" || say "nvidia-smi: not found"
failed=0
for t in tests/*; do
  say ""
  say "== $t"
  ./"$t" --test-threads=1 --nocapture 2>&1 | tee -a "$report"
  status=${PIPESTATUS[0]}
  say "exit status $status"
  [ "$status" -eq 0 ] || failed=$((failed + 1))
done
say ""
say "== vortex run --slots $slots --backend cuda"
./vortex --config config.toml run --slots "$slots" --backend cuda --summary slot-cuda.json > vortex-cuda.log 2>> "$report"
status=$?
say "exit status $status"
[ "$status" -eq 0 ] || failed=$((failed + 1))
[ -f slot-cuda.json ] && cat slot-cuda.json >> "$report"
for b in benches/*; do
  say ""
  say "== $b (host-side benchmarks on this machine's CPU)"
  ./"$b" --bench --warm-up-time 1 --measurement-time 2 2>&1 | grep -E '^[a-z]|time:' | tee -a "$report"
done
say ""
say "failed steps: $failed"
exit "$failed"
"##;

/// Builds with `--message-format=json` and returns (target name, executable) pairs of the
/// artifacts whose target kind is `kind` (`test`, `bench` or `bin`). Debug info is left out:
/// the bundle has to travel.
fn executables(args: &[&str], kind: &str, stub: &Path) -> Result<Vec<(String, PathBuf)>> {
    let output = cargo()
        .args(args)
        .args(["--message-format=json"])
        .env("CUDA_LIBRARY_PATH", stub)
        .env("CARGO_PROFILE_BENCH_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not run cargo")?;
    if !output.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut found = Vec::new();
    let kind = format!("\"kind\":[\"{kind}\"]");
    for line in text
        .lines()
        .filter(|l| l.contains("\"executable\":\"") && l.contains(&kind))
    {
        let field = |key: &str| {
            let start = line.find(key)? + key.len();
            let rest = &line[start..];
            Some(rest[..rest.find('"')?].to_owned())
        };
        if let (Some(name), Some(exe)) = (field("\"name\":\""), field("\"executable\":\"")) {
            found.push((name, PathBuf::from(exe)));
        }
    }
    Ok(found)
}

pub fn gpu_bundle(dir: &Path) -> Result<()> {
    let root = workspace_root();
    let stub = root.join("target/cuda-stub");
    cuda_stub(&stub)?;
    let _ = fs::remove_dir_all(dir);
    for sub in ["tests", "benches"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let tests = executables(
        &[
            "test",
            "--release",
            "-p",
            "vortex-vram",
            "-p",
            "vortex-pipeline",
            "--features",
            "vortex-pipeline/cuda",
            "--test",
            "cuda",
            "--test",
            "backend_conformance",
            "--test",
            "cuda_emulator",
            "--no-run",
        ],
        "test",
        &stub,
    )?;
    let benches = executables(&["bench", "-p", "vortex-bench", "--no-run"], "bench", &stub)?;
    let bins = executables(
        &[
            "build",
            "--release",
            "-p",
            "vortex-pipeline",
            "--features",
            "cuda",
            "--bin",
            "vortex",
        ],
        "bin",
        &stub,
    )?;
    let mut copied = 0;
    for (sub, list) in [("tests", &tests), ("benches", &benches)] {
        for (name, exe) in list {
            let crate_dir = exe
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.rsplit_once('-'))
                .map_or(name.clone(), |(stem, _)| stem.to_owned());
            let unique = format!("{crate_dir}-{}", copied);
            fs::copy(exe, dir.join(sub).join(unique))?;
            copied += 1;
        }
    }
    let (_, vortex) = bins
        .iter()
        .find(|(n, _)| n == "vortex")
        .context("the vortex binary was not built")?;
    fs::copy(vortex, dir.join("vortex"))?;
    // The GPU machine reaches no package registry (nothing to fetch Kokoro's parts or ONNX
    // Runtime with), and the int8 Kokoro graph is a CPU graph whose weights must be host
    // memory: the bundle runs the reference audio there.
    let config = fs::read_to_string(root.join("config.toml"))?;
    let network = "weights = \"kokoro-82m-int8\"";
    anyhow::ensure!(
        config.contains(network),
        "config.toml has no `{network}` line to replace for the bundle"
    );
    fs::write(
        dir.join("config.toml"),
        config.replace(
            network,
            "weights = \"synthetic\"  # gpu-bundle: no registry to fetch the network from",
        ),
    )?;
    fs::write(dir.join("run.sh"), RUN_SH)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755))?;
    }
    eprintln!(
        "bundle in {}: {} test and {} bench executables, vortex, config.toml, run.sh (writes report.txt)",
        dir.display(),
        tests.len(),
        benches.len()
    );
    Ok(())
}
