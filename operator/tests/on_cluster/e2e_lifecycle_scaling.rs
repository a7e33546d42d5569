//! The job's lifecycle end to end on the local cluster, part two: rescaling with
//! `kubectl scale`, the nonces (savepoint, restart, forced advance), and the
//! inactivity rules (a region failover, one input gone quiet). The operator
//! runs as the chart's ServiceAccount, the pods on a local kubelet, with Apache
//! Kafka and savepoints in the local S3 store (`s3_job`). Each flow starts from
//! a job producing output while its input keeps arriving, and ends with the
//! whole output topic compared with the reference (exactly once). Each prints
//! a `FLOW` line: wall time, the operator's API writes, the longest time the
//! output stopped.

use crate::{cluster, e2e_scaling, s3_job};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use streamjoin_api::{SavepointStatus, SavepointTrigger, StreamJoinJob, StreamJoinJobStatus};

use cluster::example::JOB;
use cluster::wait::{poll, try_poll};
use e2e_scaling::data_sets::{STREAMS, Shape, concatenated, derived, generated, halves};
use e2e_scaling::data_sets::{max_event_time, second_half, whole};
use e2e_scaling::trickle::{Part, Trickle};
use e2e_scaling::{PREFIX, saved_checkpoints, scale_subresource, wait_some_output};
use e2e_scaling::{assert_topic_matches, records_of, restart_operator, restored_since};
use e2e_scaling::{runtime_status, summed};
use s3_job::measure::Flow;
use s3_job::store::{BUCKET, ensure_bucket, savepoint_ids};
use s3_job::{PodRun, S3Job, events, ready_at_generation};

const READY: Duration = Duration::from_secs(300);

/// The example with the local S3 overlay, `ops` on top, Ready and with output.
async fn running_job(test: &str, node: &str, seed: u64, ops: &[Value]) -> Option<S3Job> {
    let job = prepared_job(test, node, seed, ops).await?;
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    Some(job)
}

/// The same, not applied yet.
async fn prepared_job(test: &str, node: &str, seed: u64, ops: &[Value]) -> Option<S3Job> {
    let mut job = S3Job::start(test, node, seed).await?;
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    job.ops.extend(ops.iter().cloned());
    Some(job)
}

/// Quiet inputs are idle after 20 s and force-advance the watermark 5 s later
/// (the operator looks at the job again after as long).
fn quick_idleness() -> Value {
    json!({ "op": "replace", "path": "/spec/watermarks/idleTimeout", "value": "20s" })
}

fn status(job: &StreamJoinJob) -> StreamJoinJobStatus {
    job.status.clone().unwrap_or_default()
}

