//! The children the operator builds, applied server-side to a real API server
//! as the operator applies them (one field manager, forced): a user's env var
//! named like one the operator sets, or listed twice, still applies, with the
//! documented precedence (the operator's value wins; of a name listed twice,
//! the last entry).

use crate::cluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use serde_json::json;
use streamjoin_api::StreamJoinJob;
use streamjoin_operator::build::{self, JobRef};
use streamjoin_operator::observe::ObservedChildren;

use cluster::example::{JOB, local_example, placed};
use cluster::testbed::testbed;

#[tokio::test]
async fn user_env_named_like_the_operators_or_listed_twice_applies_with_the_documented_precedence()
{
    const TEST: &str =
        "user_env_named_like_the_operators_or_listed_twice_applies_with_the_documented_precedence";
    let Some(t) = testbed(TEST).await else { return };
    let mut ops = placed(&t.ns.name, "127.0.0.1:9092", None);
    ops.push(json!({
        "op": "replace",
        "path": "/spec/podTemplate/env",
        "value": [
            { "name": "POD_NAME", "value": "mine" },
            { "name": "STREAMJOIN_REPLICAS", "value": "9" },
            { "name": "RUST_LOG", "value": "debug" },
            { "name": "RUST_LOG", "value": "info" },
        ],
    }));
    let manifest = local_example(&t.kubectl, &ops);
    t.kubectl
        .try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("{e}"));
    let jobs: Api<StreamJoinJob> = Api::namespaced(t.client.clone(), &t.ns.name);
    let job = jobs.get(JOB).await.unwrap_or_else(|e| panic!("{e}"));

    let r = JobRef::new(&job).unwrap_or_else(|e| panic!("{e}"));
    let children = build::children(&r).unwrap_or_else(|e| panic!("{e}"));
    let done = streamjoin_operator::apply::apply_children(
        &t.client,
        &r,
        &children,
        &ObservedChildren::default(),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused the children: {e}"));
    assert_eq!(done.written.len(), 4, "{:?}", done.written);

    let sts: Api<StatefulSet> = Api::namespaced(t.client.clone(), &t.ns.name);
    let applied = sts.get(JOB).await.unwrap_or_else(|e| panic!("{e}"));
    let env = applied
        .spec
        .template
        .spec
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    let named = |n: &str| {
        env.iter()
            .filter(|e| e.name == n)
            .cloned()
            .collect::<Vec<_>>()
    };
    let pod_name = named("POD_NAME");
    assert_eq!(pod_name.len(), 1);
    assert!(
        pod_name[0].value_from.is_some() && pod_name[0].value.is_none(),
        "the operator's POD_NAME (from the pod's name): {pod_name:?}"
    );
    let replicas = named("STREAMJOIN_REPLICAS");
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].value.as_deref(), Some("2"), "the operator's");
    let rust_log = named("RUST_LOG");
    assert_eq!(rust_log.len(), 1);
    assert_eq!(rust_log[0].value.as_deref(), Some("info"), "the last entry");
}
