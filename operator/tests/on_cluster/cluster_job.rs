//! The example job on the local cluster, end to end: the operator run as the
//! chart's ServiceAccount (`--pod-address ip`), the runtime pods run by a local
//! kubelet, an Apache Kafka broker, input from the runtime's built-in generator
//! and the output compared with the reference implementation
//! (`streamjoin-reference`); then `kubectl delete sjj` and the garbage
//! collector removing every child.

use crate::{broker, cluster, data};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use streamjoin_api::StreamJoinJob;
use streamjoin_operator::reconcile::FINALIZER;

use broker::Broker;
use cluster::example::{JOB, local_example, placed};
use cluster::kubelet::NodeForTest;
use cluster::operator::OperatorProcess;
use cluster::testbed::{Testbed, testbed};
use cluster::wait::{poll, try_poll};
use data::{dataset, expected_entries, oracle_compare};

const PARTITIONS: u32 = 4;
const TOPICS: [&str; 5] = [
    "impressions",
    "plays",
    "impression-plays",
    "impression-plays-dead-letter",
    "impression-plays-late",
];

/// The operator binary under the chart's ServiceAccount, watching the test's namespace.
async fn start_operator(t: &Testbed) -> OperatorProcess {
    OperatorProcess::in_namespace(t).await
}

