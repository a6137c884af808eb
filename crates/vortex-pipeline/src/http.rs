//! The HTTP edge of `vortex serve`, on axum/hyper over the process's tokio:
//! - `GET /health`: 200 while the process lives; `GET /ready`: 200 once every model is
//!   resident (saying whether a slot runs), 503 while loading or once the device is lost;
//! - `GET /metrics`: Prometheus text exposition format 0.0.4;
//! - `GET /vram`: JSON breakdown per owner and purpose, limits, arena and fragmentation;
//! - `POST /slots`: a JSON recipe; answers 202 at once with the slot's id, location and place
//!   (0: it runs now; N: it waits behind the running slot and N − 1 others, up to `[server]
//!   queue`) and generates it in the background, one slot at a time, in order (slots are
//!   generated on request, never on a timer); 400 naming the field, 413 over 64 KiB, 409 for
//!   an id already used, 429 with `Retry-After` (the expected wait: the recent slots' median
//!   times the slots ahead) when the queue is full, 503 while loading or stopping;
//! - `GET /slots`: the recent slots, newest first, with their state, and the queue;
//! - `GET /slots/{id}`: `queued` with its place, `running`, `failed` with the error, `done`
//!   with the manifest, `cancelled` (queued when the server was stopped) or `removed` (its
//!   folder removed to keep `[server] keep`); `GET /slots/{id}/{file}`: `video.mp4`,
//!   `audio.wav`, `actor.png`, `manifest.json`.
//!
//! [`serve_probes`] serves `/health`, `/ready` and `/metrics` alone on a listener of their
//! own with a small connection budget ([`Limits::probes`]), so clients holding the main
//! port's connections cannot starve the orchestrator's probes. [`ServerState::stop`] (on
//! SIGTERM) takes no more recipes, marks the queued ones cancelled and waits for the running
//! slot.
//!
//! HEAD is answered for every GET; query strings are ignored. Only `POST /slots` takes the
//! pipeline lock; everything else answers from the [`Probe`]. With a token configured, every
//! endpoint but `/health` and `/ready` needs `Authorization: Bearer TOKEN`. One JSON access-log
//! line per request.
//!
//! **Invariant:** this is the only module that speaks HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

#[cfg(feature = "cli")]
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
#[cfg(feature = "cli")]
use vortex_vram::metrics as names;

use crate::Recipe;
use crate::output::{SlotFile, SlotFiles, VideoFormat, retain};
use crate::pipeline::VortexPipeline;
use crate::report::{
    ApiError, HealthDoc, Probe, ReadyDoc, Refusal, SlotAccepted, SlotBrief, SlotListDoc, SlotState,
    SlotStatusDoc,
};

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
/// writes summaries, which `histogram_quantile` cannot read). Binaries install it (feature
/// `cli`; a library user installs its own recorder with these buckets).
#[cfg(feature = "cli")]
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

/// Where a slot requested over HTTP is.
#[derive(Debug, Clone)]
pub enum SlotStatus {
    /// Waiting behind the running slot.
    Queued,
    /// Being generated.
    Running,
    /// Done: its files are in this folder.
    Done(PathBuf),
    /// Failed: why (nothing of it was kept).
    Failed(String),
    /// Queued when the server was told to stop; never run.
    Cancelled,
    /// Done, and its folder removed since (`[server] keep`).
    Removed,
}

impl SlotStatus {
    fn state(&self) -> SlotState {
        match self {
            SlotStatus::Queued => SlotState::Queued,
            SlotStatus::Running => SlotState::Running,
            SlotStatus::Done(_) => SlotState::Done,
            SlotStatus::Failed(_) => SlotState::Failed,
            SlotStatus::Cancelled => SlotState::Cancelled,
            SlotStatus::Removed => SlotState::Removed,
        }
    }
}

/// Slots remembered for `GET /slots` and `GET /slots/{id}`; older finished ones are forgotten
/// (their ids may then be used again), so a server that runs for days holds a bounded list.
pub const HISTORY: usize = 1024;

/// Recent slot times the expected wait is taken from.
const TIMES: usize = 64;

/// The slots: their states, the queue, and whether a runner is working through it.
#[derive(Debug, Default)]
struct Book {
    status: BTreeMap<u64, SlotStatus>,
    /// Ids in the order they were requested (at most [`HISTORY`] finished ones).
    order: VecDeque<u64>,
    waiting: VecDeque<(u64, Recipe)>,
    /// A runner task is generating slots (it exits when the queue is empty).
    running: bool,
    stopping: bool,
    /// The last [`TIMES`] finished slots' wall times, seconds.
    times: VecDeque<f64>,
}

