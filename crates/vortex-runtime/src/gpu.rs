//! ONNX Runtime's CUDA provider: its libraries from pinned wheels, checked by hash, kept side
//! by side as ONNX Runtime expects them, and preloaded in dependency order before the runtime
//! starts; a missing driver, a driver older than CUDA 13, or a library that will not load is
//! an error that says what to install.
//!
//! The facts behind the tables (read off the 1.31.1 wheels with `readelf -d`, `nm -D` and
//! `unzip -l`; `/work/notes/gpu-facts.md` in the session that wrote this):
//! - `libonnxruntime_providers_cuda.so` needs `libcublasLt.so.13`, `libcublas.so.13`,
//!   `libcurand.so.10`, `libcudart.so.13` and the driver's `libcuda.so.1`, with no RUNPATH:
//!   they must be loaded (matched by SONAME) before it is. It exports both `GetProvider` and
//!   `CreateEpFactories`, and its build info has no `cuda-plugin-ep=1`: it is the classic
//!   provider, registered with `SessionOptionsAppendExecutionProvider_CUDA_V2`.
//! - It opens cuDNN (`libcudnn.so.9`), cuFFT (`libcufft.so.12`) and NVRTC itself, later, by
//!   name; cuDNN opens its sub-libraries from its own folder. Preloading them by full path
//!   makes those opens find the loaded copies.
//! - ONNX Runtime loads `libonnxruntime_providers_shared.so` and the CUDA provider from the
//!   folder of `libonnxruntime.so`: the three are kept together.
//! - CUDA 13 needs driver r580 or newer (NVIDIA's minor-version compatibility table).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::fetch::{self, FetchError, Wheel};

/// Every GPU wheel is fetched for this Python and platform, so every machine gets the same
/// files (the CUDA provider's library differs between the wheel's Python tags).
const TARGET: Option<(&str, &str)> = Some(("3.11", "manylinux_2_28_x86_64"));

/// The pinned `onnxruntime-gpu` wheel: the same release as the CPU wheel, built for CUDA 13.
pub const ORT_GPU_WHEEL: Wheel = Wheel {
    name: "onnxruntime-gpu",
    version: "1.31.1",
    file: "onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    size: 255_560_985,
    sha256: "e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6",
    target: TARGET,
};

const fn nvidia(
    name: &'static str,
    version: &'static str,
    file: &'static str,
    size: u64,
    sha256: &'static str,
) -> Wheel {
    Wheel {
        name,
        version,
        file,
        size,
        sha256,
        target: TARGET,
    }
}

/// CUDA 13's runtime.
pub const CUDA_RUNTIME: Wheel = nvidia(
    "nvidia-cuda-runtime",
    "13.5.37",
    "nvidia_cuda_runtime-13.5.37-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    2_504_024,
    "df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d",
);
/// NVRTC (cuBLASLt, cuFFT and cuDNN compile kernels with it).
pub const CUDA_NVRTC: Wheel = nvidia(
    "nvidia-cuda-nvrtc",
    "13.5.37",
    "nvidia_cuda_nvrtc-13.5.37-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
    58_185_930,
    "86b4d68058807988b7d9af5b44917a0601e9c337f35ccd657bfb3c759ff8d8bc",
);
/// nvJitLink (cuFFT's dependency).
pub const NVJITLINK: Wheel = nvidia(
    "nvidia-nvjitlink",
    "13.5.37",
    "nvidia_nvjitlink-13.5.37-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
    46_642_491,
    "280d7cb9649704145f074b8dbde500de04ce02d0872e066e20a83c17bcaa93eb",
);
/// cuBLAS and cuBLASLt: needed by the provider, but named by neither of onnxruntime-gpu's
/// extras (they come in only as cuDNN's dependency), so pinned here explicitly.
pub const CUBLAS: Wheel = nvidia(
    "nvidia-cublas",
    "13.10.0.20",
    "nvidia_cublas-13.10.0.20-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
    444_289_903,
    "dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84",
);
/// cuRAND.
pub const CURAND: Wheel = nvidia(
    "nvidia-curand",
    "10.4.5.25",
    "nvidia_curand-10.4.5.25-py3-none-manylinux_2_27_x86_64.whl",
    77_113_015,
    "22bb226a857e5888fe6b54ae465fc4371296bcff13a35f79e19691bcf454f529",
);
/// cuFFT.
pub const CUFFT: Wheel = nvidia(
    "nvidia-cufft",
    "12.5.0.14",
    "nvidia_cufft-12.5.0.14-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    165_072_555,
    "b8be26837a5abad2b5b74f3e92dd29f622a42934b355be0961a48712cbba23ad",
);
/// cuDNN 9 for CUDA 13.
pub const CUDNN: Wheel = nvidia(
    "nvidia-cudnn-cu13",
    "9.28.1.4",
    "nvidia_cudnn_cu13-9.28.1.4-py3-none-manylinux_2_27_x86_64.whl",
    516_817_937,
    "a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec",
);

