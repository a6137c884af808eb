//! Which ffmpeg encodes the MP4s: the pinned wheel's, fetched into Vortex's cache, unless
//! config or `VORTEX_FFMPEG` name another; and each way that can go wrong (a foreign or cut
//! download, a cache that cannot be written, an ffmpeg that is not there, does not run or
//! dies mid-slot) as an error naming the file and what to do, the slot's files not kept.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Shipped;
use vortex_pipeline::output::{Ffmpeg, FfmpegError, FfmpegSource, ffmpeg::FFMPEG_WHEEL};
use vortex_runtime::fetch::{self, FetchError};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vortex-ffmpeg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The pinned ffmpeg, from the shared cache (fetched on first use).
fn pinned() -> Ffmpeg {
    Ffmpeg::resolve_in(None, &fetch::cache_dir()).expect("the pinned ffmpeg")
}

#[test]
fn the_pinned_ffmpeg_is_a_static_7_0_2_with_x264_and_aac() {
    let ffmpeg = pinned();
    assert!(
        matches!(ffmpeg.source(), FfmpegSource::Cache | FfmpegSource::Fetched),
        "{ffmpeg:?} (is VORTEX_FFMPEG set?)"
    );
    ffmpeg.check().unwrap();
    let run = |arg: &str| {
        let out = ffmpeg
            .command()
            .args(["-hide_banner", arg])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run("-version").starts_with("ffmpeg version 7.0.2"));
    let encoders = run("-encoders");
    assert!(encoders.contains(" libx264 ") && encoders.contains(" aac "));
    // Resolved again, it comes from the cache.
    let again = pinned();
    assert_eq!(
        (again.program(), again.source()),
        (ffmpeg.program(), FfmpegSource::Cache)
    );
}

#[test]
fn a_named_ffmpeg_must_be_there_and_run() {
    for name in ["/nonexistent/ffmpeg", "vortex-no-such-ffmpeg"] {
        let err = Ffmpeg::resolve_in(Some(Path::new(name)), Path::new("/nonexistent")).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, FfmpegError::Missing { .. }), "{message}");
        assert!(
            message.contains(name) && message.contains("is not there") && message.contains("--y4m"),
            "{message}"
        );
    }
    // A name is looked up on PATH; a program that fails `-version` is refused by check.
    let named = Ffmpeg::resolve_in(Some(Path::new("false")), Path::new("/nonexistent")).unwrap();
    assert_eq!(named.source(), FfmpegSource::Config);
    assert!(named.program().is_absolute(), "{named:?}");
    let err = named.check().unwrap_err();
    assert!(
        matches!(err, FfmpegError::Broken { .. }) && err.to_string().contains("does not run"),
        "{err}"
    );
}

#[test]
fn a_foreign_cached_wheel_is_refused_with_what_to_do() {
    let cache = tempdir("foreign");
    let wheel = cache.join("wheels").join(FFMPEG_WHEEL.file);
    std::fs::create_dir_all(wheel.parent().unwrap()).unwrap();
    std::fs::write(&wheel, b"PK\x03\x04 not the pinned wheel").unwrap();
    let err = Ffmpeg::resolve_in(None, &cache).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, FfmpegError::Fetch(FetchError::HashMismatch { .. })),
        "{message}"
    );
    assert!(
        message.contains(FFMPEG_WHEEL.file) && message.contains("delete it"),
        "{message}"
    );
    assert!(!cache.join("ffmpeg-7.0.2").join("ffmpeg").exists());
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn a_cache_that_cannot_be_written_names_vortex_cache() {
    let dir = tempdir("unwritable");
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    // A folder under a file cannot be made, whoever runs the test (root included).
    let err = Ffmpeg::resolve_in(None, &file.join("cache")).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, FfmpegError::Fetch(FetchError::CacheNotWritable { .. })),
        "{message}"
    );
    assert!(message.contains("VORTEX_CACHE"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn small_config(dir: &Path) -> PathBuf {
    Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "32"),
            ("buffers.seconds", "2"),
            ("buffers.fps", "4"),
            ("buffers.staging_frames", "2"),
            ("timing.verified_frames", "2"),
            ("timing.cost_profile", "\"zero\""),
        ])
        .write_into(dir)
}

fn executable(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// pip that "downloads" a cut file: the fetcher refuses it, keeps nothing, and the run stops
/// before any model loads, saying to run again.
#[test]
fn a_cut_download_is_not_kept() {
    let dir = tempdir("cut");
    let config = small_config(&dir);
    let python = dir.join("python3");
    executable(
        &python,
        &format!(
            "#!/bin/sh\nwhile [ \"$1\" != --dest ]; do shift; done\nhead -c 1000 /dev/zero > \"$2/{}\"\n",
            FFMPEG_WHEEL.file
        ),
    );
    let cache = dir.join("cache");
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_vortex"))
        .args(["--config", config.to_str().unwrap(), "run", "--out"])
        .arg(&out)
        .env("VORTEX_CACHE", &cache)
        .env("VORTEX_PYTHON", &python)
        .env_remove("VORTEX_FFMPEG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(FFMPEG_WHEEL.file)
            && stderr.contains("1000 bytes")
            && stderr.contains("nothing was kept: run again"),
        "{stderr}"
    );
    let wheels: Vec<_> = std::fs::read_dir(cache.join("wheels"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(wheels.is_empty(), "left in the cache: {wheels:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An ffmpeg that dies in the middle of the first slot: that slot fails naming ffmpeg and
/// leaves no files; the next slot is written whole.
#[test]
fn ffmpeg_dying_mid_slot_fails_that_slot_only() {
    let real = pinned();
    let dir = tempdir("dies");
    let config = small_config(&dir);
    let marker = dir.join("died-once");
    let script = dir.join("ffmpeg");
    executable(
        &script,
        &format!(
            "#!/bin/sh\nif [ \"$1\" != -version ] && [ ! -e '{marker}' ]; then\n  : > '{marker}'\n  head -c 4000 > /dev/null\n  echo 'vortex test: ffmpeg is killed' >&2\n  kill -KILL $$\nfi\nexec '{real}' \"$@\"\n",
            marker = marker.display(),
            real = real.program().display()
        ),
    );
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_vortex"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--slots",
            "2",
            "--out",
        ])
        .arg(&out)
        .env("VORTEX_FFMPEG", &script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("slot 1: ")
            && stderr.contains("ffmpeg")
            && stderr.contains("1 of 2 slots failed"),
        "{stderr}"
    );
    assert!(!out.join("slot-0001").exists() && !out.join("slot-0001.partial").exists());
    let video = out.join("slot-0002").join("video.mp4");
    assert!(video.metadata().is_ok_and(|m| m.len() > 0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
