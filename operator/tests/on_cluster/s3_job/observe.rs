//! What the tests read back: a pod's identity and run, the job's conditions,
//! the Events about the job, each pod's own status.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::Value;
use streamjoin_api::StreamJoinJob;

use crate::cluster::example::JOB;

/// One pod as far as "the same pod, never restarted" goes, and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRun {
    pub name: String,
    pub uid: String,
    pub restarts: i32,
    /// When its runtime container started (RFC 3339).
    pub started: String,
    pub ready: bool,
    pub args: Vec<String>,
}

impl PodRun {
    pub fn of(pod: &Pod) -> PodRun {
        let status = pod.status.clone().unwrap_or_default();
        let container = status
            .container_statuses
            .unwrap_or_default()
            .into_iter()
            .next();
        let started = container
            .as_ref()
            .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let args = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.args.clone())
            .unwrap_or_default();
        PodRun {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            restarts: container.as_ref().map_or(0, |c| c.restart_count),
            started,
            ready: container.is_some_and(|c| c.ready),
            args,
        }
    }

    /// The value after `--restore-from`, if the pod has one.
    pub fn restore_from(&self) -> Option<&str> {
        let i = self.args.iter().position(|a| a == "--restore-from")?;
        self.args.get(i + 1).map(String::as_str)
    }
}

fn condition<'a>(job: &'a StreamJoinJob, type_: &str) -> Option<&'a Condition> {
    job.status.as_ref()?.condition(type_)
}

/// `Ok` when the job is Ready and its status describes the spec's generation.
pub fn ready_at_generation(job: &StreamJoinJob) -> Result<(), String> {
    let status = job.status.as_ref().ok_or("no status yet")?;
    let generation = job.metadata.generation;
    if status.observed_generation != generation {
        return Err(format!(
            "observedGeneration {:?}, generation {generation:?}",
            status.observed_generation
        ));
    }
    match condition(job, "Ready") {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!(
            "phase {:?}; Ready={}: {}; conditions {:?}",
            status.phase, c.status, c.message, status.conditions
        )),
        None => Err(format!("phase {:?}, no Ready condition", status.phase)),
    }
}

/// The Degraded condition when it is True with reason SavepointFailed.
pub fn savepoint_failed(job: &StreamJoinJob) -> Result<Condition, String> {
    match condition(job, "Degraded") {
        Some(c) if c.status == "True" && c.reason == "SavepointFailed" => Ok(c.clone()),
        Some(c) => Err(format!("Degraded={} {}: {}", c.status, c.reason, c.message)),
        None => Err("no Degraded condition".into()),
    }
}

/// The (type, note) of every Event about the job with `reason`.
pub async fn events(client: &Client, ns: &str, reason: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing the Events of {ns}: {e}"));
    list.items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(JOB)
        })
        .map(|e| (e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// `text` without ANSI colour sequences (`ESC [ ... m`), which runtimes of
/// earlier builds wrote into their text log also when it went to a file.
pub fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// Each running pod's own `GET /v1/status` (admin port 9249 on the pod's IP):
/// what the pods report, without waiting for the operator's next look at them.
pub async fn runtime_status(client: &Client, ns: &str) -> Result<Vec<Value>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("streamjoin.dev/job={JOB}")))
        .await
        .map_err(|e| format!("listing the pods of {JOB}: {e}"))?;
    let ips: Vec<String> = list
        .items
        .iter()
        .map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
        .collect::<Option<_>>()
        .ok_or_else(|| "a pod without an IP".to_owned())?;
    // Blocking HTTP off the async workers (the benchmark's runtime has one).
    let fetch = move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        ips.iter()
            .map(|ip| {
                let url = format!("http://{ip}:9249/v1/status");
                agent
                    .get(&url)
                    .call()
                    .map_err(|e| format!("{url}: {e}"))?
                    .body_mut()
                    .read_json::<Value>()
                    .map_err(|e| format!("{url}: {e}"))
            })
            .collect()
    };
    tokio::task::spawn_blocking(fetch)
        .await
        .map_err(|e| format!("the status requests: {e}"))?
}