impl Book {
    fn insert(&mut self, id: u64, status: SlotStatus) {
        self.status.insert(id, status);
        self.order.push_back(id);
        while self.order.len() > HISTORY {
            let Some(pos) = self.order.iter().position(|id| {
                !matches!(
                    self.status.get(id),
                    Some(SlotStatus::Queued | SlotStatus::Running)
                )
            }) else {
                break;
            };
            if let Some(old) = self.order.remove(pos) {
                self.status.remove(&old);
            }
        }
    }

    /// The median of the recent slots' times, or `fallback` before any.
    fn median(&self, fallback: f64) -> f64 {
        let mut times: Vec<f64> = self.times.iter().copied().collect();
        times.sort_by(f64::total_cmp);
        times.get(times.len() / 2).copied().unwrap_or(fallback)
    }
}

/// What the server answers from.
pub struct ServerState {
    /// The pipeline, once loaded. Only a slot takes this lock.
    pub pipeline: Arc<Mutex<Option<VortexPipeline>>>,
    /// Renders the metrics registry in Prometheus text format.
    pub render_metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// What `/ready`, `/vram` and `/metrics` read without the pipeline lock; set by
    /// [`ServerState::loaded`].
    pub probe: OnceLock<Probe>,
    /// Where their files go (`DIR/slot-NNNN/`).
    pub out: PathBuf,
    /// The bearer token every endpoint but the probes needs, if set.
    pub token: Option<String>,
    /// The ffmpeg that encodes the slots' MP4s (`None`: [`crate::output::Ffmpeg::resolve`]'s
    /// when the first frame comes).
    pub ffmpeg: Option<crate::output::Ffmpeg>,
    /// Recipes that may wait behind the running slot (`[server] queue`).
    pub queue: usize,
    /// Finished slots' folders kept under `out` (`[server] keep`); the oldest go first.
    pub keep: usize,
    /// A slot's expected time before any has finished (the slot deadline).
    pub expected_slot: std::time::Duration,
    book: std::sync::Mutex<Book>,
    /// `true` while no runner is working (what [`ServerState::stop`] waits for).
    idle: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState").finish_non_exhaustive()
    }
}

impl ServerState {
    /// A server with no pipeline yet (`/ready` answers 503 "loading"), writing slots under
    /// the system's temporary folder, with no token, `[server]`'s default queue and
    /// retention.
    pub fn new(render_metrics: Box<dyn Fn() -> String + Send + Sync>) -> Self {
        let server = crate::config::Server::default();
        ServerState {
            pipeline: Arc::new(Mutex::new(None)),
            render_metrics,
            probe: OnceLock::new(),
            out: std::env::temp_dir().join(format!("vortex-slots-{}", std::process::id())),
            token: None,
            ffmpeg: None,
            queue: server.queue,
            keep: server.keep,
            expected_slot: std::time::Duration::from_secs(15),
            book: std::sync::Mutex::new(Book::default()),
            idle: tokio::sync::watch::Sender::new(true),
        }
    }

    /// Installs the loaded pipeline: from now on `/ready` answers from it.
    pub async fn loaded(&self, pipeline: VortexPipeline) {
        let _ = self.probe.set(Probe::new(&pipeline));
        *self.pipeline.lock().await = Some(pipeline);
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn status(&self, id: u64) -> Option<SlotStatus> {
        self.book().status.get(&id).cloned()
    }

    /// Whether [`ServerState::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.book().stopping
    }

    /// Takes no more recipes (`POST /slots` answers 503, `/ready` 503 "stopping"), marks
    /// every queued slot cancelled, and returns once the running slot (if any) has finished,
    /// its files whole or absent.
    pub async fn stop(&self) {
        let cancelled: Vec<u64> = {
            let mut book = self.book();
            book.stopping = true;
            let waiting: Vec<u64> = book.waiting.drain(..).map(|(id, _)| id).collect();
            for id in &waiting {
                book.status.insert(*id, SlotStatus::Cancelled);
            }
            waiting
        };
        for id in cancelled {
            tracing::info!(target: "vortex_pipeline::http", slot_id = id, "cancelled: the server is stopping");
        }
        let mut idle = self.idle.subscribe();
        let _ = idle.wait_for(|idle| *idle).await;
    }

