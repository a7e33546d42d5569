//! The job's lifecycle end to end on the local cluster, the autoscaler: a
//! backlog that grows (input produced faster than one pod reads) scales the job
//! up once, after the stabilisation window, through a savepoint; a load that
//! oscillates around one pod's capacity never rescales. The operator runs as the
//! chart's ServiceAccount, the pods on a local kubelet, with Apache Kafka and
//! savepoints in the local S3 store (`s3_job`).
//!
//! The runtime reads this data set far faster than a test can produce it, and
//! the local kubelet has no CPU limits, so a pod's capacity is bounded the way a
//! user bounds it: the runtime's input rate limit (`STREAMJOIN_MAX_INPUT_RATE`
//! in the pod template, [`LIMIT`] records per second per pod). Time a pod is
//! held back by it counts as busy, so what the pods report to the operator
//! (`GET /v1/status`: input rate, busy ratio, consumer lag) is measured, not
//! made up. Each flow ends with the whole output topic compared with the
//! reference (exactly once) and prints a `FLOW` line.

use crate::{cluster, e2e_autoscale, e2e_scaling, s3_job};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use streamjoin_api::SavepointStatus;

use cluster::wait::{poll, try_poll};
use e2e_autoscale::load::Load;
use e2e_autoscale::{autoscaler_status, occurrences};
use e2e_scaling::data_sets::{STREAMS, second_half};
use e2e_scaling::{restored_since, runtime_status, summed};
use s3_job::measure::Flow;
use s3_job::store::{BUCKET, ensure_bucket};
use s3_job::{PodRun, S3Job, ready_at_generation};

const READY: Duration = Duration::from_secs(300);
/// Input records per second one pod reads at most. The flows' lengths follow
/// from it (each half of the data set is ~50,000 records: ~50 s at the limit);
/// the autoscaler's decisions depend on the rates' ratios to it, not on it.
const LIMIT: f64 = 1000.0;
/// The autoscaler's window for a scale-up (and its cool-down after one).
const STABILISATION: Duration = Duration::from_secs(45);

/// Between one and two pods, a 45 s scale-up window (the operator samples the
/// pods every ≤ 10 s while the autoscaler is on), a backlog to be caught up
/// within a minute, the default 30 min before a scale-down.
fn autoscaler() -> Value {
    json!({
        "enabled": true, "minParallelism": 1, "maxParallelism": 2,
        "targetUtilization": 0.7, "catchUpDuration": "1m",
        "scaleUpStabilization": format!("{}s", STABILISATION.as_secs()),
        "scaleDownDelay": "30m"
    })
}

/// One pod, each pod reading at most [`LIMIT`] records a second, the
/// autoscaler on or (the overlay's) off.
fn ops(autoscaled: bool) -> Vec<Value> {
    let mut ops = vec![
        json!({ "op": "replace", "path": "/spec/parallelism", "value": 1 }),
        json!({
            "op": "add", "path": "/spec/podTemplate/env/-",
            "value": { "name": "STREAMJOIN_MAX_INPUT_RATE", "value": format!("{LIMIT}") }
        }),
    ];
    if autoscaled {
        ops.push(json!({ "op": "replace", "path": "/spec/autoscaler", "value": autoscaler() }));
    }
    ops
}

/// The example with the local S3 overlay and `ops`, Ready with its one pod.
async fn running_job(test: &str, node: &str, seed: u64, ops: &[Value]) -> Option<S3Job> {
    let mut job = S3Job::start(test, node, seed).await?;
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    job.ops.extend(ops.iter().cloned());
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    Some(job)
}

fn names(pods: &[PodRun]) -> Vec<String> {
    pods.iter().map(|p| p.name.clone()).collect()
}

