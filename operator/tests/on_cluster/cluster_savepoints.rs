//! Savepoints in an S3 store, end to end on the local cluster: the shipped
//! example with `examples/local-s3/patch.yaml` (the operator as the chart's
//! ServiceAccount, pods run by a local kubelet, Apache Kafka, the S3 store of
//! `scripts/s3.sh`) upgrades through a stop-with-savepoint in S3 that its new
//! pods restore from; a savepoint that cannot be written (a wrong secret key, a
//! missing bucket) marks the job Degraded=SavepointFailed naming the location and
//! never the secret, while the same pods keep running. Every test ends with the
//! whole output compared with the reference (exactly once).

use crate::{cluster, s3, s3_job};
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::json;
use streamjoin_api::{SavepointStatus, SavepointTrigger};
use streamjoin_runtime::durability::savepoint::ProcessManifest;

use cluster::example::JOB;
use cluster::wait::poll;
use s3::{S3Env, read_back};
use s3_job::store::{BUCKET, ensure_bucket, keys};
use s3_job::{LOCATION, S3Job, events, savepoint_failed};

const READY: Duration = Duration::from_secs(300);
/// Until the first output records.
const OUTPUT: Duration = Duration::from_secs(120);

/// What a savepoint's process manifests say: live entries, and the checkpoint
/// id of each shard.
struct Stored {
    live: u64,
    checkpoints: BTreeMap<u32, u64>,
}

/// Both pods' process manifests of savepoint `id` under `prefix` of `bucket`:
/// together they list every shard (the savepoint is complete in the store).
async fn assert_savepoint_in_store(s3: &S3Env, bucket: &str, prefix: &str, id: &str) -> Stored {
    let listed = keys(s3, bucket, &format!("{prefix}/{id}")).await;
    let mut stored = Stored {
        live: 0,
        checkpoints: BTreeMap::new(),
    };
    for ordinal in 0..2 {
        let key = format!("{prefix}/{id}/_process-{ordinal}.json");
        assert!(listed.contains(&key), "{key} not in {listed:#?}");
        let bytes = read_back(&s3.store(bucket), &key.as_str().into()).await;
        let m: ProcessManifest = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{key} is not a process manifest: {e}"));
        assert_eq!((m.id.as_str(), m.ordinal, m.replicas), (id, ordinal, 2));
        for shard in &m.shards {
            stored.live += shard.live_entries;
            stored.checkpoints.insert(shard.shard, shard.checkpoint_id);
        }
    }
    let shards: Vec<u32> = stored.checkpoints.keys().copied().collect();
    assert_eq!(shards, [0, 1, 2, 3], "every shard");
    for shard in shards {
        let manifest = format!("{prefix}/{id}/shard-{shard}/MANIFEST.json");
        assert!(listed.contains(&manifest), "{manifest} not in {listed:#?}");
    }
    stored
}

