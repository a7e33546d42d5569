//! Lifecycle flows (issue 5) against the API double plus a fake runtime admin
//! server (HTTP, in process, `support/fake_runtime.rs`). No test sleeps: the
//! savepoints the fake reports complete (or fail) on the next poll, and the
//! StatefulSet controller is played by `rollout_done`.

mod support;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::json;
use streamjoin_api::{ChangeClass, JobPhase, LifecycleState, SavepointTrigger};
use support::fake_api::Call;
use support::fake_runtime::SavepointMode;
use support::flows::{arg, condition, events, record, rolled_out, running, sts};
use support::{Harness, crashing_pod, job_json};

fn has_event(calls: &[Call], reason: &str) -> bool {
    events(calls).iter().any(|(_, r, _)| r == reason)
}

fn restore_from_arg(s: &StatefulSet) -> Option<String> {
    arg(s, "--restore-from")
}

fn image(s: &StatefulSet) -> String {
    s.spec.template.spec.as_ref().expect("pod").containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn savepoint_upgrade_stops_with_a_savepoint_then_restores_the_new_spec_from_it() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    h.fake.take_calls();

    h.edit_spec("clicks", |s| s["image"] = json!("runtime:v2"));
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    let r = record(&h, "clicks");
    assert_eq!(r.state, LifecycleState::Savepointing);
    let change = r.last_change.expect("change recorded");
    assert_eq!(change.class, ChangeClass::Upgrade);
    assert_eq!(change.fields, vec!["image"]);
    let triggered = h.runtime.triggered();
    assert_eq!(triggered.len(), 3);
    assert!(
        triggered
            .iter()
            .all(|t| t.stop && t.token.as_deref().is_some_and(|t| t.len() == 64))
    );
    assert_eq!(
        image(&sts(&h, "clicks")),
        "ghcr.io/streamjoin/streamjoin-runtime:test"
    );
    assert!(has_event(&calls, "Upgrading"), "{:?}", events(&calls));
    assert_eq!(
        condition(&h.job("clicks"), "Progressing").1,
        "SavepointForUpgrade"
    );

    // Completed: the new pods restore from it.
    h.reconcile("clicks").await.expect("reconciles");
    let s = sts(&h, "clicks");
    assert_eq!(image(&s), "runtime:v2");
    let sp = restore_from_arg(&s).expect("restores from the savepoint");
    assert!(sp.ends_with(&triggered[0].id), "{sp}");
    let job = h.job("clicks");
    let last = job
        .status
        .as_ref()
        .and_then(|s| s.last_savepoint.clone())
        .expect("recorded");
    assert_eq!(
        (last.location.as_str(), last.trigger),
        (sp.as_str(), Some(SavepointTrigger::Upgrade))
    );
    assert_eq!(record(&h, "clicks").state, LifecycleState::Deploying);

    // Ready with a completed checkpoint: stable.
    rolled_out(&mut h, "clicks", 3).await;
    let r = record(&h, "clicks");
    assert_eq!(
        (r.state, r.stable_generation),
        (LifecycleState::Running, Some(2))
    );
    let job = h.job("clicks");
    assert_eq!(condition(&job, "Ready").0, "True");
    assert_eq!(
        job.status
            .and_then(|s| s.upgrade)
            .and_then(|u| u.state)
            .as_deref(),
        Some("Done")
    );
}

