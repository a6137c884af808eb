//! A real Prometheus (Debian's package; `.ci/run` installs it) scraping `vortex serve` every
//! second while slots run: it never sees the target down, and `histogram_quantile` over the
//! slot duration histogram answers with a number. On a machine without `prometheus` the test
//! says, in `cargo test`'s output, that it was not run and why, and passes: nothing else in
//! the workspace's tests needs a system package.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::Shipped;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vortex_pipeline::VortexPipeline;
use vortex_pipeline::http::{ServerState, serve};

async fn get(addr: SocketAddr, path: &str, body: Option<&str>) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, String::new()); // not listening yet
    };
    let request = match body {
        Some(b) => format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    (status, body.to_owned())
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first sample's value of an instant query, if any.
async fn query(prometheus: SocketAddr, promql: &str) -> Option<f64> {
    let (status, body) = get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
        None,
    )
    .await;
    if status != 200 {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    doc["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a `prometheus` program runs here; if not, says so past the test harness's capture
/// (written to the process's stderr, not through `eprintln!`), so the run shows it.
fn prometheus_installed() -> bool {
    match Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => true,
        outcome => {
            let why = match outcome {
                Ok(status) => format!("`prometheus --version` failed ({status})"),
                Err(err) => format!("`prometheus` cannot be run ({err})"),
            };
            let _ = writeln!(
                std::io::stderr(),
                "NOT RUN: a_real_prometheus_scrapes_during_slots_and_its_quantiles_answer: {why}; install it (Debian: apt-get install prometheus; .ci/run does) to run it"
            );
            false
        }
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_during_slots_and_its_quantiles_answer() {
    if !prometheus_installed() {
        return;
    }
    let recorder = vortex_pipeline::http::prometheus()
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    vortex_vram::metrics::describe();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vortex = listener.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(move || handle.render())));
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));
    let config = Shipped::small_slot()
        .set("timing.time_scale", "0.1")
        .config();
    state.loaded(VortexPipeline::new(config).unwrap()).await;

    let dir = std::env::temp_dir().join(format!("vortex-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let yml = dir.join("prometheus.yml");
    std::fs::write(
        &yml,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vortex\n    static_configs:\n      - targets: ['{vortex}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus}"))
        .args(["--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian: apt-get install prometheus; .ci/run installs it)");
    let _child = Killed(child);

    // Wait for the first scrape, then run slots (each about 1.3 s) while it scrapes.
    let mut up = None;
    for _ in 0..100 {
        up = query(prometheus, "up{job=\"vortex\"}").await;
        if up.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(up, Some(1.0), "Prometheus scraped vortex");
    for id in 1..=4u64 {
        let recipe = format!(r#"{{"slot_id": {id}, "script": "Hello."}}"#);
        let (status, body) = get(vortex, "/slots", Some(&recipe)).await;
        assert_eq!(status, 202, "{body}");
        loop {
            let (_, body) = get(vortex, &format!("/slots/{id}"), None).await;
            if !body.contains("\"running\"") {
                assert!(body.contains("\"done\""), "{body}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let lowest_up = query(prometheus, "min_over_time(up{job=\"vortex\"}[1m])").await;
    assert_eq!(
        lowest_up,
        Some(1.0),
        "the target was never down while slots ran"
    );
    let p99 = query(
        prometheus,
        "histogram_quantile(0.99, sum by (le) (increase(icn_vortex_slot_duration_seconds_bucket[1m])))",
    )
    .await
    .expect("histogram_quantile answers");
    eprintln!("Prometheus: P99 slot duration {p99:.2} s");
    assert!(
        p99 > 0.5 && p99 < 4.0,
        "a slot of about 1.3 s lands in a bucket near it: {p99}"
    );
    let stages = query(
        prometheus,
        "histogram_quantile(0.5, sum by (le) (increase(icn_vortex_stage_duration_seconds_bucket{stage=\"actor\"}[1m])))",
    )
    .await
    .expect("the stage histogram answers too");
    assert!(
        stages > 0.5 && stages < 3.0,
        "actor P50 about 1.2 s: {stages}"
    );
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
