//! The job's lifecycle end to end on the local cluster, part three: what the
//! job survives. Two operator replicas with leader election, the leader killed
//! in the middle of a savepoint upgrade; a runtime pod's process killed (the
//! kubelet restarts its container); a runtime pod killed and force-deleted, as
//! for a lost node (the StatefulSet makes it again on the same claim). The pods
//! run on a local kubelet, with Apache Kafka and savepoints in the local S3
//! store (`s3_job`). Each flow starts from a job producing output while its
//! input keeps arriving, and ends with the whole output topic compared with the
//! reference (exactly once). Each prints a `FLOW` line: wall time, the
//! operator's API writes, the longest time the output stopped.

use crate::{cluster, e2e_resilience, e2e_scaling, s3_job};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use streamjoin_api::{LifecycleState, SavepointTrigger, StreamJoinJob};

use cluster::operator::OperatorProcess;
use cluster::wait::{poll, try_poll};
use e2e_resilience::signal_container;
use e2e_resilience::{Container, Restore, container, force_delete, kill_container};
use e2e_resilience::{last_checkpoints, lease_holder, runtime_pid, savepoints_requested};
use e2e_resilience::{new_restores, wait_gone, wait_leader, wait_restores};
use e2e_scaling::{PREFIX, saved_checkpoints};
use s3_job::measure::{Flow, FlowReport, api_writes};
use s3_job::store::{BUCKET, ensure_bucket, savepoint_ids};
use s3_job::{Feed, PodRun, S3Job};

const READY: Duration = Duration::from_secs(300);
/// The second half of the input is paced over this long from before the flow
/// starts; what is left when the flow is done goes at once (the feed prints
/// how many of its slices that was: none would mean a flow outlasted it).
const FEED: Duration = Duration::from_secs(90);
/// The replicas' lease: a standby takes over this long after the leader's last
/// renewal (the leader renews every third of it).
const LEASE_SECS: u64 = 6;
/// Each shard of the example (4 partitions) on one of its 2 pods.
const SHARDS_PER_POD: usize = 2;

/// The example with the local S3 overlay, not applied yet.
async fn prepared_job(test: &str, node: &str, seed: u64) -> Option<S3Job> {
    let job = S3Job::start(test, node, seed).await?;
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    Some(job)
}

/// Applied, Ready, with output.
async fn deployed(job: &S3Job) -> StreamJoinJob {
    job.apply(&[]);
    let first = job.wait_ready("first deployment", READY).await;
    job.wait_output_above(0, Duration::from_secs(120)).await;
    first
}

/// The rest of the input starts arriving, and the output grows from it.
async fn input_keeps_arriving(job: &S3Job) -> Feed {
    let now = job.output_now();
    let feed = job.feed_second_half(FEED).await;
    job.wait_output_above(now, Duration::from_secs(60)).await;
    feed
}

/// The end of every flow: the rest of the input sent, the whole output exactly
/// the reference's, the figures printed.
fn finish(job: &S3Job, feed: Feed, report: impl FnOnce() -> FlowReport) -> FlowReport {
    let sent = feed.finish();
    job.assert_output_matches_the_reference();
    let report = report();
    report.print();
    eprintln!("{sent} input records sent during the flow");
    report
}

fn lifecycle_state(job: &StreamJoinJob) -> Option<LifecycleState> {
    Some(job.status.as_ref()?.lifecycle.as_ref()?.state)
}

/// Where the upgrade to `generation` is when the leader is killed: its
/// savepoint requested from the pods (the ids in the record), or its pods
/// being deployed from the savepoint.
#[derive(Debug)]
enum Midway {
    SavepointRequested(String),
    Deploying(String),
}

