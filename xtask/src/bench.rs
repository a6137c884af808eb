//! `cargo xtask bench`: the criterion benchmarks and the end-to-end slot benchmark, written up
//! as `target/vortex-bench/report.md` and `report.json`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::{cargo, run, workspace_root};

/// One criterion result.
#[derive(Debug, Clone)]
struct Estimate {
    id: String,
    mean_ns: f64,
    low_ns: f64,
    high_ns: f64,
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Default)]
pub struct Options {
    /// Build the slot benchmark with the cuda feature and run it on the GPU.
    pub cuda: bool,
    /// Shorter criterion runs.
    pub quick: bool,
    /// Slots in the end-to-end benchmark.
    pub slots: u64,
    /// Skip criterion (report only the slot benchmark).
    pub no_criterion: bool,
}

pub fn bench(options: &Options) -> Result<()> {
    let root = workspace_root();
    let out = root.join("target/vortex-bench");
    fs::create_dir_all(&out)?;
    if !options.no_criterion {
        let mut cmd = cargo();
        // --benches: the criterion targets only (the library's unit-test harness does not take
        // criterion's options).
        cmd.args(["bench", "-p", "vortex-bench", "--benches"]);
        if options.quick {
            cmd.args(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
        }
        run(&mut cmd)?;
    }
    let estimates = read_estimates(&root.join("target/criterion"))?;
    let slot_json = out.join("slot.json");
    let _ = fs::remove_file(&slot_json);
    let slots = options.slots.max(1).to_string();
    let run_slots = |backend: &str, cuda: bool| {
        let mut cmd = cargo();
        cmd.args([
            "run",
            "--release",
            "-p",
            "vortex-pipeline",
            "--bin",
            "vortex",
        ]);
        if cuda {
            cmd.args(["--features", "cuda"]);
        }
        cmd.args([
            "--",
            "run",
            "--slots",
            &slots,
            "--backend",
            backend,
            "--summary",
        ]);
        cmd.arg(&slot_json);
        cmd.stdout(std::process::Stdio::null());
        run(&mut cmd)
    };
    let mut notes = Vec::new();
    if options.cuda {
        if let Err(err) = run_slots("cuda", true) {
            notes.push(format!(
                "the GPU slot run failed ({err}); fell back to the host backend"
            ));
            run_slots("host", false)?;
        }
    } else {
        run_slots("host", false)?;
    }
    let slot = fs::read_to_string(&slot_json).context("the slot benchmark wrote no summary")?;
    let work_json = root.join(BENCH_WORK);
    let work = fs::read_to_string(&work_json)
        .with_context(|| format!("could not read {}", work_json.display()))?;
    let machine = machine();
    let (md, json) = report(&estimates, &slot, &work, &machine, &notes);
    fs::write(out.join("report.md"), md)?;
    fs::write(out.join("report.json"), json)?;
    eprintln!(
        "report written: {} and report.json",
        out.join("report.md").display()
    );
    Ok(())
}

/// Every `new/estimates.json` under `dir`, with its id from `benchmark.json`.
fn read_estimates(dir: &Path) -> Result<Vec<Estimate>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    if let Some(e) = estimate(&path) {
                        found.push(e);
                    }
                } else {
                    stack.push(path);
                }
            }
        }
    }
    if found.is_empty() {
        bail!(
            "no criterion results under {}: run without --no-criterion first",
            dir.display()
        );
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn estimate(new: &Path) -> Option<Estimate> {
    let benchmark = fs::read_to_string(new.join("benchmark.json")).ok()?;
    let estimates = fs::read_to_string(new.join("estimates.json")).ok()?;
    let id = string_after(&benchmark, "\"full_id\":")?;
    let mean = &estimates[estimates.find("\"mean\":")?..];
    Some(Estimate {
        id,
        mean_ns: number_after(mean, "\"point_estimate\":")?,
        low_ns: number_after(mean, "\"lower_bound\":")?,
        high_ns: number_after(mean, "\"upper_bound\":")?,
    })
}

/// The JSON string value after `key` (no escapes expected in ids).
fn string_after(text: &str, key: &str) -> Option<String> {
    let rest = text[text.find(key)? + key.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// The JSON number value after `key`.
fn number_after(text: &str, key: &str) -> Option<f64> {
    leading_number(&text[text.find(key)? + key.len()..])
}

/// The number `text` starts with (after blanks).
fn leading_number(text: &str) -> Option<f64> {
    let rest = text.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The text of the value of member `key` of the JSON object `object` starts with: one of its
/// own members, never a nested object's (the run summary's `clip.slots` is not its `slots`).
fn member<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    let name = format!("\"{key}\"");
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    for (i, c) in object.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.checked_sub(1)?,
            '"' => {
                let value = object[i..]
                    .strip_prefix(&name)
                    .and_then(|rest| rest.trim_start().strip_prefix(':'));
                match value {
                    Some(value) if depth == 1 => return Some(value.trim_start()),
                    _ => in_string = true,
                }
            }
            _ => {}
        }
        if depth == 0 && i > 0 {
            return None;
        }
    }
    None
}

/// The text of the value at `path` (`["slot", "p50_ms"]`) in the JSON object `json`.
fn value_at<'a>(json: &'a str, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(json.trim_start(), |text, key| member(text, key))
}