#[tokio::test]
async fn a_failed_savepoint_keeps_the_old_pods_backs_off_and_a_newer_spec_supersedes_it() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    h.runtime.set(|r| r.savepoint_mode = SavepointMode::Fail);

    h.edit_spec("clicks", |s| s["image"] = json!("runtime:v2"));
    h.reconcile("clicks").await.expect("trigger");
    h.fake.take_calls();
    h.reconcile("clicks").await.expect("poll");
    let calls = h.fake.take_calls();
    let job = h.job("clicks");
    let (st, reason, msg) = condition(&job, "Degraded");
    assert_eq!((st.as_str(), reason.as_str()), ("True", "SavepointFailed"));
    assert!(
        msg.contains("object store unreachable") && msg.contains("retrying"),
        "{msg}"
    );
    assert!(has_event(&calls, "SavepointFailed"));
    let r = record(&h, "clicks");
    assert_eq!(r.state, LifecycleState::Running);
    assert!(
        r.failure
            .as_ref()
            .and_then(|f| f.retry_at.clone())
            .is_some()
    );
    assert_eq!(
        image(&sts(&h, "clicks")),
        "ghcr.io/streamjoin/streamjoin-runtime:test",
        "old pods keep running"
    );

    // Within the back-off: no new attempt.
    h.reconcile("clicks").await.expect("backing off");
    assert_eq!(h.runtime.triggered().len(), 3);

    // A newer generation is acted on at once.
    h.runtime
        .set(|r| r.savepoint_mode = SavepointMode::Complete);
    h.edit_spec("clicks", |s| s["image"] = json!("runtime:v3"));
    h.reconcile("clicks").await.expect("new savepoint");
    assert_eq!(h.runtime.triggered().len(), 6);
    h.reconcile("clicks").await.expect("deploys");
    assert_eq!(image(&sts(&h, "clicks")), "runtime:v3");
    rolled_out(&mut h, "clicks", 3).await;
    assert_eq!(condition(&h.job("clicks"), "Degraded").0, "False");
}

#[tokio::test]
async fn crash_looping_new_pods_roll_back_to_the_last_stable_spec_from_the_same_savepoint() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    h.edit_spec("clicks", |s| s["image"] = json!("runtime:broken"));
    h.reconcile("clicks").await.expect("savepoint");
    h.reconcile("clicks").await.expect("deploy");
    let sp = restore_from_arg(&sts(&h, "clicks")).expect("restore point");
    h.rollout_started("clicks");
    h.add_pod(crashing_pod(
        "clicks",
        "CrashLoopBackOff",
        4,
        "back-off 40s restarting failed container",
    ));
    h.fake.take_calls();

    h.reconcile("clicks").await.expect("rollback");
    let calls = h.fake.take_calls();
    let s = sts(&h, "clicks");
    assert_eq!(image(&s), "ghcr.io/streamjoin/streamjoin-runtime:test");
    assert_eq!(
        restore_from_arg(&s).as_deref(),
        Some(sp.as_str()),
        "same savepoint"
    );
    assert_eq!(record(&h, "clicks").state, LifecycleState::RollingBack);
    assert!(
        events(&calls).iter().any(|(t, r, n)| t == "Warning"
            && r == "RollingBack"
            && n.contains("CrashLoopBackOff"))
    );

    h.writers.remove_pod(crashing_pod(
        "clicks",
        "CrashLoopBackOff",
        4,
        "back-off 40s restarting failed container",
    ));
    rolled_out(&mut h, "clicks", 3).await;
    let r = record(&h, "clicks");
    assert_eq!(
        (r.state, r.stable_generation, r.rejected_generation),
        (LifecycleState::Running, Some(1), Some(2))
    );
    let job = h.job("clicks");
    assert_eq!(condition(&job, "Degraded").1, "RolledBack");
    assert_eq!(condition(&job, "Ready").0, "True");

    // The failed generation is not tried again.
    h.reconcile("clicks").await.expect("steady");
    assert_eq!(h.runtime.triggered().len(), 3);
    assert_eq!(
        image(&sts(&h, "clicks")),
        "ghcr.io/streamjoin/streamjoin-runtime:test"
    );
}

