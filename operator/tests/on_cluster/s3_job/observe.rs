//! What the tests read back: a pod's identity and run, the job's conditions,
//! the Events about the job.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams};
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
