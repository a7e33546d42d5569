//! One task per pod: sets up its address and volumes, runs its containers through
//! their lifecycle, probes them, reports the pod status, and tears it all down when
//! the pod is deleted.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::ctr::Ctr;
use super::status::{PodFacts, pod_status};
use crate::container::env::PodAddrs;
use crate::kubelet::{FIELD_MANAGER, HOST_IP, Kubelet};
use crate::retry::Episode;
use crate::volumes::{self, VolumePaths, projected::PodRef};

/// What the worker's helpers report back to its loop.
#[derive(Debug)]
pub enum Ev {
    Exited {
        idx: usize,
        epoch: u64,
        status: std::io::Result<ExitStatus>,
        finished: Timestamp,
    },
    Probe {
        idx: usize,
        epoch: u64,
        probe: usize,
        result: Result<(), String>,
    },
    PreStopDone {
        idx: usize,
        epoch: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `deletionTimestamp` set: stop, report, clean up, delete the object.
    Deleted,
    /// The object is gone from the API: stop and clean up.
    Gone,
    /// The kubelet stops: stop the containers, leave the pod bound.
    Shutdown,
}

pub struct Worker {
    pub k: Arc<Kubelet>,
    pub pod: Pod,
    pub uid: String,
    pub ns: String,
    pub name: String,
    pub pod_dir: PathBuf,
    rx: watch::Receiver<Option<Pod>>,
    pub tx: mpsc::UnboundedSender<Ev>,
    evs: mpsc::UnboundedReceiver<Ev>,
    pub ip: Option<Ipv4Addr>,
    pub volumes: Option<VolumePaths>,
    setup_error: Option<String>,
    setup_retry: Instant,
    /// When the configMap and secret volumes are next compared with their sources.
    volumes_refresh: Instant,
    pub ctrs: Vec<Ctr>,
    start_time: Timestamp,
    conditions: Vec<PodCondition>,
    pushed: Option<serde_json::Value>,
    api: Episode,
    pub ending: Option<Ending>,
}

pub fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Runs the pod until it is deleted or the kubelet stops.
pub async fn run(k: Arc<Kubelet>, rx: watch::Receiver<Option<Pod>>) {
    let Some(pod) = rx.borrow().clone() else {
        return;
    };
    let mut w = Worker::new(k, pod, rx);
    w.main().await;
}

impl Worker {
    fn new(k: Arc<Kubelet>, pod: Pod, rx: watch::Receiver<Option<Pod>>) -> Self {
        let (tx, evs) = mpsc::unbounded_channel();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut ctrs: Vec<Ctr> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Ctr::new(c, true, &pod))
            .collect();
        ctrs.extend(spec.containers.iter().map(|c| Ctr::new(c, false, &pod)));
        let status = pod.status.clone().unwrap_or_default();
        Self {
            pod_dir: k.pod_dir(&pod),
            k,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            ns: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            pod,
            rx,
            tx,
            evs,
            ip: None,
            volumes: None,
            setup_error: None,
            setup_retry: Instant::now(),
            volumes_refresh: Instant::now() + super::refresh::EVERY,
            ctrs,
            start_time: status.start_time.map_or_else(Timestamp::now, |t| t.0),
            conditions: status.conditions.unwrap_or_default(),
            pushed: None,
            api: Episode::default(),
            ending: None,
        }
    }

    pub fn addrs(&self) -> PodAddrs {
        PodAddrs {
            pod_ip: self.ip.map(|i| i.to_string()).unwrap_or_default(),
            host_ip: HOST_IP.to_owned(),
        }
    }

    pub fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// Publishes an event on the pod without holding up the loop.
    pub fn event(&self, container: Option<&str>, warn: bool, reason: &str, note: String) {
        let events = self.k.events.clone();
        let pod = self.pod.clone();
        let (container, reason) = (container.map(str::to_owned), reason.to_owned());
        tokio::spawn(async move {
            events
                .pod(&pod, container.as_deref(), warn, &reason, note)
                .await;
        });
    }

