//! What every part of the kubelet shares.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use tokio::sync::watch;

use crate::backoff::BackoffPolicy;
use crate::events::Events;
use crate::images::ImageMap;
use crate::ipam::Ipam;

pub const FIELD_MANAGER: &str = "streamjoin-local-kubelet";
pub const HOST_IP: &str = "127.0.0.1";

pub struct Kubelet {
    pub client: Client,
    pub node: String,
    pub root: PathBuf,
    pub images: ImageMap,
    pub images_file: String,
    pub backoff: BackoffPolicy,
    pub ipam: Mutex<Ipam>,
    /// This binary, re-executed as the container set-up shim.
    pub exe: PathBuf,
    pub pid: i32,
    pub events: Arc<Events>,
    /// Becomes true on SIGTERM: stop every container, leave the pods bound.
    pub shutdown: watch::Receiver<bool>,
    pub max_pods: u32,
}

impl Kubelet {
    /// `<root>/pods/<namespace>_<pod>_<uid>`: logs, and the pod's own volumes under
    /// `.volumes/`.
    pub fn pod_dir(&self, pod: &Pod) -> PathBuf {
        let m = &pod.metadata;
        self.root.join("pods").join(format!(
            "{}_{}_{}",
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or_default(),
            m.uid.as_deref().unwrap_or_default()
        ))
    }

    pub fn with_ipam<T>(&self, f: impl FnOnce(&mut Ipam) -> T) -> T {
        let mut guard = match self.ipam.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}