    /// Generates `first`, then each queued recipe in turn, until the queue is empty or the
    /// server stops.
    async fn run_slots(self: Arc<Self>, first: (u64, Recipe)) {
        let mut next = Some(first);
        while let Some((id, recipe)) = next {
            self.run_slot(id, &recipe).await;
            let mut book = self.book();
            next = if book.stopping {
                None
            } else {
                book.waiting.pop_front()
            };
            match &next {
                Some((id, _)) => {
                    book.status.insert(*id, SlotStatus::Running);
                }
                None => {
                    book.running = false;
                    self.idle.send_replace(true);
                }
            }
        }
    }

    async fn run_slot(self: &Arc<Self>, id: u64, recipe: &Recipe) {
        let started = Instant::now();
        let dir = self.out.join(format!("slot-{id:04}"));
        let mut guard = Arc::clone(&self.pipeline).lock_owned().await;
        let status = match guard.as_mut() {
            None => SlotStatus::Failed("the pipeline is not loaded".to_owned()),
            Some(pipeline) => {
                let buffers = pipeline.config().buffers;
                let mut files = SlotFiles::with_format(&dir, &buffers, SERVED);
                if let Some(ffmpeg) = &self.ffmpeg {
                    files = files.with_ffmpeg(ffmpeg.clone());
                }
                match pipeline.generate_slot_into(recipe, &mut files).await {
                    Ok(_) => SlotStatus::Done(dir),
                    Err(err) => SlotStatus::Failed(err.to_string()),
                }
            }
        };
        drop(guard);
        let done = matches!(status, SlotStatus::Done(_));
        {
            let mut book = self.book();
            if done {
                book.times.push_back(started.elapsed().as_secs_f64());
                if book.times.len() > TIMES {
                    book.times.pop_front();
                }
            }
            book.status.insert(id, status);
        }
        if done {
            self.retain().await;
        }
    }

    /// Removes the oldest slot folders beyond [`ServerState::keep`], off the async workers.
    async fn retain(self: &Arc<Self>) {
        let (out, keep) = (self.out.clone(), self.keep);
        let removed = match tokio::task::spawn_blocking(move || retain(&out, keep)).await {
            Ok(Ok(removed)) => removed,
            Ok(Err(err)) => {
                tracing::warn!(target: "vortex_pipeline::http", out = %self.out.display(), error = %err, "could not remove old slot folders");
                return;
            }
            Err(_) => return,
        };
        let mut book = self.book();
        for path in removed {
            tracing::info!(target: "vortex_pipeline::http", folder = %path.display(), keep = self.keep, "removed an old slot folder");
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("slot-"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(slot) = id.and_then(|id| book.status.get_mut(&id))
                && matches!(slot, SlotStatus::Done(_))
            {
                *slot = SlotStatus::Removed;
            }
        }
    }
}

/// Largest recipe body accepted.
pub const MAX_BODY: usize = 64 << 10;

/// The router over `state`.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/vram", get(vram))
        .route("/slots", post(create_slot).get(list_slots))
        .route("/slots/{id}", get(slot_status))
        .route("/slots/{id}/{file}", get(slot_file))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// The probe router: `/health`, `/ready` and `/metrics` only.
pub fn probe_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .fallback(not_a_probe)
        .layer(DefaultBodyLimit::max(1024))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// Serves the probes alone ([`probe_router`]) on `listener` until the task is dropped, with
/// `limits` of their own ([`Limits::probes`]).
pub async fn serve_probes(listener: TcpListener, state: Arc<ServerState>, limits: Limits) {
    serve_router(listener, probe_router(state), limits).await;
}

/// Serves `listener` until the task is dropped, with [`Limits::default`].
pub async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    serve_with(listener, state, Limits::default()).await;
}

/// Serves `listener` until the task is dropped, holding at most `limits.connections`
/// connections, closing one that sends or takes nothing for `limits.idle` or that has not
/// sent a request's head within `limits.header_timeout`, and answering 431 to a head larger
/// than `limits.max_header_bytes`.
pub async fn serve_with(listener: TcpListener, state: Arc<ServerState>, limits: Limits) {
    serve_router(listener, router(state), limits).await;
}

async fn serve_router(listener: TcpListener, router: Router, limits: Limits) {
    let mut listener = Limited {
        inner: listener,
        permits: Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1))),
        idle: limits.idle,
    };
    loop {
        let connection = listener.accept().await;
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // hyper's floor is 8 KiB.
                .max_buf_size(limits.max_header_bytes.max(8192));
            let io = hyper_util::rt::TokioIo::new(connection);
            if let Err(err) = http.serve_connection(io, service).await {
                tracing::debug!(target: "vortex_pipeline::http", error = %err, "connection ended");
            }
        });
    }
}

