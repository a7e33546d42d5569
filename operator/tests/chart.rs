//! The Helm chart, rendered by `helm template` with default and non-default
//! values: the objects it makes, RBAC that is exactly what the operator calls
//! (no wildcards), the hardening, and the CRD equal to `crds/streamjoinjob.yaml`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::{Value, json};
use streamjoin_operator::build::networkpolicy::{parse_extra_peers, parse_pod_labels};
use streamjoin_operator::build::{ADMIN_PORT_NAME, APP_NAME, MANAGED_BY};

/// Every value set at once that switches an optional part on.
const EVERYTHING: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "runtimeMonitoring.podMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "dashboards.enabled=true",
    "networkPolicy.extraAdminPeers[0].ipBlock.cidr=10.0.0.0/8",
    "watch.namespaces={streams,payments}",
];

fn kinds(objs: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in objs {
        *m.entry(kind(o).to_owned()).or_insert(0) += 1;
    }
    m
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// (apiGroup, resource) → verbs, over all rules of the given roles.
fn grants(roles: &[&Value]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for role in roles {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    m.entry((g.clone(), r))
                        .or_default()
                        .extend(strings(&rule["verbs"]));
                }
            }
        }
    }
    m
}

fn table(rows: &[(&str, &str, &[&str])]) -> BTreeMap<(String, String), BTreeSet<String>> {
    rows.iter()
        .map(|(g, r, verbs)| {
            (
                ((*g).to_owned(), (*r).to_owned()),
                verbs.iter().map(|v| (*v).to_owned()).collect(),
            )
        })
        .collect()
}

/// What the operator calls in a namespace where it runs jobs, NetworkPolicy
/// generation on (the default).
fn namespaced_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m = namespaced_grants_without_policies();
    // The per-job NetworkPolicy: watched (controller.rs) and applied (apply.rs).
    m.extend(table(&[(
        "networking.k8s.io",
        "networkpolicies",
        &["list", "watch", "create", "patch"],
    )]));
    m
}

/// What the operator calls in a namespace where it runs jobs (controller.rs,
/// apply.rs, status.rs, reconcile.rs; the per-job Secret, PVC expansion), with
/// `networkPolicy.generate=false`.
fn namespaced_grants_without_policies() -> BTreeMap<(String, String), BTreeSet<String>> {
    let watch_apply: &[&str] = &["get", "list", "watch", "create", "patch"];
    table(&[
        (
            "streamjoin.dev",
            "streamjoinjobs",
            &["get", "list", "watch", "patch"],
        ),
        ("streamjoin.dev", "streamjoinjobs/status", &["get", "patch"]),
        // blockOwnerDeletion on the children's owner references (admission plugin
        // OwnerReferencesPermissionEnforcement).
        ("streamjoin.dev", "streamjoinjobs/finalizers", &["update"]),
        ("", "configmaps", watch_apply),
        ("", "services", watch_apply),
        ("apps", "statefulsets", watch_apply),
        ("policy", "poddisruptionbudgets", watch_apply),
        // Savepoint cleanup Jobs.
        ("batch", "jobs", watch_apply),
        ("", "pods", &["get", "list", "watch"]),
        (
            "",
            "persistentvolumeclaims",
            &["get", "list", "watch", "patch"],
        ),
        // The per-job admin token Secret: created, never read (admin_key.rs).
        ("", "secrets", &["create"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ])
}

fn cluster_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    table(&[("storage.k8s.io", "storageclasses", &["get"])])
}

fn lease_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    table(&[(
        "coordination.k8s.io",
        "leases",
        &["get", "update", "create"],
    )])
}

/// The operator's own namespace: its admin-token key Secret, read by name.
fn key_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    table(&[("", "secrets", &["get", "create"])])
}