/// Every wheel the CUDA provider takes its libraries from (about 1.57 GB to download).
pub const GPU_WHEELS: [&Wheel; 8] = [
    &ORT_GPU_WHEEL,
    &CUDA_RUNTIME,
    &CUDA_NVRTC,
    &NVJITLINK,
    &CUBLAS,
    &CURAND,
    &CUFFT,
    &CUDNN,
];

/// A library ONNX Runtime's CUDA provider needs, where it comes from, and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuLibrary {
    /// Its SONAME, the name it is loaded and found by.
    pub soname: &'static str,
    /// The wheel holding it.
    pub wheel: &'static Wheel,
    /// Its path inside the wheel.
    pub member: &'static str,
    /// The libraries it needs loaded first (`DT_NEEDED`, or opened by it at load).
    pub needs: &'static [&'static str],
}

/// The driver's library, which no wheel has: the NVIDIA driver installs it.
pub const DRIVER_LIBRARY: &str = "libcuda.so.1";

const fn lib(
    soname: &'static str,
    wheel: &'static Wheel,
    member: &'static str,
    needs: &'static [&'static str],
) -> GpuLibrary {
    GpuLibrary {
        soname,
        wheel,
        member,
        needs,
    }
}

/// The libraries preloaded before the CUDA provider, dependencies first.
pub const PRELOAD: [GpuLibrary; 17] = [
    lib(
        "libcudart.so.13",
        &CUDA_RUNTIME,
        "nvidia/cu13/lib/libcudart.so.13",
        &[],
    ),
    lib(
        "libnvrtc.so.13",
        &CUDA_NVRTC,
        "nvidia/cu13/lib/libnvrtc.so.13",
        &[],
    ),
    lib(
        "libnvrtc-builtins.so.13.5",
        &CUDA_NVRTC,
        "nvidia/cu13/lib/libnvrtc-builtins.so.13.5",
        &[],
    ),
    lib(
        "libnvJitLink.so.13",
        &NVJITLINK,
        "nvidia/cu13/lib/libnvJitLink.so.13",
        &[],
    ),
    lib(
        "libcublasLt.so.13",
        &CUBLAS,
        "nvidia/cu13/lib/libcublasLt.so.13",
        &["libnvrtc.so.13"],
    ),
    lib(
        "libcublas.so.13",
        &CUBLAS,
        "nvidia/cu13/lib/libcublas.so.13",
        &["libcublasLt.so.13"],
    ),
    lib(
        "libcurand.so.10",
        &CURAND,
        "nvidia/cu13/lib/libcurand.so.10",
        &["libcudart.so.13"],
    ),
    lib(
        "libcufft.so.12",
        &CUFFT,
        "nvidia/cu13/lib/libcufft.so.12",
        &["libnvJitLink.so.13", "libnvrtc.so.13"],
    ),
    lib(
        "libcudnn_graph.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_graph.so.9",
        &[],
    ),
    lib(
        "libcudnn_ops.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_ops.so.9",
        &["libcudnn_graph.so.9"],
    ),
    lib(
        "libcudnn_heuristic.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_heuristic.so.9",
        &["libcudnn_graph.so.9"],
    ),
    lib(
        "libcudnn_adv.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_adv.so.9",
        &["libcudnn_ops.so.9", "libcudnn_graph.so.9"],
    ),
    lib(
        "libcudnn_cnn.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_cnn.so.9",
        &["libcudnn_ops.so.9", "libcudnn_graph.so.9"],
    ),
    lib(
        "libcudnn_engines_precompiled.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9",
        &["libcudnn_graph.so.9"],
    ),
    lib(
        "libcudnn_engines_runtime_compiled.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_engines_runtime_compiled.so.9",
        &["libcudnn_graph.so.9", DRIVER_LIBRARY, "libnvrtc.so.13"],
    ),
    lib(
        "libcudnn_engines_tensor_ir.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn_engines_tensor_ir.so.9",
        &["libcudnn_graph.so.9"],
    ),
    lib(
        "libcudnn.so.9",
        &CUDNN,
        "nvidia/cudnn/lib/libcudnn.so.9",
        &["libcudnn_graph.so.9", "libcudnn_ops.so.9"],
    ),
];

