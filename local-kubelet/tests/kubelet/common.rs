use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, Pod, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The cluster's kubeconfig, or `None` (after saying so) when there is no cluster
/// outside CI.
pub fn kubeconfig() -> Option<PathBuf> {
    match std::env::var_os("STREAMJOIN_KUBECONFIG") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("STREAMJOIN_KUBECONFIG is not set: the local cluster is required under CI")
        }
        None => {
            eprintln!(
                "SKIPPED: STREAMJOIN_KUBECONFIG is not set (start the cluster with scripts/cluster.sh up)"
            );
            None
        }
    }
}

/// One kubelet, its node and a namespace, for one test.
pub struct Env {
    pub client: Client,
    pub ns: String,
    pub node: String,
    pub root: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    kubelet: Option<Child>,
    extra: Vec<String>,
}

pub const IMAGES: &str = "images:
- image: test/sh
  binary: /bin/sh
  entrypoint: [/opt/streamjoin-test/bin/sh]
  cmd: [-c, 'echo no command given']
- image: test/sh:workdir
  binary: /bin/sh
  entrypoint: [/opt/streamjoin-test/bin/sh]
  workingDir: /opt/streamjoin-test
";

/// Provisioned volumes of every test kubelet live in one place: any kubelet may
/// provision any claim.
pub fn shared_volume_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/streamjoin/kubelet-test-volumes")
}

impl Env {
    pub async fn new(test: &str) -> Option<Self> {
        Self::with_args(test, &[]).await
    }

    /// With more entries (YAML list items) in the image map.
    pub async fn with_images(test: &str, more_images: &str) -> Option<Self> {
        Self::start(test, &[], more_images).await
    }

    pub async fn with_args(test: &str, extra: &[&str]) -> Option<Self> {
        Self::start(test, extra, "").await
    }

    async fn start(test: &str, extra: &[&str], more_images: &str) -> Option<Self> {
        let kubeconfig = kubeconfig()?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(20)
            .collect::<String>()
            .to_lowercase();
        let name = format!("lk-{short}-{}-{n}", pid % 100_000);
        let kc = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        let client = Client::try_from(config).expect("client");
        let root = tempfile::Builder::new()
            .prefix("local-kubelet-")
            .tempdir()
            .expect("root dir");
        std::fs::write(
            root.path().join("images.yaml"),
            format!("{IMAGES}{more_images}"),
        )
        .expect("image map");
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
            )
            .await
            .expect("namespace");
        let mut env = Self {
            client,
            ns: name.clone(),
            node: name,
            root,
            kubeconfig,
            kubelet: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        env.start_kubelet();
        env.wait_node_ready().await;
        env.wait_default_service_account().await;
        Some(env)
    }

    /// 127.<pid>.<n>.0/24: a range of its own for each test kubelet.
    fn ip_range(&self) -> String {
        let n = self
            .node
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        format!(
            "127.{}.{}.0/24",
            100 + std::process::id() % 100,
            n % 250 + 1
        )
    }