/// Polls the status record until it shows the upgrade to `generation` under
/// way (see [`Midway`]); the job is not Ready at that generation yet.
async fn upgrade_under_way(job: &S3Job, generation: Option<i64>) -> Midway {
    let seen = try_poll(READY, || async {
        let j = job.job().await;
        let lc = j
            .status
            .as_ref()
            .and_then(|s| s.lifecycle.clone())
            .ok_or("no lifecycle record")?;
        match (&lc.state, &lc.savepoint) {
            (LifecycleState::Savepointing, Some(sp))
                if sp.trigger == SavepointTrigger::Upgrade && !sp.requests.is_empty() =>
            {
                Ok(Midway::SavepointRequested(sp.id.clone()))
            }
            (LifecycleState::Deploying, _) if lc.target_generation == generation => {
                let from = lc
                    .restore_from
                    .clone()
                    .ok_or("deploying from no savepoint")?;
                Ok(Midway::Deploying(from))
            }
            (state, sp) => Err(format!("{state:?} {sp:?}")),
        }
    })
    .await;
    seen.unwrap_or_else(|last| panic!("no upgrade under way: {last}\n{}", job.diagnose()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_operator_takes_over_when_the_leader_dies_mid_upgrade_and_finishes_it_from_the_status_record()
 {
    const TEST: &str = "the_standby_operator_takes_over_when_the_leader_dies_mid_upgrade_and_finishes_it_from_the_status_record";
    let Some(mut job) = prepared_job(TEST, "e2e-ha", 31).await else {
        return;
    };
    // Two replicas with a short lease instead of the harness's single one.
    job.op.terminate();
    let ids = ["operator-a", "operator-b"];
    let mut replicas = BTreeMap::new();
    for id in ids {
        replicas.insert(id, OperatorProcess::replica(&job.t, id, LEASE_SECS).await);
    }
    let first = deployed(&job).await;
    wait_leader(&job, &ids, Duration::from_secs(60)).await;
    let before = job.pods().await;
    let saved_before = savepoint_ids(&job.s3, BUCKET, PREFIX).await;
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for pod in &before {
        new_restores(&job, &pod.name, seen.entry(pod.name.clone()).or_default());
    }
    let feed = input_keeps_arriving(&job).await;

    let mut flow = Flow::begin("operator-failover-mid-upgrade");
    job.apply(&[json!({
        "op": "add",
        "path": "/spec/podTemplate/env/-",
        "value": { "name": "JOB_REVISION", "value": "2" }
    })]);
    let generation = first.metadata.generation.map(|g| g + 1);
    let midway = upgrade_under_way(&job, generation).await;
    let (holder, transitions) = lease_holder(&job).await;
    let leader = holder.unwrap_or_else(|| panic!("no leader mid-upgrade"));
    let standby = *ids.iter().find(|i| **i != leader).unwrap_or(&ids[0]);
    let killed_at = Instant::now();
    replicas
        .get_mut(leader.as_str())
        .unwrap_or_else(|| panic!("no replica {leader}"))
        .kill();
    eprintln!("killed the leader {leader} with the upgrade at {midway:?}");
    let new_leader = wait_leader(&job, &[standby], READY).await;
    let takeover = killed_at.elapsed();
    let (upgraded, sp, after) = job.wait_upgraded(&before, READY).await;
    flow.done();

    // The standby leads now, through a new lease transition.
    let (_, transitions_after) = lease_holder(&job).await;
    assert_eq!(new_leader, standby);
    assert!(
        transitions_after > transitions,
        "leaseTransitions {transitions} -> {transitions_after}"
    );
    assert_eq!(upgraded.metadata.generation, generation);
    // One savepoint for the upgrade: the one the first leader started.
    let sp_id = sp
        .id
        .clone()
        .unwrap_or_else(|| panic!("no savepoint id: {sp:?}"));
    match &midway {
        Midway::SavepointRequested(id) => assert_eq!(&sp_id, id, "the recorded savepoint"),
        Midway::Deploying(from) => assert_eq!(from, &sp.location, "the recorded restore point"),
    }
    let saved_after = savepoint_ids(&job.s3, BUCKET, PREFIX).await;
    let new: BTreeSet<&String> = saved_after.difference(&saved_before).collect();
    assert_eq!(
        new,
        BTreeSet::from([&sp_id]),
        "one new savepoint in the store"
    );
    let status = upgraded.status.clone().unwrap_or_default();
    let upgrades: Vec<_> = status
        .savepoint_history
        .iter()
        .filter(|s| s.trigger == Some(SavepointTrigger::Upgrade))
        .collect();
    assert_eq!(upgrades, [&sp], "one upgrade savepoint in the history");
    for pod in &before {
        let asked = savepoints_requested(&job, &pod.name);
        assert!(
            !asked.is_empty() && asked.iter().all(|id| *id == sp_id),
            "pod {} was asked for {asked:?}, not only {sp_id}",
            pod.name
        );
    }
    assert_new_pods_restore_from(&after, &before, &sp.location);
    // Each shard restored the checkpoint the savepoint holds of it (from the
    // store, or the same checkpoint still on the pod's claim: the runtime takes
    // a local checkpoint when it is as new as the savepoint's).
    let saved = saved_checkpoints(&job, &sp_id, 2).await;
    let mut restored = BTreeMap::new();
    for pod in &after {
        let seen = seen.entry(pod.name.clone()).or_default();
        let restores = wait_restores(&job, &pod.name, SHARDS_PER_POD, seen).await;
        eprintln!("{} restored {restores:?}", pod.name);
        restored.extend(restores.iter().map(|r| (r.shard, r.id)));
    }
    assert_eq!(restored, saved, "the savepoint's checkpoint of each shard");

    // Both replicas wrote during the flow: the first leader started the
    // upgrade, the standby finished it.
    let logs: BTreeMap<&str, String> = replicas
        .iter()
        .map(|(id, op)| (*id, op.log_text()))
        .collect();
    let end = flow.end.map_or_else(std::time::SystemTime::now, |(t, _)| t);
    for (id, log) in &logs {
        let writes = api_writes(log, flow.start, end);
        eprintln!("writes of {id} during the flow: {writes:?}");
        assert!(!writes.is_empty(), "{id} wrote nothing during the flow");
    }
    let all: String = logs.values().cloned().collect();
    let report = finish(&job, feed, || job.flow_report_from(&flow, &all));
    eprintln!(
        "leader {leader} killed at {midway:?}; {standby} led {:.1}s later (lease {LEASE_SECS}s)",
        takeover.as_secs_f64()
    );
    assert!(report.api_writes > 0, "{report}");
    assert_eq!(job.pods().await, after, "the upgraded pods ran to the end");
    for op in replicas.values() {
        assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
    }
}

/// Every pod restores from `location` and none of them is one of `old`.
fn assert_new_pods_restore_from(pods: &[PodRun], old: &[PodRun], location: &str) {
    let old: BTreeSet<&str> = old.iter().map(|p| p.uid.as_str()).collect();
    assert_eq!(pods.len(), 2, "{pods:#?}");
    for pod in pods {
        assert!(!old.contains(pod.uid.as_str()), "a new pod: {pod:#?}");
        assert_eq!(pod.restore_from(), Some(location), "{pod:#?}");
    }
}

/// A running job with input arriving, the pod to crash, the restores its log
/// shows so far and the newest checkpoint it completed before the crash.
struct BeforeCrash {
    feed: Feed,
    pod: String,
    seen: BTreeSet<String>,
    checkpoint: u64,
}

/// The job deployed and its input arriving; waits until pod `pod` completed a
/// checkpoint with some of that input.
async fn before_crash(job: &S3Job, ordinal: u64) -> BeforeCrash {
    deployed(job).await;
    let pod = format!("{}-{ordinal}", cluster::example::JOB);
    let mut seen = BTreeSet::new();
    let first_run = new_restores(job, &pod, &mut seen);
    assert!(
        first_run.iter().all(|r| !r.from_savepoint),
        "a first start: {first_run:?}"
    );
    let at_start = last_checkpoints(job)
        .await
        .get(&ordinal)
        .copied()
        .unwrap_or(0);
    let feed = input_keeps_arriving(job).await;
    let checkpoint = poll(
        &format!("pod {pod} completes a checkpoint after its input grew"),
        Duration::from_secs(120),
        || async {
            let id = last_checkpoints(job).await.get(&ordinal).copied();
            id.filter(|id| *id > at_start)
                .ok_or_else(|| format!("last checkpoint {id:?}"))
        },
    )
    .await;
    BeforeCrash {
        feed,
        pod,
        seen,
        checkpoint,
    }
}

/// The pod's log shows each of its shards restored from its own checkpoint
/// (not a savepoint), one it completed no earlier than `checkpoint`.
fn assert_restored_own_checkpoint(pod: &str, restores: &[Restore], checkpoint: u64) {
    assert_eq!(restores.len(), SHARDS_PER_POD, "{pod}: {restores:?}");
    for r in restores {
        assert!(!r.from_savepoint, "{pod} restored a savepoint: {r:?}");
        assert!(
            r.id >= checkpoint,
            "{pod} restored checkpoint {} of shard {}, older than {checkpoint}, its last before the crash",
            r.id,
            r.shard
        );
    }
}

/// The job still Running its first generation: a crash is no spec change and
/// no failed rollout.
async fn assert_still_running(job: &S3Job, first: Option<i64>) {
    let j = job.wait_ready("after the crash", READY).await;
    assert_eq!(j.metadata.generation, first);
    assert_eq!(lifecycle_state(&j), Some(LifecycleState::Running));
    let rolled = s3_job::events(&job.t.client, job.ns(), "RollingBack").await;
    assert!(rolled.is_empty(), "{rolled:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_runtime_container_is_restarted_and_restores_its_checkpoint_from_its_claim() {
    const TEST: &str =
        "a_sigkilled_runtime_container_is_restarted_and_restores_its_checkpoint_from_its_claim";
    let Some(job) = prepared_job(TEST, "e2e-crash", 32).await else {
        return;
    };
    let BeforeCrash {
        feed,
        pod,
        mut seen,
        checkpoint,
    } = before_crash(&job, 0).await;
    let generation = job.job().await.metadata.generation;
    let crashed = container(&job, &pod).await;
    let pid = runtime_pid(&job, &pod).await;

    let mut flow = Flow::begin("runtime-container-sigkill");
    let killed = Instant::now();
    kill_container(pid);
    let back: Container = poll(
        &format!("pod {pod} running again after SIGKILL"),
        READY,
        || async {
            let c = container(&job, &pod).await.ok_or("no pod")?;
            (c.restarts >= 1 && c.ready && c.pid.is_some_and(|p| p != pid))
                .then(|| c.clone())
                .ok_or_else(|| format!("{c:?}"))
        },
    )
    .await;
    let down = killed.elapsed();
    let restores = wait_restores(&job, &pod, SHARDS_PER_POD, &mut seen).await;
    let now = job.output_now();
    job.wait_output_above(now, Duration::from_secs(120)).await;
    flow.done();

    let crashed = crashed.unwrap_or_else(|| panic!("no pod {pod}"));
    assert_eq!(back.pod_uid, crashed.pod_uid, "the same pod");
    assert_eq!(back.restarts, crashed.restarts + 1, "{back:?}");
    assert_eq!(
        back.last_exit,
        Some((137, Some(9))),
        "terminated by SIGKILL"
    );
    assert_restored_own_checkpoint(&pod, &restores, checkpoint);
    eprintln!(
        "{pod} (pid {pid}) killed after checkpoint {checkpoint}; ready again {:.1}s later, restored {restores:?}",
        down.as_secs_f64()
    );
    assert_still_running(&job, generation).await;
    finish(&job, feed, || job.flow_report(&flow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_pod_killed_and_force_deleted_is_recreated_on_its_claim_and_restores_its_checkpoint()
 {
    const TEST: &str = "a_runtime_pod_killed_and_force_deleted_is_recreated_on_its_claim_and_restores_its_checkpoint";
    let Some(job) = prepared_job(TEST, "e2e-lost", 33).await else {
        return;
    };
    let BeforeCrash {
        feed,
        pod,
        mut seen,
        checkpoint,
    } = before_crash(&job, 1).await;
    let generation = job.job().await.metadata.generation;
    let claimed = job.claims().await;
    let old = container(&job, &pod)
        .await
        .unwrap_or_else(|| panic!("no pod {pod}"));
    let pid = runtime_pid(&job, &pod).await;

    let mut flow = Flow::begin("runtime-pod-lost");
    let lost = Instant::now();
    // The pod's node is gone: its process stops at once (SIGSTOP: no
    // graceful shutdown, no exit the kubelet would restart), its object is
    // force-deleted, and the process dies (SIGKILL; its kubelet, whose SIGTERM
    // the stopped process cannot act on, may have sent SIGKILL first).
    assert!(
        signal_container(pid, "STOP"),
        "kill -STOP -{pid} reached no process"
    );
    force_delete(&job, &pod).await;
    let killed_here = signal_container(pid, "KILL");
    wait_gone(pid).await;
    let back: Container = poll(
        &format!("pod {pod} made again and ready"),
        READY,
        || async {
            let c = container(&job, &pod).await.ok_or("no pod")?;
            (c.pod_uid != old.pod_uid && c.ready)
                .then(|| c.clone())
                .ok_or_else(|| format!("{c:?}"))
        },
    )
    .await;
    let down = lost.elapsed();
    let restores = wait_restores(&job, &pod, SHARDS_PER_POD, &mut seen).await;
    let now = job.output_now();
    job.wait_output_above(now, Duration::from_secs(120)).await;
    flow.done();

    assert_eq!(job.claims().await, claimed, "the same claims");
    assert_restored_own_checkpoint(&pod, &restores, checkpoint);
    eprintln!(
        "{pod} (uid {}, pid {pid}, SIGKILL by {}) lost after checkpoint {checkpoint}; {} (restarts {}) ready {:.1}s later, restored {restores:?}",
        old.pod_uid,
        if killed_here {
            "the test"
        } else {
            "its kubelet"
        },
        back.pod_uid,
        back.restarts,
        down.as_secs_f64()
    );
    assert_still_running(&job, generation).await;
    finish(&job, feed, || job.flow_report(&flow));
}