/// The number at `path` in `json`; NaN where there is none.
fn number_at(json: &str, path: &[&str]) -> f64 {
    value_at(json, path)
        .and_then(leading_number)
        .unwrap_or(f64::NAN)
}

/// The string at `path` in `json` (no escapes expected); empty where there is none.
fn string_at(json: &str, path: &[&str]) -> String {
    value_at(json, path)
        .and_then(|v| v.strip_prefix('"'))
        .and_then(|v| v.find('"').map(|end| v[..end].to_owned()))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| number_after(&t, "MemTotal:"))
        .unwrap_or(0.0);
    format!(
        "{cpu}, {cores} cores, {:.1} GiB memory",
        mem_kib / (1 << 20) as f64
    )
}

/// `x` as a JSON number, `null` where it is not finite (JSON has no NaN).
fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "null".to_owned()
    }
}

fn fmt_ns(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.2} ns"),
        n if n < 1e6 => format!("{:.2} µs", n / 1e3),
        n if n < 1e9 => format!("{:.2} ms", n / 1e6),
        n => format!("{:.3} s", n / 1e9),
    }
}

/// (description, numerator id, denominator id, target: the ratio must be at least this)
type Ratio = (String, String, String, f64);

fn ratios() -> Vec<Ratio> {
    let mut r = Vec::new();
    for t in [1, 2] {
        r.push((
            format!("tracker, {t} thread(s): mutex_hashmap / vortex (≥ 2)"),
            format!("tracker/record_release/mutex_hashmap/{t}"),
            format!("tracker/record_release/vortex/{t}"),
            2.0,
        ));
    }
    r.push((
        "kokoro (fox, 3.525 s of speech): python onnxruntime time / vortex time (≥ 1.0)".to_owned(),
        "kokoro/fox/python_onnxruntime".to_owned(),
        "kokoro/fox/vortex".to_owned(),
        1.0,
    ));
    r.push((
        "load: vortex speed / std_read speed (≥ 0.9)".to_owned(),
        "load/1GiB/std_read".to_owned(),
        "load/1GiB/vortex".to_owned(),
        0.9,
    ));
    r
}

/// The work of one call of each network benchmark, counted from its graph
/// (`bench_work.py` beside it writes it).
const BENCH_WORK: &str = "crates/vortex-models/data/work/bench_work.json";

/// The criterion groups whose work `BENCH_WORK` counts, by its key: every id in a group runs
/// the same graph on the same inputs (Vortex and the Python baselines).
const NETWORK_GROUPS: &[&str] = &["kokoro/fox", "clip/tiny", "liveportrait/tiny/frame"];

/// The baseline: ONNX Runtime's rate on a large MatMul on this machine, in the same run.
const MATMUL_GROUP: &str = "matmul/1024";
const MATMUL_ID: &str = "matmul/1024/vortex";

/// One efficiency line: a benchmark's counted work a call over its measured time.
#[derive(Debug, Clone, PartialEq)]
struct Efficiency {
    id: String,
    flop: f64,
    mean_ns: f64,
    /// Achieved GFLOP/s (integer operations too, for Kokoro's int8 graph).
    gflops: f64,
    /// Over the MatMul baseline's GFLOP/s; NaN without it.
    of_matmul: f64,
}

