//! Watches the pods bound to the node and gives each its worker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::worker;
use crate::kubelet::{FIELD_MANAGER, Kubelet};
use crate::retry::Episode;

struct Slot {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs until the kubelet stops, then waits for every worker to stop its pod.
pub async fn run(k: Arc<Kubelet>) {
    let api = Api::<Pod>::all(k.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", k.node));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut shutdown = k.shutdown.clone();
    let mut ep = Episode::default();
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => {
                    ep.succeeded("pod watch");
                    if let Some(uid) = p.metadata.uid.clone() {
                        listed.insert(uid);
                    }
                    upsert(&k, &mut slots, &finished, p).await;
                }
                Some(Ok(watcher::Event::Delete(p))) => {
                    if let Some(slot) = p.metadata.uid.as_ref().and_then(|u| slots.get(u)) {
                        let _ = slot.tx.send(None);
                    }
                }
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitDone)) => {
                    for (uid, slot) in &slots {
                        if !listed.contains(uid) {
                            let _ = slot.tx.send(None);
                        }
                    }
                }
                Some(Err(e)) => ep.failed("pod watch", &e),
                None => break,
            },
            _ = shutdown.changed() => break,
        }
        slots.retain(|uid, slot| {
            let done = slot.task.is_finished();
            if done {
                finished.insert(uid.clone());
            }
            !done
        });
    }
    for (_, slot) in slots {
        let _ = slot.task.await;
    }
}

async fn upsert(
    k: &Arc<Kubelet>,
    slots: &mut HashMap<String, Slot>,
    finished: &HashSet<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(slot) = slots.get(&uid) {
        let _ = slot.tx.send(Some(pod));
        return;
    }
    if finished.contains(&uid) {
        return;
    }
    let active = slots.len();
    if active >= usize::try_from(k.max_pods).unwrap_or(usize::MAX) && !worker::terminal(&pod) {
        reject(k, &pod).await;
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let task = tokio::spawn(worker::run(k.clone(), rx));
    slots.insert(uid, Slot { tx, task });
}

/// The node is full: the pod fails with `OutOfpods`, as with the kubelet.
async fn reject(k: &Kubelet, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": {
        "phase": "Failed", "reason": "OutOfpods",
        "message": format!("Node didn't have enough resource: pods, capacity: {}", k.max_pods)}});
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    if let Err(e) = Api::<Pod>::namespaced(k.client.clone(), &ns)
        .patch_status(&name, &pp, &Patch::Merge(&patch))
        .await
    {
        tracing::warn!("rejecting pod {ns}/{name}: {e}");
    }
}
