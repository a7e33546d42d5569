use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;

use crate::common::{Env, container_status, phase};

#[tokio::test]
async fn a_failing_container_enters_crash_loop_back_off_with_its_exit_code() {
    let Some(env) = Env::new("crash").await else {
        return;
    };
    let pod = env.create_pod(json!({
        "metadata": {"name": "crasher"},
        "spec": {"containers": [{"name": "c", "image": "test/sh", "args": ["-c", "echo attempt; exit 3"]}]}
    }))
    .await;
    let p = env
        .wait_pod(
            "crasher",
            "CrashLoopBackOff after a restart",
            Duration::from_secs(60),
            |p| {
                container_status(p, "c").is_some_and(|c| {
                    c.restart_count >= 1
                        && c.state
                            .and_then(|s| s.waiting)
                            .and_then(|w| w.reason)
                            .as_deref()
                            == Some("CrashLoopBackOff")
                })
            },
        )
        .await;
    let c = container_status(&p, "c").expect("status");
    let last = c.last_state.and_then(|s| s.terminated).expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    assert_eq!(phase(&p), "Running", "a crash-looping pod stays Running");
    let msg = c
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.message)
        .unwrap_or_default();
    assert!(msg.starts_with("back-off "), "{msg}");
    // Every run has its own log file, named by restart count.
    assert_eq!(env.log_of(&pod, "c", 0).trim(), "attempt");
    assert_eq!(env.log_of(&pod, "c", 1).trim(), "attempt");
    // The restarts go on with a growing back-off.
    env.wait_pod("crasher", "a third run", Duration::from_secs(60), |p| {
        container_status(p, "c").is_some_and(|c| c.restart_count >= 3)
    })
    .await;
    let events = Api::<Event>::namespaced(env.client.clone(), &env.ns);
    let reasons = env
        .eventually(
            "BackOff, Created and Started events",
            Duration::from_secs(30),
            || {
                let events = events.clone();
                async move {
                    let list = events.list(&ListParams::default()).await.ok()?;
                    let reasons: Vec<String> = list
                        .items
                        .iter()
                        .filter(|e| e.reporting_controller.as_deref() == Some("kubelet"))
                        .filter_map(|e| e.reason.clone())
                        .collect();
                    ["BackOff", "Created", "Started"]
                        .iter()
                        .all(|r| reasons.iter().any(|x| x == r))
                        .then_some(reasons)
                }
            },
        )
        .await;
    assert!(reasons.iter().any(|r| r == "Pulled"), "{reasons:?}");
    env.finish().await;
}

#[tokio::test]
async fn deleting_a_pod_runs_pre_stop_then_sigterm_then_sigkill_after_the_grace_period() {
    let Some(env) = Env::new("grace").await else {
        return;
    };
    let marks = env.root.path().join("marks");
    std::fs::create_dir_all(&marks).expect("marks dir");
    // The shell records SIGTERM and carries on: only SIGKILL ends it.
    let script = "trap 'echo TERM >> /var/lib/streamjoin-test-marks/signals' TERM; echo started >> /var/lib/streamjoin-test-marks/signals; while true; do sleep 0.1; done";
    env.create_pod(json!({
        "metadata": {"name": "stubborn"},
        "spec": {"terminationGracePeriodSeconds": 3,
            "containers": [{"name": "c", "image": "test/sh", "args": ["-c", script],
                "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "echo PRESTOP >> /var/lib/streamjoin-test-marks/signals"]}}},
                "volumeMounts": [{"name": "m", "mountPath": "/var/lib/streamjoin-test-marks"}]}],
            "volumes": [{"name": "m", "hostPath": {"path": marks.to_string_lossy(), "type": "Directory"}}]}
    }))
    .await;
    let running = env
        .wait_pod(
            "stubborn",
            "the container to run",
            Duration::from_secs(30),
            |p| {
                container_status(p, "c")
                    .is_some_and(|c| c.state.is_some_and(|s| s.running.is_some()))
            },
        )
        .await;
    env.eventually("the start mark", Duration::from_secs(10), || async {
        std::fs::read_to_string(marks.join("signals"))
            .ok()
            .filter(|s| s.contains("started"))
    })
    .await;
    let pid: i32 = container_status(&running, "c")
        .and_then(|c| c.container_id)
        .and_then(|id| id.strip_prefix("local://").and_then(|p| p.parse().ok()))
        .expect("pid in containerID");
    let asked = Instant::now();
    env.pods()
        .delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone("stubborn", Duration::from_secs(30)).await;
    let signals = std::fs::read_to_string(marks.join("signals")).expect("marks");
    let lines: Vec<&str> = signals.lines().collect();
    assert_eq!(
        lines,
        ["started", "PRESTOP", "TERM"],
        "preStop ran in the container, then SIGTERM came"
    );
    assert!(
        asked.elapsed() >= Duration::from_secs(3),
        "the pod went before its grace period"
    );
    // SAFETY: probing a pid with signal 0.
    assert_ne!(
        unsafe { libc::kill(pid, 0) },
        0,
        "the process {pid} is gone"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_restarted_kubelet_restarts_its_pods_and_counts_the_restart() {
    let Some(mut env) = Env::new("restart").await else {
        return;
    };
    env.create_pod(json!({
        "metadata": {"name": "long"},
        "spec": {"containers": [{"name": "c", "image": "test/sh", "args": ["-c", "exec sleep 1000"]}]}
    }))
    .await;
    let first = env
        .wait_pod(
            "long",
            "the container to run",
            Duration::from_secs(30),
            |p| {
                container_status(p, "c")
                    .is_some_and(|c| c.state.is_some_and(|s| s.running.is_some()))
            },
        )
        .await;
    let old_id = container_status(&first, "c")
        .and_then(|c| c.container_id)
        .expect("id");
    let old_ip = first.status.as_ref().and_then(|s| s.pod_ip.clone());
    let old_pid: i32 = old_id
        .strip_prefix("local://")
        .and_then(|p| p.parse().ok())
        .expect("pid");
    env.stop_kubelet();
    // SAFETY: probing a pid with signal 0.
    assert_ne!(
        unsafe { libc::kill(old_pid, 0) },
        0,
        "a stopped kubelet leaves no container running"
    );
    env.start_kubelet();
    let again = env
        .wait_pod(
            "long",
            "the container to run again",
            Duration::from_secs(60),
            |p| {
                container_status(p, "c").is_some_and(|c| {
                    c.restart_count == 1
                        && c.container_id.as_deref() != Some(old_id.as_str())
                        && c.state.is_some_and(|s| s.running.is_some())
                })
            },
        )
        .await;
    assert_eq!(
        again.status.as_ref().and_then(|s| s.pod_ip.clone()),
        old_ip,
        "the pod keeps its address"
    );
    env.finish().await;
}
