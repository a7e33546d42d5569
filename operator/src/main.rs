//! `streamjoin-operator`: `crd` prints the CustomResourceDefinition, `run` runs
//! the operator (leader election, controllers, HTTP endpoints, graceful shutdown).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::Client;
use streamjoin_operator::admin::PodAddressing;
use streamjoin_operator::build::networkpolicy::{
    AdminPeers, ExtraPeers, PodLabels, parse_extra_peers, parse_pod_labels,
};
use streamjoin_operator::controller::{self, Settings};
use streamjoin_operator::crd;
use streamjoin_operator::leader::{Elector, LeaseConfig};
use streamjoin_operator::metrics::Metrics;
use streamjoin_operator::server::{self, AppState};
use streamjoin_operator::telemetry::{self, LogFormat};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "streamjoin-operator",
    version,
    about = "Kubernetes operator for StreamJoinJob"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the StreamJoinJob CustomResourceDefinition (YAML).
    Crd,
    /// Run the operator.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, value_delimiter = ',', env = "STREAMJOIN_NAMESPACES")]
    namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "STREAMJOIN_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "streamjoin-operator")]
    lease_name: String,
    /// Namespace of the leader-election Lease and of the admin-token key Secret
    /// (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Secret in the operator's namespace holding the key each job's admin token
    /// is derived from; created with a random key when missing.
    #[arg(long, default_value = streamjoin_operator::admin_key::DEFAULT_KEY_SECRET)]
    admin_key_secret: String,
    /// Identity in the Lease; the pod name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds; a standby takes over this long after the leader stops renewing.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Run without leader election (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// How to reach the runtime pods' admin API: `dns` (the headless Service's
    /// per-pod names; the operator runs in the cluster) or `ip` (each pod's
    /// `status.podIP`; no cluster DNS needed).
    #[arg(
        long,
        value_enum,
        default_value = "dns",
        env = "STREAMJOIN_POD_ADDRESS"
    )]
    pod_address: PodAddressing,
    /// Give each job a NetworkPolicy that lets only the operator's pods (and
    /// `--network-policy-extra-peers`) reach its pods' admin port. `false` for
    /// clusters that manage NetworkPolicies themselves: the operator then
    /// creates, watches and deletes none (remove earlier ones by hand).
    #[arg(
        long,
        env = "STREAMJOIN_NETWORK_POLICY_GENERATION",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    network_policy_generation: bool,
    /// Labels of the operator's own pods (`key=value,...`), admitted to the
    /// admin port from the operator's namespace (`--lease-namespace`).
    #[arg(
        long,
        env = "STREAMJOIN_OPERATOR_POD_SELECTOR",
        default_value = "app.kubernetes.io/instance=streamjoin-operator,app.kubernetes.io/name=streamjoin-operator",
        value_parser = parse_pod_labels
    )]
    operator_pod_selector: PodLabels,
    /// More peers admitted to the admin port: a JSON list of NetworkPolicyPeer
    /// objects (e.g. Prometheus's namespace and pods).
    #[arg(
        long,
        env = "STREAMJOIN_NETWORK_POLICY_EXTRA_PEERS",
        default_value = "[]",
        value_parser = parse_extra_peers
    )]
    network_policy_extra_peers: ExtraPeers,
}

impl RunArgs {
    fn admin_peers(&self) -> Option<AdminPeers> {
        self.network_policy_generation.then(|| AdminPeers {
            operator_namespace: self.lease_namespace.clone(),
            operator_labels: self.operator_pod_selector.clone(),
            extra: self.network_policy_extra_peers.clone(),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", crd::crd_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let signal_tx = shutdown_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = signal_tx.send(true);
    });

    let state = AppState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let mut server_stop = shutdown_rx.clone();
    let server = tokio::spawn(server::serve(args.http_addr, state, async move {
        let _ = server_stop.wait_for(|s| *s).await;
    }));

    let client = Client::try_default()
        .await
        .context("loading the Kubernetes client configuration")?;
    let version = client
        .apiserver_version()
        .await
        .context("reaching the Kubernetes API server")?;
    tracing::info!(server = %version.git_version, "connected to the API server");
    ready.store(true, Ordering::Relaxed);

    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("streamjoin-operator-{}", std::process::id()));
    let settings = Settings {
        namespaces: args.namespaces.clone(),
        instance: Some(identity.clone()),
        pod_addressing: args.pod_address,
        admin_key_secret: Some((args.lease_namespace.clone(), args.admin_key_secret.clone())),
        network_policy: args.admin_peers(),
        ..Settings::default()
    };

    let mut lost_leadership = false;
    if args.no_leader_election {
        metrics.leader.set(1);
        controller::run(client, settings, metrics.clone(), shutdown_rx.clone()).await;
    } else {
        let lease = LeaseConfig::with_lease_duration(
            args.lease_namespace.clone(),
            args.lease_name.clone(),
            identity,
            Duration::from_secs(args.lease_duration_secs),
        );
        let (leader_tx, mut leader_rx) = watch::channel(false);
        let elector =
            tokio::spawn(Elector::new(client.clone(), lease).run(leader_tx, shutdown_rx.clone()));
        let mut wait_shutdown = shutdown_rx.clone();
        tracing::info!("waiting for leadership");
        let became_leader = tokio::select! {
            r = leader_rx.wait_for(|l| *l) => r.is_ok(),
            _ = wait_shutdown.wait_for(|s| *s) => false,
        };
        if became_leader {
            metrics.leader.set(1);
            tracing::info!("leading: starting controllers");
            let (stop_tx, stop_rx) = watch::channel(false);
            let mut s = shutdown_rx.clone();
            let mut l = leader_rx.clone();
            let watchdog = tokio::spawn(async move {
                let lost = tokio::select! {
                    _ = s.wait_for(|s| *s) => false,
                    r = l.wait_for(|l| !*l) => r.is_ok(),
                };
                let _ = stop_tx.send(true);
                lost
            });
            controller::run(client, settings, metrics.clone(), stop_rx).await;
            lost_leadership = watchdog.await.unwrap_or(false);
            metrics.leader.set(0);
        }
        let _ = shutdown_tx.send(true);
        if let Err(e) = elector.await {
            tracing::warn!(error = %e, "elector task failed");
        }
    }
    let _ = shutdown_tx.send(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server failed"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
    }
    if lost_leadership {
        anyhow::bail!(
            "lost the leader lease; exiting so that this replica restarts as a candidate"
        );
    }
    tracing::info!("stopped");
    Ok(())
}
