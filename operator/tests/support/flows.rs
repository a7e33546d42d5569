//! Helpers of the flow tests: reading what the operator wrote (records, Events,
//! the StatefulSet's pod template) and playing the StatefulSet controller.

#![allow(dead_code)]

use k8s_openapi::api::apps::v1::StatefulSet;
use streamjoin_api::{LifecycleState, LifecycleStatus, StreamJoinJob};

use super::fake_api::{Call, sts_path};
use super::{Harness, NS};

/// `(type, reason, note)` of every Event created in `calls`.
pub fn events(calls: &[Call]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .filter(|c| c.is_event() && c.method == "POST")
        .filter_map(|c| c.body.as_ref())
        .map(|b| {
            (
                b["type"].as_str().unwrap_or_default().to_owned(),
                b["reason"].as_str().unwrap_or_default().to_owned(),
                b["note"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Events of one reason in `calls`.
pub fn events_of(calls: &[Call], reason: &str) -> Vec<(String, String, String)> {
    events(calls)
        .into_iter()
        .filter(|(_, r, _)| r == reason)
        .collect()
}

/// Whether anything was written to an Event (created or added to a series).
pub fn any_event_write(calls: &[Call]) -> bool {
    calls.iter().any(|c| c.is_event() && c.is_write())
}

pub fn record(h: &Harness, name: &str) -> LifecycleStatus {
    h.job(name)
        .status
        .and_then(|s| s.lifecycle)
        .expect("lifecycle record")
}

pub fn condition(job: &StreamJoinJob, type_: &str) -> (String, String, String) {
    let c = job
        .status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .unwrap_or_else(|| panic!("condition {type_} missing"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

pub fn sts(h: &Harness, name: &str) -> StatefulSet {
    h.fake.get_as(&sts_path(NS, name)).expect("sts")
}

/// The runtime container's arguments.
pub fn args(s: &StatefulSet) -> Vec<String> {
    s.spec.template.spec.as_ref().expect("pod").containers[0]
        .args
        .clone()
        .unwrap_or_default()
}

/// The value after `flag` in the runtime's arguments.
pub fn arg(s: &StatefulSet, flag: &str) -> Option<String> {
    let a = args(s);
    a.iter()
        .position(|x| x == flag)
        .and_then(|i| a.get(i + 1).cloned())
}

/// Create → rollout of `replicas` pods → stable (Running).
pub async fn running(h: &mut Harness, name: &str, replicas: i32) {
    h.reconcile(name).await.expect("first reconcile");
    h.sync_caches();
    h.rollout_done(name, replicas);
    h.reconcile(name).await.expect("settling reconcile");
    assert_eq!(record(h, name).state, LifecycleState::Running);
}

/// The StatefulSet controller rolls out what was applied; one reconcile sees it.
pub async fn rolled_out(h: &mut Harness, name: &str, replicas: i32) {
    h.sync_caches();
    h.rollout_done(name, replicas);
    h.reconcile(name).await.expect("reconciles");
}
