use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::common::{Env, phase, shared_volume_dir};

#[tokio::test]
async fn configmap_and_secret_volumes_appear_as_files_with_their_modes() {
    let Some(env) = Env::new("files").await else {
        return;
    };
    env.create::<ConfigMap>(
        json!({"metadata": {"name": "cfg"}, "data": {"job.yaml": "name: j\n", "other": "x"}}),
    )
    .await;
    env.create::<Secret>(json!({"metadata": {"name": "tok"}, "stringData": {"token": "s3cret"}}))
        .await;
    let script = "stat -c '%n %a %g' /etc/streamjoin-test/sub/job.yaml /var/run/secrets/streamjoin-test/admin/token; \
                  cat /var/run/secrets/streamjoin-test/admin/token; echo; \
                  ls /etc/streamjoin-test/sub; cat /etc/podinfo/name; echo; \
                  touch /var/lib/streamjoin-test/written && echo data-writable; \
                  touch /etc/streamjoin-test/x 2>/dev/null || echo config-read-only";
    let pod = env.create_pod(json!({
        "metadata": {"name": "files"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
            "containers": [{"name": "c", "image": "test/sh", "args": ["-c", script],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/streamjoin-test", "readOnly": true},
                    {"name": "admin", "mountPath": "/var/run/secrets/streamjoin-test/admin", "readOnly": true},
                    {"name": "data", "mountPath": "/var/lib/streamjoin-test"},
                    {"name": "info", "mountPath": "/etc/podinfo"}
                ]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "cfg", "items": [{"key": "job.yaml", "path": "sub/job.yaml", "mode": 0o440}]}},
                {"name": "admin", "secret": {"secretName": "tok", "defaultMode": 0o440}},
                {"name": "data", "emptyDir": {}},
                {"name": "info", "projected": {"sources": [{"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}
            ]
        }
    })).await;
    env.wait_pod(
        "files",
        "the pod to succeed",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )
    .await;
    let log = env.log_of(&pod, "c", 0);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "/etc/streamjoin-test/sub/job.yaml 440 65532",
            "/var/run/secrets/streamjoin-test/admin/token 440 65532",
            "s3cret",
            "job.yaml",
            "files",
            "data-writable",
            "config-read-only",
        ],
        "{log}"
    );
    for host in [
        "/etc/streamjoin-test",
        "/var/lib/streamjoin-test",
        "/etc/podinfo",
    ] {
        assert!(
            !PathBuf::from(host).exists(),
            "{host} must not appear on the host"
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn a_claim_gets_a_provisioned_volume_that_survives_pod_deletion() {
    let Some(env) = Env::new("claim").await else {
        return;
    };
    env.create::<PersistentVolumeClaim>(json!({
        "metadata": {"name": "data"},
        "spec": {"storageClassName": "local-kubelet", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .await;
    let pod_with = |name: &str, script: &str| {
        json!({
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never",
                "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
                "containers": [{"name": "c", "image": "test/sh", "args": ["-c", script],
                    "volumeMounts": [{"name": "d", "mountPath": "/var/lib/streamjoin-test"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
        })
    };
    env.create_pod(pod_with(
        "writer",
        "echo kept > /var/lib/streamjoin-test/state",
    ))
    .await;
    env.wait_pod(
        "writer",
        "the writer to succeed",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )
    .await;
    env.pods()
        .delete("writer", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone("writer", Duration::from_secs(30)).await;
    let reader = env
        .create_pod(pod_with("reader", "cat /var/lib/streamjoin-test/state"))
        .await;
    env.wait_pod(
        "reader",
        "the reader to succeed",
        Duration::from_secs(60),
        |p| phase(p) == "Succeeded",
    )
    .await;
    assert_eq!(env.log_of(&reader, "c", 0).trim(), "kept");

    let pvc = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), &env.ns)
        .get("data")
        .await
        .expect("pvc");
    assert_eq!(
        pvc.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Bound")
    );
    let pv_name = pvc.spec.and_then(|s| s.volume_name).expect("bound volume");
    let pv = Api::<PersistentVolume>::all(env.client.clone())
        .get(&pv_name)
        .await
        .expect("pv");
    let path = PathBuf::from(pv.spec.and_then(|s| s.host_path).expect("hostPath").path);
    assert_eq!(path, shared_volume_dir().join(&pv_name));
    assert_eq!(
        std::fs::read_to_string(path.join("state"))
            .expect("state file")
            .trim(),
        "kept"
    );

    // Reclaim policy Delete: the claim's deletion removes the volume and its directory.
    env.pods()
        .delete("reader", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone("reader", Duration::from_secs(30)).await;
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), &env.ns)
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete pvc");
    let pvs = Api::<PersistentVolume>::all(env.client.clone());
    env.eventually(
        "the released volume to be deleted",
        Duration::from_secs(60),
        || {
            let (pvs, pv_name, path) = (pvs.clone(), pv_name.clone(), path.clone());
            async move {
                (matches!(pvs.get_opt(&pv_name).await, Ok(None)) && !path.exists()).then_some(())
            }
        },
    )
    .await;
    env.finish().await;
}

/// The ServiceAccount admission plugin adds the `kube-api-access-*` projected volume
/// (a bound token from the TokenRequest API, the cluster CA, the namespace).
#[tokio::test]
async fn the_service_account_volume_has_a_bound_token_the_ca_and_the_namespace() {
    let Some(env) = Env::new("satoken").await else {
        return;
    };
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let script = format!(
        "tr '.' '\\n' < {dir}/token | grep -c .; grep -c 'BEGIN CERTIFICATE' {dir}/ca.crt; cat {dir}/namespace; echo"
    );
    let pod = env
        .create_pod(json!({
            "metadata": {"name": "sa"},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": true,
                "containers": [{"name": "c", "image": "test/sh", "args": ["-c", script]}]}
        }))
        .await;
    let done = env
        .wait_pod("sa", "the pod to succeed", Duration::from_secs(60), |p| {
            phase(p) == "Succeeded"
        })
        .await;
    let has_projected = done
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.projected.is_some()));
    assert!(
        has_projected,
        "the admission plugin added the projected volume"
    );
    let log = env.log_of(&pod, "c", 0);
    let lines: Vec<&str> = log.lines().map(str::trim).collect();
    assert_eq!(lines, ["3", "1", env.ns.as_str()], "{log}");
    env.finish().await;
}
