//! The admin HTTP API (see `docs/runtime-admin-api.md`): `/metrics`
//! (Prometheus text), `/healthz`, `/readyz`, and for a Kafka job `GET
//! /v1/status`, `POST /v1/savepoints`, `GET` and `DELETE /v1/savepoints/{id}`
//! and `POST /v1/watermark/advance`. Reads are open; mutating calls need the bearer token
//! from `--admin-token-file`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use streamjoin_formats::admin::{parse_savepoint_request, savepoint_id, valid_id};

use crate::control::admin_token::AdminToken;
use crate::control::metrics::Metrics;
use crate::control::requests::{Control, RequestError, SavepointRun, SavepointState};
use crate::durability::savepoint::{self, ProcessManifest, SavepointStore, ShardSummary};
use crate::time::watermark::{Clock, WatermarkBoard};

/// What a Kafka job hands the admin API once its shards are assigned.
pub struct RuntimeHooks {
    /// Builds the `GET /v1/status` document.
    pub status: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    pub control: Arc<Control>,
    /// `savepoints.location`, when the job has one.
    pub savepoints: Option<SavepointStore>,
    pub ordinal: u32,
    pub replicas: u32,
    pub partitions: u32,
    pub board: Arc<WatermarkBoard>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    waiting_for: Arc<Mutex<String>>,
    token: Option<Arc<AdminToken>>,
    hooks: Arc<OnceLock<Arc<RuntimeHooks>>>,
}

/// A running admin server; dropping it stops the server.
pub struct AdminServer {
    pub addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    /// What the process waits for before it is ready, as `/readyz` tells it.
    waiting_for: Arc<Mutex<String>>,
    hooks: Arc<OnceLock<Arc<RuntimeHooks>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/savepoints", post(trigger_savepoint))
        .route(
            "/v1/savepoints/{id}",
            get(savepoint_info).delete(delete_savepoint),
        )
        .route("/v1/watermark/advance", post(advance_watermark))
        .with_state(state)
}

async fn render_metrics(
    State(s): State<AdminState>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    if s.ready.load(Relaxed) {
        return (StatusCode::OK, "ready".to_owned());
    }
    let why = s.waiting_for.lock().map(|w| w.clone()).unwrap_or_default();
    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

/// A refused call: its status, message, and whether to ask for a bearer token.
struct Refusal {
    status: StatusCode,
    message: &'static str,
    challenge: bool,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = error(self.status, self.message);
        if self.challenge {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

fn hooks(s: &AdminState) -> Result<Arc<RuntimeHooks>, Refusal> {
    s.hooks.get().cloned().ok_or(Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the runtime is still starting (restoring state, assigning shards)",
        challenge: false,
    })
}

/// A mutating call: authorised, and the runtime's hooks installed.
fn authorized_hooks(s: &AdminState, headers: &HeaderMap) -> Result<Arc<RuntimeHooks>, Refusal> {
    authorize(s, headers)?;
    hooks(s)
}

/// Mutating calls need `Authorization: Bearer <token>`; compared in constant time.
fn authorize(s: &AdminState, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(expected) = s.token.as_ref().map(|t| t.current()) else {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: "mutating calls are disabled: the runtime was started without --admin-token-file",
            challenge: false,
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "a valid bearer token is required",
            challenge: true,
        }),
    }
}