/// The checkpoint id each shard restored, from the pods' `restoring from ...
/// shard=N id=I` log lines (none when the pods ran on a kubelet of another's).
fn restored_checkpoints(job: &S3Job) -> BTreeMap<u32, u64> {
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
    };
    (0..2)
        .flat_map(|i| {
            let log = job.pod_log(&format!("{JOB}-{i}"));
            log.lines()
                .filter(|l| l.contains("restoring from"))
                .filter_map(|l| Some((u32::try_from(field(l, "shard=")?).ok()?, field(l, "id=")?)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_with_the_local_s3_overlay_upgrades_through_a_savepoint_in_s3_and_loses_nothing()
 {
    const TEST: &str = "the_example_with_the_local_s3_overlay_upgrades_through_a_savepoint_in_s3_and_loses_nothing";
    let Some(job) = S3Job::start(TEST, "s3-upgrade", 13).await else {
        return;
    };
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    job.apply(&[]);
    let first = job.wait_ready("first deployment", READY).await;
    let before = job.pods().await;
    assert_eq!(before.len(), 2, "{before:#?}");
    assert!(
        before.iter().all(|p| p.restore_from().is_none()),
        "{before:#?}"
    );
    let early = job.wait_output_above(0, OUTPUT).await;

    // An upgrade: a new variable in the pod template.
    job.apply(&[json!({
        "op": "add",
        "path": "/spec/podTemplate/env/-",
        "value": { "name": "JOB_REVISION", "value": "2" }
    })]);
    let (upgraded, sp, after) = job.wait_upgraded(&before, READY).await;
    let generation = upgraded.metadata.generation;
    assert_eq!(generation, first.metadata.generation.map(|g| g + 1));
    let status = upgraded.status.clone().unwrap_or_default();
    assert_eq!(status.observed_generation, generation);
    let id = sp.id.clone().unwrap_or_default();
    assert!(id.starts_with("sp-"), "{sp:?}");
    assert_eq!(sp.location, format!("{LOCATION}/{id}"));
    assert_eq!(sp.parallelism, Some(2));
    assert_eq!(
        status.savepoint_history.first(),
        Some(&sp),
        "history, newest first"
    );
    let lifecycle = status
        .lifecycle
        .clone()
        .unwrap_or_else(|| panic!("no lifecycle record"));
    assert_eq!(
        lifecycle.restore_from.as_deref(),
        Some(sp.location.as_str())
    );
    for pod in &after {
        assert_eq!(pod.restore_from(), Some(sp.location.as_str()), "{pod:#?}");
    }

    let upgrading = events(&job.t.client, job.ns(), "Upgrading").await;
    assert!(
        upgrading
            .iter()
            .any(|(_, note)| note.contains("stop with a savepoint")),
        "{upgrading:#?}"
    );
    let completed = events(&job.t.client, job.ns(), "SavepointCompleted").await;
    assert!(
        completed
            .iter()
            .any(|(ty, note)| ty == "Normal" && note.contains(&sp.location)),
        "{completed:#?}"
    );

    let stored = assert_savepoint_in_store(&job.s3, BUCKET, "impressions-plays", &id).await;
    let live = stored.live;
    assert!(
        live > 0,
        "the upgrade's savepoint holds no live entry: the old pods had emitted everything \
         (force-advanced?) before it, so it carried no state"
    );
    // Each shard restored the savepoint's checkpoint (its id): exactly-once takes
    // the checkpoint the committed transactions name, and the pods' local copy
    // of the same id is read instead of downloading it (the savepoint's
    // completeness is checked in the store first).
    let restored = restored_checkpoints(&job);
    if !restored.is_empty() {
        assert_eq!(
            restored, stored.checkpoints,
            "restored: the savepoint's checkpoints"
        );
    }
    eprintln!(
        "{early} entries before the upgrade; savepoint {id} with {live} live entries, \
         checkpoints {:?}; restored {restored:?}",
        stored.checkpoints
    );

    job.produce_second_half().await;
    job.assert_output_matches_the_reference();
    assert_eq!(job.pods().await, after, "the upgraded pods ran to the end");
    assert!(job.op.refusals().is_empty(), "{:#?}", job.op.refusals());
}

/// Triggers manual savepoint `nonce`, which cannot be written: Degraded=True
/// SavepointFailed whose message (and Warning Event) names `location` and the
/// store's `code` but none of `secrets`; nothing recorded as a savepoint; the
/// same pods (same uids, not restarted) keep running, and once the second half
/// of the input is produced, their output goes on.
async fn a_failed_savepoint_keeps_the_pods(
    job: &S3Job,
    nonce: i64,
    location: &str,
    code: &str,
    secrets: &[&str],
) -> Condition {
    let before = job.pods().await;
    assert_eq!(before.len(), 2, "{before:#?}");
    let early = job.wait_output_above(0, OUTPUT).await;
    job.patch_spec(json!({ "savepoints": { "triggerNonce": nonce } }));
    let cond = poll(
        "Degraded=SavepointFailed after the triggered savepoint",
        Duration::from_secs(120),
        || async { savepoint_failed(&job.job().await) },
    )
    .await;
    let message = &cond.message;
    assert!(message.contains(location), "names the location: {message}");
    assert!(message.contains(code), "the store's answer: {message}");
    let warnings = events(&job.t.client, job.ns(), "SavepointFailed").await;
    assert!(
        warnings
            .iter()
            .any(|(ty, note)| ty == "Warning" && note.contains(location)),
        "{warnings:#?}"
    );
    let shown = job
        .t
        .kubectl
        .run(&["get", "sjj", JOB, "-n", job.ns(), "-o", "yaml"]);
    let all_events = job
        .t
        .kubectl
        .run(&["get", "events", "-n", job.ns(), "-o", "yaml"]);
    for secret in secrets {
        for (what, text) in [
            ("the condition", message.as_str()),
            ("the job", shown.as_str()),
            ("the Events", all_events.as_str()),
            ("the operator's log", job.op.log_text().as_str()),
        ] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
    }

    let j = job.job().await;
    let st = j.status.clone().unwrap_or_default();
    assert_eq!(st.observed_generation, j.metadata.generation);
    assert_eq!(st.last_savepoint, None, "nothing recorded as a savepoint");
    let lifecycle = st
        .lifecycle
        .unwrap_or_else(|| panic!("no lifecycle record"));
    assert_eq!(lifecycle.savepoint, None, "no savepoint left under way");
    assert_eq!(lifecycle.restart_marker, None, "no pod to restart");
    assert_eq!(job.pods().await, before, "the same pods, never restarted");

    // Output flows on from the same pods: the rest of the input joins the state
    // they kept.
    let now = job.output_now();
    job.produce_second_half().await;
    poll(
        "more output after the failed savepoint",
        Duration::from_secs(120),
        || async {
            Some(job.output_now())
                .filter(|n| *n > now)
                .ok_or_else(|| "no more yet".to_owned())
        },
    )
    .await;
    eprintln!("{early} entries before the failed savepoint, {now} after it: {message}");
    cond
}

/// Triggers manual savepoint `nonce` and waits until it is recorded and
/// Degraded is False.
async fn next_savepoint_succeeds(job: &S3Job, nonce: i64) -> SavepointStatus {
    job.patch_spec(json!({ "savepoints": { "triggerNonce": nonce } }));
    poll(
        "the next manual savepoint completes and Degraded clears",
        Duration::from_secs(120),
        || async {
            let j = job.job().await;
            let st = j.status.clone().unwrap_or_default();
            let degraded = st
                .condition("Degraded")
                .map(|c| (c.status.clone(), c.reason.clone()));
            let sp = st
                .last_savepoint
                .filter(|s| s.trigger == Some(SavepointTrigger::Manual))
                .ok_or_else(|| format!("no manual savepoint yet; Degraded {degraded:?}"))?;
            match degraded {
                Some((s, _)) if s == "False" => Ok(sp),
                other => Err(format!("savepoint {sp:?} recorded, Degraded {other:?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_fails_the_savepoint_with_the_location_and_no_secret_and_the_job_keeps_running_until_the_key_is_fixed()
 {
    const TEST: &str = "a_wrong_secret_key_fails_the_savepoint_with_the_location_and_no_secret_and_the_job_keeps_running_until_the_key_is_fixed";
    let Some(mut job) = S3Job::start(TEST, "s3-wrong-key", 11).await else {
        return;
    };
    let bucket = job.s3.new_bucket("wrongkey");
    let location = format!("s3://{bucket}/impressions-plays");
    let wrong = format!("not-the-key-{:016x}", rand::random::<u64>());
    job.create_secret(&job.s3.access_key_id, &wrong);
    job.ops
        .push(json!({ "op": "replace", "path": "/spec/savepoints/location", "value": location }));
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    let pods = job.pods().await;

    let real = job.s3.secret_access_key.clone();
    a_failed_savepoint_keeps_the_pods(
        &job,
        1,
        &location,
        "SignatureDoesNotMatch",
        &[&wrong, &real],
    )
    .await;
    assert!(
        keys(&job.s3, &bucket, "impressions-plays").await.is_empty(),
        "nothing written with the wrong key"
    );

    // The fix. The pods read the key when they start, and the running ones
    // would take an upgrade's savepoint with the wrong one (and fail again), so
    // the right key goes in with a restart from their checkpoints (lastState).
    job.t
        .kubectl
        .run(&["delete", "secret", s3_job::SECRET, "-n", job.ns()]);
    job.create_secret(&job.s3.access_key_id, &real);
    job.patch_spec(json!({ "upgradeMode": "lastState", "restartNonce": 1 }));
    let restarted = job
        .wait_ready("the restart with the right key", READY)
        .await;
    let new_pods = poll("two new pods", READY, || async {
        let now = job.pods().await;
        let fresh = now.len() == 2
            && now
                .iter()
                .all(|p| p.ready && !pods.iter().any(|o| o.uid == p.uid));
        fresh
            .then_some(now.clone())
            .ok_or_else(|| format!("{now:#?}"))
    })
    .await;
    let degraded = restarted
        .status
        .as_ref()
        .and_then(|s| s.condition("Degraded"))
        .map(|c| c.status.clone());
    assert_eq!(
        degraded.as_deref(),
        Some("False"),
        "a new spec clears the failure"
    );
    assert!(
        new_pods.iter().all(|p| p.restore_from().is_none()),
        "lastState: from the checkpoints, {new_pods:#?}"
    );
    let sp = next_savepoint_succeeds(&job, 2).await;
    let id = sp.id.clone().unwrap_or_default();
    assert_eq!(sp.location, format!("{location}/{id}"));
    assert_savepoint_in_store(&job.s3, &bucket, "impressions-plays", &id).await;

    job.assert_output_matches_the_reference();
    assert_eq!(job.pods().await, new_pods, "no restart after the fix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_the_savepoint_keeps_the_job_running_and_the_next_one_succeeds_once_it_exists()
 {
    const TEST: &str = "a_missing_bucket_fails_the_savepoint_keeps_the_job_running_and_the_next_one_succeeds_once_it_exists";
    let Some(mut job) = S3Job::start(TEST, "s3-missing-bucket", 12).await else {
        return;
    };
    // A bucket of this test's own that does not exist yet.
    let bucket = format!(
        "sj-missing-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let location = format!("s3://{bucket}/impressions-plays");
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    job.ops
        .push(json!({ "op": "replace", "path": "/spec/savepoints/location", "value": location }));
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    let pods = job.pods().await;

    let real = job.s3.secret_access_key.clone();
    a_failed_savepoint_keeps_the_pods(&job, 1, &location, "NoSuchBucket", &[&real]).await;

    // The bucket exists now: the next savepoint succeeds and Degraded clears.
    tokio::task::block_in_place(|| job.s3.create_bucket(&bucket));
    let sp = next_savepoint_succeeds(&job, 2).await;
    let id = sp.id.clone().unwrap_or_default();
    assert_eq!(sp.location, format!("{location}/{id}"));
    assert_savepoint_in_store(&job.s3, &bucket, "impressions-plays", &id).await;
    assert_eq!(job.pods().await, pods, "a manual savepoint restarts no pod");

    job.assert_output_matches_the_reference();
    assert_eq!(job.pods().await, pods, "the same pods ran to the end");
}

#[test]
fn the_local_s3_patch_keeps_the_examples_savepoints_and_points_them_at_a_local_store() {
    let read = |rel: &str| {
        std::fs::read_to_string(cluster::operator::repo_path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let mut job: serde_json::Value =
        serde_norway::from_str(&read("examples/streamjoinjob.yaml")).expect("example YAML");
    let shipped: streamjoin_api::StreamJoinJob =
        serde_json::from_value(job.clone()).expect("the example");
    let patch: json_patch::Patch =
        serde_norway::from_str(&read(s3_job::OVERLAY)).expect("patch YAML");
    json_patch::patch(&mut job, &patch).expect("the patch applies to the example");
    let job: streamjoin_api::StreamJoinJob = serde_json::from_value(job).expect("a StreamJoinJob");
    job.spec.validate().expect("valid");
    let sp = &job.spec.savepoints;
    assert_eq!(sp.location.as_deref(), Some(LOCATION));
    assert_eq!(sp.location, shipped.spec.savepoints.location, "as shipped");
    assert_eq!(sp.on_delete, shipped.spec.savepoints.on_delete);
    assert_eq!(sp.interval, shipped.spec.savepoints.interval);
    assert_eq!(
        job.spec.upgrade_mode,
        streamjoin_api::UpgradeMode::Savepoint
    );
    assert_eq!(sp.path_style, Some(true));
    assert_eq!(sp.region.as_deref(), Some("us-east-1"));
    assert!(
        sp.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://127.0.0.1:"))
    );
    let secret = sp.credentials.as_ref().map(|c| c.secret_ref.name.as_str());
    assert_eq!(secret, Some(s3_job::SECRET));
    assert_eq!(job.spec.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert!(job.spec.kafka.sasl.is_none() && job.spec.kafka.tls.is_none());
    assert_eq!(job.spec.parallelism, 2);
    assert!(!job.spec.autoscaler.enabled);
}
