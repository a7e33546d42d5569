use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use crate::common::Env;

/// The real scheduler, StatefulSet controller and volume binder with this kubelet.
#[tokio::test]
async fn a_statefulset_gets_running_pods_and_bound_claims() {
    let Some(env) = Env::new("sts").await else {
        return;
    };
    env.create::<StatefulSet>(json!({
        "metadata": {"name": "join"},
        "spec": {
            "replicas": 2, "serviceName": "join", "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "join"}},
            "template": {
                "metadata": {"labels": {"app": "join"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": env.node},
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "runAsNonRoot": true},
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "test/sh",
                        "args": ["-c", "echo $(POD_NAME) > /var/lib/streamjoin-test/owner; exec sleep 1000"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "readinessProbe": {"exec": {"command": ["test", "-f", "/var/lib/streamjoin-test/owner"]}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/streamjoin-test"}]}]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "storageClassName": "local-kubelet", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .await;
    let sets = Api::<StatefulSet>::namespaced(env.client.clone(), &env.ns);
    env.eventually("2 ready replicas", Duration::from_secs(120), || {
        let sets = sets.clone();
        async move {
            let s = sets.get("join").await.ok()?;
            (s.status?.ready_replicas == Some(2)).then_some(())
        }
    })
    .await;
    let claims = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .expect("claims");
    let mut bound: Vec<String> = claims
        .items
        .iter()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    bound.sort();
    assert_eq!(bound, ["data-join-0", "data-join-1"]);
    let pods = env.pods().list(&ListParams::default()).await.expect("pods");
    assert!(
        pods.items.iter().all(
            |p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(env.node.as_str())
        )
    );
    env.finish().await;
}