/// The key Role: `get` only on the key Secret by name, `create` (unnamed).
fn assert_key_role(objs: &[Value], key_secret: &str) {
    let key = roles(objs, "Role", "-admin-token-key");
    assert_eq!(key.len(), 1);
    assert_eq!(grants(&key), key_grants());
    assert_eq!(key[0]["metadata"]["namespace"], RELEASE_NAMESPACE);
    for rule in key[0]["rules"].as_array().expect("rules") {
        match strings(&rule["verbs"]).as_slice() {
            [v] if v == "get" => assert_eq!(strings(&rule["resourceNames"]), [key_secret]),
            [v] if v == "create" => {}
            other => panic!("unexpected verbs {other:?} in the key Role"),
        }
    }
    let binding = roles(objs, "RoleBinding", "-admin-token-key");
    assert_eq!(binding.len(), 1);
    assert_eq!(binding[0]["roleRef"]["name"], name(key[0]));
    assert_eq!(
        binding[0]["subjects"],
        json!([{"kind": "ServiceAccount", "name": name(one(objs, "ServiceAccount")), "namespace": RELEASE_NAMESPACE}])
    );
    assert!(
        args(objs).contains(&format!("--admin-key-secret={key_secret}")),
        "{:?}",
        args(objs)
    );
}

fn roles<'a>(objs: &'a [Value], k: &str, name_suffix: &str) -> Vec<&'a Value> {
    of_kind(objs, k)
        .into_iter()
        .filter(|o| name(o).ends_with(name_suffix))
        .collect()
}

fn deployment(objs: &[Value]) -> &Value {
    one(objs, "Deployment")
}

fn container(objs: &[Value]) -> &Value {
    &deployment(objs)["spec"]["template"]["spec"]["containers"][0]
}

fn args(objs: &[Value]) -> Vec<String> {
    strings(&container(objs)["args"])
}

#[test]
fn default_values_render_the_operator_install() {
    let objs = render(&[]);
    let k = kinds(&objs);
    let want: BTreeMap<String, usize> = [
        ("CustomResourceDefinition", 1),
        ("ServiceAccount", 1),
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        // Leader election; the admin-token key.
        ("Role", 2),
        ("RoleBinding", 2),
        ("Service", 1),
        ("Deployment", 1),
        ("PodDisruptionBudget", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(k, want);
    for o in &objs {
        if kind(o) != "CustomResourceDefinition" && !kind(o).starts_with("Cluster") {
            assert_eq!(o["metadata"]["namespace"], RELEASE_NAMESPACE, "{}", name(o));
        }
    }
}

#[test]
fn deployment_runs_two_replicas_with_leader_election() {
    let objs = render(&[]);
    let d = deployment(&objs);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let a = args(&objs);
    assert_eq!(a[0], "run");
    assert!(
        a.contains(&"--lease-name=streamjoin-operator".to_owned()),
        "{a:?}"
    );
    assert!(a.contains(&"--lease-duration-secs=15".to_owned()), "{a:?}");
    assert!(a.contains(&"--http-addr=0.0.0.0:8080".to_owned()), "{a:?}");
    assert!(a.contains(&"--pod-address=dns".to_owned()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--no-leader-election")));
    assert!(
        !a.iter().any(|x| x.starts_with("--namespaces")),
        "cluster-wide"
    );
    let c = container(&objs);
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default(), e))
        .collect();
    // The elector's identity and the Lease's namespace come from the downward API.
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["image"], "ghcr.io/streamjoin/streamjoin-operator:0.1.0");
    let pdb = one(&objs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    let svc = one(&objs, "Service");
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http-metrics");
}

#[test]
fn rbac_has_no_wildcards_or_escalating_verbs_in_any_configuration() {
    let configs: [&[&str]; 3] = [&[], &["watch.namespaces={streams,payments}"], EVERYTHING];
    for sets in configs {
        let objs = render(sets);
        let roles: Vec<&Value> = objs
            .iter()
            .filter(|o| kind(o) == "Role" || kind(o) == "ClusterRole")
            .collect();
        assert!(!roles.is_empty());
        for role in roles {
            assert!(role.get("aggregationRule").is_none(), "{}", name(role));
            for rule in role["rules"].as_array().expect("rules") {
                assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for s in strings(&rule[field]) {
                        assert!(!s.contains('*'), "wildcard in {}: {rule}", name(role));
                    }
                }
                for v in strings(&rule["verbs"]) {
                    assert!(
                        ![
                            "escalate",
                            "bind",
                            "impersonate",
                            "delete",
                            "deletecollection"
                        ]
                        .contains(&v.as_str()),
                        "{v} granted in {}",
                        name(role)
                    );
                }
            }
        }
    }
}

#[test]
fn cluster_wide_rbac_grants_exactly_what_the_operator_calls() {
    let objs = render(&[]);
    let cluster = roles(&objs, "ClusterRole", "");
    let mut want = namespaced_grants();
    want.extend(cluster_grants());
    assert_eq!(grants(&cluster), want);
    let lease = roles(&objs, "Role", "-leader-election");
    assert_eq!(grants(&lease), lease_grants());
    // get and update only on the operator's own Lease.
    let named = &lease[0]["rules"][0];
    assert_eq!(strings(&named["resourceNames"]), ["streamjoin-operator"]);
    assert_eq!(strings(&named["verbs"]), ["get", "update"]);
    assert_eq!(lease[0]["metadata"]["namespace"], RELEASE_NAMESPACE);
    assert_key_role(&objs, "streamjoin-operator-admin-token-key");
    let binding = one(&objs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], name(cluster[0]));
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name(one(&objs, "ServiceAccount")), "namespace": RELEASE_NAMESPACE}])
    );
}

