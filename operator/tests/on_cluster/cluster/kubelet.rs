//! A node for the runtime pods: the one named by `STREAMJOIN_KUBELET_NODE` (a local
//! kubelet the test script started), else a `streamjoin-local-kubelet` of the
//! test's own (own node name, root directory and /24 of loopback addresses),
//! stopped and its Node deleted when dropped. Tests pin their pods to the node
//! (`kubernetes.io/hostname`), so a kubelet of another test never runs them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;

use super::kubectl::Kubectl;
use super::wait::poll;

/// A runtime image whose container exits with status 1 as soon as it starts
/// (`/bin/false`), on the node a test starts: its pods crash-loop.
pub const CRASHING_IMAGE: &str = "ghcr.io/streamjoin/streamjoin-runtime:crash-loop";

pub struct NodeForTest {
    pub name: String,
    child: Option<Child>,
    kubectl: Kubectl,
    dir: Option<tempfile::TempDir>,
}

/// The release binaries beside this test binary (`target/release/deps/..`).
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("the test binary's path: {e}"));
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{} has no target directory", exe.display()))
}

fn shared_volume_dir() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/streamjoin/kubelet-test-volumes")
}

impl NodeForTest {
    pub async fn get(client: &Client, kubectl: &Kubectl, test: &str) -> NodeForTest {
        let mut node = match std::env::var("STREAMJOIN_KUBELET_NODE") {
            Ok(name) if !name.is_empty() => NodeForTest {
                name,
                child: None,
                kubectl: kubectl.clone(),
                dir: None,
            },
            _ => Self::start(kubectl, test),
        };
        let nodes: Api<Node> = Api::all(client.clone());
        let name = node.name.clone();
        poll(
            &format!("node {name} Ready"),
            Duration::from_secs(60),
            || {
                let nodes = nodes.clone();
                let name = name.clone();
                async move {
                    let n = nodes.get_opt(&name).await.map_err(|e| e.to_string())?;
                    let ready = n
                        .and_then(|n| n.status?.conditions)
                        .into_iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    ready.then_some(()).ok_or_else(|| "not Ready".to_owned())
                }
            },
        )
        .await;
        node.kubectl = kubectl.clone();
        node
    }

    fn start(kubectl: &Kubectl, test: &str) -> NodeForTest {
        let suffix = rand::random::<u32>() % 250 + 1;
        let name = format!("{}-{suffix}", &test.replace('_', "-")[..test.len().min(40)]);
        let dir = tempfile::Builder::new()
            .prefix("kubelet-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("kubelet dir: {e}"));
        let log = std::fs::File::create(dir.path().join("kubelet.log"))
            .unwrap_or_else(|e| panic!("kubelet log: {e}"));
        let release = release_dir();
        // The image map with this build's runtime binary, by absolute path, and
        // a tag of it that exits at once (CRASHING_IMAGE).
        let images = dir.path().join("images.yaml");
        let runtime = release.join("streamjoin-runtime");
        std::fs::write(
            &images,
            format!(
                "images:\n  - image: ghcr.io/streamjoin/streamjoin-runtime\n    binary: {}\n    entrypoint: [/usr/local/bin/streamjoin-runtime]\n  - image: {CRASHING_IMAGE}\n    binary: /bin/false\n    entrypoint: [/usr/local/bin/streamjoin-runtime]\n",
                runtime.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", images.display()));
        let range = format!("127.{}.{suffix}.0/24", 210 + std::process::id() % 40);
        let child = Command::new(release.join("streamjoin-local-kubelet"))
            .arg("--kubeconfig")
            .arg(&kubectl.kubeconfig)
            .args(["--node-name", &name, "--pod-ip-range", &range])
            .arg("--root-dir")
            .arg(dir.path())
            .arg("--volume-dir")
            .arg(shared_volume_dir())
            .arg("--images")
            .arg(&images)
            .args([
                "--backoff-base",
                "1s",
                "--backoff-cap",
                "10s",
                "--heartbeat",
                "5s",
            ])
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .unwrap_or_else(|e| panic!("log handle: {e}")),
            )
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e}",
                    release.join("streamjoin-local-kubelet").display()
                )
            });
        NodeForTest {
            name,
            child: Some(child),
            kubectl: kubectl.clone(),
            dir: Some(dir),
        }
    }

    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("kubelet.log")).ok())
            .unwrap_or_default()
    }

    /// A file of a kubelet-made volume (configMap, secret, …) of the pod with
    /// `uid`, as its containers see it; `None` without a kubelet of the test's own.
    pub fn pod_volume_file(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        volume: &str,
        file: &str,
    ) -> Option<String> {
        let dir = self.dir.as_ref()?.path().join("pods");
        let path = dir
            .join(format!("{namespace}_{pod}_{uid}"))
            .join(".volumes")
            .join(volume)
            .join(file);
        std::fs::read_to_string(path).ok()
    }

    /// The log files of one pod's runtime container (the kubelet keeps them).
    pub fn pod_logs(&self, namespace: &str, pod: &str) -> String {
        let Some(dir) = &self.dir else {
            return String::new();
        };
        let prefix = format!("{namespace}_{pod}_");
        let mut out = String::new();
        for entry in std::fs::read_dir(dir.path().join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            for f in std::fs::read_dir(entry.path().join("runtime"))
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push_str(&std::fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for NodeForTest {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = self.kubectl.try_run(
            &[
                "delete",
                "node",
                &self.name,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kubelet directory kept: {}", dir.keep().display());
        }
    }
}
