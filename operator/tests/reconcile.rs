//! Reconcile scenarios against the API double (see `support/fake_api.rs` for why
//! a fake rather than a scripted sequence). No test sleeps: the double answers
//! synchronously and the caches are fed by hand.

mod support;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::DeserializeGuard;
use serde_json::json;
use streamjoin_api::{JobPhase, StreamJoinJob};
use streamjoin_operator::build::networkpolicy::{AdminPeers, parse_pod_labels};
use streamjoin_operator::build::{APPLIED_HASH, MANAGER};
use streamjoin_operator::reconcile::{FINALIZER, reconcile};
use support::fake_api::{Call, cm_path, job_path, pdb_path, sts_path, svc_path};
use support::{Harness, NS, crashing_pod, job_json};

fn child_applies(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.is_apply() && !c.path.ends_with("/status"))
        .map(|c| c.path.clone())
        .collect()
}

fn status_writes(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.path.ends_with("/status")).count()
}

fn events(calls: &[Call]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.is_event() && c.method == "POST")
        .filter_map(|c| c.body.as_ref())
        .map(|b| {
            (
                b["type"].as_str().unwrap_or_default().to_owned(),
                b["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn condition(job: &StreamJoinJob, type_: &str) -> (String, String, String) {
    let c = job
        .status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .unwrap_or_else(|| panic!("condition {type_} missing"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_and_nothing_else() {
    let h = Harness::new();
    let mut manifest = job_json("clicks");
    manifest["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("finalizers");
    h.create_job(manifest);
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0].content_type.starts_with("application/json-patch"));
    assert_eq!(
        h.job("clicks").metadata.finalizers,
        Some(vec![FINALIZER.to_owned()])
    );
}

#[tokio::test]
async fn create_applies_every_child_with_ssa_and_writes_status() {
    let h = Harness::new();
    h.create_job(job_json("clicks"));
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();

    let mut applied = child_applies(&calls);
    applied.sort();
    let mut expected = vec![
        cm_path(NS, "clicks-config"),
        svc_path(NS, "clicks"),
        sts_path(NS, "clicks"),
        pdb_path(NS, "clicks"),
    ];
    expected.sort();
    assert_eq!(applied, expected);
    for c in calls.iter().filter(|c| c.is_apply()) {
        assert!(
            c.query.contains(&format!("fieldManager={MANAGER}")),
            "{}",
            c.query
        );
        assert!(c.query.contains("force=true"), "{}", c.query);
    }
    // The lifecycle record first (write-ahead), then the status of what was applied.
    assert_eq!(status_writes(&calls), 2);
    assert!(events(&calls).contains(&("Normal".into(), "Applied".into())));

    let sts: StatefulSet = h.fake.get_as(&sts_path(NS, "clicks")).expect("sts stored");
    assert_eq!(sts.spec.replicas, Some(3));
    let owner = &sts.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("StreamJoinJob", "uid-clicks")
    );

    let job = h.job("clicks");
    let status = job.status.as_ref().expect("status written");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.phase, Some(JobPhase::Deploying));
    assert_eq!(condition(&job, "Progressing").0, "True");
    assert_eq!(condition(&job, "Ready").0, "False");
    assert_eq!(condition(&job, "Degraded").0, "False");
    assert_eq!(
        status.replicas, None,
        "nothing observed yet, nothing invented"
    );
}

#[tokio::test]
async fn all_replicas_ready_gives_ready_and_a_ready_event() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    let job = h.job("clicks");
    assert_eq!(condition(&job, "Ready").0, "True");
    assert_eq!(condition(&job, "Progressing").0, "False");
    let status = job.status.expect("status");
    assert_eq!(status.phase, Some(JobPhase::Running));
    assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(3)));
    assert!(events(&h.fake.calls()).contains(&("Normal".into(), "Ready".into())));
}

#[tokio::test]
async fn nothing_changed_means_no_request_at_all() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    h.fake.take_calls();
    for _ in 0..3 {
        h.reconcile("clicks").await.expect("reconciles");
    }
    let calls = h.fake.take_calls();
    assert!(calls.is_empty(), "expected no API call, got {calls:#?}");
    assert_eq!(h.ctx.metrics.reconciles.with_label_values(&["ok"]).get(), 5);
}

