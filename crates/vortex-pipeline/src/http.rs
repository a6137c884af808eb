//! The HTTP side of `vortex serve`: a small HTTP/1.1 server on tokio (one request per
//! connection, GET and POST, no bodies read) serving
//! - `GET /metrics`: Prometheus text exposition format 0.0.4;
//! - `GET /health`: 200 while the process lives;
//! - `GET /ready`: 200 once every model is resident, 503 before;
//! - `GET /vram`: JSON breakdown per owner and purpose, limits, arena and fragmentation;
//! - `POST /slot`: generates one slot now (slots are generated on request, never on a timer)
//!   and answers with its timings, or 409 while another slot runs.

use std::sync::{Arc, OnceLock};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use vortex_vram::metrics as names;

use crate::Recipe;
use crate::pipeline::VortexPipeline;
use crate::report::{self, Probe, SlotDoc, VramDoc};

/// Bucket bounds of `icn_vortex_slot_duration_seconds`, seconds: dense around a 15 s
/// deadline, so `histogram_quantile(0.99, …)` says which side of it P99 falls.
pub const SLOT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 11.0, 12.0, 12.5, 13.0, 13.5, 14.0, 14.5, 15.0, 16.0, 18.0,
    20.0, 30.0, 60.0,
];

/// Bucket bounds of `icn_vortex_stage_duration_seconds`, seconds: from a CLIP pass to FLUX.
pub const STAGE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0,
    20.0, 30.0,
];

/// The Prometheus exporter as Vortex configures it: the slot and stage durations as
/// histograms with [`SLOT_BUCKETS`] and [`STAGE_BUCKETS`] (without buckets the exporter
/// writes summaries, which `histogram_quantile` cannot read). Binaries install it.
pub fn prometheus() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::SLOT_DURATION_SECONDS.to_owned()),
            SLOT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::STAGE_DURATION_SECONDS.to_owned()),
            STAGE_BUCKETS,
        )
}

/// What the server answers from.
pub struct ServerState {
    /// The pipeline, once loaded.
    pub pipeline: Mutex<Option<VortexPipeline>>,
    /// Renders the metrics registry in Prometheus text format.
    pub render_metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// What `/ready`, `/vram` and `/metrics` read without the pipeline lock; set by
    /// [`ServerState::loaded`].
    pub probe: OnceLock<Probe>,
}

impl ServerState {
    /// A server with no pipeline yet (`/ready` answers 503 "loading").
    pub fn new(render_metrics: Box<dyn Fn() -> String + Send + Sync>) -> Self {
        ServerState {
            pipeline: Mutex::new(None),
            render_metrics,
            probe: OnceLock::new(),
        }
    }

    /// Installs the loaded pipeline: from now on `/ready` answers from it.
    pub async fn loaded(&self, pipeline: VortexPipeline) {
        let _ = self.probe.set(Probe::new(&pipeline));
        *self.pipeline.lock().await = Some(pipeline);
    }
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState").finish_non_exhaustive()
    }
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if let Err(err) = handle(stream, &state).await {
                tracing::debug!(target: "vortex_pipeline::http", error = %err, "connection ended with an error");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, state: &ServerState) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = route(method, path, state).await;
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

const JSON: &str = "application/json";

async fn route(
    method: &str,
    path: &str,
    state: &ServerState,
) -> (&'static str, &'static str, String) {
    match (method, path) {
        ("GET", "/metrics") => {
            if let Some(probe) = state.probe.get() {
                probe.publish_metrics();
            }
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", (state.render_metrics)())
        }
        ("GET", "/health") => ("200 OK", JSON, json!({"status": "live"}).to_string()),
        ("GET", "/ready") => match state.probe.get().and_then(Probe::device_lost) {
            Some(reason) => (
                "503 Service Unavailable",
                JSON,
                json!({
                    "status": "device_lost",
                    "reason": reason,
                    "what_to_do": "restart the process; nothing on a lost device can be trusted",
                })
                .to_string(),
            ),
            None => ready(state),
        },
        ("GET", "/vram") => match state.probe.get() {
            Some(probe) => ("200 OK", JSON, json!(probe.vram()).to_string()),
            None => ("503 Service Unavailable", JSON, json!({"status": "loading"}).to_string()),
        },
        ("POST", "/slot") => {
            let Ok(mut guard) = state.pipeline.try_lock() else {
                return ("409 Conflict", JSON, json!({"error": "a slot is running; try again when it ends"}).to_string());
            };
            let Some(pipeline) = guard.as_mut() else {
                return ("503 Service Unavailable", JSON, json!({"status": "loading"}).to_string());
            };
            let slot_id = pipeline.slots() + 1;
            let recipe = Recipe {
                slot_id,
                seed: slot_id,
                prompt: "a presenter in a studio".to_owned(),
                script: "this is a reference slot generated on request".to_owned(),
                ..Recipe::default()
            };
            let implementations = report::implementations(pipeline);
            match pipeline.generate_slot(&recipe).await {
                Ok(result) => {
                    let doc = SlotDoc::new(implementations, &result);
                    ("200 OK", JSON, json!(doc).to_string())
                }
                Err(err) => ("500 Internal Server Error", JSON, json!({"error": err.to_string()}).to_string()),
            }
        }
        (_, "/metrics" | "/health" | "/ready" | "/vram" | "/slot") => {
            ("405 Method Not Allowed", JSON, json!({"error": "use GET, or POST for /slot"}).to_string())
        }
        _ => (
            "404 Not Found",
            JSON,
            json!({"error": "no such endpoint: use /metrics, /health, /ready, /vram or POST /slot"}).to_string(),
        ),
    }
}

/// The `/vram` document.
pub fn vram_json(pipeline: &VortexPipeline) -> serde_json::Value {
    json!(VramDoc::new(pipeline))
}

/// `/ready` while the device answers: 200 once loaded (also while a slot runs, which it
/// says), 503 before. Never waits for the pipeline.
fn ready(state: &ServerState) -> (&'static str, &'static str, String) {
    match state.probe.get() {
        Some(probe) => (
            "200 OK",
            JSON,
            json!({
                "status": "ready",
                "busy": state.pipeline.try_lock().is_err(),
                "models": probe.models(),
                "implementations": probe.implementations(),
            })
            .to_string(),
        ),
        None => (
            "503 Service Unavailable",
            JSON,
            json!({"status": "loading"}).to_string(),
        ),
    }
}