/// What `libonnxruntime_providers_cuda.so` needs loaded before it (its `DT_NEEDED`).
pub const PROVIDER_NEEDS: [&str; 5] = [
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libcurand.so.10",
    "libcudart.so.13",
    DRIVER_LIBRARY,
];

/// ONNX Runtime's three libraries in the GPU wheel, with their SHA-256: kept in one folder,
/// since the runtime loads the other two from its own.
pub const ORT_GPU_MEMBERS: [(&str, &str); 3] = [
    (
        "onnxruntime/capi/libonnxruntime.so.1.31.1",
        "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
    ),
    (
        "onnxruntime/capi/libonnxruntime_providers_shared.so",
        "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
    ),
    (
        "onnxruntime/capi/libonnxruntime_providers_cuda.so",
        "d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137",
    ),
];

/// The oldest driver the CUDA provider runs on, as `cuDriverGetVersion` reports it: CUDA 13.0.
pub const DRIVER_NEEDED: u32 = 13000;

/// Why the CUDA provider's libraries could not be had or loaded.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// A wheel could not be fetched or read.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// No NVIDIA driver on this machine.
    #[error(
        "no NVIDIA driver: {DRIVER_LIBRARY} could not be loaded ({message}); install NVIDIA's driver r580 or newer (CUDA 13), or run the networks on the CPU (device.backend = \"host\")"
    )]
    NoDriver {
        /// What the loader said.
        message: String,
    },
    /// A driver older than CUDA 13.
    #[error(
        "the NVIDIA driver supports CUDA {}.{}, but ONNX Runtime 1.31's CUDA provider needs CUDA {}.{} (driver r580 or newer): update the driver",
        found / 1000, (found % 1000) / 10, DRIVER_NEEDED / 1000, (DRIVER_NEEDED % 1000) / 10
    )]
    DriverTooOld {
        /// What the driver reports (`12040` = CUDA 12.4).
        found: u32,
    },
    /// A library that is not where the resolver put it.
    #[error(
        "{} is missing: fetch the CUDA provider's libraries again (delete {} and start Vortex, or run `vortex doctor`)",
        path.display(), path.parent().map_or_else(String::new, |p| p.display().to_string())
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A library that would not load.
    #[error(
        "cannot load {library} for ONNX Runtime's CUDA provider: {message}; the pinned CUDA 13 libraries must load together (a system CUDA or cuDNN of another version on LD_LIBRARY_PATH can shadow them: unset it)"
    )]
    Load {
        /// The library.
        library: String,
        /// What the loader said.
        message: String,
    },
}

/// Where the resolver put the CUDA provider's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuFiles {
    /// `libonnxruntime.so.1.31.1` of the GPU wheel, beside its two provider libraries.
    pub onnxruntime: PathBuf,
    /// Each of [`PRELOAD`], in order.
    pub libraries: Vec<PathBuf>,
}

impl GpuFiles {
    /// Where the files are (or go) in `cache`, without fetching anything.
    pub fn in_cache(cache: &Path) -> GpuFiles {
        let capi = cache.join(format!("onnxruntime-gpu-{}", ORT_GPU_WHEEL.version));
        let cuda = cache.join("cuda-13");
        GpuFiles {
            onnxruntime: capi.join(file_name(ORT_GPU_MEMBERS[0].0)),
            libraries: PRELOAD
                .iter()
                .map(|l| cuda.join(file_name(l.member)))
                .collect(),
        }
    }

    /// The first file that is not there.
    pub fn missing(&self) -> Option<PathBuf> {
        let capi = self.onnxruntime.parent().unwrap_or(Path::new("."));
        ORT_GPU_MEMBERS
            .iter()
            .map(|(m, _)| capi.join(file_name(m)))
            .chain(self.libraries.iter().cloned())
            .find(|p| !p.is_file())
    }
}