/// The local example with `ops` patched in, applied server-side.
fn apply_example(t: &Testbed, ops: &[serde_json::Value]) {
    let manifest = local_example(&t.kubectl, ops);
    t.kubectl
        .try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn job_api(t: &Testbed) -> Api<StreamJoinJob> {
    Api::namespaced(t.client.clone(), &t.ns.name)
}

fn ready_message(job: &StreamJoinJob) -> Result<(), String> {
    let status = job.status.as_ref().ok_or("no status yet")?;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or_else(|| format!("phase {:?}, no Ready condition", status.phase))?;
    if ready.status == "True" {
        Ok(())
    } else {
        Err(format!(
            "phase {:?}; Ready={}: {}; conditions {:?}",
            status.phase, ready.status, ready.message, status.conditions
        ))
    }
}

/// What to look at when the job does not get Ready.
fn diagnose(t: &Testbed, node: &NodeForTest, op: &OperatorProcess) -> String {
    let ns = &t.ns.name;
    let objects = t
        .kubectl
        .try_run(
            &["get", "sjj,sts,pods,pvc,events", "-n", ns, "-o", "wide"],
            None,
        )
        .unwrap_or_else(|e| e);
    let pods: Vec<String> = (0..2)
        .map(|i| {
            let log = node.pod_logs(ns, &format!("{JOB}-{i}"));
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            format!(
                "pod {i}:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    let refusals = op.refusals();
    format!(
        "{objects}\n{}\noperator refusals: {refusals:#?}",
        pods.join("\n")
    )
}

async fn wait_ready(t: &Testbed, node: &NodeForTest, op: &OperatorProcess) {
    let api = job_api(t);
    let ready = try_poll(Duration::from_secs(300), || {
        let api = api.clone();
        async move {
            let job = api.get(JOB).await.map_err(|e| e.to_string())?;
            ready_message(&job)
        }
    })
    .await;
    if let Err(last) = ready {
        panic!(
            "the job did not get Ready within 300 s: {last}\n{}",
            diagnose(t, node, op)
        );
    }
}

fn load(broker: &Broker, data: &Path) {
    for topic in TOPICS {
        broker.create_topic(topic, PARTITIONS);
    }
    for p in 0..PARTITIONS {
        broker.produce_lines(
            "impressions",
            p as i32,
            &data.join(format!("impressions-{p}.jsonl")),
        );
        broker.produce_lines("plays", p as i32, &data.join(format!("plays-{p}.jsonl")));
    }
}

/// The job's pods run the runtime binary through the kubelet, on their own IPs.
async fn assert_pods_run_the_runtime(t: &Testbed, node: &str) {
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns.name);
    let list = pods
        .list(&ListParams::default().labels(&format!("streamjoin.dev/job={JOB}")))
        .await
        .expect("listing the pods");
    assert_eq!(list.items.len(), 2, "two pods (parallelism 2)");
    let mut ips = HashSet::new();
    for pod in &list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref().expect("pod spec");
        assert_eq!(
            spec.node_name.as_deref(),
            Some(node),
            "{name} on the test's node"
        );
        let status = pod.status.as_ref().expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"), "{name}");
        let c = &status
            .container_statuses
            .as_ref()
            .expect("container statuses")[0];
        assert!(c.ready, "{name} ready");
        assert!(
            c.image_id.starts_with("local://") && c.image_id.ends_with("/streamjoin-runtime"),
            "{name}: {}",
            c.image_id
        );
        let ip = status.pod_ip.clone().expect("pod IP");
        assert!(ip.starts_with("127."), "{name}: {ip}");
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 2, "each pod has its own address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_job_gets_ready_on_a_local_kubelet_and_its_output_matches_the_reference() {
    const TEST: &str =
        "example_job_gets_ready_on_a_local_kubelet_and_its_output_matches_the_reference";
    let Some(t) = testbed(TEST).await else { return };
    let Some(broker) = Broker::start() else {
        return;
    };
    let node = NodeForTest::get(&t.client, &t.kubectl, "example-job").await;
    let data = dataset(100_000, PARTITIONS, 13);
    // The broker helpers are blocking (and run a runtime of their own).
    tokio::task::block_in_place(|| load(&broker, &data));

    let op = start_operator(&t).await;
    let mut ops = placed(&t.ns.name, &broker.bootstrap, Some(&node.name));
    // The replay ends at once: a short inactivity timeout then fires the last
    // entries' timers, instead of the example's 15 minutes.
    ops.push(
        json!({ "op": "replace", "path": "/spec/watermarks/inactivityTimeout", "value": "5s" }),
    );
    apply_example(&t, &ops);

    wait_ready(&t, &node, &op).await;
    assert_pods_run_the_runtime(&t, &node.name).await;
    // status.watermark is written only when every pod answered GET /v1/status: the
    // operator reached the admin API at each pod's IP (--pod-address ip).
    let api = job_api(&t);
    poll(
        "status.watermark from every pod's admin API",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let job = api.get(JOB).await.map_err(|e| e.to_string())?;
                let st = job.status.unwrap_or_default();
                st.watermark
                    .map(|_| ())
                    .ok_or_else(|| format!("no watermark; phase {:?}", st.phase))
            }
        },
    )
    .await;

    // delivery: exactlyOnce, so read committed records only, and expect no repeat.
    let expected = expected_entries(&data);
    let mut seen = HashSet::new();
    let records = tokio::task::block_in_place(|| {
        broker.consume_until(
            "impression-plays",
            PARTITIONS,
            true,
            Duration::from_secs(300),
            |r| {
                seen.insert(r.to_vec());
                seen.len() >= expected
            },
        )
    });
    let report = oracle_compare(&data, &records, &[]);
    assert!(
        report.contains(" 0 missing") && report.contains(" 0 differing"),
        "{report}"
    );
    assert_eq!(
        records.len(),
        expected,
        "exactly once: no entry twice\n{report}"
    );
    assert!(
        op.refusals().is_empty(),
        "the chart's RBAC refused the operator: {:#?}",
        op.refusals()
    );

    delete_and_collect(&t, Some(&node)).await;
    assert!(
        op.refusals().is_empty(),
        "the chart's RBAC refused the operator: {:#?}",
        op.refusals()
    );
}

/// `Ok` when `name` of kind `K` is present in `ns` as `want` says.
async fn present<K>(client: &Client, ns: &str, name: &str, want: bool) -> Result<(), String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    match (want, found) {
        (true, false) => Err(format!("no {} {name} yet", K::kind(&()))),
        (false, true) => Err(format!("{} {name} still exists", K::kind(&()))),
        _ => Ok(()),
    }
}

