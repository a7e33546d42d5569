//! The job's lifecycle end to end on the local cluster, part one: an upgrade
//! through a savepoint, a crash-looping upgrade rolled back, a suspend and its
//! resume. The operator runs as the chart's ServiceAccount, the pods on a local
//! kubelet, with Apache Kafka and savepoints in the local S3 store (`s3_job`).
//! Each flow starts from a job producing output while its input keeps arriving
//! (the second half, spread over [`FEED`]), and ends with the whole output topic
//! compared with the reference (exactly once). Each prints a `FLOW` line: wall
//! time, the operator's API writes, the longest time the output stopped.

use crate::{cluster, s3_job};
use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use serde_json::json;
use streamjoin_api::{
    LifecycleState, LifecycleStatus, SavepointStatus, SavepointTrigger, StreamJoinJob,
};

use cluster::example::JOB;
use cluster::kubelet::CRASHING_IMAGE;
use cluster::wait::try_poll;
use s3_job::measure::{Flow, FlowReport};
use s3_job::store::{BUCKET, ensure_bucket};
use s3_job::{Feed, PodRun, S3Job, events};

const READY: Duration = Duration::from_secs(300);
/// The second half of the input is paced over this long from before the flow
/// starts; what is left when the flow is done goes at once (the feed prints
/// how many of its slices that was: none would mean a flow outlasted it).
const FEED: Duration = Duration::from_secs(90);

