//! The HTTP endpoints of `vortex serve` on a loopback port, spoken to over raw TCP as any
//! client would: health before and after load, slots on request (a JSON recipe in, the slot's
//! status, manifest and MP4 out), Prometheus text that parses, the VRAM breakdown, hostile
//! requests, and the bearer token.

mod common;

use std::sync::Arc;

use common::Shipped;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vortex_pipeline::VortexPipeline;
use vortex_pipeline::config::Config;
use vortex_pipeline::http::{ServerState, serve};

async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    send(addr, method, path, "", None).await
}

/// One request with `headers` (each ending in CRLF) and an optional JSON body.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: Option<&str>,
) -> (u16, String, String) {
    let (status, head, bytes) = send_bytes(addr, method, path, headers, body).await;
    (status, head, String::from_utf8_lossy(&bytes).into_owned())
}

async fn send_bytes(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body_headers = body.map_or(String::new(), |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}{body_headers}\r\n{}",
        body.unwrap_or("")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

/// Polls `GET /slots/{id}` until the slot is no longer running.
async fn finished(addr: std::net::SocketAddr, id: u64) -> serde_json::Value {
    for _ in 0..2000 {
        let (status, _, body) = request(addr, "GET", &format!("/slots/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        if doc["status"] != "running" && doc["status"] != "queued" {
            return doc;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("slot {id} did not finish");
}

fn small_config() -> Config {
    Shipped::small_slot()
        .set("timing.cost_profile", "\"zero\"")
        .config()
}

/// A Prometheus exposition line: `# HELP`/`# TYPE` comments, or `name{labels} value`.
fn valid_line(line: &str) -> bool {
    if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
        return true;
    }
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let labels_ok =
        name_end == series.len() || (series.ends_with('}') && series[name_end..].contains('='));
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && labels_ok
        && (value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value))
}

#[tokio::test]
async fn endpoints_on_a_loopback_port() {
    let recorder = vortex_pipeline::http::prometheus()
        .unwrap()
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    vortex_vram::metrics::describe();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(move || handle.render())));
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));

    assert_eq!(request(addr, "GET", "/health").await.0, 200);
    let (status, _, body) = request(addr, "GET", "/ready").await;
    assert_eq!((status, body.contains("loading")), (503, true));

    state
        .loaded(VortexPipeline::new(small_config()).unwrap())
        .await;
    let (status, _, body) = request(addr, "GET", "/ready").await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready["models"],
        serde_json::json!(["flux", "liveportrait", "kokoro", "clip_b", "clip_l"])
    );

    let recipe = r#"{"slot_id": 1, "script": "Hello.", "prompt": "a presenter"}"#;
    let (status, head, body) = send(addr, "POST", "/slots", "", Some(recipe)).await;
    assert_eq!(status, 202, "{body}");
    assert!(head.contains("location: /slots/1"), "{head}");
    let slot = finished(addr, 1).await;
    assert_eq!(slot["status"], "done", "{slot}");
    assert_eq!(
        (
            slot["manifest"]["recipe"]["slot_id"].as_u64(),
            slot["manifest"]["reference_implementation"].as_bool()
        ),
        (Some(1), Some(true))
    );
    let (status, head, mp4) = send_bytes(addr, "GET", "/slots/1/video.mp4", "", None).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: video/mp4"), "{head}");
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4 file");
    let (status, _, body) = send(addr, "POST", "/slots", "", Some(recipe)).await;
    assert_eq!(status, 409, "the same slot id twice: {body}");
    for (bad, field) in [
        (r#"{"slot_id": 2}"#, "script"),
        (r#"{"slot_id": 2, "script": "Hi.", "speed": 3}"#, "speed"),
        (r#"{"slot_id": 2, "script": ""}"#, "script"),
        ("not json", "expected"),
    ] {
        let (status, _, body) = send(addr, "POST", "/slots", "", Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(field), "{bad}: {body}");
    }
    let huge = format!(r#"{{"slot_id": 3, "script": "{}"}}"#, "a".repeat(100_000));
    assert_eq!(send(addr, "POST", "/slots", "", Some(&huge)).await.0, 413);
    assert_eq!(request(addr, "HEAD", "/health").await.0, 200);
    assert_eq!(request(addr, "GET", "/health?verbose=1").await.0, 200);
    assert_eq!(request(addr, "GET", "/slots/99").await.0, 404);
    assert_eq!(request(addr, "GET", "/slots/x").await.0, 400);
    assert_eq!(request(addr, "GET", "/slots/1/passwd").await.0, 404);

    let (status, head, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in body.lines() {
        assert!(valid_line(line), "not Prometheus text: {line:?}");
    }
    for needle in [
        "# TYPE icn_vortex_slots_total counter",
        "icn_vortex_slots_total{outcome=\"ok\"} 1",
        "# TYPE icn_vortex_vram_usage_bytes gauge",
        "icn_vortex_vram_owner_bytes{owner=\"flux\",purpose=\"model_weights\"} 6759800832",
        "icn_vortex_stage_duration_seconds",
        "icn_vortex_slot_duration_seconds",
        // Histograms, so that histogram_quantile works on them.
        "# TYPE icn_vortex_slot_duration_seconds histogram",
        "icn_vortex_slot_duration_seconds_bucket{le=\"15\"}",
        "icn_vortex_slot_duration_seconds_count",
        "# TYPE icn_vortex_stage_duration_seconds histogram",
        "icn_vortex_stage_duration_seconds_bucket{stage=\"audio\",le=\"0.005\"}",
    ] {
        assert!(
            body.contains(needle),
            "{needle:?} missing from /metrics:\n{body}"
        );
    }

    let (status, _, body) = request(addr, "GET", "/vram").await;
    assert_eq!(status, 200);
    let vram: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(vram["limits"]["hard"], 11_500_000_000u64);
    assert!(vram["fragmentation"].as_f64().is_some());
    let owners = vram["usage"]["owners"].as_array().unwrap();
    assert!(
        owners
            .iter()
            .any(|o| o["owner"] == "video_buffer" && o["by_purpose"][0]["purpose"] == "staging")
    );

    assert_eq!(request(addr, "GET", "/nope").await.0, 404);
    assert_eq!(request(addr, "DELETE", "/health").await.0, 405);
    assert_eq!(request(addr, "DELETE", "/slots").await.0, 405);
    let (status, _, body) = request(addr, "GET", "/slots").await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list["slots"],
        serde_json::json!([{"slot_id": 1, "status": "done"}])
    );
    server.abort();
}

#[tokio::test]
async fn ready_answers_503_once_the_device_is_lost() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(String::new)));
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));
    let host = Arc::new(vortex_vram::HostBackend::new(
        vortex_vram::HostConfig::rtx3060_12gb(),
    ));
    let pipeline = VortexPipeline::with_backend(small_config(), host.clone()).unwrap();
    state.loaded(pipeline).await;
    assert_eq!(request(addr, "GET", "/ready").await.0, 200);

    host.faults().set_device_lost(true);
    let recipe = r#"{"slot_id": 1, "script": "Hello."}"#;
    let (status, _, body) = send(addr, "POST", "/slots", "", Some(recipe)).await;
    assert_eq!(status, 202, "{body}");
    let slot = finished(addr, 1).await;
    assert_eq!(slot["status"], "failed", "{slot}");
    assert!(
        slot["error"].as_str().unwrap().contains("device was lost"),
        "{slot}"
    );
    host.faults().set_device_lost(false);
    let (status, _, body) = request(addr, "GET", "/ready").await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "device_lost", "{body}");
    assert_eq!(request(addr, "GET", "/health").await.0, 200, "still live");
    server.abort();
}

