//! The runtime's admin API (issue 4), as the operator uses it: one trait,
//! [`RuntimeAdmin`], an HTTP implementation ([`HttpAdmin`]) and the types of the
//! JSON it exchanges. Reads are open; mutating calls carry the job's admin token
//! (`Authorization: Bearer`), from the per-job Secret the operator creates.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::build::ADMIN_PORT;

/// One runtime pod of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddr {
    pub namespace: String,
    pub job: String,
    /// The headless Service naming the pods.
    pub service: String,
    pub ordinal: i32,
    /// The pod's `status.podIP` as last observed; `None` before the pod has one.
    pub pod_ip: Option<String>,
}

/// `GET /v1/status`: one pod's view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    #[serde(default)]
    pub ordinal: i32,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub shards: Vec<ShardStatus>,
    #[serde(default)]
    pub job_watermark_ms: Option<i64>,
    #[serde(default)]
    pub watermark_lag_seconds: Option<f64>,
    #[serde(default)]
    pub idle_partitions: Option<i32>,
    #[serde(default)]
    pub forced_advances: Option<i64>,
    #[serde(default)]
    pub last_checkpoint: Option<RuntimeCheckpoint>,
    #[serde(default)]
    pub records_in_per_second: Option<f64>,
    #[serde(default)]
    pub busy_ratio: Option<f64>,
    #[serde(default)]
    pub consumer_lag: Option<i64>,
    /// The checkpoint volume's filesystem (`statvfs` of the data directory); absent
    /// from runtimes that do not report it.
    #[serde(default)]
    pub checkpoint_volume: Option<CheckpointVolume>,
    /// The output audits of the last interval (`spec.audit`).
    #[serde(default)]
    pub audit: Vec<RuntimeAudit>,
}

/// One audited ratio in `GET /v1/status`: `{"check", "ratio", "breached"}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeAudit {
    pub check: String,
    #[serde(default)]
    pub ratio: Option<f64>,
    #[serde(default)]
    pub breached: bool,
}

/// `"checkpoint_volume": {"used_bytes": .., "capacity_bytes": ..}` in `GET /v1/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointVolume {
    pub used_bytes: u64,
    pub capacity_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    pub shard: i32,
    #[serde(default)]
    pub offsets: BTreeMap<String, i64>,
    #[serde(default)]
    pub lag: BTreeMap<String, i64>,
    #[serde(default)]
    pub watermark_ms: Option<i64>,
    #[serde(default)]
    pub idle: Vec<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeCheckpoint {
    pub id: i64,
    pub completed_at_ms: i64,
    #[serde(default)]
    pub duration_ms: Option<i64>,
}

/// `GET /v1/savepoints/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointInfo {
    pub id: String,
    pub state: SavepointState,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavepointState {
    Pending,
    Completed,
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("pod {pod}: {message}")]
    Unreachable { pod: String, message: String },
    #[error("pod {pod}: HTTP {status} on {what}: {body}")]
    Status {
        pod: String,
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("pod {pod}: cannot read the answer to {what}: {message}")]
    Decode {
        pod: String,
        what: &'static str,
        message: String,
    },
}

pub type AdminResult<T> = std::result::Result<T, AdminError>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The runtime admin API. Object-safe so that tests can put a double behind it.
pub trait RuntimeAdmin: Send + Sync {
    fn status<'a>(&'a self, pod: &'a PodAddr) -> BoxFuture<'a, AdminResult<RuntimeStatus>>;
    /// `POST /v1/savepoints`; `id` names the savepoint job-wide (all pods write to
    /// `<location>/<id>`; a runtime that picks its own id answers with it).
    fn trigger_savepoint<'a>(
        &'a self,
        pod: &'a PodAddr,
        token: &'a str,
        id: &'a str,
        stop: bool,
    ) -> BoxFuture<'a, AdminResult<String>>;
    fn savepoint<'a>(
        &'a self,
        pod: &'a PodAddr,
        id: &'a str,
    ) -> BoxFuture<'a, AdminResult<SavepointInfo>>;
    fn advance_watermark<'a>(
        &'a self,
        pod: &'a PodAddr,
        token: &'a str,
    ) -> BoxFuture<'a, AdminResult<()>>;
    /// `DELETE /v1/savepoints/{id}`: the pod deletes savepoint `id` of the job's
    /// location with the job's store credentials; a savepoint already gone is no error.
    fn delete_savepoint<'a>(
        &'a self,
        pod: &'a PodAddr,
        token: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, AdminResult<()>>;
}

