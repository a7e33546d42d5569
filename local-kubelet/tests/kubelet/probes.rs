use std::time::Duration;

use serde_json::json;

use crate::common::{Env, condition, container_status};

#[tokio::test]
async fn readiness_follows_the_http_probe() {
    let Some(env) = Env::new("ready").await else {
        return;
    };
    let pod = env.create_pod(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "test/sh",
            "command": ["/usr/bin/python3", "-m", "http.server", "--bind", "$(POD_IP)", "--directory", "/srv", "8080"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1},
            "volumeMounts": [{"name": "srv", "mountPath": "/srv"}]}],
            "volumes": [{"name": "srv", "emptyDir": {}}]}
    }))
    .await;
    let ready = |want: &'static str| {
        move |p: &k8s_openapi::api::core::v1::Pod| condition(p, "Ready").as_deref() == Some(want)
    };
    let p = env
        .wait_pod(
            "web",
            "the container to run",
            Duration::from_secs(30),
            |p| {
                container_status(p, "c")
                    .is_some_and(|c| c.state.is_some_and(|s| s.running.is_some()))
            },
        )
        .await;
    assert_eq!(
        condition(&p, "Ready").as_deref(),
        Some("False"),
        "no /ready file yet"
    );
    let file = env.pod_dir(&pod).join(".volumes/srv/ready");
    std::fs::write(&file, "ok").expect("ready file");
    let p = env
        .wait_pod("web", "Ready=True", Duration::from_secs(30), ready("True"))
        .await;
    assert!(container_status(&p, "c").is_some_and(|c| c.ready));
    std::fs::remove_file(&file).expect("remove ready file");
    env.wait_pod(
        "web",
        "Ready=False",
        Duration::from_secs(30),
        ready("False"),
    )
    .await;
    env.finish().await;
}

#[tokio::test]
async fn a_liveness_failure_restarts_the_container() {
    let Some(env) = Env::new("live").await else {
        return;
    };
    // /var/lib/streamjoin-test-probe exists only inside the container: the exec probe runs in its namespace.
    let script = "touch /var/lib/streamjoin-test-probe/alive; sleep 2; rm /var/lib/streamjoin-test-probe/alive; exec sleep 1000";
    env.create_pod(json!({
        "metadata": {"name": "flaky"},
        "spec": {"terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": "test/sh", "args": ["-c", script],
            "livenessProbe": {"exec": {"command": ["test", "-f", "/var/lib/streamjoin-test-probe/alive"]}, "periodSeconds": 1, "failureThreshold": 2},
            "volumeMounts": [{"name": "p", "mountPath": "/var/lib/streamjoin-test-probe"}]}],
            "volumes": [{"name": "p", "emptyDir": {}}]}
    }))
    .await;
    let p = env
        .wait_pod(
            "flaky",
            "a restart after liveness failures",
            Duration::from_secs(60),
            |p| container_status(p, "c").is_some_and(|c| c.restart_count >= 1),
        )
        .await;
    let last = container_status(&p, "c")
        .and_then(|c| c.last_state?.terminated)
        .expect("last state");
    assert_eq!(last.exit_code, 143, "ended by SIGTERM: {last:?}");
    env.finish().await;
}
