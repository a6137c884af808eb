//! `vortex`: plan, run and serve the Vortex pipeline.
//!
//! Logs go to stdout as one JSON object per line; progress bars (on a terminal only,
//! [`progress`]) and summaries go to stderr.

mod progress;
mod soak;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use vortex_models::weights::WeightSource;
use vortex_pipeline::config::{Config, DeviceKind};
use vortex_pipeline::http::{Limits, ServerState, serve_probes, serve_with};
use vortex_pipeline::output::{
    Discard, Ffmpeg, MediaSink, SlotFiles, VideoFormat, plan_svg, sweep_partial,
};
use vortex_pipeline::pipeline::backend_for;
use vortex_pipeline::report::{PlanDoc, RunSummary, RunTally};
use vortex_pipeline::{Recipe, Stage, VortexPipeline};

use progress::Progress;

#[derive(Parser)]
#[command(
    name = "vortex",
    version,
    about = "Vortex: resident generative models and timed slots on one GPU.\n`vortex plan` says which stages run a network and which a reference implementation (not model inference)."
)]
struct Cli {
    /// Configuration file [default: ./config.toml, else the configuration built into vortex]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the VRAM plan and the time plan (each stage's work and its floor on the
    /// configured card beside the cost profile's targets).
    Plan {
        /// Also draw the VRAM layout as SVG into FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Print the same document as JSON on stdout (the log lines go to stderr then).
        #[arg(long)]
        json: bool,
    },
    /// Generate slots on the configured device and print a summary.
    Run {
        /// How many slots (made from the flags below; slot N has seed `--seed` + N − 1).
        #[arg(long, default_value_t = 1, conflicts_with = "recipe")]
        slots: u64,
        /// Recipes from FILE instead of flags: one JSON object (.json), one TOML table
        /// (.toml), or one JSON object a line (.jsonl), each with slot_id and script (and
        /// seed, prompt, voice, language).
        #[arg(long, value_name = "FILE")]
        recipe: Option<PathBuf>,
        /// Write each slot's video.mp4 (H.264 + AAC, through ffmpeg), actor.png, audio.wav and
        /// manifest.json under DIR/slot-NNNN/.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// With --out: raw video.y4m (about 850 MB a slot, no audio) instead of video.mp4.
        #[arg(long, requires = "out")]
        y4m: bool,
        /// Also write the summary as JSON to FILE (what `cargo xtask bench` reads).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Run on this backend instead of the configured one.
        #[arg(long, value_parser = ["host", "cuda"])]
        backend: Option<String>,
        /// What the actor says (every slot).
        #[arg(
            long,
            default_value = "Good evening, here is the news at the top of the hour."
        )]
        script: String,
        /// Who says it: a voice of the audio network (jm_kumo, jf_alpha, jf_nezumi, ...).
        #[arg(long, default_value = Recipe::DEFAULT_VOICE)]
        voice: String,
        /// The script's language (en-us, en-gb).
        #[arg(long, default_value = Recipe::DEFAULT_LANGUAGE)]
        language: String,
        /// What the actor looks like.
        #[arg(long, default_value = "a news presenter in a blue studio")]
        prompt: String,
        /// Seed of the first slot.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Check this machine for the configuration: the cache, ONNX Runtime (and on a GPU the
    /// driver and the CUDA provider's libraries), espeak-ng, ffmpeg, the plan; then start the
    /// pipeline (every network's profile run), generate one slot, and report each stage.
    /// Exits non-zero when a check fails, each failure saying what to change.
    Doctor {
        /// Print the report as JSON on stdout instead of the table on stderr.
        #[arg(long)]
        json: bool,
    },
    /// Generate slots back to back (each written under --out, the newest --keep kept) and
    /// append the process's resources to a CSV every --every slots: what `cargo xtask soak`
    /// runs and judges.
    Soak {
        /// How many slots.
        #[arg(long, default_value_t = 1000)]
        slots: u64,
        /// A sample every this many slots (and one after load, one after the last).
        #[arg(long, default_value_t = 100)]
        every: u64,
        /// Slot folders kept under --out.
        #[arg(long, default_value_t = 10)]
        keep: usize,
        /// Where the slots go (DIR/slot-NNNN/).
        #[arg(long, value_name = "DIR", default_value = "soak-slots")]
        out: PathBuf,
        /// The samples, as CSV.
        #[arg(long, value_name = "FILE", default_value = "soak.csv")]
        csv: PathBuf,
        /// What the actor says in every slot.
        #[arg(long, default_value = "Hello there.")]
        script: String,
    },
    /// Keep the pipeline up and serve /health, /ready, /metrics, /vram, POST /slots (one
    /// running, `[server] queue` waiting), GET /slots and GET /slots/{id}[/{file}]. SIGTERM:
    /// the running slot finishes, queued ones are cancelled, exit 0.
    Serve {
        /// Address to listen on. Anything but loopback needs a token (VORTEX_TOKEN).
        #[arg(long, default_value = "127.0.0.1:9400")]
        addr: String,
        /// Also serve /health, /ready and /metrics on this address, with a connection budget
        /// of their own [default: `[server] probe_addr`, else none].
        #[arg(long, value_name = "ADDR")]
        probe_addr: Option<String>,
        /// Where the slots' files go (DIR/slot-NNNN/).
        #[arg(long, value_name = "DIR", default_value = "slots")]
        out: PathBuf,
        /// Connections held at once (more wait in the kernel's queue).
        #[arg(long, default_value_t = 256)]
        max_connections: usize,
        /// Close a connection silent this long, in seconds.
        #[arg(long, default_value_t = 15.0)]
        idle_timeout: f64,
    },
}