fn np_path(name: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{name}")
}

#[tokio::test]
async fn the_network_policy_is_applied_before_the_pods_exist_and_then_costs_no_request() {
    let mut h = Harness::new();
    h.generate_network_policies(AdminPeers {
        operator_namespace: "streamjoin-system".into(),
        operator_labels: parse_pod_labels("app.kubernetes.io/name=streamjoin-operator")
            .expect("labels"),
        extra: Default::default(),
    });
    h.create_job(job_json("clicks"));
    h.reconcile("clicks").await.expect("reconciles");
    let applied = child_applies(&h.fake.take_calls());
    assert_eq!(applied.len(), 5, "{applied:#?}");
    assert_eq!(
        applied[0],
        np_path("clicks-admin"),
        "first, before the pods"
    );
    let np: NetworkPolicy = h.fake.get_as(&np_path("clicks-admin")).expect("stored");
    let owner = &np.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.uid, "uid-clicks");
    h.sync_caches();
    h.rollout_done("clicks", 3);
    h.reconcile("clicks").await.expect("settles");
    h.fake.take_calls();
    for _ in 0..3 {
        h.reconcile("clicks").await.expect("reconciles");
    }
    let calls = h.fake.take_calls();
    assert!(calls.is_empty(), "expected no API call, got {calls:#?}");
    // Gone from the cache (deleted): applied again, alone.
    h.writers.remove_network_policy(np);
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(
        child_applies(&h.fake.take_calls()),
        vec![np_path("clicks-admin")]
    );
}

#[tokio::test]
async fn a_deleted_child_is_recreated() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    h.fake.take_calls();
    let pdb = h.fake.get_as(&pdb_path(NS, "clicks")).expect("pdb");
    h.writers.remove_pdb(pdb);
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(
        child_applies(&h.fake.take_calls()),
        vec![pdb_path(NS, "clicks")]
    );
}

#[tokio::test]
async fn spec_change_updates_the_children_and_advances_observed_generation() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    let old_sts_hash = h.fake.get(&sts_path(NS, "clicks")).expect("sts")["metadata"]["annotations"]
        [APPLIED_HASH]
        .clone();
    h.fake.take_calls();

    h.edit_spec("clicks", |spec| {
        spec["image"] = json!("ghcr.io/streamjoin/streamjoin-runtime:v2");
        spec["parallelism"] = json!(4);
    });
    // Upgrade mode savepoint: the first reconcile asks the pods for a savepoint and
    // touches no child; the next one finds it completed and applies the new spec.
    h.reconcile("clicks").await.expect("reconciles");
    assert!(child_applies(&h.fake.take_calls()).is_empty());
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    let mut applied = child_applies(&calls);
    applied.sort();
    // The Service and the PDB do not depend on image or parallelism: not rewritten.
    assert_eq!(
        applied,
        vec![cm_path(NS, "clicks-config"), sts_path(NS, "clicks")]
    );

    let sts: StatefulSet = h.fake.get_as(&sts_path(NS, "clicks")).expect("sts");
    let spec = &sts.spec;
    assert_eq!(spec.replicas, Some(4));
    let image = spec.template.spec.as_ref().expect("pod").containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some("ghcr.io/streamjoin/streamjoin-runtime:v2")
    );
    assert_ne!(
        sts.metadata.annotations.as_ref().expect("ann")[APPLIED_HASH],
        old_sts_hash
    );

    let job = h.job("clicks");
    assert_eq!(job.metadata.generation, Some(2));
    assert_eq!(
        job.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
    let (status, reason, _) = condition(&job, "Progressing");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Deploying"));
    let ready = job
        .status
        .as_ref()
        .and_then(|s| s.condition("Ready"))
        .expect("ready");
    assert_eq!(ready.observed_generation, Some(2));
}

