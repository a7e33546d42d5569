//! The NetworkPolicy the operator gives each job's admin port, on the local
//! cluster with the operator binary as the chart's ServiceAccount. The cluster
//! has no network plugin, so the policies are stored, not enforced: these tests
//! show what is stored (selectors, port, peers, owner), that a hand edit or a
//! deletion is undone, that the garbage collector removes it with the job, and
//! that with generation off none is made and no right on them is needed.

use crate::cluster;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use streamjoin_api::StreamJoinJob;
use streamjoin_operator::build::{ADMIN_PORT, network_policy_name, selector_labels};

use cluster::example::{JOB, local_example, placed};
use cluster::operator::{OperatorOptions, OperatorProcess};
use cluster::testbed::{Testbed, testbed};
use cluster::wait::poll;

const LIMIT: Duration = Duration::from_secs(60);

/// Prometheus in namespace `monitoring`, as `networkPolicy.extraAdminPeers` says it.
fn prometheus() -> Value {
    json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    })
}

/// The operator in the test's namespace with the chart's RBAC for `chart` values
/// and `args`, the local example applied (no node: its pods stay pending), once
/// its StatefulSet exists.
async fn job_with_operator(
    test: &str,
    chart: &[&str],
    args: &[String],
) -> Option<(Testbed, OperatorProcess)> {
    let t = testbed(test).await?;
    let opts = OperatorOptions {
        namespace: t.ns.name.clone(),
        watch: vec![t.ns.name.clone()],
        chart: chart.iter().map(|s| (*s).to_owned()).collect(),
    };
    let op = OperatorProcess::start_replica(&t.client, &t.kubectl, opts, None, args).await;
    let manifest = local_example(&t.kubectl, &placed(&t.ns.name, "127.0.0.1:9", None));
    t.kubectl
        .try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("{e}"));
    let sts: Api<StatefulSet> = Api::namespaced(t.client.clone(), &t.ns.name);
    poll("the StatefulSet", LIMIT, || {
        let sts = sts.clone();
        async move { sts.get(JOB).await.map(|_| ()).map_err(|e| e.to_string()) }
    })
    .await;
    Some((t, op))
}

fn policies(t: &Testbed) -> Api<NetworkPolicy> {
    Api::namespaced(t.client.clone(), &t.ns.name)
}

/// Waits until the job's policy exists and `check` holds of its spec (as JSON).
async fn policy_where(
    t: &Testbed,
    what: &str,
    check: impl Fn(&Value) -> Result<(), String>,
) -> NetworkPolicy {
    let api = policies(t);
    let name = network_policy_name(JOB);
    let check = &check;
    poll(what, LIMIT, || {
        let (api, name) = (api.clone(), name.clone());
        async move {
            let np = api.get(&name).await.map_err(|e| e.to_string())?;
            check(&serde_json::to_value(&np.spec).map_err(|e| e.to_string())?)?;
            Ok(np)
        }
    })
    .await
}

/// The spec the operator makes for the test's operator (default pod selector).
fn expected_spec(t: &Testbed) -> Value {
    json!({
        "podSelector": {"matchLabels": selector_labels(JOB)},
        "policyTypes": ["Ingress"],
        "ingress": [{
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.ns.name}},
                    "podSelector": {"matchLabels": {
                        "app.kubernetes.io/instance": "streamjoin-operator",
                        "app.kubernetes.io/name": "streamjoin-operator"
                    }}
                },
                prometheus()
            ],
            "ports": [{"port": ADMIN_PORT, "protocol": "TCP"}]
        }]
    })
}

fn is(want: &Value) -> impl Fn(&Value) -> Result<(), String> + '_ {
    move |spec| {
        if spec == want {
            Ok(())
        } else {
            Err(format!("spec {spec}"))
        }
    }
}

fn extra_peers_arg() -> Vec<String> {
    vec![format!(
        "--network-policy-extra-peers={}",
        json!([prometheus()])
    )]
}