/// Where a pod's admin API is (`http://host:port`), or `None` when the pod cannot be
/// addressed yet (no IP assigned).
pub type Resolver = Arc<dyn Fn(&PodAddr) -> Option<String> + Send + Sync>;

/// How the operator reaches the runtime pods (`--pod-address`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PodAddressing {
    /// The headless Service's per-pod DNS name: needs the operator inside the
    /// cluster's DNS and pod network.
    #[default]
    Dns,
    /// The pod's `status.podIP`: no cluster DNS needed (an operator run outside the
    /// cluster with a route to the pod network, or pods on the host network).
    Ip,
}

pub fn resolver(mode: PodAddressing) -> Resolver {
    match mode {
        PodAddressing::Dns => dns_resolver(),
        PodAddressing::Ip => ip_resolver(),
    }
}

pub fn dns_resolver() -> Resolver {
    Arc::new(|p: &PodAddr| {
        Some(format!(
            "http://{}-{}.{}.{}.svc:{ADMIN_PORT}",
            p.job, p.ordinal, p.service, p.namespace
        ))
    })
}

pub fn ip_resolver() -> Resolver {
    Arc::new(|p: &PodAddr| {
        let ip = p.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
        // An IPv6 literal needs brackets in a URL.
        Some(if ip.contains(':') {
            format!("http://[{ip}]:{ADMIN_PORT}")
        } else {
            format!("http://{ip}:{ADMIN_PORT}")
        })
    })
}

/// The admin API over HTTP/1.1 (hyper, already in the tree through kube).
#[derive(Clone)]
pub struct HttpAdmin {
    client: Client<HttpConnector, Full<Bytes>>,
    resolve: Resolver,
    timeout: Duration,
}

impl HttpAdmin {
    pub fn new(resolve: Resolver) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            resolve,
            timeout: Duration::from_secs(5),
        }
    }

    async fn call(
        &self,
        pod: &PodAddr,
        what: &'static str,
        method: hyper::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> AdminResult<Bytes> {
        let name = format!("{}-{}", pod.job, pod.ordinal);
        let unreachable = |message: String| AdminError::Unreachable {
            pod: name.clone(),
            message,
        };
        let base = (self.resolve)(pod)
            .ok_or_else(|| unreachable(format!("{what}: the pod has no status.podIP yet")))?;
        let url = format!("{base}{path}");
        let mut req = hyper::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| unreachable(format!("bad request to {url}: {e}")))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| unreachable(format!("{what}: no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(format!("{what}: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("{what}: reading the body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let mut body: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            if status == hyper::StatusCode::UNAUTHORIZED {
                body.push_str(&unauthorized_hint(&pod.job));
            }
            return Err(AdminError::Status {
                pod: name,
                what,
                status: status.as_u16(),
                body,
            });
        }
        Ok(body)
    }
}

/// What a refused token means and how to fix it (docs/operations.md, "The admin token").
fn unauthorized_hint(job: &str) -> String {
    format!(
        " (the pod holds another admin token than the operator's: Secret {} was written by hand, or the pod has not yet read the re-created one; delete the Secret and the operator creates it again, which the pods read without a restart)",
        crate::build::admin_secret_name(job)
    )
}