    pub fn start_kubelet(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("kubelet.log"))
            .expect("kubelet log");
        let err = log.try_clone().expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_streamjoin-local-kubelet"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--node-name")
            .arg(&self.node)
            .arg("--root-dir")
            .arg(self.root.path())
            .arg("--images")
            .arg(self.root.path().join("images.yaml"))
            .arg("--volume-dir")
            .arg(shared_volume_dir())
            .args([
                "--backoff-base",
                "1s",
                "--backoff-cap",
                "4s",
                "--heartbeat",
                "5s",
            ])
            .arg("--pod-ip-range")
            .arg(self.ip_range())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("starting the kubelet");
        self.kubelet = Some(child);
    }

    /// SIGTERM, as a clean shutdown; waits for the process.
    pub fn stop_kubelet(&mut self) {
        if let Some(mut child) = self.kubelet.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn kubelet_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("kubelet.log")).unwrap_or_default()
    }

    async fn wait_node_ready(&self) {
        let nodes = Api::<Node>::all(self.client.clone());
        let node = self.node.clone();
        self.eventually("the node to be Ready", Duration::from_secs(30), || {
            let nodes = nodes.clone();
            let node = node.clone();
            async move {
                let n = nodes.get_opt(&node).await.ok().flatten()?;
                let ready = n
                    .status?
                    .conditions?
                    .into_iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            }
        })
        .await;
    }

    /// The ServiceAccount admission plugin rejects pods until the namespace's
    /// `default` account exists.
    async fn wait_default_service_account(&self) {
        let sas = Api::<ServiceAccount>::namespaced(self.client.clone(), &self.ns);
        self.eventually(
            "the default service account",
            Duration::from_secs(30),
            || {
                let sas = sas.clone();
                async move { sas.get_opt("default").await.ok().flatten().map(|_| ()) }
            },
        )
        .await;
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a pod bound to this kubelet's node from JSON (nodeName filled in).
    pub async fn create_pod(&self, mut pod: Value) -> Pod {
        pod["spec"]["nodeName"] = json!(self.node);
        pod["metadata"]["namespace"] = json!(self.ns);
        if pod["spec"]["automountServiceAccountToken"].is_null() {
            pod["spec"]["automountServiceAccountToken"] = json!(false);
        }
        let pod: Pod = serde_json::from_value(pod).expect("pod json");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    pub async fn create<K>(&self, obj: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(obj).expect("object json");
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &obj)
            .await
            .expect("create")
    }

    /// Polls `f` until it returns `Some`, at most `limit`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, limit: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}\n--- kubelet log ---\n{}",
                    self.kubelet_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the pod satisfies `pred`; returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let api = self.pods();
        self.eventually(what, limit, || {
            let api = api.clone();
            let name = name.to_owned();
            let pred = &pred;
            async move { api.get_opt(&name).await.ok().flatten().filter(|p| pred(p)) }
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str, limit: Duration) {
        let api = self.pods();
        self.eventually(&format!("pod {name} to be deleted"), limit, || {
            let api = api.clone();
            let name = name.to_owned();
            async move { matches!(api.get_opt(&name).await, Ok(None)).then_some(()) }
        })
        .await
    }

    /// The pod's directory under the kubelet's root.
    pub fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.root.path().join("pods").join(format!(
            "{}_{}_{}",
            self.ns,
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        ))
    }

    pub fn log_of(&self, pod: &Pod, container: &str, restart: u32) -> String {
        std::fs::read_to_string(
            self.pod_dir(pod)
                .join(container)
                .join(format!("{restart}.log")),
        )
        .unwrap_or_default()
    }

    /// Deletes the namespace while the kubelet still runs (so its pods go), then
    /// stops the kubelet and removes the node.
    pub async fn finish(mut self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.ns, &DeleteParams::default())
            .await;
        // The namespace goes once its pods (stopped by this kubelet) and claims are
        // gone; their released volumes are then deleted by a provisioner.
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let volumes = Api::<PersistentVolume>::all(self.client.clone());
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let ns_gone = matches!(namespaces.get_opt(&self.ns).await, Ok(None));
            let pvs_gone = volumes.list(&ListParams::default()).await.is_ok_and(|l| {
                !l.items.iter().any(|pv| {
                    pv.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|c| c.namespace.as_deref())
                        == Some(self.ns.as_str())
                })
            });
            if ns_gone && pvs_gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.stop_kubelet();
        let _ = Api::<Node>::all(self.client.clone())
            .delete(&self.node, &DeleteParams::default())
            .await;
    }
}

impl Drop for Env {
    /// A test that failed before `finish` still leaves no namespace or node behind:
    /// its pods are removed at once (no kubelet is left to stop them).
    fn drop(&mut self) {
        let Some(mut child) = self.kubelet.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        // A client of its own: the test's client lives on the test's runtime, which
        // is blocked in this drop.
        let (kubeconfig, ns, node) = (self.kubeconfig.clone(), self.ns.clone(), self.node.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(kc) = Kubeconfig::read_from(&kubeconfig) else {
                    return;
                };
                let options = KubeConfigOptions::default();
                let Ok(config) = kube::Config::from_custom_kubeconfig(kc, &options).await else {
                    return;
                };
                let Ok(client) = Client::try_from(config) else {
                    return;
                };
                let now = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                };
                let pods = Api::<Pod>::namespaced(client.clone(), &ns);
                let _ = pods.delete_collection(&now, &ListParams::default()).await;
                let _ = Api::<Namespace>::all(client.clone())
                    .delete(&ns, &DeleteParams::default())
                    .await;
                let _ = Api::<Node>::all(client)
                    .delete(&node, &DeleteParams::default())
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}

pub fn container_status(
    pod: &Pod,
    name: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}