#[tokio::test]
async fn probes_and_vram_answer_while_a_slot_runs() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = ServerState::new(Box::new(String::new));
    state.queue = 1;
    let state = Arc::new(state);
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));
    // A slot of about 3.3 s on the real clock: seed-targets at a quarter.
    let config = Shipped::small_slot()
        .set("timing.time_scale", "0.25")
        .config();
    state.loaded(VortexPipeline::new(config).unwrap()).await;
    let recipe = r#"{"slot_id": 1, "script": "Hello."}"#;
    assert_eq!(send(addr, "POST", "/slots", "", Some(recipe)).await.0, 202);
    let slot = tokio::spawn(async move { finished(addr, 1).await });
    // Wait until the slot holds the pipeline.
    let mut busy = false;
    for _ in 0..200 {
        let (_, _, body) = request(addr, "GET", "/ready").await;
        if body.contains("\"busy\":true") {
            busy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(busy, "the slot started");
    for path in ["/health", "/ready", "/vram", "/metrics"] {
        let (status, _, body) = request(addr, "GET", path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !slot.is_finished(),
            "{path} answered while the slot was still running"
        );
    }
    let (_, _, body) = request(addr, "GET", "/vram").await;
    let vram: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(vram["limits"]["hard"], 11_500_000_000u64);
    // One recipe waits behind the running slot ([server] queue = 1 here); the next is told
    // when to come back.
    let (status, _, body) = send(
        addr,
        "POST",
        "/slots",
        "",
        Some(r#"{"slot_id": 2, "script": "Hi."}"#),
    )
    .await;
    assert_eq!(status, 202, "queued: {body}");
    let accepted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (accepted["status"].as_str(), accepted["place"].as_u64()),
        (Some("queued"), Some(1))
    );
    let (status, head, body) = send(
        addr,
        "POST",
        "/slots",
        "",
        Some(r#"{"slot_id": 3, "script": "Hi."}"#),
    )
    .await;
    assert_eq!(status, 429, "the queue is full: {body}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    // Nothing has finished yet: the expected wait is the deadline (15 s) for each slot ahead.
    assert_eq!(retry, 30, "{head}");
    assert!(body.contains("[server] queue"), "{body}");
    let (status, _, body) = request(addr, "GET", "/slots/2").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"queued\"") && body.contains("\"place\":1"),
        "{body}"
    );
    let (_, _, body) = request(addr, "GET", "/slots").await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list,
        serde_json::json!({"queued": 1, "queue_capacity": 1, "slots": [
            {"slot_id": 2, "status": "queued"},
            {"slot_id": 1, "status": "running"},
        ]})
    );
    let done = slot.await.unwrap();
    assert_eq!(done["status"], "done", "{done}");
    let second = finished(addr, 2).await;
    assert_eq!(second["status"], "done", "{second}");
    server.abort();
}