/// The efficiency lines of `estimates`, the MatMul baseline first, from `work`
/// (`BENCH_WORK`'s text).
fn efficiency(estimates: &[Estimate], work: &str) -> Vec<Efficiency> {
    let flop = |group: &str| number_at(work, &["benches", group, "flop"]);
    let line = |e: &Estimate, flop: f64, baseline: f64| {
        let gflops = flop / e.mean_ns;
        Efficiency {
            id: e.id.clone(),
            flop,
            mean_ns: e.mean_ns,
            gflops,
            of_matmul: gflops / baseline,
        }
    };
    let matmul = estimates
        .iter()
        .find(|e| e.id == MATMUL_ID)
        .map(|e| line(e, flop(MATMUL_GROUP), f64::NAN));
    let baseline = matmul.as_ref().map_or(f64::NAN, |m| m.gflops);
    let mut lines: Vec<Efficiency> = matmul
        .map(|m| Efficiency {
            of_matmul: 1.0,
            ..m
        })
        .into_iter()
        .collect();
    for group in NETWORK_GROUPS {
        let flop = flop(group);
        if flop.is_nan() {
            continue;
        }
        let prefix = format!("{group}/");
        lines.extend(
            estimates
                .iter()
                .filter(|e| e.id.starts_with(&prefix))
                .map(|e| line(e, flop, baseline)),
        );
    }
    lines
}

/// (id, target in ns, what)
const ABSOLUTE: &[(&str, f64, &str)] = &[
    (
        "tracker/record_release/vortex/1",
        100.0,
        "≤ 100 ns per pair",
    ),
    ("scratch/alloc_free/vortex/100", 100.0, "≤ 100 ns per pair"),
    (
        "scratch/alloc_free/vortex/10000",
        100.0,
        "≤ 100 ns per pair",
    ),
    (
        "scratch/alloc_free/vortex/100000",
        100.0,
        "≤ 100 ns per pair",
    ),
    ("monitor/check_limits", 20.0, "≤ 20 ns"),
    ("monitor/snapshot_10_owners", 5000.0, "≤ 5 µs"),
    ("slot/overhead/zero_latency", 50_000.0, "≤ 50 µs per slot"),
];