fn names(pods: &[PodRun]) -> Vec<String> {
    pods.iter().map(|p| p.name.clone()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_to_three_then_one_restores_each_shard_through_savepoints() {
    const TEST: &str = "kubectl_scale_to_three_then_one_restores_each_shard_through_savepoints";
    let Some(job) = running_job(TEST, "e2e-scale", 21, &[]).await else {
        return;
    };
    let first = job.pods().await;
    assert_eq!(first.len(), 2, "{first:#?}");
    let early = wait_some_output(&job).await;
    let mut seen = BTreeMap::new();
    restored_since(&job, &names(&first), &mut seen);
    let feed = Trickle::start(
        &job.broker.bootstrap,
        second_half(&job.data, &STREAMS),
        60,
        Duration::from_secs(3),
    );

    let mut flow = Flow::begin("kubectl_scale_3_then_1");
    let three = rescale(&job, 3, &first, &mut seen).await;
    let one = rescale(&job, 1, &three, &mut seen).await;
    flow.done();
    let sent = feed.finish();
    job.assert_output_matches_the_reference();
    let report = job.flow_report(&flow);
    report.print();
    eprintln!("{early} entries before the rescales; {sent} records sent during them");
    assert_eq!(job.pods().await, one, "the one pod ran to the end");
    assert!(job.op.refusals().is_empty(), "{:#?}", job.op.refusals());
}

/// `kubectl scale sjj NAME --replicas n` from the `old` pods: Ready at the new
/// generation with n new pods, each started with `--restore-from` the
/// savepoint the old ones took; the scale subresource shows n running; each
/// shard restored by exactly one new pod.
async fn rescale(
    job: &S3Job,
    n: usize,
    old: &[PodRun],
    seen: &mut BTreeMap<String, BTreeSet<String>>,
) -> Vec<PodRun> {
    let before = job.job().await;
    let prev_sp = status(&before).last_savepoint.and_then(|s| s.id);
    let replicas = n.to_string();
    job.t
        .kubectl
        .run(&["scale", "sjj", JOB, "-n", job.ns(), "--replicas", &replicas]);
    let old_uids: BTreeSet<String> = old.iter().map(|p| p.uid.clone()).collect();
    let done = try_poll(READY, || {
        let (old_uids, prev_sp) = (old_uids.clone(), prev_sp.clone());
        async move {
            let j = job.jobs().get(JOB).await.map_err(|e| e.to_string())?;
            if j.metadata.generation <= before.metadata.generation {
                return Err("the scale has not changed the spec".into());
            }
            ready_at_generation(&j)?;
            let st = status(&j);
            let sp = st
                .last_savepoint
                .clone()
                .filter(|s| s.id != prev_sp && s.parallelism == Some(old.len() as i32))
                .ok_or_else(|| {
                    format!(
                        "no new savepoint of {} pods: {:?}",
                        old.len(),
                        st.last_savepoint
                    )
                })?;
            if st.replicas != Some(n as i32) {
                return Err(format!("status.replicas {:?}", st.replicas));
            }
            let pods = job.pods().await;
            let fresh = pods.len() == n
                && pods.iter().all(|p| {
                    p.ready && !old_uids.contains(&p.uid) && p.restore_from() == Some(&sp.location)
                });
            if !fresh {
                return Err(format!("pods {pods:#?}"));
            }
            Ok((sp, pods))
        }
    })
    .await;
    let (sp, pods) = done.unwrap_or_else(|last| {
        panic!(
            "scale to {n}: not done within {READY:?}: {last}\n{}",
            job.diagnose()
        )
    });
    let (spec, running, selector) = scale_subresource(job);
    assert_eq!(
        (spec, running),
        (Some(n as i64), Some(n as i64)),
        "the scale subresource"
    );
    assert!(
        selector.is_some_and(|s| s.contains(JOB)),
        "the scale's selector"
    );
    let restored = restored_since(job, &names(&pods), seen);
    let shards: BTreeMap<u32, u64> = restored.values().flatten().copied().collect();
    let count: usize = restored.values().map(Vec::len).sum();
    assert_eq!(count, 4, "each shard restored once: {restored:?}");
    let id = sp.id.clone().unwrap_or_default();
    let saved = saved_checkpoints(job, &id, old.len() as u32).await;
    assert_eq!(
        shards, saved,
        "each shard restored the savepoint's checkpoint of it"
    );
    assert!(
        restored.values().all(|s| !s.is_empty()),
        "every new pod restored shards of its own: {restored:?}"
    );
    eprintln!(
        "scaled {} -> {n} through savepoint {id} ({}): restored (shard, checkpoint) {restored:?}",
        old.len(),
        sp.location
    );
    pods
}

/// What the three nonces did, counted where each shows.
#[derive(Debug, PartialEq)]
struct Acts {
    manual_savepoints: usize,
    savepoints_in_store: BTreeSet<String>,
    pods: Vec<(String, String, i32)>,
    /// Summed over the pods' own reports.
    forced_advances: i64,
}

async fn acts(job: &S3Job) -> Acts {
    let st = status(&job.job().await);
    Acts {
        manual_savepoints: st
            .savepoint_history
            .iter()
            .filter(|s| s.trigger == Some(SavepointTrigger::Manual))
            .count(),
        savepoints_in_store: savepoint_ids(&job.s3, BUCKET, PREFIX).await,
        pods: job
            .pods()
            .await
            .into_iter()
            .map(|p| (p.name, p.uid, p.restarts))
            .collect(),
        forced_advances: summed(
            &runtime_status(job)
                .await
                .unwrap_or_else(|e| panic!("the pods' status: {e}")),
            "forced_advances",
        ),
    }
}

/// The pods' lag as the job's status has it: it moves with the wall clock, so
/// each status write of the operator changes it.
async fn status_lag(job: &S3Job) -> Option<f64> {
    status(&job.job().await)
        .watermark
        .and_then(|w| w.lag_seconds)
}

/// Waits for a status write of the operator after `before` (read before the
/// act that causes it: a write that comes first must not be missed).
async fn status_written_since(job: &S3Job, before: Option<f64>) {
    poll(
        "a status write of the operator",
        Duration::from_secs(120),
        || async {
            let now = status_lag(job).await;
            (now != before)
                .then_some(())
                .ok_or_else(|| format!("lag {now:?}"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_restart_and_force_advance_nonces_each_act_exactly_once() {
    const TEST: &str = "savepoint_restart_and_force_advance_nonces_each_act_exactly_once";
    // Only the nonce force-advances (no inactivity rule within the test).
    let ops =
        [json!({ "op": "replace", "path": "/spec/watermarks/inactivityTimeout", "value": "15m" })];
    let Some(mut job) = running_job(TEST, "e2e-nonces", 22, &ops).await else {
        return;
    };
    let pods0 = job.pods().await;
    wait_some_output(&job).await;
    let feed = Trickle::start(
        &job.broker.bootstrap,
        second_half(&job.data, &STREAMS),
        30,
        Duration::from_secs(2),
    );
    let mut flow = Flow::begin("nonces_savepoint_restart_force_advance");

    // savepoints.triggerNonce: one savepoint, in the store, the same pods.
    let stored = savepoint_ids(&job.s3, BUCKET, PREFIX).await;
    job.patch_spec(json!({ "savepoints": { "triggerNonce": 1 } }));
    let sp = manual_savepoint_handled(&job, 1).await;
    let id = sp.id.clone().unwrap_or_default();
    let mut want = stored.clone();
    want.insert(id.clone());
    assert_eq!(
        savepoint_ids(&job.s3, BUCKET, PREFIX).await,
        want,
        "one savepoint more"
    );
    assert_eq!(job.pods().await, pods0, "a savepoint restarts no pod");

    // restartNonce: new pods, once.
    job.patch_spec(json!({ "restartNonce": 1 }));
    let pods1 = new_pods(&job, &pods0).await;

    // watermarks.forceAdvanceNonce, once every record is read (the advance
    // makes later records late): the held entries come out.
    let sent = feed.finish();
    let partitions = 2 * i64::from(s3_job::PARTITIONS);
    let idle = poll("every input partition read and idle", READY, || async {
        let pods = runtime_status(&job).await?;
        (summed(&pods, "idle_partitions") == partitions)
            .then_some(pods.clone())
            .ok_or_else(|| format!("{pods:?}"))
    })
    .await;
    let forced0 = summed(&idle, "forced_advances");
    job.patch_spec(json!({ "watermarks": { "forceAdvanceNonce": 1 } }));
    let forced = poll("the forced advance", Duration::from_secs(120), || async {
        let st = status(&job.job().await);
        let handled = st
            .lifecycle
            .as_ref()
            .and_then(|l| l.handled_force_advance_nonce);
        let forced = summed(&runtime_status(&job).await?, "forced_advances");
        match handled {
            Some(1) if forced > forced0 => Ok(forced),
            other => Err(format!("handled {other:?}, forced advances {forced}")),
        }
    })
    .await;
    assert_eq!(
        forced - forced0,
        pods1.len() as i64,
        "one forced advance in each pod"
    );
    job.assert_output_matches_the_reference();
    flow.done();
    job.flow_report(&flow).print();

    // Neither a resync nor an operator restart acts on a nonce again.
    let done = acts(&job).await;
    assert_eq!(done.manual_savepoints, 1, "{done:?}");
    let uids: Vec<&String> = done.pods.iter().map(|(_, uid, _)| uid).collect();
    assert_eq!(
        uids,
        pods1.iter().map(|p| &p.uid).collect::<Vec<_>>(),
        "one restart"
    );
    let before = status_lag(&job).await;
    job.t
        .kubectl
        .run(&["annotate", "sjj", JOB, "-n", job.ns(), "e2e/resync=1"]);
    status_written_since(&job, before).await;
    assert_eq!(acts(&job).await, done, "after a resync");
    let before = status_lag(&job).await;
    let op = restart_operator(&mut job).await;
    status_written_since(&job, before).await;
    let status = status(&job.job().await);
    assert_eq!(acts(&job).await, done, "after an operator restart");
    let handled = status
        .lifecycle
        .as_ref()
        .map(|l| (l.handled_trigger_nonce, l.handled_force_advance_nonce));
    assert_eq!(handled, Some((Some(1), Some(1))), "the nonces stay handled");
    eprintln!(
        "savepoint {id}; pods {:?} -> {uids:?}; forced advances {forced0} -> {forced}; \
         {sent} records sent during the flow",
        pods0.iter().map(|p| &p.uid).collect::<Vec<_>>(),
    );
    drop(op);
}

/// Manual savepoint `nonce` recorded and handled, nothing under way.
async fn manual_savepoint_handled(job: &S3Job, nonce: i64) -> SavepointStatus {
    poll("the manual savepoint", Duration::from_secs(180), || async {
        let st = status(&job.job().await);
        let lifecycle = st
            .lifecycle
            .clone()
            .ok_or_else(|| "no lifecycle record".to_owned())?;
        let sp = st
            .last_savepoint
            .clone()
            .filter(|s| s.trigger == Some(SavepointTrigger::Manual));
        match (lifecycle.handled_trigger_nonce, &lifecycle.savepoint, sp) {
            (Some(n), None, Some(sp)) if n == nonce => Ok(sp),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Ready at the new generation with as many pods as `old`, none of them.
async fn new_pods(job: &S3Job, old: &[PodRun]) -> Vec<PodRun> {
    job.wait_ready("the restart", READY).await;
    poll("new pods", READY, || async {
        let now = job.pods().await;
        let fresh = now.len() == old.len()
            && now
                .iter()
                .all(|p| p.ready && !old.iter().any(|o| o.uid == p.uid));
        fresh
            .then_some(now.clone())
            .ok_or_else(|| format!("{now:#?}"))
    })
    .await
}

/// The topics of the failover test's own data (its event times follow the
/// wall clock), beside the harness's.
const FO_TOPICS: [&str; 5] = ["fo-impressions", "fo-plays", "fo-out", "fo-dead", "fo-late"];

fn failover_ops() -> Vec<Value> {
    let set = |path: &str, value: &str| json!({ "op": "replace", "path": path, "value": value });
    vec![
        set("/spec/inputs/impressions/topic", FO_TOPICS[0]),
        set("/spec/inputs/plays/topic", FO_TOPICS[1]),
        set("/spec/output/topic", FO_TOPICS[2]),
        set("/spec/deadLetter/topic", FO_TOPICS[3]),
        set("/spec/lateOutput/topic", FO_TOPICS[4]),
        set("/spec/join/window", "20s"),
        set("/spec/watermarks/maxOutOfOrderness", "5s"),
    ]
}

/// A generated set of `events` records over `span_ms` from `start_ms`, with the
/// failover job's window (20 s) and records at most `disorder_ms` behind their
/// partition's newest.
fn wall_clock_set(
    dir: &Path,
    name: &str,
    seed: u64,
    events: u64,
    (start_ms, span_ms): (i64, i64),
    disorder_ms: i64,
) -> std::path::PathBuf {
    generated(
        &Shape {
            seed,
            events,
            start_ms,
            span_ms,
            window_ms: 20_000,
            max_disorder_ms: disorder_ms,
        },
        &dir.join(name),
    )
}

/// `data`'s records to the failover topics, `from`..`to` of each file's lines.
fn fo_parts(data: &Path, first_half: Option<bool>) -> Vec<Part> {
    let topics = [("impressions", FO_TOPICS[0]), ("plays", FO_TOPICS[1])];
    topics
        .iter()
        .flat_map(|(stream, topic)| {
            let parts = whole(data, stream, topic);
            let cut = halves(data, stream);
            parts
                .into_iter()
                .zip(cut)
                .map(move |(mut part, (first, second))| {
                    match first_half {
                        Some(true) => part.lines = first,
                        Some(false) => part.lines = second,
                        None => {}
                    }
                    part
                })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_failover_force_advances_the_watermark_and_loses_no_on_time_record() {
    const TEST: &str = "region_failover_force_advances_the_watermark_and_loses_no_on_time_record";
    let Some(mut job) = S3Job::start(TEST, "e2e-failover", 23).await else {
        return;
    };
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    tokio::task::block_in_place(|| {
        for topic in FO_TOPICS {
            job.broker.create_topic(topic, s3_job::PARTITIONS);
        }
    });
    job.ops.extend(failover_ops());
    job.ops.push(quick_idleness());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap_or_else(|e| panic!("a directory for the data sets: {e}"));
    // This region's traffic: event times 15 to 10 minutes ago. Its first half
    // before the job starts, the rest while it runs.
    let window = (now_ms() - 15 * 60_000, 5 * 60_000);
    let a = wall_clock_set(dir.path(), "a", 31, 6_000, window, 5_000);
    Trickle::start(
        &job.broker.bootstrap,
        fo_parts(&a, Some(true)),
        1,
        Duration::ZERO,
    )
    .finish();
    let feed = Trickle::start(
        &job.broker.bootstrap,
        fo_parts(&a, Some(false)),
        20,
        Duration::from_secs(2),
    );
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    poll("some output", Duration::from_secs(120), || async {
        let n = records_of(&job, FO_TOPICS[2], 0).len();
        (n > 0).then_some(n).ok_or_else(|| "none yet".to_owned())
    })
    .await;
    feed.finish();

    // Every partition stops receiving records (traffic moved to another region).
    let mut flow = Flow::begin("region_failover");
    let forced = poll(
        "the forced advance (idleTimeout 20 s, then inactivityTimeout 5 s)",
        READY,
        || async {
            let st = status(&job.job().await);
            let w = st.watermark.clone().unwrap_or_default();
            let inactive = st.condition("InputsInactive").map(|c| c.status.clone());
            match (w.forced_advances, inactive.as_deref()) {
                (Some(f), Some("True")) if f > 0 => Ok(st),
                other => Err(format!("forced, InputsInactive: {other:?}; {w:?}")),
            }
        },
    )
    .await;
    let w = forced.watermark.clone().unwrap_or_default();
    assert!(w.last_forced_advance.is_some(), "{w:?}");
    let current = w.current.clone().unwrap_or_default();
    let a_max = max_event_time(&a, "impressions", false).max(max_event_time(&a, "plays", false));
    let current_ms = current
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or_else(|e| panic!("status.watermark.current {current:?}: {e}"));
    assert!(
        current_ms > a_max,
        "the watermark passed every event of the region: {w:?}"
    );
    let warned = events(&job.t.client, job.ns(), "InputsInactive").await;
    assert!(warned.iter().any(|(ty, _)| ty == "Warning"), "{warned:#?}");
    // The entries held for the window came out with the advance.
    let emitted = assert_topic_matches(&job, FO_TOPICS[2], &a);

    // Traffic comes back as live traffic: event times from 10 s ahead of the
    // wall clock (so after the forced watermark, wall clock - 5 s), sent as
    // they happen: every partition's next 2 s of event time every 2 s. The
    // partitions idle since the advance count again as their records reach the
    // pods, not when they reach the broker, so a partition whose records
    // arrive a moment before the others' may move the watermark by up to its
    // round's span: less than maxOutOfOrderness here, as in live traffic (a
    // burst, or rounds cut by count, would make the others' records late).
    let start = now_ms() + 10_000;
    let b = wall_clock_set(dir.path(), "b", 32, 3_000, (start, 30_000), 0);
    let back = Trickle::paced(
        &job.broker.bootstrap,
        fo_parts(&b, None),
        start,
        2_000,
        Duration::from_secs(2),
    );
    back.join();
    let all = concatenated(&a, &b, &dir.path().join("a+b"));
    let total = assert_topic_matches(&job, FO_TOPICS[2], &all);
    flow.done();
    let late = records_of(&job, FO_TOPICS[4], 0);
    assert!(late.is_empty(), "{} records late", late.len());
    flow.report(
        &job.op.log_text(),
        &job.broker,
        FO_TOPICS[2],
        s3_job::PARTITIONS,
        total,
    )
    .print();
    eprintln!(
        "{emitted} entries of the region before the failover (forced advance: {w:?}), {total} in all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_quiet_input_goes_idle_and_the_watermark_follows_the_other_without_a_forced_advance() {
    const TEST: &str =
        "one_quiet_input_goes_idle_and_the_watermark_follows_the_other_without_a_forced_advance";
    let Some(job) = prepared_job(TEST, "e2e-quiet", 24, &[quick_idleness()]).await else {
        return;
    };
    // Plays stop after their first half; impressions keep coming for 2
    // minutes, from before the job starts (so they never idle).
    let feed = Trickle::start(
        &job.broker.bootstrap,
        second_half(&job.data, &["impressions"]),
        60,
        Duration::from_secs(2),
    );
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    wait_some_output(&job).await;
    let mut flow = Flow::begin("one_quiet_input");
    // The plays' own watermark: their largest event time - maxOutOfOrderness
    // (2 min). Plays go idle 20 s after their last record; the operator
    // reports it within 25 s.
    let plays_wm = max_event_time(&job.data, "plays", true) - 120_000;
    let followed = poll(
        "the plays' partitions idle and the watermark past theirs",
        READY,
        || async {
            let st = status(&job.job().await);
            let w = st.watermark.clone().unwrap_or_default();
            assert_eq!(
                w.forced_advances.unwrap_or(0),
                0,
                "a forced advance while impressions flow: {w:?}"
            );
            assert!(
                feed.is_sending(),
                "the impressions ended before the status showed the plays idle: {w:?}"
            );
            let current = w
                .current
                .as_deref()
                .and_then(|c| c.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond());
            match (w.idle_partitions, current) {
                (Some(i), Some(c)) if i >= s3_job::PARTITIONS as i32 && c > plays_wm => Ok(st),
                other => Err(format!("idle, watermark: {other:?}")),
            }
        },
    )
    .await;
    let inactive = followed
        .condition("InputsInactive")
        .map(|c| c.status.clone());
    assert_ne!(inactive.as_deref(), Some("True"), "only plays are quiet");
    flow.done();
    let sent = feed.finish();

    // The reference: every impression, the plays of the first half only.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap_or_else(|e| panic!("a directory for the data set: {e}"));
    let plays = halves(&job.data, "plays");
    let data = derived(&job.data, dir.path(), |stream, p| {
        let (first, second) = if stream == "plays" {
            plays[p as usize].clone()
        } else {
            halves(&job.data, stream).swap_remove(p as usize)
        };
        if stream == "plays" {
            first
        } else {
            [first, second].concat()
        }
    });
    let n = assert_topic_matches(&job, "impression-plays", &data);
    flow.report(
        &job.op.log_text(),
        &job.broker,
        "impression-plays",
        s3_job::PARTITIONS,
        n,
    )
    .print();
    eprintln!(
        "{sent} impressions sent while plays were quiet; watermark {:?}",
        followed.watermark
    );
}