#[tokio::test]
async fn rescale_from_two_to_three_goes_through_a_savepoint_and_above_the_partitions_is_refused() {
    let mut h = Harness::new();
    let mut m = job_json("clicks");
    m["spec"]["parallelism"] = json!(2);
    h.create_job(m);
    running(&mut h, "clicks", 2).await;
    assert_eq!(
        record(&h, "clicks").input_partitions,
        Some(4),
        "learned from the pods' shards"
    );

    h.edit_spec("clicks", |s| s["parallelism"] = json!(3));
    h.reconcile("clicks").await.expect("savepoint");
    assert_eq!(h.runtime.triggered().len(), 2, "both old pods");
    assert_eq!(
        record(&h, "clicks").last_change.map(|c| c.class),
        Some(ChangeClass::Scale)
    );
    h.reconcile("clicks").await.expect("deploy");
    let s = sts(&h, "clicks");
    assert_eq!(s.spec.replicas, Some(3));
    assert!(restore_from_arg(&s).is_some());
    rolled_out(&mut h, "clicks", 3).await;
    assert_eq!(record(&h, "clicks").stable_generation, Some(2));

    h.edit_spec("clicks", |s| s["parallelism"] = json!(5));
    h.fake.take_calls();
    h.reconcile("clicks").await.expect("refused");
    let calls = h.fake.take_calls();
    assert_eq!(sts(&h, "clicks").spec.replicas, Some(3));
    assert_eq!(
        h.runtime.triggered().len(),
        2,
        "no savepoint for a refused change"
    );
    let (st, reason, msg) = condition(&h.job("clicks"), "Degraded");
    assert_eq!(
        (st.as_str(), reason.as_str()),
        ("True", "ParallelismAbovePartitions")
    );
    assert!(
        msg.contains("parallelism 5 is above the 4 input partitions"),
        "{msg}"
    );
    assert!(has_event(&calls, "ParallelismAbovePartitions"));
}

#[tokio::test]
async fn suspend_takes_a_savepoint_and_scales_to_zero_and_resume_restores_from_it() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    h.edit_spec("clicks", |s| s["state"] = json!("suspended"));
    h.reconcile("clicks").await.expect("savepoint");
    assert_eq!(
        sts(&h, "clicks").spec.replicas,
        Some(3),
        "pods run until the savepoint completes"
    );
    assert!(
        h.runtime
            .triggered()
            .iter()
            .all(|t| t.stop && t.id.ends_with("-suspend"))
    );
    h.reconcile("clicks").await.expect("scale to zero");
    assert_eq!(sts(&h, "clicks").spec.replicas, Some(0));
    let r = record(&h, "clicks");
    assert_eq!(r.state, LifecycleState::Suspended);
    let sp = r.restore_from.expect("resume point");
    rolled_out(&mut h, "clicks", 0).await;
    assert_eq!(
        h.job("clicks").status.and_then(|s| s.phase),
        Some(JobPhase::Suspended)
    );

    h.edit_spec("clicks", |s| s["state"] = json!("running"));
    h.reconcile("clicks").await.expect("resume");
    let s = sts(&h, "clicks");
    assert_eq!(s.spec.replicas, Some(3));
    assert_eq!(restore_from_arg(&s).as_deref(), Some(sp.as_str()));
    rolled_out(&mut h, "clicks", 3).await;
    assert_eq!(record(&h, "clicks").state, LifecycleState::Running);
    assert_eq!(
        h.job("clicks").status.and_then(|s| s.phase),
        Some(JobPhase::Running)
    );
}

