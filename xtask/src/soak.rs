//! `cargo xtask soak --slots N [--every K] [--release]`: slots back to back on the shipped
//! pipeline at small shapes (Kokoro's real network on a short script, the reference
//! implementations elsewhere, the `zero` latency profile), run by `vortex soak`, which samples
//! the process every K slots. Writes target/soak/samples.csv and samples.svg and fails when a
//! series grows after warm-up beyond its noise band ([`BANDS`]).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub slots: u64,
    pub every: u64,
    pub release: bool,
    pub out: Option<PathBuf>,
}

/// The shipped config.toml's lines changed for the soak: 32² frames, two seconds at 4 fps,
/// the `zero` profile (no emulated latency). Kokoro stays the real network.
const EDITS: &[(&str, &str)] = &[
    ("image_size = 512", "image_size = 32"),
    ("seconds = 45", "seconds = 2"),
    ("fps = 24", "fps = 4"),
    ("staging_frames = 24", "staging_frames = 2"),
    ("verified_frames = 8", "verified_frames = 2"),
    ("cost_profile = \"seed-targets\"", "cost_profile = \"zero\""),
];

/// How much a series may rise above its warm-up sample: `relative` of it plus `absolute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub column: &'static str,
    pub relative: f64,
    pub absolute: f64,
    /// Why this much.
    pub why: &'static str,
}

/// The noise bands, stated: anything above them after warm-up fails the soak.
pub const BANDS: &[Band] = &[
    Band {
        column: "rss_bytes",
        relative: 0.02,
        absolute: 8.0 * 1048576.0,
        why: "the allocator's arenas breathe by a few MiB",
    },
    Band {
        column: "open_fds",
        relative: 0.0,
        absolute: 2.0,
        why: "an ffmpeg pipe or a log file may be open at the sample",
    },
    Band {
        column: "threads",
        relative: 0.0,
        absolute: 4.0,
        why: "tokio's blocking pool keeps idle threads for 10 s",
    },
    Band {
        column: "tracked_bytes",
        relative: 0.0,
        absolute: 0.0,
        why: "every slot returns its scratch: exact",
    },
    Band {
        column: "scratch_high_water_bytes",
        relative: 0.0,
        absolute: 0.0,
        why: "the same script and shapes every slot: exact",
    },
    Band {
        column: "disk_bytes",
        relative: 0.10,
        absolute: 256.0 * 1024.0,
        why: "the kept folders' MP4 sizes differ by seed",
    },
];

/// The samples: a header of column names, then one row of numbers per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl Samples {
    pub fn parse(text: &str) -> Result<Samples> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let columns: Vec<String> = lines
            .next()
            .context("the samples have no header")?
            .split(',')
            .map(|c| c.trim().to_owned())
            .collect();
        let rows = lines
            .enumerate()
            .map(|(i, line)| {
                let row: Vec<f64> = line
                    .split(',')
                    .map(|v| v.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("sample {}: not numbers: {line:?}", i + 1))?;
                if row.len() != columns.len() {
                    bail!(
                        "sample {}: {} values for {} columns",
                        i + 1,
                        row.len(),
                        columns.len()
                    );
                }
                Ok(row)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Samples { columns, rows })
    }

    pub fn column(&self, name: &str) -> Result<Vec<f64>> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .with_context(|| format!("the samples have no column {name:?}"))?;
        Ok(self.rows.iter().map(|r| r[i]).collect())
    }
}

/// Each band broken: the series, the warm-up sample's slot and value, the worst later one.
pub fn judge(samples: &Samples, warmup: u64) -> Result<Vec<String>> {
    let slots = samples.column("slot")?;
    let Some(base) = slots.iter().position(|&s| s >= warmup as f64) else {
        bail!("no sample at or after the warm-up ({warmup} slots): run more slots");
    };
    let mut broken = Vec::new();
    for band in BANDS {
        let values = samples.column(band.column)?;
        let start = values[base];
        let limit = start * (1.0 + band.relative) + band.absolute;
        for (slot, value) in slots.iter().zip(&values).skip(base + 1) {
            if *value > limit {
                broken.push(format!(
                    "{} grew from {start} at slot {} to {value} at slot {slot}, above the band of {}% + {} ({})",
                    band.column,
                    slots[base],
                    band.relative * 100.0,
                    band.absolute,
                    band.why
                ));
                break;
            }
        }
    }
    Ok(broken)
}