async fn status(State(s): State<AdminState>) -> Response {
    match hooks(&s) {
        Ok(h) => axum::Json((h.status)()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn trigger_savepoint(
    State(s): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let h = match authorized_hooks(&s, &headers) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let req = match parse_savepoint_request(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = h.clock.now_ms();
    let id = match savepoint_id(&req, now) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(store) = h.savepoints.clone() else {
        return error(StatusCode::CONFLICT, RequestError::NoLocation);
    };
    match h.control.request_savepoint(id.clone(), req.stop, now) {
        Ok((run, started)) => {
            if started {
                tracing::info!(savepoint = %id, stop = req.stop, "savepoint requested");
                tokio::spawn(complete_savepoint(run, h.clone(), store, s.metrics.clone()));
            }
            (StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// Waits for every worker's part, uploads the parts, writes this process's
/// manifest, and records the outcome.
async fn complete_savepoint(
    run: Arc<SavepointRun>,
    h: Arc<RuntimeHooks>,
    store: SavepointStore,
    metrics: Metrics,
) {
    let started = Instant::now();
    let dest = store.child(&run.id);
    let result: Result<String, String> = async {
        let shards = run.finished().await?;
        let mut summary = Vec::with_capacity(shards.len());
        for part in &shards {
            let bytes = dest.upload_shard(part).await.map_err(|e| e.to_string())?;
            let m = &part.manifest;
            summary.push(ShardSummary {
                shard: m.shard,
                checkpoint_id: m.id,
                inputs: m.inputs,
                job_watermark: m.job_watermark,
                live_entries: m.live_entries,
                bytes,
            });
        }
        summary.sort_by_key(|s| s.shard);
        dest.write_process_manifest(&ProcessManifest {
            format_version: savepoint::FORMAT_VERSION,
            id: run.id.clone(),
            created_ms: h.clock.now_ms(),
            ordinal: h.ordinal,
            replicas: h.replicas,
            partitions: h.partitions,
            shards: summary,
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(dest.location().to_owned())
    }
    .await;
    if let Err(e) = tokio::fs::remove_dir_all(&run.staging).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(savepoint = %run.id, "removing the staging directory: {e}");
    }
    let elapsed = started.elapsed();
    let m = &metrics.checkpoints;
    match &result {
        Ok(path) => {
            m.savepoint_duration.observe(elapsed.as_secs_f64());
            tracing::info!(savepoint = %run.id, %path, seconds = elapsed.as_secs_f64(), "savepoint completed");
        }
        Err(e) => {
            m.savepoint_failures.inc();
            tracing::error!(savepoint = %run.id, "savepoint failed: {e}");
        }
    }
    h.control.finish_savepoint(
        &run,
        result,
        i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
    );
}

async fn savepoint_info(State(s): State<AdminState>, Path(id): Path<String>) -> Response {
    let h = match hooks(&s) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    match h.control.savepoint(&id) {
        Some(info) => axum::Json(info).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no savepoint {id:?} was requested"),
        ),
    }
}

/// Deletes savepoint `id` of the job's location: the pods hold the store's
/// credentials, so retention and `onDelete` go through them while they run.
async fn delete_savepoint(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let h = match authorized_hooks(&s, &headers) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, format!("savepoint id {id:?}"));
    }
    let Some(store) = h.savepoints.clone() else {
        return error(StatusCode::CONFLICT, RequestError::NoLocation);
    };
    if h.control
        .savepoint(&id)
        .is_some_and(|i| i.state == SavepointState::Pending)
    {
        return error(
            StatusCode::CONFLICT,
            format!("savepoint {id} is being written"),
        );
    }
    let target = store.child(&id);
    match target.delete().await {
        Ok(objects) => {
            tracing::info!(savepoint = %id, objects, "savepoint deleted");
            axum::Json(
                json!({ "id": id, "location": target.location(), "deleted_objects": objects }),
            )
            .into_response()
        }
        Err(e) => {
            tracing::warn!(savepoint = %id, "deleting the savepoint: {e}");
            error(StatusCode::BAD_GATEWAY, e)
        }
    }
}

async fn advance_watermark(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let h = match authorized_hooks(&s, &headers) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let wm = h.board.force_now(h.clock.now_ms());
    tracing::warn!(watermark = wm, "watermark force-advanced on request");
    axum::Json(json!({ "job_watermark_ms": wm })).into_response()
}

impl AdminServer {
    /// Binds now (so a busy port is reported at once) and serves on its own thread.
    pub fn start(addr: &str, metrics: Metrics) -> Result<Self, AdminError> {
        Self::start_with_token(addr, metrics, None)
    }

    /// As [`AdminServer::start`], accepting mutating calls that carry `token`.
    pub fn start_with_token(
        addr: &str,
        metrics: Metrics,
        token: Option<String>,
    ) -> Result<Self, AdminError> {
        let token = token.map(|t| AdminToken::fixed(&t));
        Self::start_with_token_source(addr, metrics, token)
    }

    /// As [`AdminServer::start`], accepting mutating calls that carry the token
    /// `token` holds at the time of each call (a file read again each time).
    pub fn start_with_token_source(
        addr: &str,
        metrics: Metrics,
        token: Option<AdminToken>,
    ) -> Result<Self, AdminError> {
        let bind_err = |source| AdminError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let ready = Arc::new(AtomicBool::new(false));
        let waiting_for = Arc::new(Mutex::new("starting".to_owned()));
        let hooks = Arc::new(OnceLock::new());
        let app = router(AdminState {
            metrics,
            ready: ready.clone(),
            waiting_for: waiting_for.clone(),
            token: token.map(Arc::new),
            hooks: hooks.clone(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("admin-http".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("admin server runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("admin server listener: {e}");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(e) = serve.await {
                        tracing::error!("admin server stopped: {e}");
                    }
                });
            })
            .map_err(bind_err)?;
        tracing::info!(%local, "admin endpoint listening");
        Ok(Self {
            addr: local,
            ready,
            waiting_for,
            hooks,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Says what the process waits for (shown by `/readyz` until it is ready).
    pub fn waiting_for(&self, what: impl Into<String>) {
        if let Ok(mut w) = self.waiting_for.lock() {
            *w = what.into();
        }
    }

    /// Enables the `/v1` endpoints (once).
    pub fn install(&self, hooks: RuntimeHooks) {
        if self.hooks.set(Arc::new(hooks)).is_err() {
            tracing::warn!("admin hooks installed twice; keeping the first");
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