#[tokio::test]
async fn crash_looping_pod_makes_the_job_degraded_with_the_reason() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    h.fake.take_calls();

    h.add_pod(crashing_pod(
        "clicks",
        "CrashLoopBackOff",
        7,
        "back-off 5m0s restarting failed container",
    ));
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(
        child_applies(&calls).is_empty(),
        "a crashing pod is not fixed by rewriting children"
    );
    assert_eq!(status_writes(&calls), 1);
    let job = h.job("clicks");
    let (status, reason, message) = condition(&job, "Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "CrashLoopBackOff")
    );
    assert!(
        message.contains("pod clicks-1, container runtime: back-off"),
        "{message}"
    );
    assert_eq!(
        job.status.as_ref().and_then(|s| s.phase),
        Some(JobPhase::Degraded)
    );
    assert_eq!(condition(&job, "Ready").0, "False");
    assert!(events(&calls).contains(&("Warning".into(), "CrashLoopBackOff".into())));
}

#[tokio::test]
async fn invalid_spec_is_degraded_leaves_children_untouched_and_the_next_valid_spec_is_applied() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    let sts_before = h.fake.get(&sts_path(NS, "clicks")).expect("sts");
    h.fake.take_calls();

    h.edit_spec("clicks", |spec| spec["output"]["topic"] = json!("plays"));
    h.reconcile("clicks")
        .await
        .expect("an invalid spec is not an error of the operator");
    let calls = h.fake.take_calls();
    assert!(
        child_applies(&calls).is_empty(),
        "children untouched: {calls:#?}"
    );
    assert_eq!(h.fake.get(&sts_path(NS, "clicks")), Some(sts_before));
    let job = h.job("clicks");
    let (status, reason, message) = condition(&job, "Degraded");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(
        message.contains("spec.output.topic: output.topic must differ from both input topics"),
        "{message}"
    );
    assert_eq!(
        job.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
    assert!(events(&calls).contains(&("Warning".into(), "InvalidSpec".into())));

    // Still invalid, nothing new: no write at all.
    h.reconcile("clicks").await.expect("reconciles");
    assert!(h.fake.take_calls().is_empty());

    // The next valid spec is acted on.
    h.edit_spec("clicks", |spec| {
        spec["output"]["topic"] = json!("joined-v2");
    });
    // An upgrade: savepoint first, then the children.
    h.reconcile("clicks").await.expect("reconciles");
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(child_applies(&calls).contains(&cm_path(NS, "clicks-config")));
    let job = h.job("clicks");
    assert_eq!(condition(&job, "Degraded").0, "False");
    assert!(events(&calls).contains(&("Normal".into(), "Recovered".into())));
}

#[tokio::test]
async fn suspend_scales_the_statefulset_to_zero() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    h.edit_spec("clicks", |spec| spec["state"] = json!("suspended"));
    // A savepoint first (the pods stop after it), then scale to zero.
    h.reconcile("clicks").await.expect("reconciles");
    h.reconcile("clicks").await.expect("reconciles");
    let sts: StatefulSet = h.fake.get_as(&sts_path(NS, "clicks")).expect("sts");
    assert_eq!(sts.spec.replicas, Some(0));
    h.sync_caches();
    h.rollout_done("clicks", 0);
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(
        h.job("clicks").status.and_then(|s| s.phase),
        Some(JobPhase::Suspended)
    );
}

#[tokio::test]
async fn delete_runs_the_finalizer_and_writes_no_child() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    h.fake.take_calls();
    let path = job_path(NS, "clicks");
    let mut job = h.fake.get(&path).expect("job");
    job["metadata"]["deletionTimestamp"] = json!("2027-01-15T08:00:00Z");
    h.fake.put(&path, job);

    // savepoints.onDelete: take (the default): a final savepoint, then the finalizer.
    h.reconcile("clicks").await.expect("savepoint requested");
    h.reconcile("clicks").await.expect("savepoint completed");
    let final_sp = h.runtime.triggered();
    assert_eq!(final_sp.len(), 3, "{final_sp:?}");
    assert!(final_sp.iter().all(|t| t.stop && t.id.ends_with("-delete")));
    h.reconcile("clicks").await.expect("cleanup succeeds");
    let calls = h.fake.take_calls();
    assert!(child_applies(&calls).is_empty());
    let removal = calls
        .iter()
        .find(|c| c.path == path && c.content_type.starts_with("application/json-patch"))
        .expect("finalizer removal patch");
    assert!(
        removal
            .body
            .as_ref()
            .expect("body")
            .to_string()
            .contains("remove")
    );
    assert_eq!(h.job("clicks").metadata.finalizers, Some(vec![]));
    assert!(events(&calls).contains(&("Normal".into(), "Deleting".into())));
}