/// `./config.toml` if there is one; else `None`: the configuration compiled into the binary
/// (never a file of the source tree it was built from).
fn default_config() -> Option<PathBuf> {
    let here = PathBuf::from("config.toml");
    here.is_file().then_some(here)
}

/// The most verbose log level from `RUST_LOG` (`error`, `warn`, `info`, `debug`, `trace`, or
/// `off`; per-target filters are not supported), `info` by default.
fn log_level() -> Option<tracing::Level> {
    match std::env::var("RUST_LOG").ok().as_deref().map(str::trim) {
        Some("off") => None,
        Some("error") => Some(tracing::Level::ERROR),
        Some("warn") => Some(tracing::Level::WARN),
        Some("debug") => Some(tracing::Level::DEBUG),
        Some("trace") => Some(tracing::Level::TRACE),
        _ => Some(tracing::Level::INFO),
    }
}

fn main() {
    if let Err(err) = real_main() {
        eprintln!("error: {}", chain(&err));
        std::process::exit(1);
    }
}

/// The error and each cause the text so far does not already say (many of Vortex's errors
/// include their source in their own message; printing the chain as is said it twice).
fn chain(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let level = log_level();
    let quiet = level.is_none();
    let progress = Progress::on_terminal();
    let lines = progress.clone();
    // `vortex plan --json` and `vortex doctor --json`: stdout is the document alone.
    let logs_to_stderr = matches!(
        cli.command,
        Command::Plan { json: true, .. } | Command::Doctor { json: true }
    );
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level.unwrap_or(tracing::Level::ERROR))
        .with_writer(move || -> Box<dyn std::io::Write> {
            match (&lines, quiet) {
                (_, true) => Box::new(std::io::sink()),
                _ if logs_to_stderr => Box::new(std::io::stderr()),
                (Some(progress), false) => progress.log_writer(),
                (None, false) => Box::new(std::io::stdout()),
            }
        })
        .init();
    let metrics = vortex_pipeline::http::prometheus()
        .context("could not configure the metrics exporter")?
        .install_recorder()
        .context("could not install the metrics recorder")?;
    vortex_vram::metrics::describe();
    if let Some(progress) = &progress {
        vortex_runtime::fetch::set_watcher(progress.downloads());
    }
    let path = cli.config.or_else(default_config);
    let mut config = match &path {
        Some(path) => Config::load(path)?,
        None => Config::shipped(),
    };
    let path = path.map_or_else(
        || "the configuration built into vortex (no ./config.toml)".to_owned(),
        |p| p.display().to_string(),
    );
    if let Command::Run {
        backend: Some(backend),
        ..
    } = &cli.command
    {
        config.device = match backend.as_str() {
            "cuda" => DeviceKind::Cuda { ordinal: 0 },
            _ => DeviceKind::Host(
                vortex_vram::HostConfig::preset(&config.preset)
                    .unwrap_or_else(vortex_vram::HostConfig::rtx3060_12gb),
            ),
        };
    }
    tracing::info!(target: "vortex", config = %path, "vortex starting");
    // The server's runtime has two workers: while a slot's end blocks one on files (the
    // encoder's tail, fsyncs), the other answers the probes and the API. Everything else runs
    // on one thread.
    let runtime = match cli.command {
        Command::Serve { .. } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .context("could not start the tokio runtime")?;
    match cli.command {
        Command::Plan { svg, json } => plan(&config, svg.as_deref(), json),
        Command::Doctor { json } => {
            let report = runtime.block_on(vortex_pipeline::doctor::doctor(config));
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprint!("{report}");
            }
            let failed: Vec<String> = report.failed().map(|c| c.name.clone()).collect();
            if !failed.is_empty() {
                bail!("vortex doctor: {} failed", failed.join(", "));
            }
            Ok(())
        }
        Command::Run {
            slots,
            recipe,
            out,
            y4m,
            summary,
            script,
            voice,
            language,
            prompt,
            seed,
            ..
        } => {
            let recipes = match recipe {
                Some(file) => recipes_from(&file)?,
                None => (1..=slots)
                    .map(|n| {
                        let recipe = Recipe {
                            slot_id: n,
                            seed: seed.wrapping_add(n - 1),
                            prompt: prompt.clone(),
                            script: script.clone(),
                            voice: voice.clone(),
                            language: language.clone(),
                        };
                        recipe.validate().map(|()| recipe)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let format = if y4m {
                VideoFormat::Y4m
            } else {
                VideoFormat::Mp4
            };
            check_cache(&config, out.is_some() && format == VideoFormat::Mp4)?;
            let ffmpeg = match &out {
                Some(dir) => check_out(dir, format, &config)?,
                None => None,
            };
            let files = Files {
                out: out.as_deref(),
                format,
                ffmpeg,
                summary: summary.as_deref(),
            };
            runtime.block_on(run(config, &recipes, &files, progress.as_ref()))
        }
        Command::Soak {
            slots,
            every,
            keep,
            out,
            csv,
            script,
        } => {
            check_cache(&config, true)?;
            let ffmpeg = check_out(&out, VideoFormat::Mp4, &config)?;
            let soak = soak::Soak {
                slots,
                every,
                keep: keep.max(1),
                out,
                csv,
                script,
                ffmpeg,
            };
            runtime.block_on(soak::soak(config, &soak))
        }
        Command::Serve {
            addr,
            probe_addr,
            out,
            max_connections,
            idle_timeout,
        } => {
            if !(idle_timeout.is_finite() && idle_timeout > 0.0 && idle_timeout <= 3600.0) {
                bail!("--idle-timeout {idle_timeout}: give seconds between 0 and 3600");
            }
            let limits = Limits {
                connections: max_connections.max(1),
                idle: std::time::Duration::from_secs_f64(idle_timeout),
                ..Limits::default()
            };
            let probe_addr = probe_addr.or_else(|| config.server.probe_addr.clone());
            let listen = Listen {
                addr: &addr,
                probe_addr: probe_addr.as_deref(),
                limits,
            };
            runtime.block_on(serve_command(config, &listen, &out, metrics))
        }
    }
}

fn plan(config: &Config, svg: Option<&Path>, json: bool) -> Result<()> {
    let capacity = match &config.device {
        DeviceKind::Host(host) => host.capacity,
        DeviceKind::Cuda { .. } => backend_for(config)?.total_memory()?,
    };
    let models = config.build_models();
    let doc = PlanDoc::new(config, config.plan(&models, capacity));
    let plan = &doc.vram;
    let mut err = std::io::stderr().lock();
    if json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &doc).context("could not write the plan")?;
        writeln!(out)?;
    } else {
        write!(err, "{doc}")?;
    }
    if let Some(svg) = svg {
        std::fs::write(svg, plan_svg(plan))
            .with_context(|| format!("could not write {}", svg.display()))?;
        writeln!(err, "\nVRAM layout drawn to {}", svg.display())?;
    }
    plan.check()?;
    let missing: Vec<String> = Stage::LOAD_ORDER
        .iter()
        .filter_map(|&stage| match &config.models[stage].weights {
            WeightSource::File(path) if !path.is_file() => Some(format!(
                "models.{}.weights = {} is not a file",
                stage.model(),
                path.display()
            )),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "the plan fits, but {}: fix the path, or write \"synthetic\"",
            missing.join("; ")
        );
    }
    Ok(())
}

