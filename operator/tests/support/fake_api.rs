//! The API double: an in-memory fake of the Kubernetes API server behind
//! tower-test's `mock::pair`, so the real `kube::Client` (URL building,
//! server-side-apply parameters, serialization, error decoding) is exercised.
//!
//! Why a fake and not a scripted tower-test sequence: the scenarios assert on
//! *what* was written (and that nothing was written), not on the exact order of
//! requests, and the benchmark sends thousands of requests; a fake answers them
//! all from one map and records every call for assertions. It implements what the
//! operator uses: GET, POST, PUT (with resourceVersion conflicts), DELETE and the
//! PATCH flavours (apply, JSON patch, merge), on objects and on `/status`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

/// One request the operator made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Option<Value>,
}

impl Call {
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
    pub fn is_apply(&self) -> bool {
        self.method == "PATCH" && self.content_type.starts_with("application/apply-patch")
    }
    pub fn is_event(&self) -> bool {
        self.path.contains("/events")
    }
}

#[derive(Default)]
struct State {
    /// Serialized, so the double's memory stays small next to the operator's.
    objects: BTreeMap<String, Vec<u8>>,
    calls: Vec<Call>,
    rv: u64,
    handler_time: Duration,
}

impl State {
    fn load(&self, path: &str) -> Option<Value> {
        self.objects
            .get(path)
            .and_then(|b| serde_json::from_slice(b).ok())
    }
    fn store(&mut self, path: String, obj: &Value) {
        self.objects
            .insert(path, serde_json::to_vec(obj).unwrap_or_default());
    }
}

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

pub fn job_path(ns: &str, name: &str) -> String {
    format!("/apis/streamjoin.dev/v1alpha1/namespaces/{ns}/streamjoinjobs/{name}")
}
pub fn sts_path(ns: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{name}")
}
pub fn cm_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/configmaps/{name}")
}
pub fn svc_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services/{name}")
}
pub fn pdb_path(ns: &str, name: &str) -> String {
    format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}")
}
pub fn lease_path(ns: &str, name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
        }),
    )
}