#[tokio::test]
async fn a_malformed_job_is_reported_once_and_does_not_stop_the_others() {
    let mut h = Harness::new();
    let mut bad = job_json("broken");
    bad["spec"]["join"] = json!({ "window": "forever" });
    h.create_job(bad.clone());
    let stored = h.fake.get(&job_path(NS, "broken")).expect("stored");
    let guard: DeserializeGuard<StreamJoinJob> =
        serde_json::from_value(stored).expect("the guard always deserializes");
    assert!(guard.0.is_err());
    let guard = Arc::new(guard);

    reconcile(guard.clone(), h.ctx.clone())
        .await
        .expect("reported, not failed");
    let calls = h.fake.take_calls();
    assert_eq!(status_writes(&calls), 1);
    assert!(events(&calls).contains(&("Warning".into(), "MalformedObject".into())));
    let status = &h.fake.get(&job_path(NS, "broken")).expect("job")["status"];
    assert_eq!(status["phase"], "Degraded");
    let degraded = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Degraded")
        .expect("degraded")
        .clone();
    assert!(
        degraded["message"]
            .as_str()
            .expect("message")
            .contains("forever")
    );

    // The same version again: reported already, no request.
    reconcile(guard, h.ctx.clone()).await.expect("skipped");
    assert!(h.fake.take_calls().is_empty());
    assert_eq!(h.ctx.metrics.malformed.get(), 1);

    // Another job is reconciled as usual.
    h.create_job(job_json("clicks"));
    h.settle("clicks").await;
    assert_eq!(
        h.job("clicks").status.and_then(|s| s.phase),
        Some(JobPhase::Running)
    );
}

#[tokio::test]
async fn a_failed_write_names_the_step_and_the_object() {
    let h = Harness::new();
    // A job the double does not hold: the status write gets 404.
    let mut job: StreamJoinJob = serde_json::from_value(job_json("ghost")).expect("job");
    job.metadata.uid = Some("uid-ghost".into());
    job.metadata.generation = Some(1);
    job.spec.output.topic = "plays".into(); // invalid: only the status would be written
    let err = reconcile(Arc::new(DeserializeGuard(Ok(job))), h.ctx.clone())
        .await
        .expect_err("status write fails");
    let text = err.to_string();
    assert!(text.contains("status"), "{text}");
    assert!(text.contains("StreamJoinJob streams/ghost"), "{text}");
    assert_eq!(h.ctx.metrics.errors.with_label_values(&["status"]).get(), 1);
}

/// Two `SavepointCompleted` a minute apart name two locations; the same note
/// again is one more of the same event (a series), as `kubectl describe` shows it.
#[tokio::test]
async fn events_with_one_reason_keep_each_note_and_a_repeated_note_is_counted() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType};
    let h = Harness::new();
    let job = ObjectReference {
        kind: Some("StreamJoinJob".into()),
        namespace: Some(NS.into()),
        name: Some("clicks".into()),
        uid: Some("u1".into()),
        ..ObjectReference::default()
    };
    let completed = |note: &str| Event {
        type_: EventType::Normal,
        reason: "SavepointCompleted".into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    for note in ["s3://b/1", "s3://b/2", "s3://b/2"] {
        h.ctx
            .recorder
            .publish(&completed(note), &job)
            .await
            .expect("published");
    }
    let calls = h.fake.take_calls();
    let created: Vec<String> = support::flows::events(&calls)
        .into_iter()
        .map(|(_, _, n)| n)
        .collect();
    assert_eq!(created, ["s3://b/1", "s3://b/2"]);
    let repeats: Vec<&serde_json::Value> = calls
        .iter()
        .filter(|c| c.is_event() && c.method == "PATCH")
        .filter_map(|c| c.body.as_ref())
        .collect();
    assert_eq!(repeats.len(), 1, "{repeats:#?}");
    assert_eq!(repeats[0]["note"], "s3://b/2");
    assert_eq!(repeats[0]["series"]["count"], 2);
}
