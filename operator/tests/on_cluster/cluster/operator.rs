//! The operator binary run as the chart's ServiceAccount: the chart's RBAC
//! (ServiceAccount, Roles, ClusterRoles, bindings; not its Deployment) applied to
//! the cluster, a token from the TokenRequest API, a kubeconfig with that token
//! and the cluster's CA, and `streamjoin-operator run` as a process with it. What
//! the chart grants is what the operator gets; a refusal shows in its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use serde::Deserialize as _;
use serde_json::{Value, json};

use super::kubectl::Kubectl;

/// The kinds of the chart this helper installs.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// `STREAMJOIN_HELM` (set by `scripts/tools.sh`), else the tool cache, else PATH.
pub fn helm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMJOIN_HELM").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let cache =
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/streamjoin/tools");
    std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("helm"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("helm"))
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
    .join(rel)
}

/// `helm template RELEASE charts/streamjoin-operator -n NAMESPACE --set ...`, the
/// RBAC objects only.
pub fn chart_rbac(release: &str, namespace: &str, sets: &[String]) -> Vec<Value> {
    let mut cmd = Command::new(helm_bin());
    cmd.arg("template")
        .arg(release)
        .arg(repo_path("charts/streamjoin-operator"))
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running helm ({}): {e}; scripts/tools.sh installs it",
            helm_bin().display()
        )
    });
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_norway::Deserializer::from_str(&text)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|v| RBAC_KINDS.contains(&v["kind"].as_str().unwrap_or_default()))
        .collect()
}

/// A kubeconfig with the cluster (server, CA) of `admin` and a bearer token.
pub fn token_kubeconfig(admin: &Path, token: &str, namespace: &str) -> String {
    let kc =
        Kubeconfig::read_from(admin).unwrap_or_else(|e| panic!("reading {}: {e}", admin.display()));
    let context = kc
        .current_context
        .as_deref()
        .and_then(|c| kc.contexts.iter().find(|x| x.name == c))
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context)
        .or(kc.clusters.first())
        .and_then(|c| c.cluster.clone())
        .unwrap_or_else(|| panic!("{}: no cluster", admin.display()));
    let mut c = json!({ "server": cluster.server });
    if let Some(ca) = &cluster.certificate_authority_data {
        c["certificate-authority-data"] = json!(ca);
    } else if let Some(ca) = &cluster.certificate_authority {
        c["certificate-authority"] = json!(ca);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "local", "cluster": c }],
        "users": [{ "name": "operator", "user": { "token": token } }],
        "contexts": [{ "name": "operator", "context": { "cluster": "local", "user": "operator", "namespace": namespace } }],
        "current-context": "operator",
    });
    serde_norway::to_string(&doc).unwrap_or_else(|e| panic!("kubeconfig YAML: {e}"))
}

/// A token of `namespace/name` from the TokenRequest API (one hour).
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer: TokenRequest = api
        .create_subresource("token", name, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name}: no token in the answer"))
}

/// Where the operator runs and what it watches.
pub struct OperatorOptions {
    /// The release's namespace: the ServiceAccount, the leader Lease.
    pub namespace: String,
    /// `watch.namespaces` of the chart and `--namespaces`; empty: cluster-wide.
    pub watch: Vec<String>,
    /// More `--set` values of the chart whose RBAC the operator gets (e.g.
    /// `networkPolicy.generate=false`).
    pub chart: Vec<String>,
}

/// The operator process; stopped (SIGTERM, then SIGKILL) and its cluster-scoped
/// RBAC deleted when dropped.
pub struct OperatorProcess {
    child: Option<Child>,
    pub log: PathBuf,
    pub kubeconfig: PathBuf,
    kubectl: Kubectl,
    cluster_objects: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// The operator binary under the chart's ServiceAccount in the test's
    /// namespace, watching only that namespace.
    pub async fn in_namespace(t: &super::testbed::Testbed) -> OperatorProcess {
        OperatorProcess::start(
            &t.client,
            &t.kubectl,
            OperatorOptions {
                namespace: t.ns.name.clone(),
                watch: vec![t.ns.name.clone()],
                chart: Vec::new(),
            },
        )
        .await
    }

    pub async fn start(
        client: &Client,
        kubectl: &Kubectl,
        opts: OperatorOptions,
    ) -> OperatorProcess {
        OperatorProcess::start_replica(client, kubectl, opts, None, &[]).await
    }

