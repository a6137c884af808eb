//! `vortex-bench`: criterion benchmarks of Vortex (not published). The benchmarks live in
//! `benches/`; this library holds the baselines they compare against and the measuring aids
//! they share (`Interleaved`: two workloads timed in alternation; `OutsideArena`: what creating
//! a network's sessions allocates outside the arena), written once and tested so that a ratio
//! against them means something.

use std::collections::HashMap;
use std::sync::Mutex;

/// The tracker a C++ team would write first: one mutex around a map from pointer to record,
/// the record owning what it describes (owner name, purpose, size, requested), plus running
/// totals per owner. The baseline of the `tracker/record_release` benchmark.
#[derive(Debug, Default)]
pub struct MutexHashMapTracker {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<u64, Record>,
    by_owner: HashMap<String, u64>,
    total: u64,
}

#[derive(Debug)]
struct Record {
    owner: String,
    #[allow(dead_code)] // kept for reports, as a real record would be
    purpose: u8,
    size: u64,
    #[allow(dead_code)]
    requested: u64,
}

impl MutexHashMapTracker {
    /// Records `size` bytes at `ptr` for `owner`.
    pub fn record(&self, ptr: u64, owner: &str, purpose: u8, size: u64, requested: u64) {
        let mut state = self.inner.lock().unwrap();
        state.records.insert(
            ptr,
            Record {
                owner: owner.to_owned(),
                purpose,
                size,
                requested,
            },
        );
        match state.by_owner.get_mut(owner) {
            Some(bytes) => *bytes += size,
            None => {
                state.by_owner.insert(owner.to_owned(), size);
            }
        }
        state.total += size;
    }

    /// Releases the record at `ptr`; returns its size (0 if there was none).
    pub fn release(&self, ptr: u64) -> u64 {
        let mut state = self.inner.lock().unwrap();
        let Some(record) = state.records.remove(&ptr) else {
            return 0;
        };
        if let Some(bytes) = state.by_owner.get_mut(&record.owner) {
            *bytes -= record.size;
        }
        state.total -= record.size;
        record.size
    }

    /// Bytes recorded now.
    pub fn total(&self) -> u64 {
        self.inner.lock().unwrap().total
    }

    /// Bytes recorded now for `owner`.
    pub fn owner_bytes(&self, owner: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .by_owner
            .get(owner)
            .copied()
            .unwrap_or(0)
    }
}

/// Sizes the scratch benchmarks cycle through: 256 B to 16 KiB, a fixed pseudo-random
/// sequence so every function sees the same requests.
pub fn scratch_sizes(count: usize) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            256 + state % (16 * 1024 - 256)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_tracker_counts_like_a_tracker() {
        let tracker = MutexHashMapTracker::default();
        tracker.record(1, "flux", 0, 100, 99);
        tracker.record(2, "clip", 1, 50, 50);
        tracker.record(3, "flux", 2, 25, 1);
        assert_eq!(tracker.total(), 175);
        assert_eq!(tracker.owner_bytes("flux"), 125);
        assert_eq!(tracker.release(1), 100);
        assert_eq!(tracker.release(1), 0);
        assert_eq!(tracker.owner_bytes("flux"), 25);
        assert_eq!(tracker.total(), 75);
    }

    #[test]
    fn scratch_sizes_are_deterministic_and_in_range() {
        let sizes = scratch_sizes(1000);
        assert_eq!(sizes, scratch_sizes(1000));
        assert!(sizes.iter().all(|&s| (256..16 * 1024).contains(&s)));
        assert!(sizes.iter().any(|&s| s > 8 * 1024) && sizes.iter().any(|&s| s < 4 * 1024));
    }

    #[test]
    fn interleaved_runs_alternate_and_the_speedup_is_the_median_ratio() {
        let order = std::cell::RefCell::new(Vec::new());
        let m = Interleaved::measure(
            3,
            || order.borrow_mut().push('a'),
            || order.borrow_mut().push('b'),
        );
        assert_eq!(order.into_inner(), ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
        assert_eq!((m.a.len(), m.b.len()), (3, 3));
        let fixed = Interleaved {
            a: vec![1.0, 2.0, 1.0, 4.0],
            b: vec![1.1, 1.0, 0.9, 4.0],
        };
        // ratios 1.1, 0.5, 0.9, 1.0 -> median (0.9 + 1.0) / 2
        assert!((fixed.median_speedup() - 0.95).abs() < 1e-12);
        assert!(fixed.report("vortex", "python").contains("0.950x"));
        assert!(Interleaved::default().median_speedup().is_nan());
    }

    #[test]
    fn outside_arena_counts_what_creation_added_and_the_rss_it_grew() {
        use std::cell::Cell;
        let counter = Cell::new(1_000u64);
        let (made, cost) = OutsideArena::measure(
            || counter.get(),
            || {
                counter.set(1_500);
                // 64 MiB touched: the resident set grows by about that much.
                let v = vec![1u8; 64 << 20];
                std::hint::black_box(&v);
                v
            },
        );
        assert_eq!(made.len(), 64 << 20);
        assert_eq!(cost.allocated, 500);
        if rss() > 0 {
            // (other tests of this binary may free memory meanwhile: half is enough)
            assert!(cost.rss >= 32 << 20, "{}", cost.rss);
        }
        let line = cost.report("net", 50_000);
        assert!(
            line.contains("allocated 500 B") && line.contains("(1.00% of the weights)"),
            "{line}"
        );
        // A counter that went down (a free) is no negative cost.
        let (_, freed) = OutsideArena::measure(|| counter.get(), || counter.set(0));
        assert_eq!(freed.allocated, 0);
    }
}