impl FakeApi {
    /// A client talking to a fresh, empty fake. Call inside a tokio runtime.
    pub fn start() -> (kube::Client, FakeApi) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let started = Instant::now();
                let (code, value) = server.handle(&parts, &bytes);
                let resp = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
                    .expect("valid response");
                server.lock().handler_time += started.elapsed();
                send.send_response(resp);
            }
        });
        (kube::Client::new(svc, "default"), fake)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    pub fn put(&self, path: &str, obj: Value) {
        let mut st = self.lock();
        st.rv += 1;
        let mut obj = obj;
        let rv = st.rv.to_string();
        obj["metadata"]["resourceVersion"] = json!(rv);
        st.store(path.to_owned(), &obj);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().load(path)
    }

    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        self.get(path)
            .map(|v| serde_json::from_value(v).expect("stored object has the right shape"))
    }

    /// Every stored object whose path contains `segment` (e.g. "/statefulsets/").
    pub fn objects_under(&self, segment: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.contains(segment))
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect()
    }

    /// Drops every stored object and call record (to measure what the operator holds).
    pub fn clear(&self) {
        let mut st = self.lock();
        st.objects = BTreeMap::new();
        st.calls = Vec::new();
    }

    /// Every stored object under `segment`, deserialized straight into `T`
    /// (no intermediate JSON tree: keeps the harness's memory out of the benchmark).
    pub fn typed_under<T: serde::de::DeserializeOwned>(&self, segment: &str) -> Vec<T> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.contains(segment))
            .map(|(_, v)| serde_json::from_slice(v).expect("stored object has the right shape"))
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Time spent inside the fake's handler (its "latency"), since the last reset.
    pub fn take_handler_time(&self) -> Duration {
        std::mem::take(&mut self.lock().handler_time)
    }

    fn stamp(st: &mut State, obj: &mut Value, old: Option<&Value>) {
        st.rv += 1;
        let meta = &mut obj["metadata"];
        meta["resourceVersion"] = json!(st.rv.to_string());
        let old_meta = old.map(|o| &o["metadata"]);
        meta["uid"] = old_meta
            .and_then(|m| m.get("uid").cloned())
            .unwrap_or_else(|| json!(format!("uid-{}", st.rv)));
        meta["creationTimestamp"] = old_meta
            .and_then(|m| m.get("creationTimestamp").cloned())
            .unwrap_or_else(|| json!("2026-01-01T00:00:00Z"));
        let old_gen = old_meta
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        let spec_changed = old.map(|o| o.get("spec")) != Some(obj.get("spec"));
        let generation = match old_gen {
            Some(g) if spec_changed => g + 1,
            Some(g) => g,
            None => 1,
        };
        obj["metadata"]["generation"] = json!(generation);
    }

    fn handle(&self, parts: &http::request::Parts, bytes: &[u8]) -> (StatusCode, Value) {
        let method = parts.method.as_str().to_owned();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Option<Value> = serde_json::from_slice(bytes).ok();
        let mut st = self.lock();
        st.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query,
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let not_found = || {
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{path} not found"),
            )
        };
        match method.as_str() {
            "GET" => match st.load(&path) {
                Some(o) => (StatusCode::OK, o),
                None => not_found(),
            },
            "DELETE" => match st.objects.remove(&path) {
                Some(o) => (
                    StatusCode::OK,
                    serde_json::from_slice(&o).unwrap_or_default(),
                ),
                None => not_found(),
            },
            "POST" => {
                let Some(mut obj) = body else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
                };
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let key = format!("{path}/{name}");
                if st.objects.contains_key(&key) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{key} exists"),
                    );
                }
                Self::stamp(&mut st, &mut obj, None);
                st.store(key, &obj);
                (StatusCode::CREATED, obj)
            }
            "PUT" => {
                let Some(mut obj) = body else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
                };
                let old = st.load(&path);
                let Some(old) = old else { return not_found() };
                if obj["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "the object has been modified",
                    );
                }
                Self::stamp(&mut st, &mut obj, Some(&old));
                st.store(path, &obj);
                (StatusCode::OK, obj)
            }
            "PATCH" => {
                let Some(patch) = body else {
                    return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
                };
                let (target, subresource) = match path.strip_suffix("/status") {
                    Some(p) => (p.to_owned(), true),
                    None => (path.clone(), false),
                };
                let old = st.load(&target);
                let mut obj = if content_type.starts_with("application/apply-patch") {
                    if subresource {
                        let Some(mut o) = old.clone() else {
                            return not_found();
                        };
                        o["status"] = patch["status"].clone();
                        o
                    } else {
                        // One field manager owns everything it applies: the applied
                        // object replaces the previous one, server metadata kept.
                        let mut o = patch;
                        if let Some(prev) = &old {
                            if let Some(s) = prev.get("status") {
                                o["status"] = s.clone();
                            }
                            if let Some(f) = prev["metadata"].get("finalizers") {
                                o["metadata"]["finalizers"] = f.clone();
                            }
                        }
                        o
                    }
                } else if content_type.starts_with("application/json-patch") {
                    let Some(mut o) = old.clone() else {
                        return not_found();
                    };
                    // As the API server does: `test` of an absent path against null passes.
                    let mut patch = patch;
                    if let Value::Array(list) = &mut patch {
                        list.retain(|op| {
                            let path = op["path"].as_str().unwrap_or_default();
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && o.pointer(path).is_none())
                        });
                    }
                    let ops: json_patch::Patch = match serde_json::from_value(patch) {
                        Ok(p) => p,
                        Err(e) => {
                            return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
                        }
                    };
                    if let Err(e) = json_patch::patch(&mut o, &ops) {
                        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
                    }
                    o
                } else {
                    let Some(mut o) = old.clone() else {
                        return not_found();
                    };
                    json_patch::merge(&mut o, &patch);
                    o
                };
                Self::stamp(&mut st, &mut obj, old.as_ref());
                st.store(target, &obj);
                (StatusCode::OK, obj)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &method),
        }
    }
}