/// What the pods report now, summed: (input records/s, mean busy ratio, lag).
async fn load_reported(job: &S3Job) -> Result<(f64, f64, i64), String> {
    let reports = runtime_status(job).await?;
    let field = |r: &Value, f: &str| r[f].as_f64();
    let rates: Option<Vec<f64>> = reports
        .iter()
        .map(|r| field(r, "records_in_per_second"))
        .collect();
    let busy: Option<Vec<f64>> = reports.iter().map(|r| field(r, "busy_ratio")).collect();
    let (Some(rates), Some(busy)) = (rates, busy) else {
        return Err(format!("no rate or busy ratio yet: {reports:?}"));
    };
    let mean = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
    Ok((rates.iter().sum(), mean, summed(&reports, "consumer_lag")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_backlog_scales_up_once_after_the_stabilisation_window_through_a_savepoint() {
    const TEST: &str =
        "a_growing_backlog_scales_up_once_after_the_stabilisation_window_through_a_savepoint";
    // No sample of the pods is older than the job.
    let created = Timestamp::now();
    let Some(job) = running_job(TEST, "e2e-autoscale-up", 31, &ops(true)).await else {
        return;
    };
    let first = job.pods().await;
    assert_eq!(first.len(), 1, "{first:#?}");
    let mut seen = BTreeMap::new();
    restored_since(&job, &names(&first), &mut seen);
    // 2500 records/s, two and a half times what the pod may read.
    let load = Load::start(
        &job.broker.bootstrap,
        second_half(&job.data, &STREAMS),
        |_| 2.5 * LIMIT,
    );
    let mut flow = Flow::begin("autoscale-up");

    // The pod runs at its limit, busy, the backlog grows, and the autoscaler
    // asks for two pods but holds until its window is covered.
    let (rate, busy, lag, held) = poll("the pod at its limit", Duration::from_secs(90), || async {
        let (rate, busy, lag) = load_reported(&job).await?;
        let a = autoscaler_status(&job).await;
        let held = a.reason.clone().unwrap_or_default();
        if busy >= 0.9 && lag > 5_000 && held.contains("recommending 2") {
            Ok((rate, busy, lag, held))
        } else {
            Err(format!(
                "rate {rate:.0}/s, busy {busy:.2}, lag {lag}, autoscaler {a:?}"
            ))
        }
    })
    .await;
    eprintln!("one pod: {rate:.0} records/s, busy {busy:.2}, lag {lag}; autoscaler: {held}");
    assert!(rate <= LIMIT * 1.25, "the limit holds: {rate:.0}/s");
    assert!(
        held.contains("waiting for") || held.contains("not stable"),
        "held by the window: {held}"
    );

    let (sp, pods) = wait_scaled_up(&job, &first).await;
    flow.done();
    // The decision's reason is in its Event (the status has moved on to the
    // next look at the two pods).
    let (count, notes) = occurrences(&job, "Autoscaling").await;
    assert_eq!(count, 1, "{notes:#?}");
    let reason = notes.concat();
    assert!(reason.contains("scale up 1 → 2"), "{reason}");
    let status = autoscaler_status(&job).await;
    let scaled_at: Timestamp = status
        .last_scale_time
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no lastScaleTime: {status:?}"));
    let waited = scaled_at.duration_since(created);
    assert!(
        waited.as_secs() >= STABILISATION.as_secs() as i64,
        "scaled {waited:?} after the job ran: not before the window was covered"
    );
    let restored = restored_since(&job, &names(&pods), &mut seen);
    let shards: BTreeSet<u32> = restored.values().flatten().map(|(s, _)| *s).collect();
    let count: usize = restored.values().map(Vec::len).sum();
    assert_eq!(
        (count, shards.len()),
        (4, 4),
        "each shard restored once: {restored:?}"
    );
    assert!(
        restored.values().all(|s| !s.is_empty()),
        "both new pods restored shards: {restored:?}"
    );
    eprintln!(
        "autoscaled 1 -> 2 after {waited:?} through savepoint {}: {reason}",
        sp.location
    );

    let sent = load.finish();
    job.assert_output_matches_the_reference();
    let report = job.flow_report(&flow);
    report.print();
    eprintln!("{sent} records sent while the backlog grew");
    // Once: the two pods read the backlog down and ran to the end, the
    // autoscaler looking on (at two, its maximum) without a second decision.
    assert_eq!(job.pods().await, pods, "the scaled-up pods ran to the end");
    let after = autoscaler_status(&job).await;
    assert_eq!(after.last_scale_time, status.last_scale_time, "{after:?}");
    assert_eq!(after.recommended_parallelism, Some(2), "{after:?}");
    let (count, notes) = occurrences(&job, "Autoscaling").await;
    assert_eq!(count, 1, "rescaled once: {notes:#?}");
    assert!(job.op.refusals().is_empty(), "{:#?}", job.op.refusals());
}

/// Polls until the autoscaler's rescale is done: a savepoint of the one pod
/// taken, two new pods ready, each started from it, the job Ready.
async fn wait_scaled_up(job: &S3Job, old: &[PodRun]) -> (SavepointStatus, Vec<PodRun>) {
    let old: BTreeSet<String> = old.iter().map(|p| p.uid.clone()).collect();
    let done = try_poll(READY, || {
        let old = old.clone();
        async move {
            let j = job.job().await;
            ready_at_generation(&j)?;
            let st = j.status.clone().unwrap_or_default();
            if st
                .autoscaler
                .as_ref()
                .and_then(|a| a.last_scale_time.as_ref())
                .is_none()
            {
                return Err(format!("not scaled yet: {:?}", st.autoscaler));
            }
            let sp = st
                .last_savepoint
                .clone()
                .filter(|s| s.parallelism == Some(1))
                .ok_or_else(|| format!("no savepoint of the one pod: {:?}", st.last_savepoint))?;
            let pods = job.pods().await;
            let fresh = pods.len() == 2
                && pods.iter().all(|p| {
                    p.ready && !old.contains(&p.uid) && p.restore_from() == Some(&sp.location)
                });
            if !fresh {
                return Err(format!("pods {pods:#?}"));
            }
            Ok((sp, pods))
        }
    })
    .await;
    done.unwrap_or_else(|last| {
        panic!(
            "the autoscaler's rescale was not done within {READY:?}: {last}\n{}",
            job.diagnose()
        )
    })
}

/// Bursts of twice a pod's limit for 10 s, then a quarter of it for 25 s: the
/// backlog of a burst is read within the quiet part, which leaves the pod idle
/// for about 12 s of every 35 (at least one of the operator's samples, taken
/// every ≤ 10 s, asks for one pod in any 45 s window).
fn oscillating(t: Duration) -> f64 {
    if t.as_secs() % 35 < 10 {
        2.0 * LIMIT
    } else {
        0.25 * LIMIT
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oscillating_load_never_rescales() {
    const TEST: &str = "an_oscillating_load_never_rescales";
    let Some(job) = running_job(TEST, "e2e-autoscale-flap", 32, &ops(false)).await else {
        return;
    };
    // The first half read (at the limit), then the autoscaler turned on: it
    // judges the oscillating load only. A few records may stay unread: those of
    // partitions more than alignmentMaxDrift (1 min) ahead in event time, until
    // the others' next records or their idleness (1 min) move the watermark.
    poll("the first half read", READY, || async {
        let (_, _, lag) = load_reported(&job).await?;
        (lag < 500).then_some(()).ok_or(format!("lag {lag}"))
    })
    .await;
    job.patch_spec(json!({ "autoscaler": autoscaler() }));
    job.wait_ready("the autoscaler on", READY).await;
    let pods = job.pods().await;
    let load = Load::start(
        &job.broker.bootstrap,
        second_half(&job.data, &STREAMS),
        oscillating,
    );
    let mut flow = Flow::begin("autoscale-oscillating");

    // What the autoscaler said while the load went up and down.
    let mut reasons = BTreeSet::new();
    while load.is_sending() {
        let status = autoscaler_status(&job).await;
        assert_eq!(status.last_scale_time, None, "rescaled: {status:?}");
        if let Some(r) = status.reason {
            reasons.insert(r);
        }
        // Sampling the status over the load's time, not waiting for a condition.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    flow.done();
    let sent = load.finish();
    job.assert_output_matches_the_reference();
    let report = job.flow_report(&flow);
    report.print();
    eprintln!("{sent} records sent in bursts; the autoscaler said: {reasons:#?}");

    let wants = |n: &str| reasons.iter().any(|r| r.contains(n));
    assert!(
        wants("recommending 2, not stable"),
        "the bursts asked for two pods, held by the window: {reasons:#?}"
    );
    assert!(
        wants("meets the target utilization"),
        "the quiet parts asked for one: {reasons:#?}"
    );
    let status = autoscaler_status(&job).await;
    assert_eq!(status.last_scale_time, None, "{status:?}");
    assert_eq!(status.recommended_parallelism, Some(1), "{status:?}");
    for reason in ["Autoscaling", "Rescaling"] {
        let (count, notes) = occurrences(&job, reason).await;
        assert_eq!(count, 0, "{reason}: {notes:#?}");
    }
    assert_eq!(job.pods().await, pods, "the same pod ran to the end");
    assert!(job.op.refusals().is_empty(), "{:#?}", job.op.refusals());
}