fn report(
    estimates: &[Estimate],
    slot: &str,
    work: &str,
    machine: &str,
    notes: &[String],
) -> (String, String) {
    let get = |id: &str| estimates.iter().find(|e| e.id == id);
    let mut md = String::new();
    let _ = writeln!(md, "# Vortex benchmark report\n");
    let device = string_at(slot, &["device"]);
    let backend = string_at(slot, &["backend"]);
    let _ = writeln!(
        md,
        "- machine: {machine}\n- slot device: {device} ({backend} backend)"
    );
    for note in notes {
        let _ = writeln!(md, "- note: {note}");
    }
    let _ = writeln!(
        md,
        "- the audio stage runs Kokoro-82M (int8 ONNX on ONNX Runtime); actor, video and CLIP are reference implementations (DESIGN.md §6), not model inference\n"
    );
    let _ = writeln!(
        md,
        "## Criterion results (mean, 95% interval)\n\n| id | mean | interval |\n|---|---|---|"
    );
    for e in estimates {
        let _ = writeln!(
            md,
            "| {} | {} | {} – {} |",
            e.id,
            fmt_ns(e.mean_ns),
            fmt_ns(e.low_ns),
            fmt_ns(e.high_ns)
        );
    }
    let _ = writeln!(
        md,
        "\n## Targets\n\n| check | measured | target | met |\n|---|---|---|---|"
    );
    let mut json_checks = Vec::new();
    for (what, num, den, target) in ratios() {
        if let (Some(n), Some(d)) = (get(&num), get(&den)) {
            let ratio = n.mean_ns / d.mean_ns;
            let met = ratio >= target;
            let _ = writeln!(
                md,
                "| {what} | {ratio:.2} | {target} | {} |",
                if met { "yes" } else { "no" }
            );
            json_checks.push(format!(
                "{{\"check\":\"{what}\",\"measured\":{ratio:.4},\"target\":{target},\"met\":{met}}}"
            ));
        }
    }
    let scratch: Vec<f64> = ["100", "10000", "100000"]
        .iter()
        .filter_map(|p| get(&format!("scratch/alloc_free/vortex/{p}")).map(|e| e.mean_ns))
        .collect();
    if scratch.len() == 3 {
        let spread = scratch.iter().cloned().fold(f64::MIN, f64::max)
            / scratch.iter().cloned().fold(f64::MAX, f64::min);
        let met = spread <= 1.5;
        let _ = writeln!(
            md,
            "| scratch: slowest / fastest population (≤ 1.5) | {spread:.2} | 1.5 | {} |",
            if met { "yes" } else { "no" }
        );
        json_checks.push(format!(
            "{{\"check\":\"scratch spread\",\"measured\":{spread:.4},\"target\":1.5,\"met\":{met}}}"
        ));
    }
    for (id, target, what) in ABSOLUTE {
        if let Some(e) = get(id) {
            let met = e.mean_ns <= *target;
            let _ = writeln!(
                md,
                "| {id} {what} | {} | {} | {} |",
                fmt_ns(e.mean_ns),
                fmt_ns(*target),
                if met { "yes" } else { "no" }
            );
            json_checks.push(format!(
                "{{\"check\":\"{id}\",\"measured_ns\":{:.3},\"target_ns\":{target},\"met\":{met}}}",
                e.mean_ns
            ));
        }
    }
    let lines = efficiency(estimates, work);
    let _ = writeln!(
        md,
        "\n## Achieved efficiency\n\nEach network's work a call (counted from its graph: `{BENCH_WORK}`) over its measured time, against ONNX Runtime's rate on a 1024³ f32 MatMul on this machine in the same run (`{MATMUL_ID}`, the same 2 threads). Kokoro's int8 graph counts integer operations; other exports than the tiny ones (`VORTEX_CLIP_EXPORTS`, `VORTEX_LIVEPORTRAIT_EXPORT`) have no counted work here.\n\n| benchmark | work a call | mean | achieved | / MatMul |\n|---|---|---|---|---|"
    );
    if lines.is_empty() {
        let _ = writeln!(md, "| (no benchmark with counted work ran) | | | | |");
    }
    for l in &lines {
        let _ = writeln!(
            md,
            "| {} | {:.4} GFLOP | {} | {:.2} GFLOP/s | {:.3} |",
            l.id,
            l.flop / 1e9,
            fmt_ns(l.mean_ns),
            l.gflops,
            l.of_matmul
        );
    }
    let p = |path: &[&str]| number_at(slot, path);
    let (p50, p99, deadline, critical) = (
        p(&["slot", "p50_ms"]),
        p(&["slot", "p99_ms"]),
        p(&["deadline_ms"]),
        p(&["critical_path_ms"]),
    );
    let _ = writeln!(
        md,
        "\n## End-to-end slots ({} slots, profile {}, time scale {})\n",
        p(&["slots"]),
        string_at(slot, &["profile"]),
        p(&["time_scale"])
    );
    let _ = writeln!(
        md,
        "| | P50 | P99 |\n|---|---|---|\n| slot | {p50:.1} ms | {p99:.1} ms |"
    );
    for stage in ["audio", "actor", "video", "clip_b", "clip_l"] {
        let _ = writeln!(
            md,
            "| {stage} | {:.1} ms | {:.1} ms |",
            p(&["stages", stage, "p50_ms"]),
            p(&["stages", stage, "p99_ms"])
        );
    }
    let _ = writeln!(
        md,
        "\nCritical path {critical:.1} ms; deadline {deadline:.0} ms: P99 {} the deadline; P50 / critical path = {:.4}.",
        if p99 <= deadline { "meets" } else { "misses" },
        p50 / critical
    );
    let json = format!(
        "{{\n\"machine\":\"{}\",\n\"device\":\"{device}\",\n\"backend\":\"{backend}\",\n\"notes\":[{}],\n\"criterion\":[{}],\n\"checks\":[{}],\n\"efficiency\":[{}],\n\"slot\":{}\n}}\n",
        machine.replace('"', "'"),
        notes
            .iter()
            .map(|n| format!("\"{}\"", n.replace('"', "'")))
            .collect::<Vec<_>>()
            .join(","),
        estimates
            .iter()
            .map(|e| format!(
                "{{\"id\":\"{}\",\"mean_ns\":{:.3},\"low_ns\":{:.3},\"high_ns\":{:.3}}}",
                e.id, e.mean_ns, e.low_ns, e.high_ns
            ))
            .collect::<Vec<_>>()
            .join(",\n"),
        json_checks.join(",\n"),
        lines
            .iter()
            .map(|l| format!(
                "{{\"id\":\"{}\",\"flop\":{},\"mean_ns\":{:.3},\"gflops\":{},\"of_matmul\":{}}}",
                l.id,
                l.flop,
                l.mean_ns,
                json_number(l.gflops),
                json_number(l.of_matmul)
            ))
            .collect::<Vec<_>>()
            .join(",\n"),
        slot.trim()
    );
    (md, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_and_summary_json() {
        let estimates = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":29.8,"upper_bound":30.2},"point_estimate":30.06,"standard_error":0.1},"median":{"point_estimate":1.0}}"#;
        let mean = &estimates[estimates.find("\"mean\":").unwrap()..];
        assert_eq!(number_after(mean, "\"point_estimate\":"), Some(30.06));
        assert_eq!(number_after(mean, "\"upper_bound\":"), Some(30.2));
        assert_eq!(
            string_after(
                r#"{"group_id":"g","full_id":"tracker/record_release/vortex/1"}"#,
                "\"full_id\":"
            )
            .as_deref(),
            Some("tracker/record_release/vortex/1")
        );
        let e = |id: &str, ns| Estimate {
            id: id.to_owned(),
            mean_ns: ns,
            low_ns: ns,
            high_ns: ns,
        };
        // What `vortex run --slots 3 --summary FILE` wrote (the shipped config with the
        // reference audio, 16² frames for a second at 4 fps, seed-targets at a hundredth);
        // crates/vortex-pipeline/tests/cli.rs fails when the summary's shape drifts from it.
        let slot = include_str!("../tests/data/run-summary.json");
        let work = include_str!("../../crates/vortex-models/data/work/bench_work.json");
        let (md, json) = report(
            &[
                e("tracker/record_release/mutex_hashmap/1", 30.0),
                e("tracker/record_release/vortex/1", 20.0),
                // 2.147 GFLOP in 50 ms: 42.9 GFLOP/s.
                e("matmul/1024/vortex", 50e6),
                // 193.8 GOP in 1 s and 2 s.
                e("kokoro/fox/vortex", 1e9),
                e("kokoro/fox/python_onnxruntime", 2e9),
                e("clip/b32/vortex", 1e6),
            ],
            slot,
            work,
            "test machine",
            &[],
        );
        assert!(
            md.contains("| matmul/1024/vortex | 2.1475 GFLOP | 50.00 ms | 42.95 GFLOP/s | 1.000 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| kokoro/fox/vortex | 193.7758 GFLOP | 1.000 s | 193.78 GFLOP/s | 4.512 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| kokoro/fox/python_onnxruntime | 193.7758 GFLOP | 2.000 s | 96.89 GFLOP/s | 2.256 |"),
            "{md}"
        );
        assert!(
            !md.contains("| clip/b32/vortex | 0."),
            "no counted work for a full-size export: {md}"
        );
        assert!(
            json.contains("{\"id\":\"kokoro/fox/vortex\",\"flop\":193775776784,\"mean_ns\":1000000000.000,\"gflops\":193.7758,\"of_matmul\":4.5117}"),
            "{json}"
        );
        // Without the baseline the ratio is null, not NaN.
        let lines = efficiency(&[e("clip/tiny/vortex", 1e6)], work);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].of_matmul.is_nan() && (lines[0].gflops - 2.755_584).abs() < 1e-9);
        assert!(
            md.contains("| tracker, 1 thread(s): mutex_hashmap / vortex (≥ 2) | 1.50 | 2 | no |"),
            "{md}"
        );
        assert!(
            md.contains("## End-to-end slots (3 slots, profile seed-targets, time scale 0.01)"),
            "{md}"
        );
        assert!(md.contains("| slot | 130.5 ms | 130.6 ms |"), "{md}");
        assert!(md.contains("| actor | 121.1 ms | 121.2 ms |"), "{md}");
        assert!(
            md.contains("Critical path 126.3 ms; deadline 15000 ms"),
            "{md}"
        );
        assert!(md.contains("P99 meets the deadline"), "{md}");
        assert!(!md.contains("NaN"), "{md}");
        assert!(
            json.contains("\"met\":false") && json.contains("\"device\":\"host (rtx3060-12gb)\"")
        );
        // A member is its object's own, whatever comes first: `clip.slots` is a list.
        let reordered =
            r#"{"clip": {"slots": [{"slots": 9}]}, "name": "a \"slots\": 8", "slots": 3}"#;
        assert_eq!(number_at(reordered, &["slots"]), 3.0);
        assert_eq!(
            value_at(reordered, &["clip", "slots"]).map(|v| &v[..1]),
            Some("[")
        );
        assert!(number_at(reordered, &["stages", "audio", "p50_ms"]).is_nan());
    }
}