#[test]
fn namespace_list_gets_a_role_per_namespace_and_no_cluster_wide_job_rights() {
    let objs = render(&["watch.namespaces={streams,payments}"]);
    let job_roles = roles(&objs, "Role", "streamjoin-operator");
    let namespaces: BTreeSet<&str> = job_roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["streams", "payments"]));
    for r in &job_roles {
        assert_eq!(grants(&[r]), namespaced_grants());
    }
    let bindings: Vec<&Value> = of_kind(&objs, "RoleBinding")
        .into_iter()
        .filter(|b| {
            !name(b).ends_with("-leader-election") && !name(b).ends_with("-admin-token-key")
        })
        .collect();
    assert_eq!(bindings.len(), 2);
    assert_key_role(&objs, "streamjoin-operator-admin-token-key");
    for b in bindings {
        assert_eq!(b["subjects"][0]["namespace"], RELEASE_NAMESPACE);
    }
    // The only cluster-wide right left: reading StorageClasses.
    assert_eq!(grants(&of_kind(&objs, "ClusterRole")), cluster_grants());
    assert!(args(&objs).contains(&"--namespaces=streams,payments".to_owned()));
}

fn assert_hardened(objs: &[Value]) {
    let pod = &deployment(objs)["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
    for c in pod["containers"].as_array().expect("containers") {
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{c}");
        assert!(sc["runAsUser"].as_i64().is_some_and(|u| u > 0));
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert!(c["resources"]["limits"]["memory"].is_string());
    }
}

#[test]
fn operator_pods_are_hardened_with_default_and_custom_values() {
    assert_hardened(&render(&[]));
    assert_hardened(&render(EVERYTHING));
    assert_hardened(&render(&[
        "securityContext.runAsUser=1000",
        "replicaCount=3",
    ]));
}

#[test]
fn values_schema_and_guards_reject_unsafe_values() {
    for bad in [
        &["securityContext.runAsNonRoot=false"][..],
        &["securityContext.privileged=true"],
        &["podSecurityContext.runAsNonRoot=false"],
        &["replicaCount=0"],
        &["leaderElection.enabled=false"],
        &["image.pullPolicy=Sometimes"],
        &["podAddress=hostname"],
        &["watch.namespaces={Not_A_Namespace}"],
        &["networkPolicy.generate=maybe"],
        &["networkPolicy.extraAdminPeers[0].ports[0].port=80"],
        &["networkPolicy.extraAdminPeers[0].ipBlock.except[0]=10.0.0.1/32"],
        &["noSuchValue=1"],
        &["adminToken.keySecretName=Not_A_Name"],
    ] {
        assert!(try_render(bad).is_err(), "{bad:?} was accepted");
    }
    // One replica without leader election is allowed.
    let objs = render(&["leaderElection.enabled=false", "replicaCount=1"]);
    assert!(args(&objs).contains(&"--no-leader-election".to_owned()));
    assert!(roles(&objs, "Role", "-leader-election").is_empty());
    assert!(of_kind(&objs, "PodDisruptionBudget").is_empty());
}

#[test]
fn non_default_values_reach_the_objects() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let objs = render(&[
        &format!("image.digest={digest}"),
        "replicaCount=3",
        "leaderElection.leaseName=sj-leader",
        "leaderElection.leaseDurationSeconds=30",
        "logFormat=text",
        "podAddress=ip",
        "metrics.port=9090",
        "serviceAccount.name=custom-sa",
        "crds.install=false",
        "adminToken.keySecretName=sj-key",
    ]);
    assert_key_role(&objs, "sj-key");
    let d = deployment(&objs);
    assert_eq!(d["spec"]["replicas"], 3);
    let c = container(&objs);
    assert_eq!(
        c["image"],
        format!("ghcr.io/streamjoin/streamjoin-operator@{digest}")
    );
    let a = args(&objs);
    assert!(a.contains(&"--lease-name=sj-leader".to_owned()));
    assert!(a.contains(&"--lease-duration-secs=30".to_owned()));
    assert!(a.contains(&"--http-addr=0.0.0.0:9090".to_owned()));
    assert!(a.contains(&"--pod-address=ip".to_owned()));
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert_eq!(one(&objs, "Service")["spec"]["ports"][0]["port"], 9090);
    assert!(
        c["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "STREAMJOIN_LOG_FORMAT" && e["value"] == "text")
    );
    assert_eq!(name(one(&objs, "ServiceAccount")), "custom-sa");
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        "custom-sa"
    );
    let lease = roles(&objs, "Role", "-leader-election");
    assert_eq!(
        strings(&lease[0]["rules"][0]["resourceNames"]),
        ["sj-leader"]
    );
    assert!(of_kind(&objs, "CustomResourceDefinition").is_empty());
}

