//! `cargo xtask`: the project's own tasks, in Rust, with nothing heavy to compile.
//!
//! - `cargo xtask cuda-stub [DIR]`: writes a stub `libcuda.so` (soname `libcuda.so.1`) that
//!   defines every `cu*` entry point cust_raw declares, each returning CUDA_ERROR_NO_DEVICE,
//!   so the `cuda` feature builds, links and runs (taking the no-device path) without CUDA.
//!   Prints the environment to build with it.
//! - `cargo xtask cuda-emu [DIR]`: writes an emulating `libcuda.so.1` (see `emu.rs`): device
//!   memory behind addresses the host cannot dereference, streams, timed events, pointer
//!   attributes, fault injection, misuse reports. CI runs the cuda-feature tests against it.
//! - `cargo xtask gpu-bundle [DIR]`: the cuda-feature test executables, the benchmark binaries
//!   and `vortex` built against the stub, with `run.sh` that runs them where the NVIDIA driver
//!   is (no Rust toolchain) and writes `report.txt`.
//! - `cargo xtask gpu-check [--out DIR] [--config FILE] [--slots N]`: on a machine with an
//!   NVIDIA GPU, the checks of the CUDA provider inside Vortex's memory (`gpu_check.rs`),
//!   written up in target/gpu-check/report.md and report.json.
//! - `cargo xtask bench [--cuda] [--quick] [--slots N] [--no-criterion]`: the criterion
//!   benchmarks and N end-to-end slots (on the GPU with --cuda when a device answers, else on
//!   the host backend), written up in target/vortex-bench/report.md and report.json.
//! - `cargo xtask soak --slots N [--every K] [--release] [--out DIR]`: N slots back to back
//!   through `vortex soak` at small shapes, sampled every K slots (`soak.rs`); samples.csv and
//!   samples.svg in target/soak/; fails when a series grows after warm-up beyond its band.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod bundle;
mod emu;
mod gpu_check;
mod soak;

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cuda-stub") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target/cuda-stub"));
            let lib = cuda_stub(&dir)?;
            eprintln!("stub written: {}", lib.display());
            println!("CUDA_LIBRARY_PATH={}", dir.display());
            println!("LD_LIBRARY_PATH={}", dir.join("lib64").display());
            Ok(())
        }
        Some("cuda-emu") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target/cuda-emu"));
            let lib = emu::cuda_emu(&dir)?;
            eprintln!("emulator written: {}", lib.display());
            println!("CUDA_LIBRARY_PATH={}", dir.display());
            println!("LD_LIBRARY_PATH={}", dir.join("lib64").display());
            Ok(())
        }
        Some("gpu-bundle") => {
            let dir = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target/gpu-bundle"));
            bundle::gpu_bundle(&dir)
        }
        Some("gpu-check") => {
            let mut options = gpu_check::Options {
                slots: 3,
                ..Default::default()
            };
            let mut rest = args[1..].iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--out" => {
                        options.out = Some(
                            rest.next()
                                .map(PathBuf::from)
                                .context("--out needs a folder, such as --out target/gpu-check")?,
                        )
                    }
                    "--config" => {
                        options.config = Some(rest.next().map(PathBuf::from).context(
                            "--config needs a config.toml, such as one naming full-size exports",
                        )?)
                    }
                    "--slots" => {
                        options.slots = rest
                            .next()
                            .and_then(|n| n.parse().ok())
                            .context("--slots needs a number, such as --slots 3")?
                    }
                    other => bail!(
                        "unknown gpu-check option {other:?}: use --out DIR, --config FILE or --slots N"
                    ),
                }
            }
            gpu_check::gpu_check(&options)
        }
        Some("bench") => {
            let mut options = bench::Options {
                slots: 5,
                ..Default::default()
            };
            let mut rest = args[1..].iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--cuda" => options.cuda = true,
                    "--quick" => options.quick = true,
                    "--no-criterion" => options.no_criterion = true,
                    "--slots" => {
                        options.slots = rest
                            .next()
                            .and_then(|n| n.parse().ok())
                            .context("--slots needs a number, such as --slots 20")?
                    }
                    other => bail!(
                        "unknown bench option {other:?}: use --cuda, --quick, --no-criterion or --slots N"
                    ),
                }
            }
            bench::bench(&options)
        }
        Some("soak") => {
            let mut options = soak::Options {
                slots: 1000,
                every: 100,
                release: false,
                out: None,
            };
            let mut rest = args[1..].iter();
            let number = |v: Option<&String>, what: &str| -> Result<u64> {
                v.and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .with_context(|| {
                        format!("{what} needs a number above zero, such as {what} 300")
                    })
            };
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--slots" => options.slots = number(rest.next(), "--slots")?,
                    "--every" => options.every = number(rest.next(), "--every")?,
                    "--release" => options.release = true,
                    "--out" => {
                        options.out = Some(
                            rest.next()
                                .map(PathBuf::from)
                                .context("--out needs a folder, such as --out target/soak")?,
                        )
                    }
                    other => bail!(
                        "unknown soak option {other:?}: use --slots N, --every K, --release or --out DIR"
                    ),
                }
            }
            soak::soak(&options)
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 cuda-stub [DIR]  write a stub libcuda (default target/cuda-stub) for building --features cuda without CUDA\n  \
                 cuda-emu [DIR]   write an emulating libcuda (default target/cuda-emu) to run the cuda-feature tests without a GPU\n  \
                 gpu-bundle [DIR] build the GPU test, bench and vortex executables into DIR (default target/gpu-bundle) with run.sh\n  \
                 gpu-check [--out DIR] [--config FILE] [--slots N]\n                  \
                 on a machine with an NVIDIA GPU: the CUDA provider's checks, report in target/gpu-check/\n  \
                 bench [--cuda] [--quick] [--slots N] [--no-criterion]\n                  \
                 criterion benchmarks + N end-to-end slots, report in target/vortex-bench/\n  \
                 soak --slots N [--every K] [--release] [--out DIR]\n                  \
                 N slots back to back, resources sampled every K; samples.csv and .svg in target/soak/"
            );
            bail!("no task given, or an unknown one: {:?}", args.first());
        }
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(workspace_root());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Finds cust_raw's bindings through `cargo metadata`.
pub(crate) fn cust_raw_bindings() -> Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--all-features"])
        .output()
        .context("could not run cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout).context("cargo metadata printed non-UTF-8")?;
    let manifest = text
        .split('"')
        .find(|s| s.contains("cust_raw-") && s.ends_with("Cargo.toml"))
        .context("cust_raw is not in the dependency graph: is vortex-vram's cuda feature there?")?;
    let src = Path::new(manifest)
        .parent()
        .context("cust_raw manifest has no folder")?
        .join("src/cuda.rs");
    if !src.is_file() {
        bail!("{} is missing: run `cargo fetch` first", src.display());
    }
    Ok(src)
}