#[tokio::test]
async fn each_nonce_acts_once_trigger_savepoint_force_advance_and_restart() {
    let mut h = Harness::new();
    let mut m = job_json("clicks");
    m["spec"]["savepoints"] = json!({"location": "/savepoints"});
    h.create_job(m);
    running(&mut h, "clicks", 3).await;
    let sts_before = sts(&h, "clicks");

    // savepoints.triggerNonce: a savepoint without stopping, no pod touched.
    h.edit_spec("clicks", |s| s["savepoints"]["triggerNonce"] = json!(1));
    h.reconcile("clicks").await.expect("trigger");
    h.reconcile("clicks").await.expect("complete");
    let t = h.runtime.triggered();
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|t| !t.stop && t.id.ends_with("-manual")));
    let last = h
        .job("clicks")
        .status
        .and_then(|s| s.last_savepoint)
        .expect("savepoint");
    assert_eq!(last.trigger, Some(SavepointTrigger::Manual));
    assert_eq!(
        sts(&h, "clicks"),
        sts_before,
        "an ignore-class edit rolls no pod"
    );
    h.reconcile("clicks").await.expect("steady");
    assert_eq!(h.runtime.triggered().len(), 3, "once per value");

    // watermarks.forceAdvanceNonce: every pod advances now, once.
    h.edit_spec("clicks", |s| {
        s["watermarks"] = json!({"forceAdvanceNonce": 1})
    });
    h.fake.take_calls();
    h.reconcile("clicks").await.expect("advance");
    let calls = h.fake.take_calls();
    let adv = h.runtime.advances();
    assert_eq!(adv.len(), 3);
    assert!(adv.iter().all(|(_, token)| token.is_some()));
    assert!(has_event(&calls, "WatermarkForceAdvanced"));
    h.reconcile("clicks").await.expect("steady");
    assert_eq!(h.runtime.advances().len(), 3);

    // restartNonce: an upgrade-class change, carried through a savepoint.
    h.edit_spec("clicks", |s| s["restartNonce"] = json!(1));
    h.reconcile("clicks").await.expect("savepoint");
    assert_eq!(
        record(&h, "clicks").last_change.map(|c| c.class),
        Some(ChangeClass::Upgrade)
    );
    assert_eq!(h.runtime.triggered().len(), 6);
}

#[tokio::test]
async fn an_operator_restarted_mid_upgrade_resumes_from_the_status_record() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    h.edit_spec("clicks", |s| s["image"] = json!("runtime:v2"));
    h.reconcile("clicks").await.expect("savepoint requested");
    let ids = record(&h, "clicks").savepoint.expect("pending").requests;
    assert_eq!(ids.len(), 3, "ids recorded before anything else happens");

    h.restart_operator();
    h.reconcile("clicks").await.expect("resumes");
    assert_eq!(h.runtime.triggered().len(), 3, "not asked again");
    let s = sts(&h, "clicks");
    assert_eq!(image(&s), "runtime:v2");
    assert!(restore_from_arg(&s).is_some_and(|p| p.ends_with(&ids[0].id)));
}

#[tokio::test]
async fn retention_deletes_old_savepoints_but_keeps_the_one_a_resume_needs() {
    let mut h = Harness::new();
    let mut m = job_json("clicks");
    // The location the fake runtime writes to: the pods delete what lies in theirs.
    let location = h.savepoints.path().display().to_string();
    m["spec"]["savepoints"] = json!({"maxRetained": 1, "location": location});
    h.create_job(m);
    running(&mut h, "clicks", 3).await;
    // Suspend (its savepoint is the resume point), resume, then two manual savepoints.
    h.edit_spec("clicks", |s| s["state"] = json!("suspended"));
    h.reconcile("clicks").await.expect("savepoint");
    h.reconcile("clicks").await.expect("suspended");
    let resume = record(&h, "clicks").restore_from.expect("resume point");
    h.edit_spec("clicks", |s| s["state"] = json!("running"));
    h.reconcile("clicks").await.expect("resume");
    rolled_out(&mut h, "clicks", 3).await;
    for nonce in 1..=2 {
        h.edit_spec("clicks", |s| s["savepoints"]["triggerNonce"] = json!(nonce));
        h.reconcile("clicks").await.expect("trigger");
        h.reconcile("clicks").await.expect("complete");
    }
    let history = h
        .job("clicks")
        .status
        .map(|s| s.savepoint_history)
        .unwrap_or_default();
    let locations: Vec<&str> = history.iter().map(|s| s.location.as_str()).collect();
    assert_eq!(locations.len(), 2, "{locations:?}");
    assert!(
        locations.contains(&resume.as_str()),
        "the restore point of the running pods is kept"
    );
    assert!(std::path::Path::new(&resume).exists());
    let first_manual = h
        .runtime
        .triggered()
        .iter()
        .find(|t| t.id.ends_with("-manual"))
        .map(|t| t.id.clone())
        .expect("manual");
    assert!(
        !h.savepoints.path().join(&first_manual).exists(),
        "deleted from the location"
    );
}

