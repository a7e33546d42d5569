//! Secrets and the operator on the local cluster (`OwnerReferencesPermissionEnforcement`
//! on). What the chart's ServiceAccount may do with Secrets, cluster-wide and per
//! namespace (`kubectl auth can-i --as` and real requests with its token): only
//! the admin-token key in its own namespace can be read; in job namespaces it may
//! only create. And a running job whose admin-token Secret is deleted, then written
//! by hand with another token: operator and pods agree again with no restart.

use crate::cluster;
mod rotation;

use serde_json::{Value, json};

use cluster::example::{JOB, local_example, placed};
use cluster::kubectl::Kubectl;
use cluster::namespace::TestNamespace;
use cluster::operator::{chart_rbac, service_account_token, token_kubeconfig};
use cluster::testbed::{Testbed, testbed};

const KEY_SECRET: &str = "streamjoin-operator-admin-token-key";

/// The chart's RBAC applied; its cluster-scoped objects deleted when dropped.
struct ChartRbac {
    kubectl: Kubectl,
    cluster_objects: Vec<(String, String)>,
    /// `system:serviceaccount:<release namespace>:<name>`.
    subject: String,
    sa: String,
}

impl ChartRbac {
    fn install(t: &Testbed, watch: &[&str]) -> ChartRbac {
        let ns = &t.ns.name;
        let release = format!("streamjoin-operator-{}", &ns[ns.len() - 6..]);
        let mut sets = vec!["crds.install=false".to_owned()];
        if !watch.is_empty() {
            sets.push(format!("watch.namespaces={{{}}}", watch.join(",")));
        }
        let objs = chart_rbac(&release, ns, &sets);
        let yaml: String = objs
            .iter()
            .map(|o| format!("---\n{}", serde_norway::to_string(o).unwrap_or_default()))
            .collect();
        let cluster_objects = objs
            .iter()
            .filter(|o| o["kind"].as_str().is_some_and(|k| k.starts_with("Cluster")))
            .map(|o| (str_of(&o["kind"]), str_of(&o["metadata"]["name"])))
            .collect();
        let sa = objs
            .iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .map(|o| str_of(&o["metadata"]["name"]))
            .unwrap_or_else(|| panic!("the chart renders no ServiceAccount"));
        // Built before the apply, so that a failed apply still removes what it made.
        let rbac = ChartRbac {
            kubectl: t.kubectl.clone(),
            cluster_objects,
            subject: format!("system:serviceaccount:{ns}:{sa}"),
            sa,
        };
        t.kubectl.apply_yaml(&yaml, "streamjoin-test");
        rbac
    }
}

impl Drop for ChartRbac {
    fn drop(&mut self) {
        for (kind, name) in &self.cluster_objects {
            let _ = self.kubectl.try_run(
                &["delete", &kind.to_lowercase(), name, "--ignore-not-found"],
                None,
            );
        }
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `kubectl auth can-i VERB RESOURCE -n NS --as SUBJECT`: yes or no.
fn can_i(k: &Kubectl, subject: &str, verb: &str, resource: &str, ns: &str) -> bool {
    let args = ["auth", "can-i", verb, resource, "-n", ns, "--as", subject];
    match k.try_run(&args, None) {
        Ok(out) if out.trim() == "yes" => true,
        Ok(out) => panic!("kubectl auth can-i answered {out:?}"),
        // `no` exits 1.
        Err(e) if e.contains("\nno") => false,
        Err(e) => panic!("{e}"),
    }
}

fn secret_yaml(ns: &str, name: &str, owner: Option<&Value>) -> String {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": ns },
        "stringData": { "token": "not-for-the-operator" },
    });
    if let Some(o) = owner {
        s["metadata"]["ownerReferences"] = json!([o]);
    }
    serde_norway::to_string(&s).unwrap_or_default()
}

