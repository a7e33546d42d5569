//! Checkpoint-volume expansion end to end on the local cluster, as far as the
//! local kubelet can show it: the job's claims in the StorageClass
//! `local-kubelet-sized` (expansion allowed; each volume a tmpfs of the claim's
//! size, so the runtime's `statvfs` sees the claim, not the host's disk). The
//! pods report their volume in `GET /v1/status`; once it is past
//! `autoExpand.thresholdPercent` the operator (as the chart's ServiceAccount)
//! patches each claim, the local kubelet plays the resizer (the tmpfs
//! remounted larger, then the PersistentVolume's capacity and the claim's
//! `status.capacity`), and the running pods see the new size with no restart.
//! Input keeps arriving meanwhile (Apache Kafka, savepoints in the local S3
//! store: `s3_job`), and the whole output is compared with the reference.
//!
//! What this cannot show: a block device or a file system grown by a CSI
//! driver (a tmpfs grows by a remount, in place), a resize that needs the pod
//! restarted, or a volume that really runs out of space mid-checkpoint.

use crate::{cluster, e2e_autoscale, e2e_scaling, s3_job};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use serde_json::{Value, json};

use cluster::example::JOB;
use cluster::wait::{poll, try_poll};
use e2e_autoscale::occurrences;
use e2e_scaling::runtime_status;
use s3_job::S3Job;
use s3_job::measure::Flow;
use s3_job::store::{BUCKET, ensure_bucket};

const READY: Duration = Duration::from_secs(300);
const CLASS: &str = "local-kubelet-sized";
const MIB: u64 = 1 << 20;
/// The claims' size, and what one expansion makes of it (1.5 ×, the maxSize).
const SIZE: &str = "16Mi";
const GROWN: &str = "24Mi";

fn auto_expand(threshold_percent: u8) -> Value {
    json!({ "thresholdPercent": threshold_percent, "maxSize": GROWN })
}

/// Each pod's `checkpoint_volume` report: (used, capacity) bytes, by ordinal.
async fn volumes_reported(job: &S3Job) -> Result<Vec<(u64, u64)>, String> {
    let mut reports = runtime_status(job).await?;
    reports.sort_by_key(|r| r["ordinal"].as_u64());
    reports
        .iter()
        .map(|r| {
            let v = &r["checkpoint_volume"];
            match (v["used_bytes"].as_u64(), v["capacity_bytes"].as_u64()) {
                (Some(used), Some(cap)) => Ok((used, cap)),
                _ => Err(format!("no checkpoint_volume in {r}")),
            }
        })
        .collect()
}

/// The claims of the two pods: (requested, status.capacity, class, volume name).
async fn claims(job: &S3Job) -> Vec<(String, String, String, String)> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(job.t.client.clone(), job.ns());
    let mut out = Vec::new();
    for i in 0..2 {
        let name = format!("data-{JOB}-{i}");
        let pvc = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("reading claim {name}: {e}"));
        let spec = pvc.spec.unwrap_or_default();
        let storage = |m: Option<&std::collections::BTreeMap<String, _>>| {
            m.and_then(|m| m.get("storage"))
                .map(|q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| q.0.clone())
                .unwrap_or_default()
        };
        let requested = storage(spec.resources.as_ref().and_then(|r| r.requests.as_ref()));
        let capacity = storage(pvc.status.as_ref().and_then(|s| s.capacity.as_ref()));
        out.push((
            requested,
            capacity,
            spec.storage_class_name.unwrap_or_default(),
            spec.volume_name.unwrap_or_default(),
        ));
    }
    out
}

async fn volume_capacity(job: &S3Job, name: &str) -> String {
    let pv = Api::<PersistentVolume>::all(job.t.client.clone())
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading persistentvolume {name}: {e}"));
    pv.spec
        .and_then(|s| s.capacity)
        .and_then(|c| c.get("storage").cloned())
        .map(|q| q.0)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_checkpoint_volume_grows_and_the_running_pods_see_the_new_size() {
    const TEST: &str = "a_full_checkpoint_volume_grows_and_the_running_pods_see_the_new_size";
    let Some(mut job) = S3Job::start(TEST, "e2e-volume", 33).await else {
        return;
    };
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    // Sized claims; at first a threshold the job's state does not reach.
    job.ops.extend([
        json!({ "op": "add", "path": "/spec/checkpoints/volume/storageClassName", "value": CLASS }),
        json!({ "op": "replace", "path": "/spec/checkpoints/volume/size", "value": SIZE }),
        json!({ "op": "replace", "path": "/spec/checkpoints/volume/autoExpand", "value": auto_expand(99) }),
    ]);
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    let class = Api::<StorageClass>::all(job.t.client.clone())
        .get(CLASS)
        .await
        .unwrap_or_else(|e| panic!("reading storageclass {CLASS}: {e}"));
    assert_eq!(class.allow_volume_expansion, Some(true));
    let before = claims(&job).await;
    for (requested, capacity, class, _) in &before {
        assert_eq!((requested.as_str(), capacity.as_str()), (SIZE, SIZE));
        assert_eq!(class, CLASS);
    }
    // Each pod's volume is the claim's 16 MiB, not the host's disk.
    let sized = poll("the pods' volumes", Duration::from_secs(60), || async {
        let v = volumes_reported(&job).await?;
        (v.len() == 2 && v.iter().all(|(used, _)| *used > 0))
            .then_some(v.clone())
            .ok_or(format!("{v:?}"))
    })
    .await;
    assert!(sized.iter().all(|(_, cap)| *cap == 16 * MIB), "{sized:?}");
    let pods = job.pods().await;
    let feed = job.feed_second_half(Duration::from_secs(60)).await;

    // The job's state holds more than 5 % of its volume: past the threshold.
    let mut flow = Flow::begin("checkpoint-volume-expansion");
    job.patch_spec(json!({ "checkpoints": { "volume": { "autoExpand": auto_expand(5) } } }));
    let grown = try_poll(READY, || async {
        let now = claims(&job).await;
        let done = now.iter().all(|(r, c, _, _)| r == GROWN && c == GROWN);
        let v = volumes_reported(&job).await?;
        if done && v.len() == 2 && v.iter().all(|(_, cap)| *cap == 24 * MIB) {
            Ok((now, v))
        } else {
            Err(format!("claims {now:?}, pods report {v:?}"))
        }
    })
    .await;
    let (after, reported) = grown.unwrap_or_else(|last| {
        panic!(
            "the volumes did not grow within {READY:?}: {last}\n{}",
            job.diagnose()
        )
    });
    flow.done();
    for (_, _, _, volume) in &after {
        assert_eq!(volume_capacity(&job, volume).await, GROWN, "{volume}");
    }
    // One per claim, each with its own note.
    let (count, notes) = occurrences(&job, "CheckpointVolumeExpanding").await;
    assert_eq!(count, 2, "{notes:#?}");
    assert_eq!(notes.len(), 2, "{notes:#?}");
    assert_ne!(notes[0], notes[1], "each names its claim");
    assert!(
        notes
            .iter()
            .all(|n| n.contains(&format!("grows {SIZE} → {GROWN}"))),
        "{notes:#?}"
    );
    assert_eq!(
        job.pods().await,
        pods,
        "the running pods saw it, no restart"
    );
    eprintln!("volumes before {sized:?}, after {reported:?} (used, capacity bytes)");

    feed.finish();
    job.assert_output_matches_the_reference();
    let report = job.flow_report(&flow);
    report.print();
    assert_eq!(job.pods().await, pods, "the same pods ran to the end");
    assert!(job.op.refusals().is_empty(), "{:#?}", job.op.refusals());
}
