//! A fake runtime admin API (issue 4's contract) served over HTTP by axum on
//! 127.0.0.1:0, in process. One server plays every pod: pod N of job J answers
//! under `/pods/J/N`. Tests script its answers (savepoints complete or fail,
//! checkpoints, metrics) and read what it was asked.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use streamjoin_operator::admin::{HttpAdmin, PodAddr, Resolver};

/// How the fake answers savepoint polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavepointMode {
    Complete,
    Pending,
    Fail,
}

#[derive(Clone, Debug)]
pub struct Triggered {
    pub pod: String,
    pub id: String,
    pub stop: bool,
    pub token: Option<String>,
}

pub struct Inner {
    pub savepoint_mode: SavepointMode,
    pub location: String,
    pub triggered: Vec<Triggered>,
    pub advances: Vec<(String, Option<String>)>,
    /// Checkpoint completion time (ms) every pod reports.
    pub checkpoint_ms: Option<i64>,
    pub partitions: i32,
    /// Metrics every pod reports.
    pub busy_ratio: Option<f64>,
    pub records_in_per_second: Option<f64>,
    pub consumer_lag: Option<i64>,
    pub all_idle: bool,
    pub forced_advances: i64,
    /// `checkpoint_volume` (used, capacity bytes) by pod name (`job-N`); pods not
    /// listed do not report it.
    pub checkpoint_volume: BTreeMap<String, (u64, u64)>,
    /// Pods that do not answer at all.
    pub down: Vec<String>,
    pub status_calls: usize,
    /// The `audit` list every pod reports.
    pub audit: Value,
    /// `DELETE /v1/savepoints/{id}` answers 502, as with a store that refuses.
    pub delete_fails: bool,
}

#[derive(Clone)]
pub struct FakeRuntime {
    pub inner: Arc<Mutex<Inner>>,
    pub base: String,
}

type St = Arc<Mutex<Inner>>;

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

async fn status(
    State(s): State<St>,
    Path((job, n)): Path<(String, i32)>,
) -> (StatusCode, Json<Value>) {
    let mut st = s.lock().expect("lock");
    st.status_calls += 1;
    let pod = format!("{job}-{n}");
    if st.down.contains(&pod) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "down"})),
        );
    }
    let replicas = 0; // not used by the operator
    let shards: Vec<Value> = (0..st.partitions)
        .map(|p| {
            json!({"shard": p, "offsets": {"impressions": 10, "plays": 5},
                   "lag": {"impressions": 0, "plays": 0}, "watermark_ms": 1_799_999_000_000i64,
                   "idle": [st.all_idle, st.all_idle], "live_entries": 10})
        })
        .collect();
    let body = json!({
        "ordinal": n, "replicas": replicas, "shards": shards,
        "job_watermark_ms": 1_799_999_000_000i64, "watermark_lag_seconds": 1000.0,
        "idle_partitions": if st.all_idle { st.partitions * 2 } else { 0 },
        "forced_advances": st.forced_advances,
        "last_checkpoint": st.checkpoint_ms.map(|ms| json!({"id": 7, "completed_at_ms": ms, "duration_ms": 40})),
        "records_in_per_second": st.records_in_per_second,
        "busy_ratio": st.busy_ratio,
        "consumer_lag": st.consumer_lag,
        "checkpoint_volume": st.checkpoint_volume.get(&pod)
            .map(|(used, cap)| json!({"used_bytes": used, "capacity_bytes": cap})),
        "audit": st.audit.clone()
    });
    (StatusCode::OK, Json(body))
}

async fn trigger(
    State(s): State<St>,
    Path((job, n)): Path<(String, i32)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut st = s.lock().expect("lock");
    let pod = format!("{job}-{n}");
    if st.down.contains(&pod) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "down"})),
        );
    }
    let token = bearer(&headers);
    if token.is_none() {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "token"})));
    }
    let id = body["id"].as_str().unwrap_or("sp-x").to_owned();
    st.triggered.push(Triggered {
        pod,
        id: id.clone(),
        stop: body["stop"].as_bool().unwrap_or(false),
        token,
    });
    (StatusCode::ACCEPTED, Json(json!({ "id": id })))
}

