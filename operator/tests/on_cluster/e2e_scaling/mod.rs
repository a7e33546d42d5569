//! What the scaling, nonce and inactivity flows read back from the local
//! cluster beside the `s3_job` harness: the shards a pod restored (its log),
//! the scale subresource, an operator restart, and an output topic of the
//! test's own compared with the reference.

#![allow(dead_code)]

pub mod data_sets;
pub mod trickle;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::example::JOB;
use crate::cluster::operator::OperatorProcess;
use crate::cluster::wait::poll;
use crate::data::{expected_entries, oracle_compare};
use crate::s3::read_back;
use crate::s3_job::store::BUCKET;
use crate::s3_job::{PARTITIONS, S3Job};
use streamjoin_runtime::durability::savepoint::ProcessManifest;

/// The example's savepoints are under `<bucket>/impressions-plays/`.
pub const PREFIX: &str = "impressions-plays";

/// Waits until the job has some committed output.
pub async fn wait_some_output(job: &S3Job) -> usize {
    poll("some output", Duration::from_secs(180), || async {
        Some(job.output_now())
            .filter(|n| *n > 0)
            .ok_or_else(|| "none yet".to_owned())
    })
    .await
}

/// The `restoring from ...` lines of every run of pod `name` (the kubelet keeps
/// the logs of earlier pods of the same name too: callers take the new lines).
pub fn restore_lines(job: &S3Job, name: &str) -> Vec<String> {
    job.pod_log(name)
        .lines()
        // The recovery's line per shard (the download's own line says less).
        .filter(|l| l.contains("restoring from") && l.contains(" from_savepoint="))
        .map(str::to_owned)
        .collect()
}

/// The `shard=N` and checkpoint `id=I` of a restore line.
pub fn shard_of(line: &str) -> Option<(u32, u64)> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((u32::try_from(field("shard=")?).ok()?, field("id=")?))
}

/// For each of `pods`, the shards its log says it restored since `seen` (the
/// lines read before, per pod, updated here).
pub fn restored_since(
    job: &S3Job,
    pods: &[String],
    seen: &mut BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, Vec<(u32, u64)>> {
    pods.iter()
        .map(|pod| {
            let old = seen.entry(pod.clone()).or_default();
            let new: Vec<String> = restore_lines(job, pod)
                .into_iter()
                .filter(|l| !old.contains(l))
                .collect();
            old.extend(new.iter().cloned());
            let mut shards: Vec<(u32, u64)> = new.iter().filter_map(|l| shard_of(l)).collect();
            shards.sort_unstable();
            (pod.clone(), shards)
        })
        .collect()
}

/// The checkpoint id of each shard in savepoint `id`, from the process
/// manifests of its `pods` in the store.
pub async fn saved_checkpoints(job: &S3Job, id: &str, pods: u32) -> BTreeMap<u32, u64> {
    let store = job.s3.store(BUCKET);
    let mut out = BTreeMap::new();
    for ordinal in 0..pods {
        let key = format!("{PREFIX}/{id}/_process-{ordinal}.json");
        let bytes = read_back(&store, &key.as_str().into()).await;
        let m: ProcessManifest = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{key} is not a process manifest: {e}"));
        out.extend(m.shards.iter().map(|s| (s.shard, s.checkpoint_id)));
    }
    out
}

/// `kubectl get sjj NAME --subresource=scale -o json`: (spec.replicas,
/// status.replicas, status.selector).
pub fn scale_subresource(job: &S3Job) -> (Option<i64>, Option<i64>, Option<String>) {
    let text = job.t.kubectl.run(&[
        "get",
        "sjj",
        JOB,
        "-n",
        job.ns(),
        "--subresource=scale",
        "-o",
        "json",
    ]);
    let scale: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the scale of {JOB} is not JSON ({e}): {text}"));
    (
        scale["spec"]["replicas"].as_i64(),
        scale["status"]["replicas"].as_i64(),
        scale["status"]["selector"].as_str().map(str::to_owned),
    )
}

/// The operator process of `op` (the one whose KUBECONFIG is its own).
fn operator_pid(op: &OperatorProcess) -> Option<u32> {
    let want = format!("KUBECONFIG={}", op.kubeconfig.display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
                .unwrap_or(false)
        })
}

/// Stops the job's operator (SIGTERM to its process) and starts another one as
/// the same ServiceAccount; the new one, which must drop before `job`.
pub async fn restart_operator(job: &mut S3Job) -> OperatorProcess {
    let pid = operator_pid(&job.op).unwrap_or_else(|| panic!("the operator's process"));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill -TERM {pid}: {e}"));
    assert!(status.success(), "kill -TERM {pid}: {status}");
    poll("the operator stops", Duration::from_secs(30), || {
        let running = job.op.running();
        async move { (!running).then_some(()).ok_or("running".to_owned()) }
    })
    .await;
    OperatorProcess::in_namespace(&job.t).await
}

/// The committed records of `topic` (read to every partition's end, at least `n`).
pub fn records_of(job: &S3Job, topic: &str, n: usize) -> Vec<Vec<u8>> {
    tokio::task::block_in_place(|| {
        job.broker
            .consume_all(topic, PARTITIONS, true, n, Duration::from_secs(300))
    })
}

/// Waits for every entry the reference expects of `data` in `topic`, then
/// compares: nothing missing or differing, nothing twice (exactly once).
pub fn assert_topic_matches(job: &S3Job, topic: &str, data: &Path) -> usize {
    let expected = expected_entries(data);
    let records = records_of(job, topic, expected);
    let report = oracle_compare(data, &records, &[]);
    assert!(
        report.contains(" 0 missing") && report.contains(" 0 differing"),
        "{report}"
    );
    assert_eq!(records.len(), expected, "exactly once\n{report}");
    expected
}

/// Each running pod's own `GET /v1/status` (see [`crate::s3_job::observe::runtime_status`]).
pub async fn runtime_status(job: &S3Job) -> Result<Vec<Value>, String> {
    crate::s3_job::observe::runtime_status(&job.t.client, job.ns()).await
}

/// The sum of a number field over the pods' reports.
pub fn summed(reports: &[Value], field: &str) -> i64 {
    reports.iter().filter_map(|r| r[field].as_i64()).sum()
}