fn file_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

/// The CUDA provider's files in `cache`, fetched from the pinned wheels (with the machine's
/// pip) and unpacked where they are missing. ONNX Runtime's libraries are checked by their
/// own SHA-256; the NVIDIA ones come from wheels checked by theirs.
pub fn resolve(cache: &Path) -> Result<GpuFiles, GpuError> {
    let files = GpuFiles::in_cache(cache);
    let hint = "the CUDA provider's libraries are unpacked (see README: the GPU path)";
    let capi = files.onnxruntime.parent().unwrap_or(Path::new("."));
    for (member, sha256) in ORT_GPU_MEMBERS {
        let path = capi.join(file_name(member));
        if path.is_file() && fetch::check_sha256(&path, sha256).is_ok() {
            continue;
        }
        let wheel = fetch::fetch_wheel(&ORT_GPU_WHEEL, cache, hint)?;
        let bytes = fetch::read_member(&wheel, member)?;
        let found = fetch::sha256_hex(&bytes);
        if found != sha256 {
            return Err(FetchError::HashMismatch {
                path: wheel.join(member),
                expected: sha256.to_owned(),
                found,
            }
            .into());
        }
        fetch::write_atomic(&path, &bytes)?;
    }
    for (library, path) in PRELOAD.iter().zip(&files.libraries) {
        if path.is_file() {
            continue;
        }
        let wheel = fetch::fetch_wheel(library.wheel, cache, hint)?;
        let bytes = fetch::read_member(&wheel, library.member)?;
        fetch::write_atomic(path, &bytes)?;
    }
    Ok(files)
}

/// Refuses a driver too old for the CUDA provider (`None`: no driver answered).
pub fn check_driver(version: Option<u32>) -> Result<(), GpuError> {
    match version {
        None => Err(GpuError::NoDriver {
            message: "no CUDA device backend answered".to_owned(),
        }),
        Some(found) if found < DRIVER_NEEDED => Err(GpuError::DriverTooOld { found }),
        Some(_) => Ok(()),
    }
}

/// Libraries loaded for the life of the process.
static LOADED: OnceLock<Mutex<Vec<libloading::Library>>> = OnceLock::new();

/// Loads the NVIDIA driver's library for the life of the process: the first check of the
/// GPU path, before anything is fetched. Idempotent.
pub fn load_driver() -> Result<(), GpuError> {
    let loaded = LOADED.get_or_init(|| Mutex::new(Vec::new()));
    let mut loaded = loaded.lock().unwrap_or_else(PoisonError::into_inner);
    if !loaded.is_empty() {
        return Ok(());
    }
    // SAFETY: loading a shared library runs its initializers; the driver's library is the
    // system's NVIDIA driver, which sets up nothing the process relies on.
    let driver =
        unsafe { libloading::Library::new(DRIVER_LIBRARY) }.map_err(|e| GpuError::NoDriver {
            message: e.to_string(),
        })?;
    loaded.push(driver);
    Ok(())
}