async fn savepoint(
    State(s): State<St>,
    Path((_job, _n, id)): Path<(String, i32, String)>,
) -> Json<Value> {
    let st = s.lock().expect("lock");
    let path = format!("{}/{id}", st.location);
    Json(match st.savepoint_mode {
        SavepointMode::Complete => {
            let _ = std::fs::create_dir_all(&path);
            json!({"id": id, "state": "completed", "path": path, "error": null})
        }
        SavepointMode::Pending => {
            json!({"id": id, "state": "pending", "path": null, "error": null})
        }
        SavepointMode::Fail => {
            json!({"id": id, "state": "failed", "path": null, "error": "object store unreachable"})
        }
    })
}

/// `DELETE /v1/savepoints/{id}`: removes the savepoint's directory, as the
/// runtime deletes its objects; one already gone is no error.
async fn delete_savepoint(
    State(s): State<St>,
    Path((_job, _n, id)): Path<(String, i32, String)>,
    headers: HeaderMap,
) -> StatusCode {
    if bearer(&headers).is_none() {
        return StatusCode::UNAUTHORIZED;
    }
    let (location, fails) = {
        let st = s.lock().expect("lock");
        (st.location.clone(), st.delete_fails)
    };
    if fails {
        return StatusCode::BAD_GATEWAY;
    }
    match std::fs::remove_dir_all(format!("{location}/{id}")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => StatusCode::BAD_GATEWAY,
        _ => StatusCode::OK,
    }
}

async fn advance(
    State(s): State<St>,
    Path((job, n)): Path<(String, i32)>,
    headers: HeaderMap,
) -> StatusCode {
    let mut st = s.lock().expect("lock");
    st.advances.push((format!("{job}-{n}"), bearer(&headers)));
    StatusCode::OK
}

impl FakeRuntime {
    /// Starts the server (call inside a tokio runtime).
    pub fn start(location: &str) -> FakeRuntime {
        let inner = Arc::new(Mutex::new(Inner {
            savepoint_mode: SavepointMode::Complete,
            location: location.to_owned(),
            triggered: Vec::new(),
            advances: Vec::new(),
            // After the harness's fixed clock: every deployment counts as checkpointed.
            checkpoint_ms: Some(4_000_000_000_000),
            partitions: 4,
            busy_ratio: None,
            records_in_per_second: None,
            consumer_lag: None,
            all_idle: false,
            forced_advances: 0,
            checkpoint_volume: BTreeMap::new(),
            down: Vec::new(),
            status_calls: 0,
            audit: json!([]),
            delete_fails: false,
        }));
        let app = Router::new()
            .route("/pods/{job}/{n}/v1/status", get(status))
            .route("/pods/{job}/{n}/v1/savepoints", post(trigger))
            .route(
                "/pods/{job}/{n}/v1/savepoints/{id}",
                get(savepoint).delete(delete_savepoint),
            )
            .route("/pods/{job}/{n}/v1/watermark/advance", post(advance))
            .with_state(inner.clone());
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRuntime {
            inner,
            base: format!("http://{addr}"),
        }
    }

    pub fn admin(&self) -> HttpAdmin {
        let base = self.base.clone();
        let resolve: Resolver =
            Arc::new(move |p: &PodAddr| Some(format!("{base}/pods/{}/{}", p.job, p.ordinal)));
        HttpAdmin::new(resolve)
    }

    pub fn set(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.lock().expect("lock"));
    }

    pub fn triggered(&self) -> Vec<Triggered> {
        self.inner.lock().expect("lock").triggered.clone()
    }

    pub fn advances(&self) -> Vec<(String, Option<String>)> {
        self.inner.lock().expect("lock").advances.clone()
    }
}

/// Unused-import guard for BTreeMap in some test crates.
pub type Map = BTreeMap<String, String>;
