//! What the benchmark reads from the pods and the store: live entries and the
//! savepoint from each pod's `GET /v1/status` (admin port 9249), the savepoint's
//! objects in S3, the restore time from the new pods' logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use serde_json::Value;

use crate::cluster::wait::poll;
use crate::s3_job::observe::runtime_status;
use crate::s3_job::store::BUCKET;
use crate::s3_job::{PodRun, S3Job};

fn summed(reports: &[Value], field: &str) -> i64 {
    reports.iter().filter_map(|r| r[field].as_i64()).sum()
}

/// Waits until both pods together hold at least `min` live entries and have
/// read their input up to `max_lag` records; the live entries then.
pub async fn wait_live(job: &S3Job, min: i64, max_lag: i64, limit: Duration) -> i64 {
    poll(
        &format!("{min} live entries, consumer lag under {max_lag}"),
        limit,
        || async {
            let reports = runtime_status(&job.t.client, job.ns()).await?;
            let (live, lag) = (
                summed(&reports, "live_entries"),
                summed(&reports, "consumer_lag"),
            );
            if reports.len() == 2 && live >= min && lag <= max_lag {
                Ok(live)
            } else {
                Err(format!(
                    "{} pods, {live} live entries, lag {lag}",
                    reports.len()
                ))
            }
        },
    )
    .await
}

/// The savepoints the pods report while it runs, by pod ordinal.
pub struct SavepointWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<i64, Value>>,
}

impl SavepointWatch {
    pub fn start(job: &S3Job) -> SavepointWatch {
        let (client, ns) = (job.t.client.clone(), job.ns().to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                // Pods come and go during the upgrade: a failed look is retried.
                for r in runtime_status(&client, &ns).await.unwrap_or_default() {
                    if r["savepoint"].is_object() {
                        seen.insert(r["ordinal"].as_i64().unwrap_or(-1), r["savepoint"].clone());
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            seen
        });
        SavepointWatch { stop, task }
    }

    /// The longest `duration_ms` the pods reported for savepoint `id`.
    pub async fn duration_ms(self, id: &str) -> Option<i64> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.task.await.unwrap_or_default();
        seen.values()
            .filter(|s| s["id"].as_str() == Some(id))
            .filter_map(|s| s["duration_ms"].as_i64())
            .max()
    }
}

/// The number and total size of the objects of the savepoint at `location`
/// (`s3://<bucket>/<prefix>/<id>`).
pub async fn savepoint_size(job: &S3Job, location: &str) -> (usize, u64) {
    let prefix = location
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap_or_else(|| panic!("{location} is not in bucket {BUCKET}"));
    let store = job.s3.store(BUCKET);
    let path = object_store::path::Path::from(prefix);
    let objects: Vec<_> = store
        .list(Some(&path))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("listing {location}: {e}"));
    (objects.len(), objects.iter().map(|o| o.size).sum())
}

/// Each new pod's restore time, from its last `shards restored seconds=..` line.
pub fn restore_seconds(job: &S3Job, pods: &[PodRun]) -> Vec<f64> {
    pods.iter()
        .map(|pod| {
            let log = job.pod_log(&pod.name);
            let line = log
                .lines()
                .rfind(|l| l.contains("shards restored"))
                .unwrap_or_else(|| panic!("no `shards restored` line in {}'s log", pod.name));
            line.split_whitespace()
                .find_map(|w| w.strip_prefix("seconds=")?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no seconds= in {line}"))
        })
        .collect()
}