/// Everything the chart's ServiceAccount may and may not do with Secrets, as
/// `kubectl auth can-i` says and as real requests with its token show.
async fn assert_secret_rights(t: &Testbed, jobs: &str, cluster_wide: bool) {
    let watch: Vec<&str> = if cluster_wide { vec![] } else { vec![jobs] };
    let rbac = ChartRbac::install(t, &watch);
    let (k, who, ops) = (&t.kubectl, rbac.subject.as_str(), t.ns.name.as_str());
    // Secrets a user keeps beside the jobs, and the key beside the operator.
    k.run(&[
        "create",
        "secret",
        "generic",
        "someone-elses",
        "-n",
        jobs,
        "--from-literal=password=p",
    ]);
    k.run(&[
        "create",
        "secret",
        "generic",
        "other",
        "-n",
        ops,
        "--from-literal=password=p",
    ]);
    k.run(&[
        "create",
        "secret",
        "generic",
        KEY_SECRET,
        "-n",
        ops,
        "--from-literal=key=0123456789abcdef0123456789abcdef",
    ]);

    // Job namespace: create only. Every verb that answers with a Secret's data is refused.
    assert!(can_i(k, who, "create", "secrets", jobs));
    for verb in ["get", "list", "watch", "patch", "update", "delete"] {
        assert!(
            !can_i(k, who, verb, "secrets", jobs),
            "{verb} secrets in {jobs}"
        );
    }
    for name in ["someone-elses", &format!("{JOB}-admin-token")] {
        for verb in ["get", "patch", "update"] {
            assert!(
                !can_i(k, who, verb, &format!("secret/{name}"), jobs),
                "{verb} {name}"
            );
        }
    }
    // Its own namespace: the key by name, nothing else.
    assert!(can_i(k, who, "get", &format!("secret/{KEY_SECRET}"), ops));
    assert!(!can_i(k, who, "get", "secret/other", ops));
    for verb in ["list", "watch"] {
        assert!(
            !can_i(k, who, verb, "secrets", ops),
            "{verb} secrets in {ops}"
        );
    }
    for verb in ["patch", "update", "delete"] {
        assert!(
            !can_i(k, who, verb, &format!("secret/{KEY_SECRET}"), ops),
            "{verb} key"
        );
    }
    assert!(!can_i(k, who, "list", "secrets", "kube-system"));
    // A namespace the operator does not serve: nothing, unless cluster-wide.
    assert_eq!(can_i(k, who, "create", "secrets", "default"), cluster_wide);

    // The same with the ServiceAccount's own token, as the operator calls.
    let token = service_account_token(&t.client, ops, &rbac.sa).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kc = dir.path().join("kubeconfig");
    let admin_kc = cluster::kubeconfig_path().unwrap_or_else(|| panic!("no kubeconfig"));
    std::fs::write(&kc, token_kubeconfig(&admin_kc, &token, ops))
        .unwrap_or_else(|e| panic!("writing {}: {e}", kc.display()));
    let as_sa = Kubectl::new(&kc);
    let refused = as_sa
        .try_run(
            &["get", "secret", "someone-elses", "-n", jobs, "-o", "yaml"],
            None,
        )
        .expect_err("reading another's Secret");
    assert!(
        refused.contains("Forbidden") && !refused.contains("cA=="),
        "{refused}"
    );
    let refused = as_sa
        .try_run(&["get", "secret", "other", "-n", ops], None)
        .expect_err("reading another Secret of its namespace");
    assert!(refused.contains("Forbidden"), "{refused}");
    as_sa.run(&["get", "secret", KEY_SECRET, "-n", ops]);
    owner_references_are_enforced(t, &as_sa, jobs);
}

/// With `OwnerReferencesPermissionEnforcement`, a Secret owned by a job with
/// `blockOwnerDeletion` needs `update` on `streamjoinjobs/finalizers`: the chart's
/// ServiceAccount creates one, a ServiceAccount that may only create Secrets cannot.
fn owner_references_are_enforced(t: &Testbed, as_sa: &Kubectl, jobs: &str) {
    let k = &t.kubectl;
    let manifest = local_example(k, &placed(jobs, "127.0.0.1:9", None));
    k.try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("{e}"));
    let field = |path: &str| {
        k.run(&[
            "get",
            "sjj",
            JOB,
            "-n",
            jobs,
            "-o",
            &format!("jsonpath={{{path}}}"),
        ])
    };
    let owner = json!({
        "apiVersion": field(".apiVersion"), "kind": "StreamJoinJob", "name": JOB,
        "uid": field(".metadata.uid"), "controller": true, "blockOwnerDeletion": true,
    });
    as_sa
        .try_run(
            &["create", "-f", "-"],
            Some(&secret_yaml(jobs, "owned-by-the-chart-sa", Some(&owner))),
        )
        .unwrap_or_else(|e| panic!("the chart's ServiceAccount creating an owned Secret: {e}"));
    // A ServiceAccount with create on Secrets and nothing on the job's finalizers.
    k.apply_yaml(&bare_creator(jobs), "streamjoin-test");
    let token = k.run(&["create", "token", "secret-creator", "-n", jobs]);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let kc = dir.path().join("kubeconfig");
    let admin_kc = cluster::kubeconfig_path().unwrap_or_else(|| panic!("no kubeconfig"));
    std::fs::write(&kc, token_kubeconfig(&admin_kc, token.trim(), jobs))
        .unwrap_or_else(|e| panic!("writing {}: {e}", kc.display()));
    let refused = Kubectl::new(&kc)
        .try_run(
            &["create", "-f", "-"],
            Some(&secret_yaml(jobs, "owned-by-a-creator", Some(&owner))),
        )
        .expect_err("blockOwnerDeletion without finalizers permission");
    assert!(refused.contains("blockOwnerDeletion"), "{refused}");
}

fn bare_creator(ns: &str) -> String {
    let docs = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "secret-creator", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "secret-creator", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "secret-creator", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-creator"},
            "subjects": [{"kind": "ServiceAccount", "name": "secret-creator", "namespace": ns}]}),
    ];
    docs.iter()
        .map(|d| format!("---\n{}", serde_norway::to_string(d).unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn cluster_wide_chart_lets_the_operator_read_only_its_key_and_create_job_secrets() {
    const TEST: &str = "cluster_wide_chart_lets_the_operator_read_only_its_key";
    let Some(t) = testbed(TEST).await else { return };
    let jobs = TestNamespace::create(&t.client, &t.kubectl, "secrets-jobs-cluster-wide").await;
    assert_secret_rights(&t, &jobs.name, true).await;
}

#[tokio::test]
async fn per_namespace_chart_lets_the_operator_read_only_its_key_and_create_job_secrets() {
    const TEST: &str = "per_namespace_chart_lets_the_operator_read_only_its_key";
    let Some(t) = testbed(TEST).await else { return };
    let jobs = TestNamespace::create(&t.client, &t.kubectl, "secrets-jobs-per-namespace").await;
    assert_secret_rights(&t, &jobs.name, false).await;
}