/// One small panel per series over the slots, each scaled to its own range, with its first
/// and last values.
pub fn svg(samples: &Samples) -> Result<String> {
    const W: f64 = 320.0;
    const H: f64 = 130.0;
    let slots = samples.column("slot")?;
    let series: Vec<&str> = BANDS.iter().map(|b| b.column).collect();
    let cols = 2.0;
    let rows = (series.len() as f64 / cols).ceil();
    let mut out = String::new();
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        W * cols,
        H * rows
    )?;
    let last_slot = slots.last().copied().unwrap_or(1.0).max(1.0);
    for (k, name) in series.iter().enumerate() {
        let values = samples.column(name)?;
        let (x0, y0) = ((k % 2) as f64 * W, (k / 2) as f64 * H);
        let (lo, hi) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let points: Vec<String> = slots
            .iter()
            .zip(&values)
            .map(|(s, v)| {
                let x = x0 + 10.0 + (W - 20.0) * s / last_slot;
                let y = y0 + H - 15.0 - (H - 45.0) * (v - lo) / span;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let (first, last) = (
            values.first().copied().unwrap_or(0.0),
            values.last().copied().unwrap_or(0.0),
        );
        writeln!(
            out,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="silver"/>"#,
            x0 + 2.0,
            y0 + 2.0,
            W - 4.0,
            H - 4.0
        )?;
        writeln!(
            out,
            r#"<text x="{}" y="{}">{name}: {first} → {last} (min {lo}, max {hi})</text>"#,
            x0 + 8.0,
            y0 + 16.0
        )?;
        writeln!(
            out,
            r#"<polyline fill="none" stroke="seagreen" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        )?;
    }
    writeln!(out, "</svg>")?;
    Ok(out)
}

/// The shipped config.toml with [`EDITS`], each of which must match one line.
pub fn soak_config(shipped: &str) -> Result<String> {
    let mut text = shipped.to_owned();
    for (from, to) in EDITS {
        let matches = text.lines().filter(|l| l.trim() == *from).count();
        if matches != 1 {
            bail!("config.toml has {matches} lines `{from}`: update xtask/src/soak.rs's EDITS");
        }
        text = text
            .lines()
            .map(|l| if l.trim() == *from { *to } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        text.push('\n');
    }
    Ok(text)
}

pub fn soak(options: &Options) -> Result<()> {
    let root = workspace_root();
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/soak"));
    fs::create_dir_all(&out).with_context(|| format!("could not create {}", out.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(&cargo);
    build
        .current_dir(&root)
        .args(["build", "-p", "vortex-pipeline", "--bin", "vortex"]);
    if options.release {
        build.arg("--release");
    }
    let status = build.status().context("could not run cargo build")?;
    if !status.success() {
        bail!("building vortex failed");
    }
    let vortex = root
        .join("target")
        .join(if options.release { "release" } else { "debug" })
        .join("vortex");
    let shipped = fs::read_to_string(root.join("config.toml")).context("reading config.toml")?;
    let config = out.join("config.toml");
    fs::write(&config, soak_config(&shipped)?)?;
    let csv = out.join("samples.csv");
    let slots_dir = out.join("slots");
    let _ = fs::remove_dir_all(&slots_dir);
    eprintln!(
        "soak: {} slots, a sample every {}, samples in {}",
        options.slots,
        options.every,
        csv.display()
    );
    let status = Command::new(&vortex)
        .arg("--config")
        .arg(&config)
        .args(["soak", "--slots", &options.slots.to_string()])
        .args(["--every", &options.every.to_string(), "--out"])
        .arg(&slots_dir)
        .arg("--csv")
        .arg(&csv)
        .env("RUST_LOG", "warn")
        .status()
        .with_context(|| format!("could not run {}", vortex.display()))?;
    if !status.success() {
        bail!("vortex soak failed ({status})");
    }
    let samples = Samples::parse(&fs::read_to_string(&csv)?)?;
    fs::write(out.join("samples.svg"), svg(&samples)?)?;
    eprintln!("series: first → last sample");
    for band in BANDS {
        let values = samples.column(band.column)?;
        eprintln!(
            "  {:<26} {} → {}",
            band.column,
            values.first().copied().unwrap_or(0.0),
            values.last().copied().unwrap_or(0.0)
        );
    }
    let broken = judge(&samples, options.every)?;
    let _ = fs::remove_dir_all(&slots_dir);
    if !broken.is_empty() {
        bail!("the soak grew:\n  {}", broken.join("\n  "));
    }
    eprintln!(
        "soak passed: no series grew beyond its band after slot {}; plot in {}",
        options.every,
        out.join("samples.svg").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: &[f64]) -> Samples {
        let mut text = String::from(
            "slot,seconds,rss_bytes,open_fds,threads,tracked_bytes,scratch_high_water_bytes,disk_bytes\n",
        );
        for (i, r) in rss.iter().enumerate() {
            writeln!(text, "{},{},{r},16,6,100,50,1000", i * 100, i).unwrap();
        }
        Samples::parse(&text).unwrap()
    }

    #[test]
    fn growth_after_warm_up_beyond_the_band_fails_and_noise_does_not() {
        let mb = 1048576.0;
        // Warm-up (slot 0 → 100) may grow; after it, 1 MiB of noise passes.
        let quiet = samples(&[300.0 * mb, 400.0 * mb, 401.0 * mb, 400.5 * mb]);
        assert!(judge(&quiet, 100).unwrap().is_empty());
        let leak = samples(&[300.0 * mb, 400.0 * mb, 410.0 * mb, 420.0 * mb]);
        let broken = judge(&leak, 100).unwrap();
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].starts_with("rss_bytes grew"), "{broken:?}");
        assert!(judge(&quiet, 1000).is_err(), "no sample after the warm-up");
    }

    #[test]
    fn the_soak_config_edits_every_line_it_names_of_the_shipped_file() {
        let shipped = fs::read_to_string(workspace_root().join("config.toml")).unwrap();
        let text = soak_config(&shipped).unwrap();
        for (_, to) in EDITS {
            assert!(text.lines().any(|l| l == *to), "{to}");
        }
        assert!(
            text.contains("weights = \"kokoro-82m-int8\""),
            "Kokoro stays real"
        );
        assert!(soak_config("image_size = 16\n").is_err());
    }

    #[test]
    fn the_plot_has_a_panel_per_series() {
        let svg = svg(&samples(&[1.0, 2.0, 3.0])).unwrap();
        assert_eq!(svg.matches("<polyline").count(), BANDS.len());
        assert!(svg.contains("rss_bytes: 1 → 3"));
    }
}
