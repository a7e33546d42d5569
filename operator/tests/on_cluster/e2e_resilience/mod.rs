//! What the resilience flows do to the local cluster and read back from it:
//! the leader Lease of the operator replicas, a runtime pod's container
//! (its process, restarts and last termination) killed as a node failure
//! would, the checkpoints a pod's log says it restored, the job's claims.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use crate::cluster::wait::poll;
use crate::e2e_scaling::{restore_lines, runtime_status};
use crate::s3_job::S3Job;

/// The operator's leader Lease (`--lease-name` default), in the test's namespace.
pub const LEASE: &str = "streamjoin-operator";

/// Who holds the leader Lease, and its `leaseTransitions`.
pub async fn lease_holder(job: &S3Job) -> (Option<String>, i32) {
    let api: Api<Lease> = Api::namespaced(job.t.client.clone(), job.ns());
    let lease = api
        .get_opt(LEASE)
        .await
        .unwrap_or_else(|e| panic!("reading Lease {LEASE}: {e}"));
    let spec = lease.and_then(|l| l.spec).unwrap_or_default();
    (
        spec.holder_identity.filter(|h| !h.is_empty()),
        spec.lease_transitions.unwrap_or(0),
    )
}

/// Polls until one of `identities` holds the Lease; which one.
pub async fn wait_leader(job: &S3Job, identities: &[&str], limit: Duration) -> String {
    poll("a leader among the replicas", limit, || async {
        let (holder, _) = lease_holder(job).await;
        match holder {
            Some(h) if identities.contains(&h.as_str()) => Ok(h),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await
}

/// The runtime container of one pod as its kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub pod_uid: String,
    /// From `containerID` `local://<pid>`.
    pub pid: Option<u32>,
    pub restarts: i32,
    pub ready: bool,
    /// `lastState.terminated`: exit code and signal.
    pub last_exit: Option<(i32, Option<i32>)>,
}

/// Pod `name`'s runtime container, `None` while the pod does not exist.
pub async fn container(job: &S3Job, name: &str) -> Option<Container> {
    let api: Api<Pod> = Api::namespaced(job.t.client.clone(), job.ns());
    let pod = api
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("reading pod {name}: {e}"))?;
    let status = pod.status.clone().unwrap_or_default();
    let c = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .next();
    let running = c.as_ref().and_then(|c| c.state.as_ref()?.running.as_ref());
    let pid = c.as_ref().filter(|_| running.is_some()).and_then(|c| {
        c.container_id
            .as_deref()?
            .strip_prefix("local://")?
            .parse()
            .ok()
    });
    let last_exit = c
        .as_ref()
        .and_then(|c| c.last_state.as_ref()?.terminated.as_ref())
        .map(|t| (t.exit_code, t.signal));
    Some(Container {
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        pid,
        restarts: c.as_ref().map_or(0, |c| c.restart_count),
        ready: c.is_some_and(|c| c.ready),
        last_exit,
    })
}

/// The process of pod `name`'s running runtime container, checked in /proc.
pub async fn runtime_pid(job: &S3Job, name: &str) -> u32 {
    let pid = container(job, name)
        .await
        .and_then(|c| c.pid)
        .unwrap_or_else(|| panic!("pod {name} has no running container"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cmdline of pod {name}: {e}"));
    assert!(
        String::from_utf8_lossy(&cmdline).contains("streamjoin-runtime"),
        "pid {pid} of pod {name} is not the runtime: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    pid
}

/// `kill -SIGNAL` to the container's process group (the kubelet gives each
/// container one of its own); whether a process of it got the signal.
pub fn signal_container(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("kill -{signal} -{pid}: {e}"))
        .success()
}

/// SIGKILL to the container's process group: the process ends with no
/// shutdown, no last checkpoint.
pub fn kill_container(pid: u32) {
    assert!(
        signal_container(pid, "KILL"),
        "kill -KILL -{pid} reached no process"
    );
}

/// Polls until process `pid` is gone (a zombie until its parent, the kubelet,
/// reaps it).
pub async fn wait_gone(pid: u32) {
    poll(
        &format!("process {pid} gone"),
        Duration::from_secs(30),
        || async {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `pid (comm) STATE ...`: Z is a zombie, already dead.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            match state {
                None | Some("Z" | "X") => Ok(()),
                Some(s) => Err(format!("state {s}")),
            }
        },
    )
    .await;
}

/// `kubectl delete pod NAME --grace-period=0 --force`, as one does for a pod of
/// a lost node: the object goes at once, without waiting for its kubelet.
pub async fn force_delete(job: &S3Job, name: &str) {
    let api: Api<Pod> = Api::namespaced(job.t.client.clone(), job.ns());
    api.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("force-deleting pod {name}: {e}"));
}

/// One shard's restore, from a pod's log: shard, checkpoint id, whether it was
/// a savepoint's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Restore {
    pub shard: u32,
    pub id: u64,
    pub from_savepoint: bool,
}

fn restore_of(line: &str) -> Option<Restore> {
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name));
    Some(Restore {
        shard: field("shard=")?.parse().ok()?,
        id: field("id=")?.parse().ok()?,
        from_savepoint: field("from_savepoint=")? == "true",
    })
}

/// The restores in pod `name`'s logs (every run of every pod of that name)
/// that are not in `seen`, which gets them.
pub fn new_restores(job: &S3Job, name: &str, seen: &mut BTreeSet<String>) -> Vec<Restore> {
    let new: Vec<String> = restore_lines(job, name)
        .into_iter()
        .filter(|l| !seen.contains(l))
        .collect();
    seen.extend(new.iter().cloned());
    let mut out: Vec<Restore> = new.iter().filter_map(|l| restore_of(l)).collect();
    out.sort_unstable();
    out
}

/// Polls until pod `name`'s log shows `shards` restores not in `seen`.
pub async fn wait_restores(
    job: &S3Job,
    name: &str,
    shards: usize,
    seen: &mut BTreeSet<String>,
) -> Vec<Restore> {
    let mut got = Vec::new();
    poll(
        &format!("pod {name} restoring {shards} shards"),
        Duration::from_secs(180),
        || {
            got.extend(new_restores(job, name, seen));
            let n = got.len();
            async move {
                (n >= shards)
                    .then_some(())
                    .ok_or_else(|| format!("{n} restores"))
            }
        },
    )
    .await;
    got
}

/// The id of the newest checkpoint each pod completed, by ordinal, from its
/// admin API (`GET /v1/status`).
pub async fn last_checkpoints(job: &S3Job) -> BTreeMap<u64, u64> {
    let reports = runtime_status(job)
        .await
        .unwrap_or_else(|e| panic!("the pods' status: {e}"));
    reports
        .iter()
        .filter_map(|r| Some((r["ordinal"].as_u64()?, r["last_checkpoint"]["id"].as_u64()?)))
        .collect()
}

/// The savepoint ids in pod `name`'s `savepoint requested` log lines.
pub fn savepoints_requested(job: &S3Job, name: &str) -> Vec<String> {
    job.pod_log(name)
        .lines()
        .filter(|l| l.contains("savepoint requested"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("savepoint="))
                .map(str::to_owned)
        })
        .collect()
}