/// What one client may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once; more wait in the kernel's queue until one closes.
    pub connections: usize,
    /// A connection that neither sends nor receives a byte for this long is closed (slow or
    /// idle clients cannot hold the server's connections, or its file descriptors).
    pub idle: std::time::Duration,
    /// A request's head must arrive within this (a client trickling its headers is cut off).
    pub header_timeout: std::time::Duration,
    /// Largest request head; a larger one is answered 431 (at least 8 KiB).
    pub max_header_bytes: usize,
}

impl Limits {
    /// The probe listener's: a few connections, cut quickly (an orchestrator's probe is one
    /// short request).
    pub fn probes() -> Self {
        Limits {
            connections: 16,
            idle: std::time::Duration::from_secs(2),
            header_timeout: std::time::Duration::from_secs(1),
            max_header_bytes: 8 << 10,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 256,
            idle: std::time::Duration::from_secs(15),
            header_timeout: std::time::Duration::from_secs(5),
            max_header_bytes: 16 << 10,
        }
    }
}

/// A listener that accepts a connection only while it holds fewer than its limit.
struct Limited {
    inner: TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    idle: std::time::Duration,
}

impl Limited {
    async fn accept(&mut self) -> Connection {
        loop {
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                // The semaphore is never closed; wait rather than spin if it were.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = addr;
                    let idle = Box::pin(tokio::time::sleep(self.idle));
                    return Connection {
                        stream,
                        _permit: permit,
                        idle,
                        limit: self.idle,
                    };
                }
                Err(err) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(target: "vortex_pipeline::http", error = %err, "accept failed");
                    drop(permit);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// An accepted connection: its slot under the limit, and an idle timer reset by every byte.
struct Connection {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: std::time::Duration,
}

impl Connection {
    fn touched(&mut self) {
        let next = tokio::time::Instant::now() + self.limit;
        self.idle.as_mut().reset(next);
    }

    fn timed_out(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.idle.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.touched();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.timed_out(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection was idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match std::pin::Pin::new(&mut self.stream).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touched();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.timed_out(cx) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The format this server writes slots' videos in, and so the files it serves.
const SERVED: VideoFormat = VideoFormat::Mp4;

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// `{"status": "loading"}` with a 503: the models are not resident yet.
fn loading() -> Response {
    json_response(StatusCode::SERVICE_UNAVAILABLE, &ReadyDoc::Loading)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.refusal {
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Conflict => StatusCode::CONFLICT,
            Refusal::Gone => StatusCode::GONE,
            Refusal::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = json_response(status, &self);
        if self.refusal == Refusal::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The bearer token check and the access log.
async fn guard(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let probe = matches!(path.as_str(), "/health" | "/ready");
    let authorized = match &state.token {
        None => true,
        Some(token) => {
            probe
                || request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
        }
    };
    let response = if authorized {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    };
    tracing::info!(
        target: "vortex_pipeline::http",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health() -> Response {
    json_response(StatusCode::OK, &HealthDoc::Live)
}

async fn not_found() -> ApiError {
    ApiError::no_such_endpoint()
}

async fn not_a_probe() -> ApiError {
    ApiError::new(
        Refusal::NotFound,
        "this is the probe listener: /health, /ready and /metrics; the rest is on the main one",
    )
}

async fn metrics_text(State(state): State<Arc<ServerState>>) -> Response {
    if let Some(probe) = state.probe.get() {
        probe.publish_metrics();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (state.render_metrics)(),
    )
        .into_response()
}

async fn vram(State(state): State<Arc<ServerState>>) -> Response {
    match state.probe.get() {
        Some(probe) => json_response(StatusCode::OK, &probe.vram()),
        None => loading(),
    }
}

/// `/ready`: 200 once loaded (also while a slot runs, which it says), 503 while loading or
/// once the device is lost. Never waits for the pipeline.
async fn ready(State(state): State<Arc<ServerState>>) -> Response {
    let doc = match state.probe.get() {
        None => ReadyDoc::Loading,
        Some(_) if state.stopping() => ReadyDoc::Stopping,
        Some(probe) => probe.ready(state.pipeline.try_lock().is_err()),
    };
    let status = if doc.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &doc)
}

/// `POST /slots`: validates the recipe, then generates the slot in the background.
async fn create_slot(
    State(state): State<Arc<ServerState>>,
    body: Result<axum::Json<Recipe>, JsonRejection>,
) -> Result<Response, ApiError> {
    let recipe = match body {
        Ok(axum::Json(recipe)) => recipe,
        Err(rejection) => {
            let refusal = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => Refusal::PayloadTooLarge,
                StatusCode::UNSUPPORTED_MEDIA_TYPE => Refusal::UnsupportedMediaType,
                _ => Refusal::BadRequest,
            };
            return Err(ApiError::new(refusal, rejection.body_text()));
        }
    };
    let Some(probe) = state.probe.get() else {
        return Ok(loading());
    };
    if let Some(reason) = probe.device_lost() {
        return Err(ApiError::device_lost(reason));
    }
    let id = recipe.slot_id;
    let place = {
        let mut book = state.book();
        if book.stopping {
            return Err(ApiError::stopping());
        }
        if book.status.contains_key(&id) {
            return Err(ApiError::slot_id_taken(id));
        }
        if !book.running {
            book.running = true;
            state.idle.send_replace(false);
            book.insert(id, SlotStatus::Running);
            tokio::spawn(Arc::clone(&state).run_slots((id, recipe)));
            0
        } else if book.waiting.len() < state.queue {
            book.waiting.push_back((id, recipe));
            book.insert(id, SlotStatus::Queued);
            book.waiting.len()
        } else {
            let ahead = book.waiting.len() + 1;
            let wait = book.median(state.expected_slot.as_secs_f64()) * ahead as f64;
            let retry_after = (wait.ceil() as u64).max(1);
            let mut response =
                ApiError::queue_full(book.waiting.len(), retry_after).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return Ok(response);
        }
    };
    let accepted = SlotAccepted::new(id, place);
    let mut response = json_response(StatusCode::ACCEPTED, &accepted);
    if let Ok(value) = HeaderValue::from_str(&accepted.location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /slots`: the recent slots, newest first, and the queue.
async fn list_slots(State(state): State<Arc<ServerState>>) -> Response {
    let book = state.book();
    let slots = book
        .order
        .iter()
        .rev()
        .filter_map(|id| {
            let status = book.status.get(id)?;
            Some(SlotBrief {
                slot_id: *id,
                status: status.state(),
                error: match status {
                    SlotStatus::Failed(error) => Some(error.clone()),
                    _ => None,
                },
            })
        })
        .collect();
    let doc = SlotListDoc {
        queued: book.waiting.len(),
        queue_capacity: state.queue,
        slots,
    };
    drop(book);
    json_response(StatusCode::OK, &doc)
}

fn slot_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_a_slot_id(raw))
}

/// `GET /slots/{id}`.
async fn slot_status(
    State(state): State<Arc<ServerState>>,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id = slot_id(&raw)?;
    let doc = match state.status(id).ok_or_else(|| ApiError::no_slot(id))? {
        SlotStatus::Queued => {
            let place = state
                .book()
                .waiting
                .iter()
                .position(|(queued, _)| *queued == id)
                .map_or(0, |p| p + 1);
            SlotStatusDoc::Queued { slot_id: id, place }
        }
        SlotStatus::Cancelled => SlotStatusDoc::Cancelled { slot_id: id },
        SlotStatus::Removed => SlotStatusDoc::Removed { slot_id: id },
        SlotStatus::Running => SlotStatusDoc::Running { slot_id: id },
        SlotStatus::Failed(error) => SlotStatusDoc::Failed { slot_id: id, error },
        SlotStatus::Done(dir) => {
            let manifest = tokio::fs::read_to_string(dir.join(SlotFile::Manifest.name()))
                .await
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok());
            SlotStatusDoc::done(id, SERVED, manifest)
        }
    };
    Ok(json_response(StatusCode::OK, &doc))
}

/// `GET /slots/{id}/{file}`.
async fn slot_file(
    State(state): State<Arc<ServerState>>,
    UrlPath((raw, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let id = slot_id(&raw)?;
    let file = SlotFile::all(SERVED)
        .into_iter()
        .find(|f| f.name() == name)
        .ok_or_else(|| ApiError::no_such_file(SERVED))?;
    let dir = match state.status(id) {
        Some(SlotStatus::Done(dir)) => dir,
        Some(_) => return Err(ApiError::no_files_yet(id)),
        None => return Err(ApiError::no_slot(id)),
    };
    match tokio::fs::read(dir.join(file.name())).await {
        Ok(bytes) => Ok((
            [(header::CONTENT_TYPE, file.content_type())],
            Body::from(bytes),
        )
            .into_response()),
        Err(err) => Err(ApiError::file_gone(file, id, &err)),
    }
}
