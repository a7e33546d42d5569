use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use streamjoin_local_kubelet::backoff::BackoffPolicy;
use streamjoin_local_kubelet::config::Args;
use streamjoin_local_kubelet::container::namespace::{CONTAINER_MODE, EXEC_MODE, shim_main};
use streamjoin_local_kubelet::events::Events;
use streamjoin_local_kubelet::images::ImageMap;
use streamjoin_local_kubelet::ipam::{Ipam, parse_range};
use streamjoin_local_kubelet::kubelet::Kubelet;
use streamjoin_local_kubelet::node::{self, NodeSpec};
use streamjoin_local_kubelet::{pods, provisioner, retry};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    // The container set-up shim runs before any thread exists.
    let argv: Vec<String> = std::env::args().collect();
    if let [_, mode, spec] = argv.as_slice()
        && (mode == CONTAINER_MODE || mode == EXEC_MODE)
    {
        shim_main(mode, spec);
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

async fn client(path: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)
                .with_context(|| format!("reading kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", p.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig")?,
    };
    Client::try_from(config).context("building the API client")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let root = args.root();
    std::fs::create_dir_all(root.join("pods"))
        .with_context(|| format!("creating {}", root.display()))?;
    let images = match &args.images {
        Some(p) => ImageMap::load(p)?,
        None => ImageMap::default(),
    };
    let (first, last) = parse_range(&args.pod_ip_range)?;
    let client = client(args.kubeconfig.as_ref()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let spec = Arc::new(NodeSpec {
        name: args.node_name.clone(),
        max_pods: args.max_pods,
        labels: args
            .node_labels
            .iter()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    });
    let node_uid = retry::forever("registering the node", || node::register(&client, &spec)).await;
    if args.provisioner {
        retry::forever("creating the storage class", || {
            provisioner::ensure_class(&client)
        })
        .await;
        tokio::spawn(provisioner::run(client.clone(), Arc::new(args.volumes())));
    }
    tokio::spawn(node::heartbeat(
        client.clone(),
        spec.clone(),
        node_uid,
        args.heartbeat,
    ));
    let kubelet = Arc::new(Kubelet {
        client: client.clone(),
        node: args.node_name.clone(),
        root: root.clone(),
        images,
        images_file: args
            .images
            .as_ref()
            .map_or_else(|| "none".into(), |p| p.display().to_string()),
        backoff: BackoffPolicy {
            base: args.backoff_base,
            cap: args.backoff_cap,
            reset_after: std::time::Duration::from_secs(600),
        },
        ipam: Mutex::new(Ipam::new(first, last)),
        // Still this binary when cargo replaces the file while the kubelet runs.
        exe: PathBuf::from("/proc/self/exe"),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
        events: Arc::new(Events::new(client.clone(), &args.node_name)),
        shutdown: stop_rx,
        max_pods: args.max_pods,
    });
    tracing::info!(node = %args.node_name, root = %root.display(), "local kubelet running");
    let pods = tokio::spawn(pods::watch::run(kubelet));
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping every container");
    let _ = stop_tx.send(true);
    if let Err(e) = pods.await {
        tracing::warn!("pod workers ended abnormally: {e}");
    }
    tracing::info!("local kubelet stopped");
    Ok(())
}