#[tokio::test]
async fn with_a_token_everything_but_the_probes_needs_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = ServerState::new(Box::new(String::new));
    state.token = Some("s3cret".to_owned());
    let state = Arc::new(state);
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));
    state
        .loaded(VortexPipeline::new(small_config()).unwrap())
        .await;
    assert_eq!(request(addr, "GET", "/health").await.0, 200);
    assert_eq!(request(addr, "GET", "/ready").await.0, 200);
    for path in ["/vram", "/metrics", "/slots/1"] {
        let (status, head, _) = request(addr, "GET", path).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            head.to_lowercase().contains("www-authenticate: bearer"),
            "{head}"
        );
        let wrong = "Authorization: Bearer nope\r\n";
        assert_eq!(send(addr, "GET", path, wrong, None).await.0, 401, "{path}");
    }
    let right = "Authorization: Bearer s3cret\r\n";
    assert_eq!(send(addr, "GET", "/vram", right, None).await.0, 200);
    let recipe = r#"{"slot_id": 1, "script": "Hello."}"#;
    assert_eq!(send(addr, "POST", "/slots", "", Some(recipe)).await.0, 401);
    assert_eq!(
        send(addr, "POST", "/slots", right, Some(recipe)).await.0,
        202
    );
    server.abort();
}

/// Clients that connect and say nothing cannot starve the probes: beyond the connection limit
/// they wait in the kernel's queue, and silent connections are closed after the idle time.
#[tokio::test]
async fn idle_connections_cannot_starve_the_probes() {
    use vortex_pipeline::http::{Limits, serve_with};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(String::new)));
    let limits = Limits {
        connections: 16,
        idle: std::time::Duration::from_millis(300),
        ..Limits::default()
    };
    let server = tokio::spawn(serve_with(listener, Arc::clone(&state), limits));
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    let (status, _, _) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        request(addr, "GET", "/health"),
    )
    .await
    .expect("/health answered");
    assert_eq!(status, 200);
    let waited = started.elapsed();
    eprintln!("/health answered after {waited:?} behind 40 silent connections");
    // The silent connections the server took were closed by it.
    let mut closed = 0;
    for mut stream in idle.drain(..16) {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 16,
        "the server closed every silent connection it held"
    );
    server.abort();
}