    async fn main(&mut self) {
        if terminal(&self.pod) {
            self.ending = None;
            self.idle_until_deleted().await;
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.k.shutdown.clone();
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() && self.ending.is_none() {
                self.begin_ending(Ending::Deleted, self.deletion_grace());
            }
            if self.ending.is_some() && self.ctrs.iter().all(|c| c.proc_.is_none()) {
                self.finish().await;
                return;
            }
            if self.ending.is_none() {
                if self.volumes.is_none() {
                    self.setup().await;
                }
                if self.volumes.is_some() {
                    self.refresh_volumes_due().await;
                    self.start_due().await;
                    self.release_ip_when_terminal();
                }
                self.run_due_probes();
                self.image_backoff_states();
            }
            self.enforce_deadlines();
            self.push_status().await;
            tokio::select! {
                Some(ev) = self.evs.recv() => self.handle(ev),
                changed = self.rx.changed() => {
                    let latest = if changed.is_ok() { self.rx.borrow_and_update().clone() } else { None };
                    match latest {
                        Some(p) => self.pod = p,
                        None => self.begin_ending(Ending::Gone, 2),
                    }
                }
                _ = tick.tick() => {}
                _ = shutdown.changed() => self.begin_ending(Ending::Shutdown, self.spec_grace()),
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Exited {
                idx,
                epoch,
                status,
                finished,
            } => self.on_exit(idx, epoch, status, finished),
            Ev::Probe {
                idx,
                epoch,
                probe,
                result,
            } => self.on_probe(idx, epoch, probe, result),
            Ev::PreStopDone { idx, epoch } => self.after_pre_stop(idx, epoch),
        }
    }

    async fn setup(&mut self) {
        if Instant::now() < self.setup_retry {
            return;
        }
        self.setup_retry = Instant::now() + Duration::from_secs(2);
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        if self.ip.is_none() && host_network {
            // A host-network pod has the node's address, as with the kubelet.
            self.ip = Some(Ipv4Addr::LOCALHOST);
        }
        if self.ip.is_none() {
            let preferred = self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            self.ip = self.k.with_ipam(|i| i.allocate(&self.uid, preferred));
            if self.ip.is_none() {
                self.setup_failed(
                    "FailedCreatePodSandBox",
                    "no free pod address in --pod-ip-range".into(),
                );
                return;
            }
        }
        let addrs = self.addrs();
        let p = PodRef {
            client: &self.k.client,
            pod: &self.pod,
            addrs: &addrs,
        };
        match volumes::prepare(&p, &self.pod_dir).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.setup_error = None;
            }
            Err(e) => self.setup_failed("FailedMount", format!("{e:#}")),
        }
    }

    /// The periodic sync of the pod's configMap and secret volumes.
    async fn refresh_volumes_due(&mut self) {
        if Instant::now() < self.volumes_refresh {
            return;
        }
        self.volumes_refresh = Instant::now() + super::refresh::EVERY;
        let addrs = self.addrs();
        let p = PodRef {
            client: &self.k.client,
            pod: &self.pod,
            addrs: &addrs,
        };
        super::refresh::refresh_volumes(&p, &self.pod_dir).await;
    }

    fn setup_failed(&mut self, reason: &str, msg: String) {
        if self.setup_error.as_deref() != Some(msg.as_str()) {
            tracing::warn!(pod = %format!("{}/{}", self.ns, self.name), "{reason}: {msg}");
            self.event(None, true, reason, msg.clone());
        }
        self.setup_error = Some(msg);
    }

    fn release_ip_when_terminal(&mut self) {
        let policy = self.restart_policy();
        if self.ip.is_some() && self.ctrs.iter().all(|c| c.done) && self.phase(&policy) != "Running"
        {
            self.k.with_ipam(|i| i.release(&self.uid));
        }
    }

    fn phase(&self, policy: &str) -> &'static str {
        let (init, main) = self.facts();
        super::status::phase(policy, &init, &main)
    }

    fn facts(&self) -> (Vec<super::status::Facts>, Vec<super::status::Facts>) {
        let init = self
            .ctrs
            .iter()
            .filter(|c| c.init)
            .map(|c| c.facts.clone())
            .collect();
        let main = self
            .ctrs
            .iter()
            .filter(|c| !c.init)
            .map(|c| c.facts.clone())
            .collect();
        (init, main)
    }

    async fn push_status(&mut self) {
        if matches!(self.ending, Some(Ending::Gone) | Some(Ending::Shutdown)) {
            return;
        }
        // A deleted pod ends in a terminal phase, as with the kubelet.
        let policy = if self.ending.is_some() {
            "Never".to_owned()
        } else {
            self.restart_policy()
        };
        let (init, main) = self.facts();
        let facts = PodFacts {
            restart_policy: &policy,
            init: &init,
            main: &main,
            sandbox_ready: self.volumes.is_some() && self.ip.is_some(),
            pod_ip: self.ip.map(|i| i.to_string()),
            host_ip: HOST_IP,
            start_time: self.start_time,
            now: Timestamp::now(),
        };
        let status = pod_status(&facts, &self.conditions);
        let Ok(value) = serde_json::to_value(&status) else {
            return;
        };
        if self.pushed.as_ref() == Some(&value) {
            return;
        }
        let api = Api::<Pod>::namespaced(self.k.client.clone(), &self.ns);
        let patch = json!({"metadata": {"uid": self.uid}, "status": value});
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let what = format!("status of pod {}/{}", self.ns, self.name);
        match api
            .patch_status(&self.name, &pp, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.api.succeeded(&what);
                self.pushed = Some(value);
                self.conditions = status.conditions.unwrap_or_default();
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                self.pushed = Some(value);
            }
            Err(e) => self.api.failed(&what, &e),
        }
    }

    async fn idle_until_deleted(&mut self) {
        let mut shutdown = self.k.shutdown.clone();
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                self.ending = Some(Ending::Deleted);
                self.finish().await;
                return;
            }
            tokio::select! {
                changed = self.rx.changed() => {
                    let latest = if changed.is_ok() { self.rx.borrow_and_update().clone() } else { None };
                    match latest {
                        Some(p) => self.pod = p,
                        None => {
                            self.ending = Some(Ending::Gone);
                            self.finish().await;
                            return;
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Everything stopped: clean up and, for a deleted pod, delete the object.
    async fn finish(&mut self) {
        let ending = self.ending.unwrap_or(Ending::Gone);
        if ending == Ending::Shutdown {
            return;
        }
        if ending == Ending::Deleted {
            self.push_status().await;
        }
        if let Err(e) = volumes::remove(&self.pod_dir) {
            tracing::warn!("cleaning up pod {}/{}: {e:#}", self.ns, self.name);
        }
        self.k.with_ipam(|i| i.release(&self.uid));
        if ending != Ending::Deleted {
            return;
        }
        let api = Api::<Pod>::namespaced(self.k.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let what = format!("deleting pod {}/{}", self.ns, self.name);
        crate::retry::forever(&what, || async {
            match api.delete(&self.name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await;
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), "pod deleted");
    }
}