/// Where `vortex run` writes.
struct Files<'a> {
    out: Option<&'a Path>,
    format: VideoFormat,
    /// The ffmpeg for MP4s, resolved and checked once.
    ffmpeg: Option<Ffmpeg>,
    summary: Option<&'a Path>,
}

/// The recipes in `file`: `.jsonl` many, `.json` or `.toml` one.
fn recipes_from(file: &Path) -> Result<Vec<Recipe>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read the recipe file {}", file.display()))?;
    let what = || format!("recipe file {}", file.display());
    let recipes = match file.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => Recipe::from_json_lines(&text).with_context(what)?,
        Some("json") => vec![Recipe::from_json(&text).with_context(what)?],
        Some("toml") => vec![toml::from_str::<Recipe>(&text).with_context(what)?],
        _ => bail!(
            "{}: name the recipe file .json (one recipe), .toml (one) or .jsonl (one a line)",
            file.display()
        ),
    };
    if recipes.is_empty() {
        bail!("{} holds no recipe", file.display());
    }
    Ok(recipes)
}

/// Refuses a cache folder that cannot be written when this start-up needs it (a network's
/// files, or the pinned ffmpeg for MP4s), before anything is fetched or any model loads.
fn check_cache(config: &Config, mp4: bool) -> Result<()> {
    let networks = config
        .weight_sources()
        .iter()
        .any(|(_, source)| matches!(source, WeightSource::Network(_)));
    let pinned_ffmpeg = mp4
        && config.output.ffmpeg.is_none()
        && std::env::var_os("VORTEX_FFMPEG").is_none_or(|v| v.is_empty());
    if networks || pinned_ffmpeg {
        let cache = vortex_runtime::fetch::cache_dir();
        if let Err(err) = vortex_pipeline::doctor::writable(&cache) {
            bail!("Vortex's cache folder {err} (checked before loading any model)");
        }
    }
    Ok(())
}

