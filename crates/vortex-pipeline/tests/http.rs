//! The HTTP endpoints of `vortex serve` on a loopback port: health before and after load,
//! a slot on request, Prometheus text that parses, and the VRAM breakdown.

mod common;

use std::sync::Arc;

use common::Shipped;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vortex_pipeline::VortexPipeline;
use vortex_pipeline::config::Config;
use vortex_pipeline::http::{ServerState, serve};

async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn small_config() -> Config {
    Shipped::new()
        .with(&[
            // Orchestration tests: the reference audio (any sample rate, no fetch).
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "16"),
            ("buffers.seconds", "1"),
            ("buffers.fps", "4"),
            ("buffers.staging_frames", "2"),
            ("timing.verified_frames", "2"),
            ("timing.cost_profile", "\"zero\""),
        ])
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

    let (status, _, body) = request(addr, "POST", "/slot").await;
    assert_eq!(status, 200, "{body}");
    let slot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            slot["slot_id"].as_u64(),
            slot["reference_implementation"].as_bool()
        ),
        (Some(1), Some(true))
    );

    let (status, head, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in body.lines() {
        assert!(valid_line(line), "not Prometheus text: {line:?}");
    }
    for needle in [
        "# TYPE icn_vortex_slots_total counter",
        "icn_vortex_slots_total{outcome=\"ok\"} 1",
        "# TYPE icn_vortex_vram_usage_bytes gauge",
        "icn_vortex_vram_owner_bytes{owner=\"flux\",purpose=\"model_weights\"} 6218",
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
    let (status, _, body) = request(addr, "POST", "/slot").await;
    assert_eq!(status, 500, "{body}");
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
    let state = Arc::new(ServerState::new(Box::new(String::new)));
    let server = tokio::spawn(serve(listener, Arc::clone(&state)));
    // A slot of about 0.8 s on the real clock: seed-targets at a twentieth.
    let config = Shipped::new()
        .with(&[
            ("models.kokoro.weights", "\"synthetic\""),
            ("buffers.image_size", "16"),
            ("buffers.seconds", "1"),
            ("buffers.fps", "4"),
            ("buffers.staging_frames", "2"),
            ("timing.verified_frames", "2"),
            ("timing.time_scale", "0.05"),
        ])
        .config();
    state.loaded(VortexPipeline::new(config).unwrap()).await;
    let slot = tokio::spawn(async move { request(addr, "POST", "/slot").await });
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
    let (status, _, body) = slot.await.unwrap();
    assert_eq!(status, 200, "{body}");
    server.abort();
}
