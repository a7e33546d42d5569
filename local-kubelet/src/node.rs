//! The Node: registration (or take-over), status heartbeats and the node Lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::kubelet::{FIELD_MANAGER, HOST_IP};
use crate::retry::Episode;

pub const KUBELET_VERSION: &str = "v1.37.2-streamjoin-local";

#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
}

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(4 * 1024 * 1024)
}

fn labels(spec: &NodeSpec) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), spec.name.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            std::env::consts::ARCH.replace("x86_64", "amd64"),
        ),
        ("streamjoin.dev/local-kubelet".to_owned(), "true".to_owned()),
    ]);
    l.extend(spec.labels.clone());
    l
}

/// The status the kubelet posts: capacity, Ready, addresses, node info.
pub fn status(spec: &NodeSpec, now: Timestamp) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let resources = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": spec.max_pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now.to_string(), "lastTransitionTime": now.to_string()})
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": HOST_IP},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "streamjoin local kubelet",
            "containerRuntimeVersion": "local://processes",
            "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH.replace("x86_64", "amd64"),
        },
    })
}

/// Creates the Node or takes over an existing one; returns its UID.
pub async fn register(client: &Client, spec: &NodeSpec) -> anyhow::Result<String> {
    let api = Api::<Node>::all(client.clone());
    let name = &spec.name;
    let node = match api
        .get_opt(name)
        .await
        .with_context(|| format!("reading node {name}"))?
    {
        Some(n) => {
            tracing::info!(node = %name, "taking over the existing node");
            let patch =
                json!({"metadata": {"labels": labels(spec)}, "spec": {"unschedulable": null}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("updating node {name}"))?;
            n
        }
        None => {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels(spec)),
                    ..ObjectMeta::default()
                },
                ..Node::default()
            };
            tracing::info!(node = %name, "registering the node");
            api.create(&PostParams::default(), &node)
                .await
                .with_context(|| format!("creating node {name}"))?
        }
    };
    post_status(client, spec).await?;
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Taints that the node lifecycle controller owns: the TaintNodesByCondition
/// admission plugin puts `not-ready` on every new Node and only that controller takes
/// it off. The local control plane runs no such controller, so the kubelet, which
/// knows it is ready, takes them off itself.
const CONDITION_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

async fn post_status(client: &Client, spec: &NodeSpec) -> anyhow::Result<()> {
    let api = Api::<Node>::all(client.clone());
    let patch = json!({"status": status(spec, Timestamp::now())});
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let node = api
        .patch_status(&spec.name, &pp, &Patch::Merge(&patch))
        .await
        .with_context(|| format!("posting the status of node {}", spec.name))?;
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    if taints
        .iter()
        .any(|t| CONDITION_TAINTS.contains(&t.key.as_str()))
    {
        let kept: Vec<_> = taints
            .into_iter()
            .filter(|t| !CONDITION_TAINTS.contains(&t.key.as_str()))
            .collect();
        let patch = json!({"spec": {"taints": kept}});
        api.patch(&spec.name, &pp, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("removing the not-ready taint of node {}", spec.name))?;
    }
    Ok(())
}

async fn renew_lease(client: &Client, spec: &NodeSpec, node_uid: &str) -> anyhow::Result<()> {
    let api = Api::<Lease>::namespaced(client.clone(), "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: spec.name.clone(),
                uid: node_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(spec.name.clone()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    api.patch(
        &spec.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&lease),
    )
    .await
    .with_context(|| format!("renewing lease kube-node-lease/{}", spec.name))?;
    Ok(())
}

/// Keeps the node fresh until the kubelet stops.
pub async fn heartbeat(client: Client, spec: Arc<NodeSpec>, node_uid: String, every: Duration) {
    let mut status_ep = Episode::default();
    let mut lease_ep = Episode::default();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match post_status(&client, &spec).await {
            Ok(()) => status_ep.succeeded("node status"),
            Err(e) => status_ep.failed("node status", &format!("{e:#}")),
        }
        match renew_lease(&client, &spec, &node_uid).await {
            Ok(()) => lease_ep.succeeded("node lease"),
            Err(e) => lease_ep.failed("node lease", &format!("{e:#}")),
        }
    }
}