/// Every child of the example job, by kind and name (two pods), present or gone
/// as `want` says; the checkpoint claims only when present is wanted, as they
/// outlive the job (`whenDeleted: Retain`).
async fn children(client: &Client, ns: &str, want: bool) -> Result<(), String> {
    present::<StatefulSet>(client, ns, JOB, want).await?;
    present::<Service>(client, ns, JOB, want).await?;
    present::<ConfigMap>(client, ns, &format!("{JOB}-config"), want).await?;
    present::<Secret>(client, ns, &format!("{JOB}-admin-token"), want).await?;
    present::<PodDisruptionBudget>(client, ns, JOB, want).await?;
    for i in 0..2 {
        present::<Pod>(client, ns, &format!("{JOB}-{i}"), want).await?;
        if want {
            let claim = format!("data-{JOB}-{i}");
            present::<PersistentVolumeClaim>(client, ns, &claim, true).await?;
        }
    }
    Ok(())
}

/// `kubectl delete sjj`: the finalizer runs (its Event), the job goes, the garbage
/// collector removes every child; the checkpoint claims stay (`whenDeleted: Retain`).
async fn delete_and_collect(t: &Testbed, node: Option<&NodeForTest>) {
    let ns = t.ns.name.clone();
    let client = t.client.clone();
    let job = job_api(t).get(JOB).await.expect("the job");
    assert!(
        job.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER),
        "{:?}",
        job.metadata.finalizers
    );
    t.kubectl
        .run(&["delete", "sjj", JOB, "-n", &ns, "--wait=false"]);
    let api = job_api(t);
    poll(
        "the job is deleted once its finalizer ran",
        Duration::from_secs(120),
        || {
            let api = api.clone();
            async move {
                match api.get_opt(JOB).await.map_err(|e| e.to_string())? {
                    None => Ok(()),
                    Some(j) => Err(format!("finalizers {:?}", j.metadata.finalizers)),
                }
            }
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let list = events.list(&ListParams::default()).await.expect("events");
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Deleting")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(JOB)),
        "no Deleting Event from the finalizer"
    );
    let collected = try_poll(Duration::from_secs(180), || children(&client, &ns, false)).await;
    if let Err(last) = collected {
        let extra = node.map(|n| n.log()).unwrap_or_default();
        panic!(
            "children not collected within 180 s: {last}\nkubelet log tail: {}",
            extra.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for i in 0..2 {
        let claim = claims
            .get(&format!("data-{JOB}-{i}"))
            .await
            .expect("the checkpoint claim is kept");
        assert!(
            claim.metadata.deletion_timestamp.is_none(),
            "claim {i} is being deleted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_runs_the_finalizer_and_the_garbage_collector_removes_its_children() {
    const TEST: &str =
        "deleting_a_job_runs_the_finalizer_and_the_garbage_collector_removes_its_children";
    let Some(t) = testbed(TEST).await else { return };
    let _op = start_operator(&t).await;
    // No broker and no node: the pods stay Pending, which is enough to own them.
    let ops = placed(&t.ns.name, "127.0.0.1:9", Some("no-such-node"));
    apply_example(&t, &ops);
    let client = t.client.clone();
    let ns = t.ns.name.clone();
    poll(
        "every child of the job exists",
        Duration::from_secs(120),
        || children(&client, &ns, true),
    )
    .await;
    delete_and_collect(&t, None).await;
}

#[test]
fn the_local_patch_makes_a_valid_plaintext_job_without_savepoint_store() {
    let example: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(cluster::operator::repo_path("examples/streamjoinjob.yaml"))
            .expect("example"),
    )
    .expect("example YAML");
    let patch: json_patch::Patch = serde_norway::from_str(
        &std::fs::read_to_string(cluster::operator::repo_path("examples/local/patch.yaml"))
            .expect("patch"),
    )
    .expect("patch YAML");
    let mut local = example;
    json_patch::patch(&mut local, &patch).expect("the patch applies to the example");
    let job: StreamJoinJob = serde_json::from_value(local).expect("a StreamJoinJob");
    job.spec.validate().expect("valid");
    assert_eq!(job.spec.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert!(job.spec.kafka.sasl.is_none() && job.spec.kafka.tls.is_none());
    assert!(job.spec.savepoints.location.is_none() && job.spec.savepoints.interval.is_none());
    assert_eq!(job.spec.parallelism, 2);
    assert!(job.spec.pod_template.node_selector.is_empty());
    assert!(job.spec.pod_template.priority_class_name.is_none());
}
