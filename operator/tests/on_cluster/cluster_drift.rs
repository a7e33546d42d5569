//! Drift: a child of a job edited by hand on the local cluster (the operator
//! binary as the chart's ServiceAccount) is put back by the operator, one test
//! per child kind. The edit moves the child's generation or resourceVersion,
//! which the operator compares with what it saw after its own last apply.

use crate::cluster;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use serde::de::DeserializeOwned;

use cluster::example::{JOB, local_example, placed};
use cluster::operator::OperatorProcess;
use cluster::testbed::{Testbed, testbed};
use cluster::wait::poll;

const RESTORED: Duration = Duration::from_secs(60);

/// The local example applied (no node: its pods stay pending; only the children
/// matter here) and the operator running, once the StatefulSet exists.
async fn job_with_children(test: &str) -> Option<(Testbed, OperatorProcess)> {
    let t = testbed(test).await?;
    let op = OperatorProcess::in_namespace(&t).await;
    let manifest = local_example(&t.kubectl, &placed(&t.ns.name, "127.0.0.1:9", None));
    t.kubectl
        .try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("{e}"));
    let sts: Api<StatefulSet> = Api::namespaced(t.client.clone(), &t.ns.name);
    poll("the StatefulSet", RESTORED, || {
        let sts = sts.clone();
        async move { sts.get(JOB).await.map(|_| ()).map_err(|e| e.to_string()) }
    })
    .await;
    Some((t, op))
}

/// `kubectl patch KIND NAME` with a JSON patch, as a person would.
fn edit(t: &Testbed, kind: &str, name: &str, patch: &str) {
    t.kubectl.run(&[
        "patch", kind, name, "-n", &t.ns.name, "--type", "json", "-p", patch,
    ]);
}

/// Waits until `check` holds of object `name` of kind `K`.
async fn restored<K>(t: &Testbed, name: &str, what: &str, check: impl Fn(&K) -> Result<(), String>)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(t.client.clone(), &t.ns.name);
    let check = &check;
    poll(what, RESTORED, || {
        let api = api.clone();
        async move {
            let obj = api.get(name).await.map_err(|e| e.to_string())?;
            check(&obj)
        }
    })
    .await;
}

fn runtime_args(s: &StatefulSet) -> Vec<String> {
    s.spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers[0].args.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn statefulset_replicas_and_args_edited_by_hand_are_put_back() {
    const TEST: &str = "statefulset_replicas_and_args_edited_by_hand_are_put_back";
    let Some((t, op)) = job_with_children(TEST).await else {
        return;
    };
    t.kubectl
        .run(&["scale", "sts", JOB, "-n", &t.ns.name, "--replicas", "5"]);
    edit(
        &t,
        "sts",
        JOB,
        r#"[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--threads=64"}]"#,
    );
    restored::<StatefulSet>(&t, JOB, "replicas 2 and the operator's args", |s| {
        let replicas = s.spec.replicas;
        let args = runtime_args(s);
        if replicas == Some(2) && !args.iter().any(|a| a.contains("threads")) {
            Ok(())
        } else {
            Err(format!("replicas {replicas:?}, args {args:?}"))
        }
    })
    .await;
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}

#[tokio::test]
async fn a_service_edited_by_hand_is_put_back() {
    const TEST: &str = "a_service_edited_by_hand_is_put_back";
    let Some((t, op)) = job_with_children(TEST).await else {
        return;
    };
    edit(
        &t,
        "svc",
        JOB,
        r#"[{"op": "replace", "path": "/spec/selector", "value": {"app": "elsewhere"}}]"#,
    );
    restored::<Service>(&t, JOB, "the job's selector", |s| {
        let sel = s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if sel.get("streamjoin.dev/job").map(String::as_str) == Some(JOB)
            && !sel.contains_key("app")
        {
            Ok(())
        } else {
            Err(format!("selector {sel:?}"))
        }
    })
    .await;
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}

#[tokio::test]
async fn a_pdb_edited_by_hand_is_put_back() {
    const TEST: &str = "a_pdb_edited_by_hand_is_put_back";
    let Some((t, op)) = job_with_children(TEST).await else {
        return;
    };
    let api: Api<PodDisruptionBudget> = Api::namespaced(t.client.clone(), &t.ns.name);
    let before = api.get(JOB).await.unwrap_or_else(|e| panic!("{e}")).spec;
    edit(
        &t,
        "pdb",
        JOB,
        r#"[{"op": "replace", "path": "/spec/selector/matchLabels", "value": {"streamjoin.dev/job": "other"}}]"#,
    );
    restored::<PodDisruptionBudget>(&t, JOB, "the operator's PDB spec", |p| {
        if p.spec == before {
            Ok(())
        } else {
            Err(format!("spec {:?}", p.spec))
        }
    })
    .await;
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}

#[tokio::test]
async fn a_configmap_edited_by_hand_is_put_back() {
    const TEST: &str = "a_configmap_edited_by_hand_is_put_back";
    let Some((t, op)) = job_with_children(TEST).await else {
        return;
    };
    let name = format!("{JOB}-config");
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns.name);
    let before = api.get(&name).await.unwrap_or_else(|e| panic!("{e}")).data;
    edit(
        &t,
        "configmap",
        &name,
        r#"[{"op": "replace", "path": "/data/job.yaml", "value": "edited"}]"#,
    );
    restored::<ConfigMap>(&t, &name, "the operator's manifest", |c| {
        if c.data == before {
            Ok(())
        } else {
            Err("still edited".into())
        }
    })
    .await;
    assert!(op.refusals().is_empty(), "{:#?}", op.refusals());
}