#[test]
fn chart_crd_is_the_committed_crd() {
    assert_copy(
        "crds/streamjoinjob.yaml",
        "charts/streamjoin-operator/files/crds/streamjoinjob.yaml",
    );
    let committed = committed_crd();
    let objs = render(&[]);
    let crd = one(&objs, "CustomResourceDefinition");
    assert_eq!(without_added_metadata(crd), committed);
    // Kept on uninstall: deleting the CRD would delete every job.
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let objs = render(&["crds.keep=false"]);
    let crd = one(&objs, "CustomResourceDefinition");
    assert!(crd["metadata"].get("annotations").is_none());
    assert_eq!(without_added_metadata(crd), committed);
    // Installed from a template (upgraded with the release), not from crds/.
    assert!(!repo_file("charts/streamjoin-operator/crds").exists());
}

#[test]
fn monitoring_selects_the_runtime_pods_admin_port() {
    let objs = render(EVERYTHING);
    let d = deployment(&objs);
    let operator_labels = &d["spec"]["selector"]["matchLabels"];

    let sm = one(&objs, "ServiceMonitor");
    assert_eq!(sm["spec"]["selector"]["matchLabels"], *operator_labels);
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "http-metrics");

    let runtime_labels = json!({
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    });
    let pm = one(&objs, "PodMonitor");
    assert_eq!(pm["spec"]["selector"]["matchLabels"], runtime_labels);
    assert_eq!(
        pm["spec"]["podMetricsEndpoints"][0]["port"],
        ADMIN_PORT_NAME
    );
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");
    assert_eq!(
        pm["spec"]["namespaceSelector"]["matchNames"],
        json!(["streams", "payments"])
    );
    assert_eq!(
        pm["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"],
        "streamjoinjob"
    );
    assert_eq!(
        one(
            &render(&["runtimeMonitoring.podMonitor.enabled=true"]),
            "PodMonitor"
        )["spec"]["namespaceSelector"],
        json!({"any": true})
    );

    let cm = one(&objs, "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dash: Value = serde_json::from_str(
        cm["data"]["streamjoin-job.json"]
            .as_str()
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    assert_eq!(dash["uid"], "streamjoin-job");
}