/// Loads the driver's library ([`load_driver`]), then every one of `files.libraries` in
/// [`PRELOAD`]'s order, for the life of the process, so that the CUDA provider (and cuDNN,
/// cuFFT, NVRTC, which it opens later by name) find them loaded. Idempotent.
pub fn preload(files: &GpuFiles) -> Result<(), GpuError> {
    load_driver()?;
    let loaded = LOADED.get_or_init(|| Mutex::new(Vec::new()));
    let mut loaded = loaded.lock().unwrap_or_else(PoisonError::into_inner);
    if loaded.len() > 1 {
        return Ok(());
    }
    let mut opened = Vec::with_capacity(files.libraries.len());
    for path in &files.libraries {
        if !path.is_file() {
            return Err(GpuError::Missing { path: path.clone() });
        }
        // SAFETY: as in `load_driver`; these are NVIDIA's libraries from the pinned wheels,
        // whose initializers only register their own state.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| GpuError::Load {
            library: path.display().to_string(),
            message: e.to_string(),
        })?;
        opened.push(library);
    }
    loaded.extend(opened);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CU13: &str = "nvidia/cu13/lib/";
    const CUDNN_DIR: &str = "nvidia/cudnn/lib/";

    #[test]
    fn every_wheel_is_pinned_by_a_well_formed_hash_and_its_own_file() {
        let mut seen = std::collections::BTreeSet::new();
        for wheel in GPU_WHEELS {
            assert_eq!(wheel.sha256.len(), 64, "{}", wheel.name);
            assert!(
                wheel
                    .sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{}",
                wheel.name
            );
            let stem = format!("{}-{}-", wheel.name.replace('-', "_"), wheel.version);
            assert!(wheel.file.starts_with(&stem), "{} vs {stem}", wheel.file);
            assert!(wheel.file.contains("x86_64") && wheel.file.ends_with(".whl"));
            assert!(seen.insert(wheel.sha256), "two pins share a hash");
        }
        // cuBLAS is pinned although onnxruntime-gpu's extras do not name it.
        assert!(GPU_WHEELS.iter().any(|w| w.name == "nvidia-cublas"));
    }

    #[test]
    fn every_library_comes_after_what_it_needs_and_the_provider_finds_all_it_needs() {
        for (i, library) in PRELOAD.iter().enumerate() {
            for need in library.needs {
                if *need == DRIVER_LIBRARY {
                    continue; // loaded first, by `preload`
                }
                let at = PRELOAD.iter().position(|l| l.soname == *need);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{} needs {need}, which is not preloaded before it",
                    library.soname
                );
            }
            assert!(
                library.member.starts_with(CU13) || library.member.starts_with(CUDNN_DIR),
                "{}",
                library.member
            );
            assert_eq!(file_name(library.member), library.soname);
            assert!(GPU_WHEELS.contains(&library.wheel), "{}", library.soname);
        }
        for need in PROVIDER_NEEDS {
            assert!(
                need == DRIVER_LIBRARY || PRELOAD.iter().any(|l| l.soname == need),
                "the CUDA provider needs {need}"
            );
        }
        // Every NVIDIA wheel is there for at least one library.
        for wheel in &GPU_WHEELS[1..] {
            assert!(
                PRELOAD.iter().any(|l| l.wheel == *wheel),
                "{} is fetched for nothing",
                wheel.name
            );
        }
    }

    #[test]
    fn a_driver_older_than_cuda_13_is_refused_with_its_figure() {
        let err = check_driver(Some(12040)).unwrap_err().to_string();
        assert!(
            err.contains("CUDA 12.4") && err.contains("CUDA 13.0") && err.contains("r580"),
            "{err}"
        );
        assert!(check_driver(Some(13000)).is_ok());
        assert!(check_driver(Some(13020)).is_ok());
        let err = check_driver(None).unwrap_err().to_string();
        assert!(err.contains("install NVIDIA's driver r580"), "{err}");
    }

    #[test]
    fn preloading_without_a_driver_or_the_files_says_what_to_install() {
        let dir = std::env::temp_dir().join(format!("vortex-gpu-none-{}", std::process::id()));
        let err = preload(&GpuFiles::in_cache(&dir)).unwrap_err();
        // Here (no NVIDIA driver) the driver is missing; on a machine with one, the files.
        match &err {
            GpuError::NoDriver { .. } => {
                assert!(
                    err.to_string().contains("install NVIDIA's driver r580"),
                    "{err}"
                )
            }
            GpuError::Missing { path } => assert!(path.ends_with("libcudart.so.13"), "{err}"),
            other => panic!("unexpected: {other}"),
        }
    }

    #[test]
    fn the_files_sit_together_in_the_cache_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("vortex-gpu-files-{}", std::process::id()));
        let files = GpuFiles::in_cache(&dir);
        let capi = files.onnxruntime.parent().unwrap();
        assert!(capi.ends_with("onnxruntime-gpu-1.31.1"));
        assert_eq!(files.libraries.len(), PRELOAD.len());
        assert_eq!(
            files.missing(),
            Some(capi.join("libonnxruntime.so.1.31.1")),
            "the runtime is looked for first"
        );
        std::fs::create_dir_all(capi).unwrap();
        for (member, _) in ORT_GPU_MEMBERS {
            std::fs::write(capi.join(file_name(member)), b"x").unwrap();
        }
        assert_eq!(files.missing(), Some(files.libraries[0].clone()));
        let err = GpuError::Missing {
            path: files.libraries[0].clone(),
        }
        .to_string();
        assert!(err.contains("libcudart.so.13 is missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
