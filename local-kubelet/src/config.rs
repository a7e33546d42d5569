//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "streamjoin-local-kubelet",
    about = "Runs the pods bound to a node as local processes (tests only)"
)]
pub struct Args {
    /// Kubeconfig of the cluster (admin credentials).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the Node to register (taken over when it exists).
    #[arg(long, default_value = "local")]
    pub node_name: String,
    /// Pod directories (logs, emptyDir, configMap/secret files) and provisioned
    /// volumes live here. Default: ~/.cache/streamjoin/kubelet.
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// YAML image map (image → host binary, entrypoint, cmd).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// First restart back-off of a crashing container (doubles per exit).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub backoff_base: Duration,
    /// Longest restart back-off.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    pub backoff_cap: Duration,
    /// Loopback addresses for pods: `A-B` or a CIDR inside 127.0.0.0/8.
    #[arg(long, default_value = "127.0.0.2-127.0.0.254")]
    pub pod_ip_range: String,
    /// Pods the node accepts.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Node status and Lease renewal period.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,
    /// Also act as the dynamic provisioner of the `local-kubelet` StorageClass.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub provisioner: bool,
    /// Where provisioned volumes are made. Default: `<root-dir>/volumes`. Kubelets
    /// that share a cluster should share it: any of them may provision a claim.
    #[arg(long)]
    pub volume_dir: Option<PathBuf>,
    /// Extra Node labels, `key=value`.
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
}

impl Args {
    pub fn volumes(&self) -> PathBuf {
        self.volume_dir
            .clone()
            .unwrap_or_else(|| self.root().join("volumes"))
    }

    pub fn root(&self) -> PathBuf {
        self.root_dir.clone().unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cache/streamjoin/kubelet")
        })
    }
}
