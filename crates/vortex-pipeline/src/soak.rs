//! `vortex soak`: slots back to back on the configured pipeline, each written under `--out`
//! (the newest `--keep` folders kept, as `vortex serve` keeps them), and every `--every` slots
//! one line of the process's resources appended to a CSV: resident memory, open file
//! descriptors, threads, tracked device bytes, the scratch high-water mark and the disk the
//! slot folders take. `cargo xtask soak` drives it and judges the growth.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vortex_pipeline::config::Config;
use vortex_pipeline::output::{Ffmpeg, SlotFiles, VideoFormat, retain};
use vortex_pipeline::{Recipe, VortexPipeline};

/// What `vortex soak` was asked for.
pub struct Soak {
    pub slots: u64,
    pub every: u64,
    pub keep: usize,
    pub out: PathBuf,
    pub csv: PathBuf,
    pub script: String,
    pub ffmpeg: Option<Ffmpeg>,
}

/// The CSV's columns, in order (`cargo xtask soak` reads them by name).
pub const COLUMNS: &str =
    "slot,seconds,rss_bytes,open_fds,threads,tracked_bytes,scratch_high_water_bytes,disk_bytes";

/// Runs the soak: a sample after load (slot 0), then one every `every` slots and one after
/// the last. Fails on the first slot that fails.
pub async fn soak(config: Config, soak: &Soak) -> Result<()> {
    if soak.slots == 0 || soak.every == 0 {
        bail!("--slots and --every must be at least 1");
    }
    let buffers = config.buffers;
    let mut pipeline = VortexPipeline::new(config)?;
    let tracker = std::sync::Arc::clone(pipeline.vram().tracker());
    let loaded = tracker.allocated();
    let mut csv = std::fs::File::create(&soak.csv)
        .with_context(|| format!("could not write {}", soak.csv.display()))?;
    writeln!(csv, "{COLUMNS}")?;
    let started = std::time::Instant::now();
    let mut sample = |slot: u64| -> Result<()> {
        let (rss, fds, threads) = process()?;
        // Static bytes are fixed after load: what the peak holds beyond them is scratch.
        let scratch_high_water = tracker.peak().saturating_sub(loaded);
        writeln!(
            csv,
            "{slot},{:.3},{rss},{fds},{threads},{},{scratch_high_water},{}",
            started.elapsed().as_secs_f64(),
            tracker.allocated(),
            disk(&soak.out)?
        )?;
        csv.flush()?;
        Ok(())
    };
    sample(0)?;
    for n in 1..=soak.slots {
        let recipe = Recipe {
            slot_id: n,
            seed: n,
            prompt: "a news presenter in a blue studio".to_owned(),
            script: soak.script.clone(),
            voice: Recipe::DEFAULT_VOICE.to_owned(),
            language: Recipe::DEFAULT_LANGUAGE.to_owned(),
        };
        let dir = soak.out.join(format!("slot-{n:04}"));
        let mut files = SlotFiles::with_format(&dir, &buffers, VideoFormat::Mp4);
        if let Some(ffmpeg) = &soak.ffmpeg {
            files = files.with_ffmpeg(ffmpeg.clone());
        }
        pipeline
            .generate_slot_into(&recipe, &mut files)
            .await
            .with_context(|| format!("soak slot {n} of {}", soak.slots))?;
        drop(files);
        retain(&soak.out, soak.keep)
            .with_context(|| format!("could not remove old slots under {}", soak.out.display()))?;
        if n % soak.every == 0 || n == soak.slots {
            sample(n)?;
        }
    }
    Ok(())
}

/// This process's resident bytes, open file descriptors and threads, from `/proc/self`.
fn process() -> Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self")?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rss = field("VmRSS:").context("no VmRSS in /proc/self/status")? * 1024;
    let threads = field("Threads:").context("no Threads in /proc/self/status")?;
    let fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok((rss, fds, threads))
}

/// Bytes of the files under `dir` (recursively).
fn disk(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err.into()),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
