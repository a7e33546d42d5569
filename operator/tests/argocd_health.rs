//! The Argo CD health check (`gitops/argocd/streamjoinjob-health.lua`), run by a
//! real Lua 5.1 interpreter (Argo CD's dialect) on StreamJoinJobs whose status
//! is built with the API's own types, as the operator writes it.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use streamjoin_api::{JobPhase, StreamJoinJob, StreamJoinJobSpec, StreamJoinJobStatus};

const SCRIPT: &str = "gitops/argocd/streamjoinjob-health.lua";

/// A Lua table constructor for a JSON value (null becomes nil, as in Argo CD).
fn lua_value(v: &Value) -> String {
    match v {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(a) => format!(
            "{{{}}}",
            a.iter().map(lua_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, x)| format!("[{}] = {}", lua_string(k), lua_value(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the health script on an object: (status, message).
fn health(obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{}\nend)()\nio.write(hs.status, \"\\n\", hs.message or \"\", \"\\n\")\n",
        lua_value(obj),
        read(SCRIPT)
    );
    let mut child = Command::new(lua())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("program written");
    let out = child.wait_with_output().expect("lua5.1 runs");
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

fn cond(type_: &str, status: bool, reason: &str, message: &str, generation: i64) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: Some(generation),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// A job at `generation` whose status describes `observed`.
fn job(generation: i64, observed: i64, phase: JobPhase, conditions: Vec<Condition>) -> Value {
    let mut j = StreamJoinJob::new("clicks", StreamJoinJobSpec::local_default());
    j.metadata.namespace = Some("streams".to_owned());
    j.metadata.generation = Some(generation);
    j.status = Some(StreamJoinJobStatus {
        observed_generation: Some(observed),
        phase: Some(phase),
        conditions,
        ..StreamJoinJobStatus::default()
    });
    serde_json::to_value(&j).expect("serializes")
}

fn running(generation: i64) -> Vec<Condition> {
    vec![
        cond(
            "Ready",
            true,
            "AllReplicasReady",
            "3 of 3 pods ready",
            generation,
        ),
        cond(
            "Progressing",
            false,
            "RolloutComplete",
            "3 of 3 pods run the current spec",
            generation,
        ),
        cond("Degraded", false, "AsExpected", "", generation),
    ]
}

#[test]
fn ready_job_at_its_generation_is_healthy() {
    let (status, message) = health(&job(3, 3, JobPhase::Running, running(3)));
    assert_eq!(status, "Healthy");
    assert_eq!(message, "3 of 3 pods ready");
}

#[test]
fn rolling_out_job_is_progressing_with_the_rollout_message() {
    let conditions = vec![
        cond("Ready", false, "ReplicasNotReady", "1 of 3 pods ready", 2),
        cond(
            "Progressing",
            true,
            "RollingOut",
            "1 of 3 pods run the current spec",
            2,
        ),
        cond("Degraded", false, "AsExpected", "", 2),
    ];
    let (status, message) = health(&job(2, 2, JobPhase::Deploying, conditions));
    assert_eq!(status, "Progressing");
    assert_eq!(message, "1 of 3 pods run the current spec");
}

#[test]
fn degraded_condition_makes_the_job_degraded_even_when_pods_are_ready() {
    let conditions = vec![
        cond("Ready", true, "AllReplicasReady", "3 of 3 pods ready", 5),
        cond("Progressing", false, "RolloutComplete", "", 5),
        cond(
            "Degraded",
            true,
            "SpecNotApplied",
            "volumeClaimTemplates cannot change; the \"data\" claim keeps 10Gi",
            5,
        ),
    ];
    let (status, message) = health(&job(5, 5, JobPhase::Degraded, conditions));
    assert_eq!(status, "Degraded");
    assert_eq!(
        message,
        "volumeClaimTemplates cannot change; the \"data\" claim keeps 10Gi"
    );
}

#[test]
fn crashing_pods_are_degraded() {
    let conditions = vec![
        cond("Ready", false, "ReplicasNotReady", "2 of 3 pods ready", 1),
        cond("Progressing", false, "RolloutComplete", "", 1),
        cond(
            "Degraded",
            true,
            "CrashLoopBackOff",
            "pod clicks-2 is crash-looping",
            1,
        ),
    ];
    assert_eq!(
        health(&job(1, 1, JobPhase::Degraded, conditions)).0,
        "Degraded"
    );
}

#[test]
fn status_of_an_older_generation_is_progressing_even_if_it_says_ready() {
    let (status, message) = health(&job(4, 3, JobPhase::Running, running(3)));
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 4"), "{message}");
    // A stale Degraded is not reported either: the new spec may have fixed it.
    let mut stale = running(3);
    stale[2] = cond("Degraded", true, "InvalidSpec", "bad", 3);
    assert_eq!(
        health(&job(4, 3, JobPhase::Degraded, stale)).0,
        "Progressing"
    );
}

#[test]
fn conditions_written_for_an_older_generation_are_progressing() {
    let mut conditions = running(7);
    conditions[0].observed_generation = Some(6);
    let (status, message) = health(&job(7, 7, JobPhase::Running, conditions));
    assert_eq!(status, "Progressing");
    assert!(message.contains("Ready"), "{message}");
}

#[test]
fn job_without_status_is_progressing() {
    let mut j = job(1, 1, JobPhase::Pending, vec![]);
    j.as_object_mut().expect("object").remove("status");
    assert_eq!(health(&j).0, "Progressing");
    assert_eq!(
        health(&job(1, 1, JobPhase::Pending, vec![])).0,
        "Progressing"
    );
}

#[test]
fn suspended_job_is_suspended() {
    let conditions = vec![
        cond("Ready", false, "Suspended", "spec.state is suspended", 2),
        cond(
            "Progressing",
            false,
            "Suspended",
            "scaled to zero; volumes are kept",
            2,
        ),
        cond("Degraded", false, "AsExpected", "", 2),
    ];
    let (status, message) = health(&job(2, 2, JobPhase::Suspended, conditions));
    assert_eq!(status, "Suspended");
    assert_eq!(message, "spec.state is suspended");
}

#[test]
fn argocd_cm_patch_carries_the_same_script() {
    let patch = yaml(&read("gitops/argocd/argocd-cm-patch.yaml"));
    let embedded = patch["data"]["resource.customizations.health.streamjoin.dev_StreamJoinJob"]
        .as_str()
        .expect("health key");
    assert_eq!(embedded, read(SCRIPT));
}