#[tokio::test]
async fn a_failed_deletion_stays_in_the_history_with_its_error_and_is_tried_again() {
    let mut h = Harness::new();
    let mut m = job_json("clicks");
    let location = h.savepoints.path().display().to_string();
    m["spec"]["savepoints"] = json!({"maxRetained": 1, "location": location});
    h.create_job(m);
    running(&mut h, "clicks", 3).await;
    h.runtime.set(|r| r.delete_fails = true);
    for nonce in 1..=2 {
        h.edit_spec("clicks", |s| s["savepoints"]["triggerNonce"] = json!(nonce));
        h.reconcile("clicks").await.expect("trigger");
        h.reconcile("clicks").await.expect("complete");
    }
    let history = h.job("clicks").status.expect("status").savepoint_history;
    assert_eq!(history.len(), 2, "the expired one is kept: {history:?}");
    let error = history[1].deletion_error.clone().expect("its error");
    assert!(error.contains("502"), "{error}");
    assert!(history[0].deletion_error.is_none());

    h.runtime.set(|r| r.delete_fails = false);
    h.reconcile("clicks").await.expect("retry");
    let history = h.job("clicks").status.expect("status").savepoint_history;
    assert_eq!(history.len(), 1, "deleted on the next try: {history:?}");
}

#[tokio::test]
async fn inactive_inputs_with_a_forced_advance_are_reported_in_status_condition_and_event() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    assert_eq!(condition(&h.job("clicks"), "InputsInactive").0, "False");
    h.runtime.set(|r| {
        r.all_idle = true;
        r.forced_advances = 1;
    });
    h.fake.take_calls();
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    let job = h.job("clicks");
    let wm = job
        .status
        .as_ref()
        .and_then(|s| s.watermark.clone())
        .expect("watermark");
    assert_eq!(wm.forced_advances, Some(3), "summed over the pods");
    assert_eq!(wm.idle_partitions, Some(24));
    assert_eq!(wm.lag_seconds, Some(1000.0));
    assert!(wm.current.is_some() && wm.last_forced_advance.is_some());
    assert_eq!(condition(&job, "InputsInactive").0, "True");
    assert!(has_event(&calls, "InputsInactive"));
}

#[tokio::test]
async fn the_pods_audits_are_written_to_status_audit_with_the_breached_bound() {
    let mut h = Harness::new();
    let mut m = job_json("clicks");
    m["spec"]["audit"] = json!({ "maxLateRatio": 0.01 });
    h.create_job(m);
    running(&mut h, "clicks", 3).await;
    h.runtime.set(|r| {
        r.audit = json!([
            { "check": "malformed", "ratio": 0.0, "breached": false },
            { "check": "late", "ratio": 0.05, "breached": true },
            { "check": "join", "ratio": 0.4, "breached": false },
        ]);
    });
    h.reconcile("clicks").await.expect("reconciles");
    let audit = h
        .job("clicks")
        .status
        .and_then(|s| s.audit)
        .expect("status.audit written");
    // The mean over three pods reporting the same ratio.
    assert!((audit.late_ratio.expect("late") - 0.05).abs() < 1e-9);
    assert!((audit.join_ratio.expect("join") - 0.4).abs() < 1e-9);
    assert_eq!(audit.breaches, ["maxLateRatio"]);
    assert!(audit.time.is_some());
}

