//! Where ONNX Runtime's shared library comes from: an explicit path (config or
//! `ORT_DYLIB_PATH`), else the copy in Vortex's cache, else the pinned `onnxruntime` wheel
//! fetched from PyPI with the machine's pip and checked by hash.

use std::fmt;
use std::path::{Path, PathBuf};

use super::fetch::{self, FetchError, Wheel};

/// The pinned `onnxruntime` wheel. `ort` 2.0.0-rc.15 with `api-31` is built for ONNX
/// Runtime 1.31: the crate and the wheel are pinned together.
pub const ORT_WHEEL: Wheel = Wheel {
    name: "onnxruntime",
    version: "1.31.1",
    file: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
    size: 23_753_652,
    target: Some(("3.11", "manylinux_2_28_x86_64")),
};

/// The library inside [`ORT_WHEEL`].
pub const ORT_MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";

/// SHA-256 of [`ORT_MEMBER`].
pub const ORT_LIBRARY_SHA256: &str =
    "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";

/// Where the library was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LibrarySource {
    /// The path in config.toml (`[runtime] onnxruntime`).
    Config,
    /// `ORT_DYLIB_PATH`.
    Environment,
    /// Vortex's cache, from an earlier fetch.
    Cache,
    /// Fetched from PyPI just now.
    Fetched,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Config => "the path in config.toml",
            LibrarySource::Environment => "ORT_DYLIB_PATH",
            LibrarySource::Cache => "Vortex's cache",
            LibrarySource::Fetched => "the onnxruntime wheel, fetched from PyPI",
        })
    }
}

/// Why no library could be had.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// An explicit path that is not a file.
    #[error(
        "ONNX Runtime library {} (from {source_}) does not exist: point it at libonnxruntime.so.1.31.x (the onnxruntime==1.31.1 wheel has it at {ORT_MEMBER}), or unset it to let Vortex fetch the wheel"
    , path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
        /// Where it came from.
        source_: LibrarySource,
    },
    /// Fetching the wheel failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The library's path and where it came from.
pub fn resolve(
    explicit: Option<&Path>,
    cache: &Path,
) -> Result<(PathBuf, LibrarySource), LibraryError> {
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    if let Some(path) = explicit {
        return match path.is_file() {
            true => Ok((absolute(path), LibrarySource::Config)),
            false => Err(LibraryError::Missing {
                path: path.to_owned(),
                source_: LibrarySource::Config,
            }),
        };
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok((absolute(&path), LibrarySource::Environment)),
            false => Err(LibraryError::Missing {
                path,
                source_: LibrarySource::Environment,
            }),
        };
    }
    let cached = cache
        .join(format!("onnxruntime-{}", ORT_WHEEL.version))
        .join("libonnxruntime.so.1.31.1");
    if cached.is_file() && fetch::check_sha256(&cached, ORT_LIBRARY_SHA256).is_ok() {
        return Ok((absolute(&cached), LibrarySource::Cache));
    }
    let hint = "ORT_DYLIB_PATH or [runtime] onnxruntime in config.toml points";
    let wheel = fetch::fetch_wheel(&ORT_WHEEL, cache, hint)?;
    let bytes = fetch::read_member(&wheel, ORT_MEMBER)?;
    let found = fetch::sha256_hex(&bytes);
    if found != ORT_LIBRARY_SHA256 {
        return Err(FetchError::HashMismatch {
            path: wheel.join(ORT_MEMBER),
            expected: ORT_LIBRARY_SHA256.to_owned(),
            found,
        }
        .into());
    }
    fetch::write_atomic(&cached, &bytes)?;
    Ok((absolute(&cached), LibrarySource::Fetched))
}