/// Every `cu*` function declared in the bindings.
pub(crate) fn declared_functions(bindings: &str) -> BTreeSet<String> {
    bindings
        .split("pub fn ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            name.starts_with("cu").then_some(name)
        })
        .collect()
}

pub(crate) fn cuda_stub(dir: &Path) -> Result<PathBuf> {
    let bindings_path = cust_raw_bindings()?;
    let bindings = fs::read_to_string(&bindings_path)
        .with_context(|| format!("could not read {}", bindings_path.display()))?;
    let functions = declared_functions(&bindings);
    if functions.len() < 100 {
        bail!(
            "found only {} cu* functions in {}: the bindings changed shape",
            functions.len(),
            bindings_path.display()
        );
    }
    let lib64 = dir.join("lib64");
    fs::create_dir_all(&lib64).with_context(|| format!("could not create {}", lib64.display()))?;
    let mut c = String::from(
        "/* Generated by `cargo xtask cuda-stub`: every CUDA driver entry point that cust_raw\n \
         * declares, each returning CUDA_ERROR_NO_DEVICE (100). Arguments are ignored, which\n \
         * the C calling convention allows. Never install this where a real driver is. */\n",
    );
    for f in &functions {
        c.push_str(&format!("int {f}(void) {{ return 100; }}\n"));
    }
    let source = dir.join("libcuda_stub.c");
    fs::write(&source, c).with_context(|| format!("could not write {}", source.display()))?;
    let so1 = lib64.join("libcuda.so.1");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    run(Command::new(cc)
        .args(["-shared", "-fPIC", "-O1", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(&so1)
        .arg(&source))?;
    let so = lib64.join("libcuda.so");
    let _ = fs::remove_file(&so);
    std::os::unix::fs::symlink("libcuda.so.1", &so)
        .with_context(|| format!("could not link {}", so.display()))?;
    eprintln!(
        "{} stub entry points from {}",
        functions.len(),
        bindings_path.display()
    );
    Ok(so1)
}

#[cfg(test)]
mod tests {
    use super::declared_functions;

    #[test]
    fn finds_each_declared_entry_point_once() {
        let bindings = "extern \"C\" {\n    pub fn cuInit(Flags: c_uint) -> CUresult;\n}\n\
                        extern \"C\" {\n    pub fn cuMemAlloc_v2(dptr: *mut CUdeviceptr) -> CUresult;\n}\n\
                        pub fn helper() {}\nextern \"C\" {\n    pub fn cuInit(Flags: c_uint) -> CUresult;\n}\n";
        let found: Vec<_> = declared_functions(bindings).into_iter().collect();
        assert_eq!(found, ["cuInit", "cuMemAlloc_v2"]);
    }
}
