//! Access to the local control plane that `scripts/cluster.sh up` starts, for the
//! tests that need a real API server (and its controllers).
//!
//! A test file declares `mod cluster;` and starts with
//!
//! ```ignore
//! let Some(client) = cluster::client("my_test_name").await else { return };
//! ```
//!
//! `STREAMJOIN_KUBECONFIG` names the cluster's kubeconfig (`scripts/cluster.sh env`
//! prints it). When it is unset, the test panics under `CI=true` (a missing cluster
//! must fail CI) and otherwise prints SKIPPED and gets `None`.
#![allow(dead_code)]

// Helpers of the operator's cluster tests (cluster_crd.rs, cluster_job.rs, local_demo.rs).
pub mod example;
pub mod kubectl;
pub mod kubelet;
pub mod namespace;
pub mod operator;
pub mod testbed;
pub mod wait;

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The kubeconfig named by `STREAMJOIN_KUBECONFIG`, if set and not empty.
pub fn kubeconfig_path() -> Option<PathBuf> {
    std::env::var_os("STREAMJOIN_KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The kubeconfig to use, or `None` (after saying SKIPPED) outside CI when no
/// cluster is configured. Panics under `CI=true` when none is.
pub fn require_kubeconfig(test: &str) -> Option<PathBuf> {
    if let Some(path) = kubeconfig_path() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: STREAMJOIN_KUBECONFIG is not set under CI=true: start the local cluster with \
             scripts/cluster.sh up and export what scripts/cluster.sh env prints"
        );
    }
    eprintln!("SKIPPED {test}: no local cluster (run scripts/cluster.sh up)");
    None
}

/// A client of the local cluster (see the module comment for when it is `None`).
/// Panics when the kubeconfig is set but unusable: that is a broken setup, not a skip.
pub async fn client(test: &str) -> Option<Client> {
    let path = require_kubeconfig(test)?;
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("{test}: reading the kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{test}: loading the kubeconfig {}: {e}", path.display()));
    let client = Client::try_from(config)
        .unwrap_or_else(|e| panic!("{test}: a client for {}: {e}", path.display()));
    Some(client)
}