/// Refuses an `--out` that cannot be written, before the models load and the first slot;
/// for MP4s, finds (fetching it on the first run) and tries the ffmpeg that will encode them.
fn check_out(dir: &Path, format: VideoFormat, config: &Config) -> Result<Option<Ffmpeg>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out {}: cannot create the folder", dir.display()))?;
    // A process killed in the middle of a slot leaves its `.partial` folder: never a slot.
    for removed in sweep_partial(dir)
        .with_context(|| format!("--out {}: cannot remove unfinished slots", dir.display()))?
    {
        tracing::warn!(target: "vortex", folder = %removed.display(), "removed an unfinished slot left by a process that stopped in its middle");
    }
    let probe = dir.join(format!(".vortex-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("--out {}: cannot write there", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    if format != VideoFormat::Mp4 {
        return Ok(None);
    }
    let ffmpeg = Ffmpeg::resolve(config.output.ffmpeg.as_deref())?;
    ffmpeg.check()?;
    tracing::info!(target: "vortex", ffmpeg = %ffmpeg.program().display(), from = %ffmpeg.source(), "MP4s encoded by this ffmpeg");
    Ok(Some(ffmpeg))
}

async fn run(
    config: Config,
    recipes: &[Recipe],
    files: &Files<'_>,
    progress: Option<&Progress>,
) -> Result<()> {
    let slots = recipes.len() as u64;
    if slots == 0 {
        bail!("--slots 0: ask for at least one slot");
    }
    let (out, summary_file) = (files.out, files.summary);
    let buffers = config.buffers;
    let mut pipeline = VortexPipeline::new(config)?;
    let before = pipeline.vram().tracker().allocated();
    let reserved = pipeline.vram().tracker().reserved();
    let deadline = pipeline.config().timing.deadline;
    let mut tally = RunTally::default();
    for recipe in recipes {
        let mut sink: Box<dyn MediaSink> = match out {
            Some(dir) => {
                let slot = SlotFiles::with_format(
                    &dir.join(format!("slot-{:04}", recipe.slot_id)),
                    &buffers,
                    files.format,
                );
                Box::new(match &files.ffmpeg {
                    Some(ffmpeg) => slot.with_ffmpeg(ffmpeg.clone()),
                    None => slot,
                })
            }
            None => Box::new(Discard),
        };
        match progress {
            Some(progress) => {
                let frames = buffers.seconds * buffers.fps;
                let mut bar = progress.slot(recipe.slot_id, deadline, frames, sink.as_mut());
                let took = match pipeline.generate_slot_into(recipe, &mut bar).await {
                    Ok(result) => {
                        tally.done(&result);
                        Some(std::time::Duration::from_secs_f64(
                            result.generation_time_ms / 1e3,
                        ))
                    }
                    Err(err) => {
                        tally.failed();
                        progress.println(&format!("slot {}: {err}", recipe.slot_id));
                        None
                    }
                };
                bar.done(took);
            }
            None => match pipeline.generate_slot_into(recipe, sink.as_mut()).await {
                Ok(result) => tally.done(&result),
                Err(err) => {
                    tally.failed();
                    eprintln!("slot {}: {err}", recipe.slot_id);
                }
            },
        }
    }
    let summary = RunSummary::new(&pipeline, tally, before, reserved);
    let mut err = std::io::stderr().lock();
    write!(err, "\n{summary}")?;
    if let Some(dir) = out {
        writeln!(err, "slot files written under {}", dir.display())?;
    }
    if let Some(path) = summary_file {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if summary.failed > 0 {
        bail!("{} of {} slots failed", summary.failed, summary.slots);
    }
    Ok(())
}

/// Where `vortex serve` listens.
struct Listen<'a> {
    addr: &'a str,
    probe_addr: Option<&'a str>,
    limits: Limits,
}