#[test]
fn chart_passes_helm_lint_strict() {
    for sets in [&[][..], EVERYTHING] {
        let mut cmd = std::process::Command::new(helm());
        cmd.args(["lint", "--strict"]).arg(repo_file(CHART));
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        run(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The operator container's environment variable `name`, if set by value.
fn env_value<'a>(objs: &'a [Value], name: &str) -> Option<&'a str> {
    container(objs)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

#[test]
fn the_operator_makes_each_job_a_network_policy_by_default_admitting_its_own_pods() {
    for sets in [&[][..], &["watch.namespaces={streams,payments}"]] {
        let objs = render(sets);
        // No static policy: the operator makes one per job, in any namespace.
        assert!(of_kind(&objs, "NetworkPolicy").is_empty());
        assert_eq!(
            env_value(&objs, "STREAMJOIN_NETWORK_POLICY_GENERATION"),
            Some("true")
        );
        // The selector the operator admits is the one of its own pods.
        let selector = env_value(&objs, "STREAMJOIN_OPERATOR_POD_SELECTOR").expect("selector");
        let labels = parse_pod_labels(selector).expect("the operator parses it");
        assert_eq!(
            json!(labels.0),
            deployment(&objs)["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(
            env_value(&objs, "STREAMJOIN_NETWORK_POLICY_EXTRA_PEERS"),
            None
        );
    }
    // Its rights on them, cluster-wide or per namespace: namespaced_grants().
}

#[test]
fn extra_admin_peers_reach_the_operator_as_json_it_reads() {
    let objs = render(&[
        "networkPolicy.extraAdminPeers[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
        "networkPolicy.extraAdminPeers[0].podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
        "networkPolicy.extraAdminPeers[1].ipBlock.cidr=10.0.0.0/8",
    ]);
    let text = env_value(&objs, "STREAMJOIN_NETWORK_POLICY_EXTRA_PEERS").expect("peers");
    let peers = parse_extra_peers(text).expect("the operator parses them");
    assert_eq!(
        serde_json::to_value(&peers.0).expect("json"),
        json!([
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
            },
            {"ipBlock": {"cidr": "10.0.0.0/8"}}
        ])
    );
}

#[test]
fn without_generation_the_operator_gets_no_right_on_network_policies() {
    let objs = render(&["networkPolicy.generate=false"]);
    assert_eq!(
        env_value(&objs, "STREAMJOIN_NETWORK_POLICY_GENERATION"),
        Some("false")
    );
    assert_eq!(env_value(&objs, "STREAMJOIN_OPERATOR_POD_SELECTOR"), None);
    let mut want = namespaced_grants_without_policies();
    want.extend(cluster_grants());
    assert_eq!(grants(&roles(&objs, "ClusterRole", "")), want);
    let objs = render(&[
        "networkPolicy.generate=false",
        "watch.namespaces={streams,payments}",
    ]);
    let job_roles = roles(&objs, "Role", "streamjoin-operator");
    assert_eq!(job_roles.len(), 2);
    for r in job_roles {
        assert_eq!(grants(&[r]), namespaced_grants_without_policies());
    }
}
