//! Savepoint retention and deletion in the S3 store, on the local cluster (the
//! example with `examples/local-s3/patch.yaml`, the operator as the chart's
//! ServiceAccount, pods run by a local kubelet, Apache Kafka, `scripts/s3.sh`).
//! What the store holds is listed from the S3 server, not read from status:
//! after periodic savepoints with `maxRetained: 2` exactly the two newest are
//! there (deleted by a running pod through its admin API); while suspended,
//! lowering `maxRetained` deletes through a cleanup Job and keeps the savepoint
//! the resume needs; deleting the job with `onDelete: take` leaves only its
//! final savepoint, with `onDelete: none` nothing of the job.

// Shared with other test binaries, each using part of it.

use crate::{cluster, s3_job};
use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use streamjoin_api::{SavepointTrigger, StreamJoinJob};

use cluster::example::JOB;
use cluster::wait::try_poll;
use s3_job::store::{BUCKET, ensure_bucket, savepoint_ids};
use s3_job::{S3Job, events};

const READY: Duration = Duration::from_secs(300);
const SETTLE: Duration = Duration::from_secs(180);

/// The job with its savepoints under a prefix of its own (`<namespace>/`), the
/// store's key pair in its Secret, and `savepoints` merged over the example's.
async fn start(test: &str, node: &str, seed: u64, savepoints: Value) -> Option<(S3Job, String)> {
    let job = S3Job::start(test, node, seed).await?;
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    let prefix = format!("{}/{JOB}", job.ns());
    let mut ops = vec![json!({
        "op": "replace",
        "path": "/spec/savepoints/location",
        "value": format!("s3://{BUCKET}/{prefix}"),
    })];
    if let Value::Object(fields) = savepoints {
        for (k, v) in fields {
            ops.push(json!({ "op": "add", "path": format!("/spec/savepoints/{k}"), "value": v }));
        }
    }
    job.apply(&ops);
    job.wait_ready("the first start", READY).await;
    Some((job, prefix))
}

fn history_ids(job: &StreamJoinJob) -> BTreeSet<String> {
    job.status
        .iter()
        .flat_map(|s| s.savepoint_history.iter())
        .filter_map(|s| s.id.clone())
        .collect()
}

/// Waits until what the store holds under `prefix` equals the history (and
/// `check` holds of the job); returns both.
async fn store_matches_history(
    job: &S3Job,
    prefix: &str,
    what: &str,
    check: impl Fn(&StreamJoinJob) -> Result<(), String>,
) -> (StreamJoinJob, BTreeSet<String>) {
    let jobs = job.jobs();
    let s3 = &job.s3;
    let check = &check;
    let got = try_poll(SETTLE, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(JOB).await.map_err(|e| e.to_string())?;
            check(&j)?;
            let stored = savepoint_ids(s3, BUCKET, prefix).await;
            let history = history_ids(&j);
            if stored == history {
                Ok((j, stored))
            } else {
                Err(format!("store {stored:?}, history {history:?}"))
            }
        }
    })
    .await;
    got.unwrap_or_else(|last| panic!("{what}: {last}\n{}", job.diagnose()))
}

