//! Which ffmpeg encodes the MP4s: `[output] ffmpeg` in config.toml, else `VORTEX_FFMPEG`,
//! else the static ffmpeg 7.0.2 (GPL build, libx264 and AAC, no shared-library
//! dependencies) of the pinned `imageio-ffmpeg` wheel, fetched once from PyPI through
//! `vortex_runtime::fetch` and unpacked into Vortex's cache. A system ffmpeg is used only
//! when one of the first two names it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use vortex_runtime::fetch::{self, FetchError, Wheel};

/// The pinned wheel holding ffmpeg for x86_64 Linux.
pub const FFMPEG_WHEEL: Wheel = Wheel {
    name: "imageio-ffmpeg",
    version: "0.7.0",
    file: "imageio_ffmpeg-0.7.0-py3-none-manylinux2014_x86_64.whl",
    sha256: "4e1f36bef7bedd4bc5dc25f60a8345d88f57133fa1e754f09b411ac61b854408",
    size: 29_498_414,
    target: Some(("3.11", "manylinux2014_x86_64")),
};

/// The program inside [`FFMPEG_WHEEL`], its SHA-256 and size.
const MEMBER: (&str, &str, u64) = (
    "imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v7.0.2",
    "e7e7fb30477f717e6f55f9180a70386c62677ef8a4d4d1a5d948f4098aa3eb99",
    79_826_272,
);

/// Where the ffmpeg in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfmpegSource {
    /// `[output] ffmpeg` in config.toml.
    Config,
    /// `VORTEX_FFMPEG`.
    Environment,
    /// Vortex's cache, from an earlier fetch.
    Cache,
    /// The imageio-ffmpeg wheel, fetched from PyPI just now.
    Fetched,
}

impl fmt::Display for FfmpegSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FfmpegSource::Config => "[output] ffmpeg in config.toml",
            FfmpegSource::Environment => "VORTEX_FFMPEG",
            FfmpegSource::Cache => "Vortex's cache",
            FfmpegSource::Fetched => "the imageio-ffmpeg wheel, fetched from PyPI",
        })
    }
}

/// Why no ffmpeg can encode.
#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    /// A named ffmpeg that is not there.
    #[error(
        "ffmpeg {} (from {source_}) is not there: point it at an ffmpeg program, or unset it to let Vortex fetch imageio-ffmpeg==0.7.0's; or write raw video with --y4m",
        program.display()
    )]
    Missing {
        /// The program named.
        program: PathBuf,
        /// Who named it.
        source_: FfmpegSource,
    },
    /// ffmpeg is there but does not run.
    #[error(
        "ffmpeg {} (from {source_}) does not run ({reason}): {hint}",
        program.display()
    )]
    Broken {
        /// The program.
        program: PathBuf,
        /// Where it came from.
        source_: FfmpegSource,
        /// What running `ffmpeg -version` gave.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The pinned wheel could not be had.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// An ffmpeg program and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ffmpeg {
    program: PathBuf,
    source: FfmpegSource,
}

impl Ffmpeg {
    /// The ffmpeg to encode with: `configured` (`[output] ffmpeg`: a path, or a program name
    /// looked up on `PATH`), else `VORTEX_FFMPEG`, else the pinned wheel's from Vortex's
    /// cache (fetched on first use).
    pub fn resolve(configured: Option<&Path>) -> Result<Ffmpeg, FfmpegError> {
        Self::resolve_in(configured, &fetch::cache_dir())
    }

    /// [`Ffmpeg::resolve`] with the cache folder given.
    pub fn resolve_in(configured: Option<&Path>, cache: &Path) -> Result<Ffmpeg, FfmpegError> {
        if let Some(program) = configured {
            return Self::named(program, FfmpegSource::Config);
        }
        if let Some(program) = std::env::var_os("VORTEX_FFMPEG").filter(|p| !p.is_empty()) {
            return Self::named(Path::new(&program), FfmpegSource::Environment);
        }
        Self::pinned(cache)
    }

    /// A program named by config or environment: a path must be a file; a bare name is
    /// looked up on `PATH`.
    fn named(program: &Path, source: FfmpegSource) -> Result<Ffmpeg, FfmpegError> {
        let missing = || FfmpegError::Missing {
            program: program.to_owned(),
            source_: source,
        };
        let found = if program.components().count() == 1 && !program.is_absolute() {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
                .ok_or_else(missing)?
        } else if program.is_file() {
            program.to_owned()
        } else {
            return Err(missing());
        };
        Ok(Ffmpeg {
            program: found,
            source,
        })
    }

    /// The pinned wheel's ffmpeg in `cache/ffmpeg-7.0.2/`, unpacked (and its SHA-256 checked
    /// on the way) once; fetched first if the wheel is not in the cache either.
    fn pinned(cache: &Path) -> Result<Ffmpeg, FfmpegError> {
        // One thread of this process unpacks it at a time.
        static UNPACKING: Mutex<()> = Mutex::new(());
        let _unpacking = UNPACKING.lock().unwrap_or_else(PoisonError::into_inner);
        let program = cache.join("ffmpeg-7.0.2").join("ffmpeg");
        // Only a program whose hash was the pinned one is ever renamed to this path.
        if program.metadata().is_ok_and(|m| m.len() == MEMBER.2) {
            return Ok(Ffmpeg {
                program,
                source: FfmpegSource::Cache,
            });
        }
        let hint = format!(
            "{}/wheels holds it (`pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 imageio-ffmpeg==0.7.0`), or [output] ffmpeg in config.toml or VORTEX_FFMPEG names another ffmpeg",
            cache.display()
        );
        let wheel = fetch::fetch_wheel(&FFMPEG_WHEEL, cache, &hint)?;
        fetch::extract_member(&wheel, MEMBER.0, &program, MEMBER.1, true)?;
        tracing::info!(target: "vortex_pipeline::output", path = %program.display(), "ffmpeg 7.0.2 unpacked from imageio-ffmpeg 0.7.0");
        Ok(Ffmpeg {
            program,
            source: FfmpegSource::Fetched,
        })
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Where it came from.
    pub fn source(&self) -> FfmpegSource {
        self.source
    }

    /// Runs `ffmpeg -version`: whether it runs at all (not another architecture, not cut).
    pub fn check(&self) -> Result<(), FfmpegError> {
        let broken = |reason: String| FfmpegError::Broken {
            program: self.program.clone(),
            source_: self.source,
            reason,
            hint: match self.source {
                FfmpegSource::Config | FfmpegSource::Environment => {
                    "point it at a working ffmpeg, or unset it to use the pinned one; or write raw video with --y4m"
                }
                FfmpegSource::Cache | FfmpegSource::Fetched => {
                    "the pinned ffmpeg is for x86_64 Linux; on another machine name one with [output] ffmpeg or VORTEX_FFMPEG, or delete it from Vortex's cache to unpack it again"
                }
            },
        };
        match self
            .command()
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(broken(status.to_string())),
            Err(err) => Err(broken(err.to_string())),
        }
    }

    /// A command running this ffmpeg.
    pub fn command(&self) -> Command {
        let ffmpeg = &self.program;
        Command::new(ffmpeg)
    }
}