/// Two workloads timed in alternation (a, b, a, b, …), so a machine's drifting load (a shared
/// host, thermal limits) falls on both alike; criterion's groups time one and then the other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interleaved {
    /// Seconds of each run of `a`.
    pub a: Vec<f64>,
    /// Seconds of each run of `b`, run right after the `a` of the same index.
    pub b: Vec<f64>,
}

impl Interleaved {
    /// `rounds` pairs of one run of `a` then one of `b`, after one unmeasured run of each.
    pub fn measure(rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> Self {
        a();
        b();
        let mut out = Interleaved::default();
        for _ in 0..rounds {
            let t = std::time::Instant::now();
            a();
            out.a.push(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            b();
            out.b.push(t.elapsed().as_secs_f64());
        }
        out
    }

    /// The median over the rounds of `b`'s time over `a`'s (above 1: `a` is faster).
    pub fn median_speedup(&self) -> f64 {
        let mut r: Vec<f64> = self.a.iter().zip(&self.b).map(|(a, b)| b / a).collect();
        r.sort_by(f64::total_cmp);
        match r.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => r[n / 2],
            n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
        }
    }

    /// One line: the medians of both and the median speedup.
    pub fn report(&self, a: &str, b: &str) -> String {
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        format!(
            "interleaved, {} rounds: {a} {:.3} s, {b} {:.3} s (medians); {a} is {:.3}x {b}'s speed (median of the rounds' ratios)",
            self.a.len(),
            median(&self.a),
            median(&self.b),
            self.median_speedup()
        )
    }
}

/// What creating a network's sessions cost outside Vortex's arena: bytes ONNX Runtime
/// allocated through its own allocator (folded or repacked weight copies), and the growth of
/// the process's resident set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutsideArena {
    /// Bytes allocated through the runtime's allocator during creation.
    pub allocated: u64,
    /// Growth of the resident set during creation.
    pub rss: u64,
}

impl OutsideArena {
    /// Measures `create`, given the runtime's untracked-bytes counter.
    pub fn measure<T>(untracked: impl Fn() -> u64, create: impl FnOnce() -> T) -> (T, Self) {
        let (before, rss_before) = (untracked(), rss());
        let made = create();
        let cost = OutsideArena {
            allocated: untracked().saturating_sub(before),
            rss: rss().saturating_sub(rss_before),
        };
        (made, cost)
    }

    /// One log line: `name`, its weights in the arena, and these figures as shares of them.
    pub fn report(&self, name: &str, weights: u64) -> String {
        let share = |b: u64| 100.0 * b as f64 / weights.max(1) as f64;
        format!(
            "{name}: weights {weights} B in the arena; the sessions' creation allocated {} B through the runtime's allocator outside it ({:.2}% of the weights) and grew the resident set by {} B ({:.1}%)",
            self.allocated,
            share(self.allocated),
            self.rss,
            share(self.rss)
        )
    }
}

/// Resident set of this process, bytes (0 where `/proc` cannot say).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub mod python {
    //! A Python baseline as a worker process: started once, then asked to `run` its work once
    //! per criterion iteration over stdin (one line each way), so that only the work is timed.

    use std::io::{BufRead, BufReader, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

    use vortex_runtime::fetch;
    use vortex_runtime::library::ORT_WHEEL;

    /// Where the baselines' packages are installed: the pinned onnxruntime wheel (from
    /// Vortex's cache) and numpy, with `pip install --target` under `target/vortex-bench/py`.
    pub fn onnxruntime_site(workspace: &Path) -> Result<PathBuf, String> {
        let site = workspace.join("target/vortex-bench/py");
        if !site.join("onnxruntime").is_dir() {
            let wheel = fetch::fetch_wheel(&ORT_WHEEL, &fetch::cache_dir(), "")
                .map_err(|e| e.to_string())?;
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("--target")
                .arg(&site)
                .arg(&wheel)
                .arg("numpy")
                .status()
                .map_err(|e| format!("python3 -m pip: {e}"))?;
            if !status.success() {
                return Err(format!("pip install of the baseline failed: {status}"));
            }
        }
        Ok(site)
    }

    /// A running worker.
    #[derive(Debug)]
    pub struct Worker {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
        /// What it said when it was ready (versions).
        pub banner: String,
    }

    impl Worker {
        /// Starts `python3 script args…` with `site` (if any) on `PYTHONPATH`, and waits for
        /// its `ready` line.
        pub fn start(
            script: &Path,
            args: &[&std::ffi::OsStr],
            site: Option<&Path>,
        ) -> Result<Worker, String> {
            let mut command = Command::new("python3");
            command.arg(script).args(args);
            if let Some(site) = site {
                command.env("PYTHONPATH", site);
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
            let mut line = String::new();
            stdout.read_line(&mut line).map_err(|e| e.to_string())?;
            if !line.starts_with("ready") {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the worker did not start: {line:?}"));
            }
            Ok(Worker {
                child,
                stdin,
                stdout,
                banner: line.trim().to_owned(),
            })
        }

        /// One run of its work: the number it answers (`done N`).
        pub fn run(&mut self) -> usize {
            let mut line = String::new();
            writeln!(self.stdin, "run").expect("the worker's stdin");
            self.stdout
                .read_line(&mut line)
                .expect("the worker's answer");
            line.trim()
                .strip_prefix("done ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("the worker answered {line:?}, not `done N`"))
        }
    }

    impl Drop for Worker {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