fn decode<T: serde::de::DeserializeOwned>(
    pod: &PodAddr,
    what: &'static str,
    bytes: &[u8],
) -> AdminResult<T> {
    serde_json::from_slice(bytes).map_err(|e| AdminError::Decode {
        pod: format!("{}-{}", pod.job, pod.ordinal),
        what,
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
struct Accepted {
    id: String,
}

impl RuntimeAdmin for HttpAdmin {
    fn status<'a>(&'a self, pod: &'a PodAddr) -> BoxFuture<'a, AdminResult<RuntimeStatus>> {
        Box::pin(async move {
            let b = self
                .call(
                    pod,
                    "GET /v1/status",
                    hyper::Method::GET,
                    "/v1/status",
                    None,
                    None,
                )
                .await?;
            decode(pod, "GET /v1/status", &b)
        })
    }

    fn trigger_savepoint<'a>(
        &'a self,
        pod: &'a PodAddr,
        token: &'a str,
        id: &'a str,
        stop: bool,
    ) -> BoxFuture<'a, AdminResult<String>> {
        Box::pin(async move {
            let what = "POST /v1/savepoints";
            let body = serde_json::json!({ "stop": stop, "id": id });
            let b = self
                .call(
                    pod,
                    what,
                    hyper::Method::POST,
                    "/v1/savepoints",
                    Some(token),
                    Some(body),
                )
                .await?;
            Ok(decode::<Accepted>(pod, what, &b)?.id)
        })
    }

    fn savepoint<'a>(
        &'a self,
        pod: &'a PodAddr,
        id: &'a str,
    ) -> BoxFuture<'a, AdminResult<SavepointInfo>> {
        Box::pin(async move {
            let what = "GET /v1/savepoints/{id}";
            let path = format!("/v1/savepoints/{id}");
            let b = self
                .call(pod, what, hyper::Method::GET, &path, None, None)
                .await?;
            decode(pod, what, &b)
        })
    }

    fn advance_watermark<'a>(
        &'a self,
        pod: &'a PodAddr,
        token: &'a str,
    ) -> BoxFuture<'a, AdminResult<()>> {
        Box::pin(async move {
            self.call(
                pod,
                "POST /v1/watermark/advance",
                hyper::Method::POST,
                "/v1/watermark/advance",
                Some(token),
                None,
            )
            .await
            .map(|_| ())
        })
    }

    fn delete_savepoint<'a>(
        &'a self,
        pod: &'a PodAddr,
        token: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, AdminResult<()>> {
        Box::pin(async move {
            let path = format!("/v1/savepoints/{id}");
            self.call(
                pod,
                "DELETE /v1/savepoints/{id}",
                hyper::Method::DELETE,
                &path,
                Some(token),
                None,
            )
            .await
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: Option<&str>) -> PodAddr {
        PodAddr {
            namespace: "streams".into(),
            job: "clicks".into(),
            service: "clicks".into(),
            ordinal: 2,
            pod_ip: ip.map(str::to_owned),
        }
    }

    #[test]
    fn dns_addressing_names_the_pod_through_the_headless_service() {
        let r = resolver(PodAddressing::Dns);
        assert_eq!(
            r(&addr(Some("10.0.0.7"))).as_deref(),
            Some("http://clicks-2.clicks.streams.svc:9249")
        );
    }

    #[test]
    fn ip_addressing_uses_the_pod_ip_and_brackets_ipv6() {
        let r = resolver(PodAddressing::Ip);
        assert_eq!(
            r(&addr(Some("127.0.0.5"))).as_deref(),
            Some("http://127.0.0.5:9249")
        );
        assert_eq!(
            r(&addr(Some("fd00::5"))).as_deref(),
            Some("http://[fd00::5]:9249")
        );
        assert_eq!(r(&addr(None)), None);
        assert_eq!(r(&addr(Some(""))), None);
    }

    #[tokio::test]
    async fn a_pod_without_an_ip_is_reported_unreachable_without_a_request() {
        let admin = HttpAdmin::new(resolver(PodAddressing::Ip));
        let err = admin.status(&addr(None)).await.expect_err("no address");
        let text = err.to_string();
        assert!(
            text.contains("clicks-2") && text.contains("status.podIP"),
            "{text}"
        );
    }
}