    /// One of several replicas in the test's namespace, as the chart's
    /// ServiceAccount: its own `--identity` in the leader Lease and a lease of
    /// `lease_secs` seconds (a standby takes over that long after the leader's
    /// last renewal).
    pub async fn replica(
        t: &super::testbed::Testbed,
        identity: &str,
        lease_secs: u64,
    ) -> OperatorProcess {
        let opts = OperatorOptions {
            namespace: t.ns.name.clone(),
            watch: vec![t.ns.name.clone()],
            chart: Vec::new(),
        };
        let lease = ["--lease-duration-secs".to_owned(), lease_secs.to_string()];
        OperatorProcess::start_replica(&t.client, &t.kubectl, opts, Some(identity), &lease).await
    }

    /// As [`OperatorProcess::start`], with `identity` in the Lease (default:
    /// the release's name) and `extra` arguments to `run`.
    pub async fn start_replica(
        client: &Client,
        kubectl: &Kubectl,
        opts: OperatorOptions,
        identity: Option<&str>,
        extra: &[String],
    ) -> OperatorProcess {
        // Release names are at most 53 characters: the namespace's random suffix.
        let suffix = &opts.namespace[opts.namespace.len().saturating_sub(6)..];
        let release = format!("streamjoin-operator-{suffix}");
        let mut sets = vec!["crds.install=false".to_owned()];
        if !opts.watch.is_empty() {
            sets.push(format!("watch.namespaces={{{}}}", opts.watch.join(",")));
        }
        sets.extend(opts.chart.iter().cloned());
        let objs = chart_rbac(&release, &opts.namespace, &sets);
        let yaml: String = objs
            .iter()
            .map(|o| format!("---\n{}", serde_norway::to_string(o).unwrap_or_default()))
            .collect();
        kubectl.apply_yaml(&yaml, "streamjoin-test");
        let cluster_objects = objs
            .iter()
            .filter(|o| o["kind"].as_str().is_some_and(|k| k.starts_with("Cluster")))
            .map(|o| {
                (
                    o["kind"].as_str().unwrap_or_default().to_owned(),
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let sa = objs
            .iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or_else(|| panic!("the chart renders no ServiceAccount"))
            .to_owned();

        let token = service_account_token(client, &opts.namespace, &sa).await;
        let dir = tempfile::Builder::new()
            .prefix("operator-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("operator dir: {e}"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            token_kubeconfig(&kubectl.kubeconfig, &token, &opts.namespace),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", kubeconfig.display()));
        let log = dir
            .path()
            .join(format!("operator-{}.log", identity.unwrap_or("0")));
        let log_file =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamjoin-operator"));
        cmd.args(["run", "--http-addr", "127.0.0.1:0", "--pod-address", "ip"])
            .args(["--lease-namespace", &opts.namespace])
            .args(["--identity", identity.unwrap_or(&release)])
            .args(extra);
        if !opts.watch.is_empty() {
            cmd.arg("--namespaces").arg(opts.watch.join(","));
        }
        let child = cmd
            .env("KUBECONFIG", &kubeconfig)
            // Each API request as a line of its own (method, URL): the lifecycle
            // tests count the operator's writes from them (s3_job::measure).
            .env(
                "RUST_LOG",
                "info,kube=info,kube_client::client::builder=debug",
            )
            .env("STREAMJOIN_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .unwrap_or_else(|e| panic!("log handle: {e}")),
            )
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting the operator: {e}"));
        OperatorProcess {
            child: Some(child),
            log,
            kubeconfig,
            kubectl: kubectl.clone(),
            cluster_objects,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines that show the API server refusing the operator something.
    pub fn refusals(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden") || l.contains(" 403"))
            .map(str::to_owned)
            .collect()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a node failure would: no shutdown, the leader Lease kept
    /// until it expires. Waits for the process to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .unwrap_or_else(|e| panic!("SIGKILL to the operator {}: {e}", child.id()));
            let _ = child.wait();
        }
    }

    /// SIGTERM (then SIGKILL after 10 s) and waits; the RBAC stays (dropping
    /// removes it).
    pub fn terminate(&mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            eprintln!(
                "operator log {} (last lines):\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            // Keep the log and kubeconfig of a failed run.
            if let Ok(spare) = tempfile::tempdir() {
                let _ = std::mem::replace(&mut self._dir, spare).keep();
            }
        }
        for (kind, name) in &self.cluster_objects {
            let _ = self.kubectl.try_run(
                &[
                    "delete",
                    &kind.to_lowercase(),
                    name,
                    "--ignore-not-found",
                    "--wait=false",
                ],
                None,
            );
        }
    }
}