/// The probe listener has a connection budget of its own: with 300 silent connections on the
/// main port (more than its 256), `/health` on the probe port answers at once.
#[tokio::test]
async fn the_probe_port_answers_behind_300_idle_connections_on_the_main_port() {
    use vortex_pipeline::http::{Limits, serve_probes, serve_with};
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let main_addr = main.local_addr().unwrap();
    let probes = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe_addr = probes.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(|| "# metrics\n".to_owned())));
    let server = tokio::spawn(serve_with(main, Arc::clone(&state), Limits::default()));
    let probe_server = tokio::spawn(serve_probes(probes, Arc::clone(&state), Limits::probes()));
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(main_addr).await.unwrap());
    }
    // The main port is saturated: its /health waits behind the silent connections.
    let behind = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        request(main_addr, "GET", "/health"),
    )
    .await;
    assert!(
        behind.is_err(),
        "the main port is saturated by 300 silent connections"
    );
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let (status, _, body) = request(probe_addr, "GET", "/health").await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        slowest <= std::time::Duration::from_millis(50),
        "/health on the probe port took {slowest:?} behind 300 idle connections"
    );
    eprintln!(
        "/health on the probe port: slowest of 5 {slowest:?} behind 300 idle connections on the main port"
    );
    assert_eq!(request(probe_addr, "GET", "/ready").await.0, 503, "loading");
    assert_eq!(request(probe_addr, "GET", "/metrics").await.0, 200);
    assert_eq!(
        request(probe_addr, "GET", "/vram").await.0,
        404,
        "probes only"
    );
    drop(idle);
    server.abort();
    probe_server.abort();
}

/// Hostile heads: one too large is answered 431; one trickled too slowly is cut off; the
/// probes answer throughout.
#[tokio::test]
async fn oversized_and_trickled_request_heads_are_refused() {
    use vortex_pipeline::http::{Limits, serve_with};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(String::new)));
    let limits = Limits {
        header_timeout: std::time::Duration::from_millis(300),
        ..Limits::default()
    };
    let server = tokio::spawn(serve_with(listener, Arc::clone(&state), limits));
    let huge = format!("X-Filler: {}\r\n", "a".repeat(64 << 10));
    let (status, _, _) = send(addr, "GET", "/health", &huge, None).await;
    assert_eq!(status, 431, "a 64 KiB header");

    // Half a request head, then silence: the connection is closed after the head timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut rest),
    )
    .await
    .expect("the server cut the trickling client off");
    assert!(read.is_ok() || rest.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(request(addr, "GET", "/health").await.0, 200);
    server.abort();
}

/// Every stage runs off the async worker (one path, reference implementations included), so
/// `/health` stays fast while a slot of the shipped configuration runs on the server's one
/// worker thread (the `vortex serve` runtime is current-thread, as this test's is): 100
/// probes, all while a slot is running, 99th percentile at most 50 ms. Before the single
/// stage path the reference video ran on the worker and stalled `/health` for seconds.
#[tokio::test]
async fn health_answers_fast_while_a_shipped_slot_runs() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ServerState::new(Box::new(String::new)));
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));
    // The shipped buffers (45 s at 24 fps, 512²) and stages; no emulated latency, so the
    // slot takes what its compute takes and the probes land during that compute.
    let config = Shipped::new()
        .with(&[("timing.cost_profile", "\"zero\"")])
        .config();
    state.loaded(VortexPipeline::new(config).unwrap()).await;
    let busy = || async {
        let (_, _, body) = request(addr, "GET", "/ready").await;
        body.contains("\"busy\":true")
    };
    let mut times = Vec::with_capacity(100);
    let mut slot_id = 0;
    while times.len() < 100 {
        if !busy().await {
            slot_id += 1;
            assert!(slot_id <= 20, "100 probes did not fit in 20 slots");
            let recipe = format!(r#"{{"slot_id": {slot_id}, "script": "Good evening."}}"#);
            let (status, _, body) = send(addr, "POST", "/slots", "", Some(&recipe)).await;
            assert_eq!(status, 202, "{body}");
            // Until the slot holds the pipeline.
            for _ in 0..400 {
                if busy().await {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            continue;
        }
        let started = std::time::Instant::now();
        let (status, _, _) = request(addr, "GET", "/health").await;
        let took = started.elapsed();
        assert_eq!(status, 200);
        // Counted only when the slot still ran after the answer.
        if busy().await {
            times.push(took);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    times.sort();
    let p99 = times[98];
    assert!(
        p99 <= std::time::Duration::from_millis(50),
        "/health's 99th percentile during a slot was {p99:?} (slowest {:?}); a stage is running on the async worker",
        times[99]
    );
    // The slot was still whole when the probes were done (a debug build may not finish the
    // shipped slot inside its deadline; that is not what this test measures).
    let (_, _, body) = request(addr, "GET", &format!("/slots/{slot_id}")).await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        doc["status"] == "running" || doc["status"] == "done",
        "{doc}"
    );
    server.abort();
}