#[tokio::test]
async fn a_stateless_upgrade_ignores_older_local_checkpoints_with_a_template_stable_across_reconciles()
 {
    use support::flows::arg;
    let (mut h, clock) = Harness::with_manual_clock();
    let mut m = job_json("clicks");
    m["spec"]["upgradeMode"] = json!("stateless");
    h.create_job(m);
    running(&mut h, "clicks", 3).await;
    assert_eq!(
        arg(&sts(&h, "clicks"), "--ignore-checkpoints-before"),
        None,
        "a first deployment resumes from whatever is on its volumes"
    );

    clock.advance_secs(600);
    let upgraded_at = clock.now().to_string();
    h.edit_spec("clicks", |s| s["image"] = json!("runtime:v2"));
    h.reconcile("clicks").await.expect("deploys");
    assert!(h.runtime.triggered().is_empty(), "stateless: no savepoint");
    let first = sts(&h, "clicks");
    assert_eq!(image(&first), "runtime:v2");
    assert_eq!(restore_from_arg(&first), None);
    assert_eq!(
        arg(&first, "--ignore-checkpoints-before").as_deref(),
        Some(upgraded_at.as_str())
    );
    assert_eq!(
        record(&h, "clicks").ignore_checkpoints_before.as_deref(),
        Some(upgraded_at.as_str()),
        "recorded before it was applied"
    );

    // Later reconciles, during and after the rollout, build the same template.
    clock.advance_secs(60);
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(sts(&h, "clicks").spec.template, first.spec.template);
    clock.advance_secs(60);
    rolled_out(&mut h, "clicks", 3).await;
    assert_eq!(record(&h, "clicks").state, LifecycleState::Running);
    clock.advance_secs(60);
    h.reconcile("clicks").await.expect("steady");
    assert_eq!(sts(&h, "clicks").spec.template, first.spec.template);
}

#[tokio::test]
async fn rollback_pods_restore_the_savepoint_ignoring_the_failed_versions_checkpoints() {
    use support::flows::arg;
    let (mut h, clock) = Harness::with_manual_clock();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    h.edit_spec("clicks", |s| s["image"] = json!("runtime:broken"));
    h.reconcile("clicks").await.expect("savepoint");
    h.reconcile("clicks").await.expect("deploy");
    let upgrade = sts(&h, "clicks");
    let sp = restore_from_arg(&upgrade).expect("restore point");
    assert_eq!(
        arg(&upgrade, "--ignore-checkpoints-before"),
        None,
        "a savepoint upgrade: its checkpoints are older than the savepoint"
    );

    // The new version writes checkpoints, then crash-loops.
    clock.advance_secs(300);
    let rolled_back_at = clock.now().to_string();
    h.rollout_started("clicks");
    let crashing = crashing_pod("clicks", "CrashLoopBackOff", 4, "back-off 40s");
    h.add_pod(crashing.clone());
    h.reconcile("clicks").await.expect("rollback");
    let back = sts(&h, "clicks");
    assert_eq!(record(&h, "clicks").state, LifecycleState::RollingBack);
    assert_eq!(image(&back), "ghcr.io/streamjoin/streamjoin-runtime:test");
    assert_eq!(restore_from_arg(&back).as_deref(), Some(sp.as_str()));
    assert_eq!(
        arg(&back, "--ignore-checkpoints-before").as_deref(),
        Some(rolled_back_at.as_str())
    );

    // Two more reconciles (rolling back, then stable) keep the template.
    h.writers.remove_pod(crashing);
    clock.advance_secs(60);
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(sts(&h, "clicks").spec.template, back.spec.template);
    clock.advance_secs(60);
    rolled_out(&mut h, "clicks", 3).await;
    assert_eq!(record(&h, "clicks").state, LifecycleState::Running);
    assert_eq!(sts(&h, "clicks").spec.template, back.spec.template);
}
