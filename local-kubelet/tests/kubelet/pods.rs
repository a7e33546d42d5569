use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use crate::common::{Env, container_status, phase};

#[tokio::test]
async fn a_pod_runs_its_command_with_env_from_a_secret_and_the_downward_api() {
    let Some(env) = Env::new("env").await else {
        return;
    };
    env.create::<Secret>(json!({"metadata": {"name": "creds"}, "stringData": {"password": "hunter2", "user": "joe"}})).await;
    let pod = env.create_pod(json!({
        "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": true},
            "initContainers": [{
                "name": "prepare", "image": "test/sh",
                "args": ["-c", "echo prepared-by-init > /work/init.txt"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]
            }],
            "containers": [{
                "name": "main", "image": "test/sh",
                // No command: the image's entrypoint (the mapped binary) runs the args.
                "args": ["-c", "echo \"user=$USER pw=$PASSWORD app=$APP ns=$NS ip=$POD_IP listen=$(POD_IP):9249 id=$(id -u):$(id -g) self=$0 init=$(cat /work/init.txt) s_user=$S_user\"; echo 'escaped=$$(POD_IP)'"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                    {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                    {"name": "USER", "value": "u-$(APP)"}
                ],
                "envFrom": [{"prefix": "S_", "secretRef": {"name": "creds"}}],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]
            }],
            "volumes": [{"name": "work", "emptyDir": {}}]
        }
    })).await;
    let done = env
        .wait_pod("echo", "the pod to succeed", Duration::from_secs(60), |p| {
            phase(p) == "Succeeded"
        })
        .await;
    let ip = done
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("podIP");
    assert!(ip.starts_with("127."), "loopback pod address, got {ip}");
    let main = container_status(&done, "main").expect("status");
    let term = main.state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(
        main.container_id
            .is_some_and(|id| id.starts_with("local://"))
    );
    let log = env.log_of(&pod, "main", 0);
    assert_eq!(
        log.trim(),
        format!(
            "user=u-echo pw=hunter2 app=echo ns={} ip={ip} listen={ip}:9249 id=65532:65532 \
             self=/opt/streamjoin-test/bin/sh init=prepared-by-init s_user=joe\nescaped=$(POD_IP)",
            env.ns
        )
    );
    assert!(
        !std::path::Path::new("/opt/streamjoin-test").exists(),
        "the entrypoint mount stayed inside the container"
    );
    env.finish().await;
}

#[tokio::test]
async fn an_unknown_image_reports_err_image_pull_then_image_pull_back_off() {
    let Some(env) = Env::new("image").await else {
        return;
    };
    env.create_pod(json!({
        "metadata": {"name": "ghost"},
        "spec": {"containers": [{"name": "c", "image": "example.com/not/mapped:1.0"}]}
    }))
    .await;
    let waiting = |reason: &'static str| {
        move |p: &k8s_openapi::api::core::v1::Pod| {
            container_status(p, "c")
                .and_then(|c| c.state?.waiting?.reason)
                .is_some_and(|r| r == reason)
        }
    };
    let pulled = env
        .wait_pod(
            "ghost",
            "ErrImagePull",
            Duration::from_secs(30),
            waiting("ErrImagePull"),
        )
        .await;
    let msg = container_status(&pulled, "c")
        .and_then(|c| c.state?.waiting?.message)
        .unwrap_or_default();
    assert!(
        msg.contains("not in the local kubelet's image map"),
        "{msg}"
    );
    env.wait_pod(
        "ghost",
        "ImagePullBackOff",
        Duration::from_secs(30),
        waiting("ImagePullBackOff"),
    )
    .await;
    assert_eq!(phase(&pulled), "Pending");
    env.finish().await;
}

#[tokio::test]
async fn a_missing_secret_key_is_a_create_container_config_error() {
    let Some(env) = Env::new("cfgerr").await else {
        return;
    };
    env.create_pod(json!({
        "metadata": {"name": "needs-secret"},
        "spec": {"containers": [{"name": "c", "image": "test/sh", "args": ["-c", "sleep 100"],
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}]}
    }))
    .await;
    let p = env
        .wait_pod(
            "needs-secret",
            "CreateContainerConfigError",
            Duration::from_secs(30),
            |p| {
                container_status(p, "c")
                    .and_then(|c| c.state?.waiting?.reason)
                    .as_deref()
                    == Some("CreateContainerConfigError")
            },
        )
        .await;
    let msg = container_status(&p, "c")
        .and_then(|c| c.state?.waiting?.message)
        .unwrap_or_default();
    assert!(msg.contains("\"absent\" not found"), "{msg}");
    env.finish().await;
}

#[tokio::test]
async fn a_pod_beyond_max_pods_fails_with_out_of_pods() {
    let Some(env) = Env::with_args("maxpods", &["--max-pods", "1"]).await else {
        return;
    };
    let sleeper = |name: &str| {
        json!({"metadata": {"name": name},
               "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "test/sh", "args": ["-c", "exec sleep 1000"]}]}})
    };
    env.create_pod(sleeper("first")).await;
    env.wait_pod(
        "first",
        "the first pod to run",
        Duration::from_secs(30),
        |p| phase(p) == "Running",
    )
    .await;
    env.create_pod(sleeper("second")).await;
    let p = env
        .wait_pod(
            "second",
            "the second pod to fail",
            Duration::from_secs(30),
            |p| phase(p) == "Failed",
        )
        .await;
    assert_eq!(
        p.status.and_then(|s| s.reason).as_deref(),
        Some("OutOfpods")
    );
    env.finish().await;
}