#[tokio::test]
async fn a_job_gets_a_network_policy_admitting_only_the_operator_and_extra_peers_to_its_admin_port()
{
    const TEST: &str =
        "a_job_gets_a_network_policy_admitting_only_the_operator_and_extra_peers_to_its_admin_port";
    let Some((t, op)) = job_with_operator(TEST, &[], &extra_peers_arg()).await else {
        return;
    };
    let want = expected_spec(&t);
    let np = policy_where(&t, "the job's NetworkPolicy", is(&want)).await;
    let job: StreamJoinJob = Api::namespaced(t.client.clone(), &t.ns.name)
        .get(JOB)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owners = np.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(Some(&owners[0].uid), job.metadata.uid.as_ref());
    assert_eq!(owners[0].controller, Some(true));
    let labels = np.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "streamjoin-operator"
    );
    // It selects the pods the StatefulSet makes.
    let sts: StatefulSet = Api::namespaced(t.client.clone(), &t.ns.name)
        .get(JOB)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pod_labels: BTreeMap<String, String> = sts
        .spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    for (k, v) in selector_labels(JOB) {
        assert_eq!(pod_labels.get(&k), Some(&v), "pod label {k}");
    }
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}

#[tokio::test]
async fn a_network_policy_edited_or_deleted_by_hand_is_put_back() {
    const TEST: &str = "a_network_policy_edited_or_deleted_by_hand_is_put_back";
    let Some((t, op)) = job_with_operator(TEST, &[], &extra_peers_arg()).await else {
        return;
    };
    let want = expected_spec(&t);
    policy_where(&t, "the job's NetworkPolicy", is(&want)).await;
    let name = network_policy_name(JOB);
    // Every peer on every port, as someone opening it up by hand would.
    t.kubectl.run(&[
        "patch",
        "networkpolicy",
        &name,
        "-n",
        &t.ns.name,
        "--type",
        "json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/ingress", "value": [{}]}]"#,
    ]);
    policy_where(&t, "the operator's rule after a hand edit", is(&want)).await;
    t.kubectl.run(&[
        "delete",
        "networkpolicy",
        &name,
        "-n",
        &t.ns.name,
        "--wait=true",
    ]);
    policy_where(&t, "the policy made again after a deletion", is(&want)).await;
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}

#[tokio::test]
async fn deleting_a_job_lets_the_garbage_collector_remove_its_network_policy() {
    const TEST: &str = "deleting_a_job_lets_the_garbage_collector_remove_its_network_policy";
    let Some((t, op)) = job_with_operator(TEST, &[], &[]).await else {
        return;
    };
    policy_where(&t, "the job's NetworkPolicy", |_| Ok(())).await;
    t.kubectl
        .run(&["delete", "sjj", JOB, "-n", &t.ns.name, "--wait=false"]);
    let api = policies(&t);
    let name = network_policy_name(JOB);
    poll(
        "the NetworkPolicy collected with the job",
        Duration::from_secs(120),
        || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                match api.get_opt(&name).await.map_err(|e| e.to_string())? {
                    None => Ok(()),
                    Some(np) => Err(format!(
                        "still there, deletion {:?}",
                        np.metadata.deletion_timestamp
                    )),
                }
            }
        },
    )
    .await;
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}

#[tokio::test]
async fn with_generation_off_no_network_policy_is_made_and_no_right_on_them_is_needed() {
    const TEST: &str =
        "with_generation_off_no_network_policy_is_made_and_no_right_on_them_is_needed";
    let off = ["--network-policy-generation=false".to_owned()];
    let Some((t, op)) = job_with_operator(TEST, &["networkPolicy.generate=false"], &off).await
    else {
        return;
    };
    // The operator applies a job's policy before its StatefulSet: the StatefulSet
    // exists, so a policy would by now.
    let list = policies(&t)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = list.items.iter().map(|n| n.metadata.name.clone()).collect();
    assert!(names.is_empty(), "{names:?}");
    // The chart granted nothing on NetworkPolicies, and nothing was refused.
    let allowed = t.kubectl.try_run(
        &[
            "auth",
            "can-i",
            "list",
            "networkpolicies.networking.k8s.io",
            "-n",
            &t.ns.name,
            "--kubeconfig",
            &op.kubeconfig.display().to_string(),
        ],
        None,
    );
    // `can-i` answers "no" with exit status 1.
    assert!(
        matches!(&allowed, Err(e) if e.lines().any(|l| l.trim() == "no")),
        "{allowed:?}"
    );
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}
