use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::json;

use crate::common::{Env, condition, container_status};

/// Stands in for streamjoin-runtime: checks what the real one reads and writes, then
/// serves its admin probes.
const FAKE_RUNTIME: &str = r#"#!/bin/sh
set -e
[ "$1" = run ] || { echo "unexpected command: $*"; exit 2; }
job=$3 data=$5 addr=$7 token=$9
cat "$job" > /dev/null
cat "$token" > /dev/null
echo "$(id -u):$(id -g) $(id -G)" > "$data/owner"
mkdir -p /tmp/admin
touch /tmp/admin/healthz /tmp/admin/readyz
echo "serving $addr"
exec /usr/bin/python3 -m http.server --bind "${addr%:*}" --directory /tmp/admin "${addr##*:}"
"#;

/// The pod the operator's StatefulSet makes (operator/src/build/statefulset.rs):
/// hardened security contexts, fsGroup, the config map, the admin token secret
/// (0440), an emptyDir /tmp, the data claim and probes on the named admin port. Only
/// the admin address differs: pods share the host network, so each binds its own
/// pod address.
#[tokio::test]
async fn the_operators_runtime_pod_runs_as_65532_with_its_mounts_and_admin_probes() {
    let bin = tempfile::tempdir().expect("tempdir");
    let fake = bin.path().join("fake-runtime.sh");
    std::fs::write(&fake, FAKE_RUNTIME).expect("fake runtime");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let image = format!(
        "- image: ghcr.io/streamjoin/streamjoin-runtime\n  binary: {}\n  entrypoint: [/usr/local/bin/streamjoin-runtime]\n  user: \"65532:65532\"\n",
        fake.display()
    );
    let Some(env) = Env::with_images("runtime", &image).await else {
        return;
    };
    env.create::<ConfigMap>(
        json!({"metadata": {"name": "j-config"}, "data": {"job.yaml": "name: j\n"}}),
    )
    .await;
    env.create::<Secret>(
        json!({"metadata": {"name": "j-admin-token"}, "stringData": {"token": "t0k"}}),
    )
    .await;
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "admin"}, "periodSeconds": 1, "failureThreshold": 30, "timeoutSeconds": 2});
    let hardened = json!({
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
        "runAsUser": 65532, "runAsGroup": 65532, "privileged": false,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
    });
    let pod = env.create_pod(json!({
        "metadata": {"name": "j-0", "labels": {"streamjoin.dev/job": "j"}},
        "spec": {
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                                "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "runtime", "image": "ghcr.io/streamjoin/streamjoin-runtime:test", "imagePullPolicy": "IfNotPresent",
                "args": ["run", "--job", "/etc/streamjoin/job.yaml", "--data-dir", "/var/lib/streamjoin",
                         "--admin-addr", "$(POD_IP):9249", "--admin-token-file", "/var/run/secrets/streamjoin/admin/token"],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "STREAMJOIN_REPLICAS", "value": "1"}
                ],
                "ports": [{"name": "admin", "containerPort": 9249, "protocol": "TCP"}],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/streamjoin"},
                    {"name": "config", "mountPath": "/etc/streamjoin", "readOnly": true},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "admin-token", "mountPath": "/var/run/secrets/streamjoin/admin", "readOnly": true}
                ],
                "startupProbe": probe("/healthz"), "livenessProbe": probe("/healthz"), "readinessProbe": probe("/readyz"),
                "securityContext": hardened,
                "terminationMessagePolicy": "FallbackToLogsOnError"
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": "j-config"}},
                {"name": "tmp", "emptyDir": {}},
                {"name": "admin-token", "secret": {"secretName": "j-admin-token", "defaultMode": 0o440}},
                {"name": "data", "emptyDir": {}}
            ]
        }
    }))
    .await;
    let ready = env
        .wait_pod(
            "j-0",
            "the runtime pod to be Ready",
            Duration::from_secs(60),
            |p| condition(p, "Ready").as_deref() == Some("True"),
        )
        .await;
    let status = container_status(&ready, "runtime").expect("status");
    assert!(status.started == Some(true) && status.ready);
    assert_eq!(status.image_id, format!("local://{}", fake.display()));
    let owner =
        std::fs::read_to_string(env.pod_dir(&pod).join(".volumes/data/owner")).expect("owner file");
    assert_eq!(
        owner.trim(),
        "65532:65532 65532",
        "uid:gid and groups of the process"
    );
    let log = env.log_of(&pod, "runtime", 0);
    let ip = ready.status.and_then(|s| s.pod_ip).expect("podIP");
    assert!(log.contains(&format!("serving {ip}:9249")), "{log}");
    env.finish().await;
}