async fn serve_command(
    config: Config,
    listen: &Listen<'_>,
    out: &Path,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> Result<()> {
    let addr = listen.addr;
    let token = std::env::var("VORTEX_TOKEN").ok().filter(|t| !t.is_empty());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}: pick another with --addr"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() && token.is_none() {
        bail!(
            "--addr {addr} is reachable from other machines: set VORTEX_TOKEN to the bearer token clients must send, or listen on 127.0.0.1"
        );
    }
    let probes = match listen.probe_addr {
        Some(probe_addr) => Some(
            tokio::net::TcpListener::bind(probe_addr)
                .await
                .with_context(|| {
                    format!("could not listen on {probe_addr}: pick another with --probe-addr or [server] probe_addr")
                })?,
        ),
        None => None,
    };
    check_cache(&config, true)?;
    let ffmpeg = check_out(out, VideoFormat::Mp4, &config)?;
    let mut state = ServerState::new(Box::new(move || metrics.render()));
    state.out = out.to_owned();
    state.token = token;
    state.ffmpeg = ffmpeg;
    state.queue = config.server.queue;
    state.keep = config.server.keep;
    state.expected_slot = config.timing.deadline;
    let state = Arc::new(state);
    tracing::info!(target: "vortex", addr = %local, out = %out.display(), queue = state.queue, keep = state.keep, "serving /health /ready /metrics /vram, POST /slots and /slots/{{id}}");
    let server = tokio::spawn(serve_with(listener, Arc::clone(&state), listen.limits));
    let probe_server = match probes {
        Some(probes) => {
            tracing::info!(target: "vortex", addr = %probes.local_addr()?, "serving /health /ready /metrics on the probe listener");
            Some(tokio::spawn(serve_probes(
                probes,
                Arc::clone(&state),
                Limits::probes(),
            )))
        }
        None => None,
    };
    // Load while /health already answers and /ready says "loading".
    let pipeline = tokio::task::spawn_blocking(move || VortexPipeline::new(config)).await??;
    state.loaded(pipeline).await;
    tracing::info!(target: "vortex", "every model is resident: ready");
    let mut server = server;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("could not listen for SIGTERM")?;
    tokio::select! {
        stopped = &mut server => stopped.context("the server stopped")?,
        _ = terminate.recv() => {
            // Take no more recipes, cancel the queued ones, let the running slot finish (its
            // files appear whole or not at all), then exit; the listeners answer meanwhile
            // (`/ready` says "stopping", a slot's status says where it is).
            tracing::info!(target: "vortex", "SIGTERM: no new slots; queued ones cancelled; waiting for the running slot");
            state.stop().await;
            server.abort();
            if let Some(probes) = probe_server {
                probes.abort();
            }
            tracing::info!(target: "vortex", "stopped");
        }
    }
    Ok(())
}
