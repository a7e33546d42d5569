//! What the worker tracks of one container.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::status::{Facts, State, Terminated};
use crate::container::namespace::Process;
use crate::probes::ProbeState;

/// A running process of the container.
#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    pub epoch: u64,
    pub started: Instant,
    pub started_at: Timestamp,
    pub process: Process,
    pub log: PathBuf,
    /// Set once asked to stop: SIGKILL at this instant.
    pub stop_deadline: Option<Instant>,
    pub killed: bool,
}

#[derive(Debug)]
pub struct Ctr {
    pub spec: Container,
    pub init: bool,
    pub facts: Facts,
    pub proc_: Option<Proc>,
    pub epoch: u64,
    /// Started before (by this kubelet or a previous one): the next start counts as
    /// a restart.
    pub ever_started: bool,
    /// Consecutive exits, for the back-off.
    pub exits: u32,
    pub next_start: Instant,
    /// Exited and not to be started again.
    pub done: bool,
    pub probes: Vec<ProbeState>,
    pub image_failures: u32,
    /// When `ErrImagePull` turns into `ImagePullBackOff`.
    pub pull_backoff_at: Option<Instant>,
}

fn previous_status<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a ContainerStatus> {
    let st = pod.status.as_ref()?;
    let list = if init {
        st.init_container_statuses.as_ref()
    } else {
        st.container_statuses.as_ref()
    };
    list?.iter().find(|c| c.name == name)
}

impl Ctr {
    /// A container not yet started by this kubelet; restart count and last state are
    /// carried over from the pod's status (a previous kubelet ran it).
    pub fn new(spec: &Container, init: bool, pod: &Pod) -> Self {
        let image = spec.image.clone().unwrap_or_default();
        let mut facts = Facts::waiting(
            &spec.name,
            &image,
            if init {
                "PodInitializing"
            } else {
                "ContainerCreating"
            },
        );
        let mut ever_started = false;
        if let Some(old) = previous_status(pod, &spec.name, init) {
            facts.restart_count = old.restart_count;
            let state = old.state.as_ref();
            let term = state.and_then(|s| s.terminated.as_ref());
            let running = state.and_then(|s| s.running.as_ref());
            ever_started = old.container_id.is_some() || term.is_some() || running.is_some();
            facts.last = if let Some(t) = term {
                Some(terminated(t))
            } else if let Some(r) = running {
                // The process died with the previous kubelet.
                Some(Terminated {
                    exit_code: 137,
                    signal: Some(9),
                    reason: "Unknown".into(),
                    message: Some("the local kubelet restarted".into()),
                    started_at: r.started_at.as_ref().map(|t| t.0),
                    finished_at: Timestamp::now(),
                    container_id: old.container_id.clone(),
                })
            } else {
                old.last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .map(terminated)
            };
        }
        Self {
            spec: spec.clone(),
            init,
            facts,
            proc_: None,
            epoch: 0,
            ever_started,
            exits: 0,
            next_start: Instant::now(),
            done: false,
            probes: Vec::new(),
            image_failures: 0,
            pull_backoff_at: None,
        }
    }

    pub fn set_waiting(&mut self, reason: &str, message: Option<String>) {
        if let State::Terminated(t) = &self.facts.state {
            self.facts.last = Some(t.clone());
        }
        self.facts.state = State::Waiting {
            reason: reason.to_owned(),
            message,
        };
    }
}

/// A termination the API server recorded, as the worker tracks it.
fn terminated(t: &ContainerStateTerminated) -> Terminated {
    Terminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason.clone().unwrap_or_else(|| "Error".into()),
        message: t.message.clone(),
        started_at: t.started_at.as_ref().map(|t| t.0),
        finished_at: t.finished_at.as_ref().map_or_else(Timestamp::now, |t| t.0),
        container_id: t.container_id.clone(),
    }
}