/// The example with the local S3 overlay, Ready, with output.
async fn running_job(test: &str, node: &str, seed: u64) -> Option<(S3Job, StreamJoinJob)> {
    let job = S3Job::start(test, node, seed).await?;
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    job.apply(&[]);
    let first = job.wait_ready("first deployment", READY).await;
    job.wait_output_above(0, Duration::from_secs(120)).await;
    Some((job, first))
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
fn finish(job: &S3Job, feed: Feed, flow: &Flow) -> FlowReport {
    feed.finish();
    job.assert_output_matches_the_reference();
    let report = job.flow_report(flow);
    report.print();
    assert!(report.api_writes > 0, "{report}");
    report
}

fn status_of(job: &StreamJoinJob) -> streamjoin_api::StreamJoinJobStatus {
    job.status.clone().unwrap_or_default()
}

fn lifecycle(job: &StreamJoinJob) -> LifecycleStatus {
    status_of(job)
        .lifecycle
        .unwrap_or_else(|| panic!("no lifecycle record in {:?}", job.status))
}

fn condition(job: &StreamJoinJob, type_: &str) -> Option<Condition> {
    job.status.as_ref()?.condition(type_).cloned()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_upgrade_restores_new_pods_from_the_savepoint_and_loses_nothing() {
    const TEST: &str = "a_savepoint_upgrade_restores_new_pods_from_the_savepoint_and_loses_nothing";
    let Some((job, first)) = running_job(TEST, "e2e-upgrade", 21).await else {
        return;
    };
    let before = job.pods().await;
    let feed = input_keeps_arriving(&job).await;

    let mut flow = Flow::begin("savepoint-upgrade");
    // An upgrade: a new variable in the pod template.
    job.apply(&[json!({
        "op": "add",
        "path": "/spec/podTemplate/env/-",
        "value": { "name": "JOB_REVISION", "value": "2" }
    })]);
    let (upgraded, sp, after) = job.wait_upgraded(&before, READY).await;
    flow.done();

    let generation = upgraded.metadata.generation;
    assert_eq!(generation, first.metadata.generation.map(|g| g + 1));
    let status = status_of(&upgraded);
    assert_eq!(status.observed_generation, generation);
    assert_eq!(status.savepoint_history.first(), Some(&sp), "newest first");
    let lifecycle = lifecycle(&upgraded);
    assert_eq!(lifecycle.state, LifecycleState::Running);
    assert_eq!(lifecycle.stable_generation, generation);
    assert_eq!(
        lifecycle.restore_from.as_deref(),
        Some(sp.location.as_str())
    );
    assert_new_pods_restore_from(&after, &before, &sp.location);
    let notes = |reason| events(&job.t.client, job.ns(), reason);
    let upgrading = notes("Upgrading").await;
    assert!(
        upgrading
            .iter()
            .any(|(_, n)| n.contains("stop with a savepoint")),
        "{upgrading:#?}"
    );
    let completed = notes("SavepointCompleted").await;
    assert!(
        completed.iter().any(|(_, n)| n.contains(&sp.location)),
        "{completed:#?}"
    );

    finish(&job, feed, &flow);
    assert_eq!(job.pods().await, after, "the upgraded pods ran to the end");
    assert!(job.op.refusals().is_empty(), "{:#?}", job.op.refusals());
}

/// The images of the job's pods.
async fn pod_images(job: &S3Job) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(job.t.client.clone(), job.ns());
    let list = api
        .list(&ListParams::default().labels(&format!("streamjoin.dev/job={JOB}")))
        .await
        .unwrap_or_else(|e| panic!("listing the pods of {JOB}: {e}"));
    list.items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_upgrade_rolls_back_to_the_last_stable_spec_from_the_same_savepoint() {
    const TEST: &str =
        "a_crash_looping_upgrade_rolls_back_to_the_last_stable_spec_from_the_same_savepoint";
    let Some((job, first)) = running_job(TEST, "e2e-rollback", 22).await else {
        return;
    };
    let before = job.pods().await;
    let stable_image = first.spec.image.clone();
    let feed = input_keeps_arriving(&job).await;

    let mut flow = Flow::begin("crash-loop-rollback");
    job.patch_spec(json!({ "image": CRASHING_IMAGE }));
    let failed_generation = first.metadata.generation.map(|g| g + 1);
    // While the new pods fail: Degraded=True naming the failure.
    let degraded = try_poll(READY, || async {
        let j = job.job().await;
        match condition(&j, "Degraded") {
            Some(c) if c.status == "True" && c.reason == "RolledBack" => Ok(c),
            other => Err(format!("Degraded {other:?}")),
        }
    })
    .await
    .unwrap_or_else(|last| panic!("no Degraded=RolledBack: {last}\n{}", job.diagnose()));
    assert!(
        degraded.message.contains("failed") && degraded.message.contains("rolling back"),
        "{degraded:?}"
    );
    let (rolled, sp, after) = wait_rolled_back(&job, &before, failed_generation).await;
    flow.done();

    let lifecycle = lifecycle(&rolled);
    assert_eq!(lifecycle.stable_generation, first.metadata.generation);
    assert_eq!(
        lifecycle.restore_from.as_deref(),
        Some(sp.location.as_str())
    );
    assert!(
        lifecycle.ignore_checkpoints_before.is_some(),
        "{lifecycle:?}"
    );
    assert_new_pods_restore_from(&after, &before, &sp.location);
    assert_eq!(pod_images(&job).await, [stable_image.clone(), stable_image]);
    let rolling_back = events(&job.t.client, job.ns(), "RollingBack").await;
    assert!(
        rolling_back
            .iter()
            .any(|(ty, n)| ty == "Warning" && n.contains(&sp.location)),
        "{rolling_back:#?}"
    );
    let rolled_back = events(&job.t.client, job.ns(), "RolledBack").await;
    assert!(!rolled_back.is_empty(), "no RolledBack Event");
    eprintln!(
        "after the rollback: Degraded {:?}",
        condition(&rolled, "Degraded")
    );

    finish(&job, feed, &flow);
    assert_eq!(
        job.pods().await,
        after,
        "the rolled-back pods ran to the end"
    );
}

/// Polls until the failed generation is rejected and the last stable spec runs
/// again: lifecycle Running, Ready, an upgrade savepoint recorded, two new
/// ready pods that are not the crash-looping ones.
async fn wait_rolled_back(
    job: &S3Job,
    before: &[PodRun],
    failed: Option<i64>,
) -> (StreamJoinJob, SavepointStatus, Vec<PodRun>) {
    let old: BTreeSet<String> = before.iter().map(|p| p.uid.clone()).collect();
    let done = try_poll(READY, || {
        let old = old.clone();
        async move {
            let j = job.job().await;
            let st = status_of(&j);
            let lc = st.lifecycle.clone().ok_or("no lifecycle record")?;
            if lc.state != LifecycleState::Running || lc.rejected_generation != failed {
                return Err(format!(
                    "lifecycle {:?}, rejected {:?}",
                    lc.state, lc.rejected_generation
                ));
            }
            match condition(&j, "Ready") {
                Some(c) if c.status == "True" => {}
                other => return Err(format!("Ready {other:?}")),
            }
            let sp = st
                .last_savepoint
                .clone()
                .filter(|s| s.trigger == Some(SavepointTrigger::Upgrade))
                .ok_or_else(|| format!("no upgrade savepoint: {:?}", st.last_savepoint))?;
            let pods = job.pods().await;
            let images = pod_images(job).await;
            if pods.len() != 2
                || pods.iter().any(|p| old.contains(&p.uid) || !p.ready)
                || images.iter().any(|i| i == CRASHING_IMAGE)
            {
                return Err(format!("pods {pods:#?} {images:?}"));
            }
            Ok((j, sp, pods))
        }
    })
    .await;
    done.unwrap_or_else(|last| {
        panic!(
            "not rolled back within {READY:?}: {last}\n{}",
            job.diagnose()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_keep_the_claims_and_restore_from_the_suspend_savepoint() {
    const TEST: &str = "suspend_and_resume_keep_the_claims_and_restore_from_the_suspend_savepoint";
    let Some((job, _)) = running_job(TEST, "e2e-suspend", 23).await else {
        return;
    };
    let before = job.pods().await;
    let claimed = job.claims().await;
    assert_eq!(claimed.len(), 2, "a claim per pod: {claimed:#?}");
    let feed = input_keeps_arriving(&job).await;

    let mut flow = Flow::begin("suspend-resume");
    job.patch_spec(json!({ "state": "suspended" }));
    let sp = wait_suspended(&job).await;
    assert_eq!(
        job.claims().await,
        claimed,
        "the claims kept while suspended"
    );
    job.patch_spec(json!({ "state": "running" }));
    let resumed = job.wait_ready("the resume", READY).await;
    let after = job.pods().await;
    flow.done();

    assert_new_pods_restore_from(&after, &before, &sp.location);
    let lifecycle = lifecycle(&resumed);
    assert_eq!(
        lifecycle.restore_from.as_deref(),
        Some(sp.location.as_str())
    );
    assert_eq!(
        job.claims().await,
        claimed,
        "the same claims after the resume"
    );
    finish(&job, feed, &flow);
    assert_eq!(job.pods().await, after, "the resumed pods ran to the end");
}

/// Polls until the job is suspended: lifecycle Suspended with a suspend
/// savepoint recorded, no pod left, the status at the spec's generation.
async fn wait_suspended(job: &S3Job) -> SavepointStatus {
    let done = try_poll(READY, || async {
        let j = job.job().await;
        let st = status_of(&j);
        let lc = st.lifecycle.clone().ok_or("no lifecycle record")?;
        if lc.state != LifecycleState::Suspended || st.observed_generation != j.metadata.generation
        {
            return Err(format!("lifecycle {:?}, phase {:?}", lc.state, st.phase));
        }
        let sp = st
            .last_savepoint
            .clone()
            .filter(|s| s.trigger == Some(SavepointTrigger::Suspend))
            .ok_or_else(|| format!("no suspend savepoint: {:?}", st.last_savepoint))?;
        let pods = job.pods().await;
        if !pods.is_empty() {
            return Err(format!("pods left: {pods:#?}"));
        }
        Ok(sp)
    })
    .await;
    done.unwrap_or_else(|last| panic!("not suspended within {READY:?}: {last}\n{}", job.diagnose()))
}