/// Deletes the job and waits until it is gone (its finalizer done).
async fn delete_and_wait_gone(job: &S3Job) {
    job.t
        .kubectl
        .run(&["delete", "sjj", JOB, "-n", job.ns(), "--wait=false"]);
    let jobs = job.jobs();
    let gone = try_poll(SETTLE, || {
        let jobs = jobs.clone();
        async move {
            match jobs.get_opt(JOB).await {
                Ok(None) => Ok(()),
                Ok(Some(j)) => Err(format!("still there; history {:?}", history_ids(&j))),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    if let Err(last) = gone {
        panic!("the job was not deleted: {last}\n{}", job.diagnose());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_the_newest_savepoints_and_deleting_with_take_leaves_the_final_one() {
    const TEST: &str =
        "the_store_keeps_the_newest_savepoints_and_deleting_with_take_leaves_the_final_one";
    let Some((job, prefix)) = start(
        TEST,
        "retention-take",
        31,
        json!({ "interval": "3s", "maxRetained": 2, "onDelete": "take" }),
    )
    .await
    else {
        return;
    };
    // At least five periodic savepoints (ids seen in the history), so that
    // retention has deleted at least three.
    let jobs = job.jobs();
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let seen = &seen;
    let deleted = try_poll(SETTLE, || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(JOB).await.map_err(|e| e.to_string())?;
            let mut all = seen.lock().map_err(|e| e.to_string())?;
            all.extend(history_ids(&j));
            if all.len() >= 5 {
                Ok(all.len() - 2)
            } else {
                Err(format!("{} savepoints seen", all.len()))
            }
        }
    })
    .await
    .unwrap_or_else(|last| panic!("too few periodic savepoints: {last}\n{}", job.diagnose()));
    // No new ones, so that the store can be compared with the history.
    job.patch_spec(json!({ "savepoints": { "interval": null } }));
    let (_, kept) = store_matches_history(&job, &prefix, "after retention", |j| {
        if history_ids(j).len() == 2 {
            Ok(())
        } else {
            Err(format!("history {:?}", history_ids(j)))
        }
    })
    .await;
    eprintln!("retention: {deleted}+ deleted, the store holds {kept:?}");

    delete_and_wait_gone(&job).await;
    let left = savepoint_ids(&job.s3, BUCKET, &prefix).await;
    assert_eq!(left.len(), 1, "one savepoint left: {left:?}");
    let last = left.iter().next().cloned().unwrap_or_default();
    assert!(
        last.ends_with("-delete") && !kept.contains(&last),
        "the one left is the final savepoint: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_deletes_through_a_cleanup_job_and_on_delete_none_leaves_nothing() {
    const TEST: &str =
        "a_suspended_job_deletes_through_a_cleanup_job_and_on_delete_none_leaves_nothing";
    let Some((job, prefix)) = start(
        TEST,
        "retention-none",
        37,
        json!({ "maxRetained": 3, "onDelete": "none" }),
    )
    .await
    else {
        return;
    };
    for nonce in 1..=2 {
        job.patch_spec(json!({ "savepoints": { "triggerNonce": nonce } }));
        store_matches_history(&job, &prefix, "a manual savepoint", |j| {
            let n = history_ids(j).len();
            if n == nonce as usize {
                Ok(())
            } else {
                Err(format!("{n} in the history"))
            }
        })
        .await;
    }
    job.patch_spec(json!({ "state": "suspended" }));
    let (suspended, _) = store_matches_history(&job, &prefix, "suspended", |j| {
        let st = j.status.as_ref().ok_or("no status")?;
        let newest = st.savepoint_history.first().ok_or("no savepoint")?;
        if newest.trigger == Some(SavepointTrigger::Suspend) && st.ready_replicas == Some(0) {
            Ok(())
        } else {
            Err(format!("phase {:?}, newest {newest:?}", st.phase))
        }
    })
    .await;
    let resume = history_ids(&suspended)
        .into_iter()
        .find(|id| id.ends_with("-suspend"))
        .unwrap_or_default();

    // No pod runs: a cleanup Job deletes the two manual ones, never the resume point.
    job.patch_spec(json!({ "savepoints": { "maxRetained": 1 } }));
    let (_, kept) = store_matches_history(&job, &prefix, "retention while suspended", |j| {
        let h = history_ids(j);
        if h.len() == 1 {
            Ok(())
        } else {
            Err(format!("history {h:?}"))
        }
    })
    .await;
    assert_eq!(kept, BTreeSet::from([resume.clone()]));
    let started = events(&job.t.client, job.ns(), "SavepointCleanupStarted").await;
    assert!(!started.is_empty(), "deleted by a cleanup Job");

    delete_and_wait_gone(&job).await;
    let left = savepoint_ids(&job.s3, BUCKET, &prefix).await;
    assert!(left.is_empty(), "nothing of the job is left: {left:?}");
}
