//! The plain manifests: `kubectl kustomize` renders `deploy/` and its
//! monitoring part, and they install the same thing as the
//! chart (same RBAC rules, same operator container, same CRD).

mod common;

use common::*;
use serde_json::Value;

fn deploy() -> Option<Vec<Value>> {
    kustomize("deploy")
}

#[test]
fn kustomize_renders_the_operator_install() {
    let Some(objs) = deploy() else { return };
    let mut kinds: Vec<&str> = objs.iter().map(kind).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    );
    for o in &objs {
        let cluster_scoped = [
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ];
        if !cluster_scoped.contains(&kind(o)) {
            assert_eq!(o["metadata"]["namespace"], RELEASE_NAMESPACE, "{}", name(o));
        }
    }
    assert_eq!(
        one(&objs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn kustomize_crd_is_the_committed_crd() {
    let Some(objs) = deploy() else { return };
    let crd = without_added_metadata(one(&objs, "CustomResourceDefinition"));
    assert_eq!(numbers_as_floats(&crd), numbers_as_floats(&committed_crd()));
    // Still a real comparison: a changed value is seen.
    let mut other = committed_crd();
    other["spec"]["names"]["shortNames"][0] = Value::String("other".into());
    assert_ne!(numbers_as_floats(&crd), numbers_as_floats(&other));
}

fn by_name<'a>(objs: &'a [Value], k: &str, n: &str) -> &'a Value {
    objs.iter()
        .find(|o| kind(o) == k && name(o) == n)
        .unwrap_or_else(|| panic!("{k} {n} missing"))
}

#[test]
fn kustomize_install_matches_the_chart_defaults() {
    let Some(plain) = deploy() else { return };
    let chart = render(&[]);
    for (k, n) in [
        ("ClusterRole", "streamjoin-operator"),
        ("Role", "streamjoin-operator-leader-election"),
        ("Role", "streamjoin-operator-admin-token-key"),
    ] {
        assert_eq!(
            by_name(&plain, k, n)["rules"],
            by_name(&chart, k, n)["rules"],
            "{k} {n}: deploy/ and the chart grant different rules"
        );
    }
    for (k, n) in [
        ("ClusterRoleBinding", "streamjoin-operator"),
        ("RoleBinding", "streamjoin-operator-leader-election"),
        ("RoleBinding", "streamjoin-operator-admin-token-key"),
    ] {
        assert_eq!(
            by_name(&plain, k, n)["subjects"],
            by_name(&chart, k, n)["subjects"]
        );
        assert_eq!(
            by_name(&plain, k, n)["roleRef"],
            by_name(&chart, k, n)["roleRef"]
        );
    }
    let pd = &one(&plain, "Deployment")["spec"];
    let cd = &one(&chart, "Deployment")["spec"];
    assert_eq!(pd["replicas"], cd["replicas"]);
    assert_eq!(pd["strategy"], cd["strategy"]);
    assert_eq!(pd["selector"], cd["selector"]);
    let (pp, cp) = (&pd["template"]["spec"], &cd["template"]["spec"]);
    for field in [
        "securityContext",
        "serviceAccountName",
        "volumes",
        "topologySpreadConstraints",
        "terminationGracePeriodSeconds",
    ] {
        assert_eq!(pp[field], cp[field], "pod {field}");
    }
    let (pc, cc) = (&pp["containers"][0], &cp["containers"][0]);
    for field in [
        "name",
        "image",
        "args",
        "env",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "resources",
        "volumeMounts",
    ] {
        assert_eq!(pc[field], cc[field], "container {field}");
    }
    assert_eq!(
        one(&plain, "Service")["spec"],
        one(&chart, "Service")["spec"]
    );
    assert_eq!(
        one(&plain, "PodDisruptionBudget")["spec"],
        one(&chart, "PodDisruptionBudget")["spec"]
    );
}

#[test]
fn kustomize_monitoring_matches_the_chart() {
    let Some(plain) = kustomize("deploy/monitoring") else {
        return;
    };
    let chart = render(&[
        "metrics.serviceMonitor.enabled=true",
        "runtimeMonitoring.podMonitor.enabled=true",
        "prometheusRule.enabled=true",
    ]);
    for k in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert_eq!(one(&plain, k)["spec"], one(&chart, k)["spec"], "{k}");
        assert_eq!(one(&plain, k)["metadata"]["namespace"], RELEASE_NAMESPACE);
    }
}

#[test]
fn kustomize_operator_admits_its_own_pods_to_the_runtime_admin_port() {
    let Some(plain) = deploy() else { return };
    let d = one(&plain, "Deployment");
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let value = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .and_then(|e| e["value"].as_str().map(str::to_owned))
    };
    assert_eq!(
        value("STREAMJOIN_NETWORK_POLICY_GENERATION").as_deref(),
        Some("true")
    );
    let selector = value("STREAMJOIN_OPERATOR_POD_SELECTOR").expect("selector");
    let labels = streamjoin_operator::build::networkpolicy::parse_pod_labels(&selector)
        .expect("the operator parses it");
    assert_eq!(
        serde_json::json!(labels.0),
        d["spec"]["selector"]["matchLabels"]
    );
    assert!(
        !repo_file("deploy/networkpolicy").exists(),
        "replaced by the operator's policies"
    );
}
