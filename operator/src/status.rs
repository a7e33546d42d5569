//! The status step: `StreamJoinJob.status` computed from observed facts only (the
//! StatefulSet's status and the pods), then written with server-side apply on the
//! status subresource, and only when it differs from what is stored.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use serde_json::json;
use streamjoin_api::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, JobPhase, StreamJoinJob,
    StreamJoinJobStatus,
};

use crate::build::{MANAGER, selector_string};
use crate::conditions::{Want, merge};
use crate::error::{Error, ObjectName, Result};
use crate::observe::ObservedChildren;

/// Waiting reasons that need a person (they do not fix themselves).
pub const FAILING_WAIT_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];
/// An OOM kill this recent still marks the job Degraded after the container restarted.
pub const OOM_MEMORY: SignedDuration = SignedDuration::from_mins(10);

/// Everything the status depends on.
pub struct Input<'a> {
    pub job: &'a StreamJoinJob,
    pub observed: &'a ObservedChildren,
    /// Replicas the StatefulSet should have (0 when suspended).
    pub desired_replicas: i32,
    /// Why the spec cannot be acted on, if it cannot.
    pub invalid: Option<String>,
    /// Children written in this reconcile (the caches do not show them yet).
    pub applied: bool,
    /// Parts of the spec that could not be applied, with the reason.
    pub not_applied: Option<String>,
    pub now: Timestamp,
    /// The deployed state is suspended (scaled to zero on purpose).
    pub suspended: bool,
    /// Degraded as the lifecycle sees it (a failed savepoint, a rollback, ...).
    pub lifecycle_degraded: Option<Want>,
    /// Progressing as the lifecycle sees it (savepointing, waiting for a checkpoint, ...).
    pub lifecycle_progressing: Option<Want>,
    /// Further conditions (InputsInactive).
    pub extra: Vec<Want>,
}

/// A failing pod: the reason (a Kubernetes waiting/termination reason) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub reason: String,
    pub message: String,
}

fn container_problem(pod: &str, cs: &ContainerStatus, now: Timestamp) -> Option<PodProblem> {
    let state = cs.state.as_ref();
    if let Some(w) = state.and_then(|s| s.waiting.as_ref())
        && let Some(reason) = w.reason.as_deref()
        && FAILING_WAIT_REASONS.contains(&reason)
    {
        let detail = w.message.as_deref().unwrap_or(reason);
        return Some(PodProblem {
            reason: reason.to_owned(),
            message: format!("pod {pod}, container {}: {detail}", cs.name),
        });
    }
    let oom = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| {
        t.reason.as_deref() == Some("OOMKilled")
    };
    let terminated_now = state.and_then(|s| s.terminated.as_ref()).filter(|t| oom(t));
    let terminated_recently = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| oom(t))
        .filter(|t| {
            t.finished_at
                .as_ref()
                .is_none_or(|f| now.duration_since(f.0) < OOM_MEMORY)
        });
    if terminated_now.or(terminated_recently).is_some() {
        return Some(PodProblem {
            reason: "OOMKilled".to_owned(),
            message: format!(
                "pod {pod}, container {}: killed for exceeding its memory limit (restarts: {})",
                cs.name, cs.restart_count
            ),
        });
    }
    None
}

/// The first problem of a pod, if any (init containers first).
pub fn pod_problem(pod: &Pod, now: Timestamp) -> Option<PodProblem> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|cs| container_problem(name, cs, now))
}

struct Rollout {
    replicas: Option<i32>,
    ready: Option<i32>,
    /// Why the rollout is not complete, if it is not.
    pending: Option<(&'static str, String)>,
}

fn rollout(sts: Option<&StatefulSet>, desired: i32, applied: bool) -> Rollout {
    let Some(sts) = sts else {
        return Rollout {
            replicas: None,
            ready: None,
            pending: Some(("Creating", "creating the StatefulSet".to_owned())),
        };
    };
    let st = sts.status.as_ref();
    let replicas = st.map(|s| s.replicas);
    let ready = st.map(|s| s.ready_replicas.unwrap_or(0));
    let updated = st.and_then(|s| s.updated_replicas).unwrap_or(0);
    let have = replicas.unwrap_or(0);
    let ready_n = ready.unwrap_or(0);
    let observed_gen = st.and_then(|s| s.observed_generation);
    let revisions_differ = st.is_some_and(|s| {
        s.current_revision.is_some()
            && s.update_revision.is_some()
            && s.current_revision != s.update_revision
    });
    let pending = if applied {
        Some((
            "Updating",
            "applied the current spec; waiting for the StatefulSet to roll out".to_owned(),
        ))
    } else if st.is_none() || observed_gen < sts.metadata.generation {
        Some((
            "RollingOut",
            "the StatefulSet controller has not yet seen the current spec".to_owned(),
        ))
    } else if have > desired {
        Some((
            "ScalingDown",
            format!("{have} pods, scaling down to {desired}"),
        ))
    } else if desired > 0 && (updated < desired || revisions_differ) {
        Some((
            "RollingOut",
            format!("{updated} of {desired} pods run the current spec"),
        ))
    } else if ready_n < desired {
        Some(("ScalingUp", format!("{ready_n} of {desired} pods ready")))
    } else {
        None
    };
    Rollout {
        replicas,
        ready,
        pending,
    }
}

/// Computes the status from the observed facts. Pure.
pub fn compute(input: &Input<'_>) -> StreamJoinJobStatus {
    let job = input.job;
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let generation = job.metadata.generation;
    let r = rollout(
        input.observed.stateful_set.as_deref(),
        input.desired_replicas,
        input.applied,
    );
    let problems: Vec<PodProblem> = input
        .observed
        .pods
        .iter()
        .filter_map(|p| pod_problem(p, input.now))
        .collect();
    let degraded = degraded(input, &problems);
    let progressing = progressing(input, &r);
    let ready = ready(input, &r, &problems);
    let phase = phase(input, &r, &degraded, &ready, &progressing);
    let existing = job
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    StreamJoinJobStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions: merge(
            existing,
            &[
                [ready, progressing, degraded].as_slice(),
                input.extra.as_slice(),
            ]
            .concat(),
            generation,
            input.now,
        ),
        replicas: r.replicas,
        ready_replicas: r.ready,
        selector: Some(selector_string(name)),
        ..StreamJoinJobStatus::default()
    }
}

/// Degraded: an invalid spec, else the lifecycle's failure, else a failing pod, else
/// a part of the spec not applied.
fn degraded(input: &Input<'_>, problems: &[PodProblem]) -> Want {
    if let Some(msg) = &input.invalid {
        Want::new(
            CONDITION_DEGRADED,
            true,
            "InvalidSpec",
            format!("{msg}. The last valid spec keeps running; fix the spec to continue"),
        )
    } else if let Some(w) = &input.lifecycle_degraded {
        w.clone()
    } else if let Some(first) = problems.first() {
        let reason = FAILING_WAIT_REASONS
            .iter()
            .chain(&["OOMKilled"])
            .find(|r| **r == first.reason)
            .copied()
            .unwrap_or("PodFailing");
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" ({} more pods failing)", n - 1),
        };
        Want::new(
            CONDITION_DEGRADED,
            true,
            reason,
            format!("{}{more}", first.message),
        )
    } else if let Some(note) = &input.not_applied {
        Want::new(CONDITION_DEGRADED, true, "SpecNotApplied", note.clone())
    } else {
        Want::new(CONDITION_DEGRADED, false, "AsExpected", "")
    }
}

/// Progressing: the lifecycle's step under way, else the StatefulSet's rollout.
fn progressing(input: &Input<'_>, r: &Rollout) -> Want {
    let suspended = input.suspended;
    let desired = input.desired_replicas;
    if input.invalid.is_some() {
        Want::new(
            CONDITION_PROGRESSING,
            false,
            "InvalidSpec",
            "waiting for a valid spec",
        )
    } else if let Some(w) = &input.lifecycle_progressing {
        w.clone()
    } else if let Some((reason, msg)) = &r.pending {
        Want::new(CONDITION_PROGRESSING, true, reason, msg.clone())
    } else if suspended {
        Want::new(
            CONDITION_PROGRESSING,
            false,
            "Suspended",
            "scaled to zero; volumes are kept",
        )
    } else {
        Want::new(
            CONDITION_PROGRESSING,
            false,
            "RolloutComplete",
            format!("{desired} of {desired} pods run the current spec"),
        )
    }
}

/// Ready: every desired pod ready, no pod failing and no lifecycle step under way.
fn ready(input: &Input<'_>, r: &Rollout, problems: &[PodProblem]) -> Want {
    let suspended = input.suspended;
    let desired = input.desired_replicas;
    let ready_n = r.ready.unwrap_or(0);
    if input.invalid.is_some() {
        Want::new(
            CONDITION_READY,
            false,
            "InvalidSpec",
            format!("the spec is invalid; {ready_n} pods keep running the last valid spec"),
        )
    } else if suspended {
        Want::new(
            CONDITION_READY,
            false,
            "Suspended",
            "spec.state is suspended",
        )
    } else if desired == 0 {
        Want::new(
            CONDITION_READY,
            false,
            "ScaledToZero",
            "spec.parallelism is 0",
        )
    } else if r.pending.is_none()
        && ready_n >= desired
        && problems.is_empty()
        && input.lifecycle_progressing.is_none()
    {
        Want::new(
            CONDITION_READY,
            true,
            "AllReplicasReady",
            format!("{ready_n} of {desired} pods ready"),
        )
    } else {
        Want::new(
            CONDITION_READY,
            false,
            "ReplicasNotReady",
            format!("{ready_n} of {desired} pods ready"),
        )
    }
}

/// The phase, from the conditions (a job being deleted is Deleting whatever they say).
fn phase(
    input: &Input<'_>,
    r: &Rollout,
    degraded: &Want,
    ready: &Want,
    progressing: &Want,
) -> JobPhase {
    let suspended = input.suspended;
    let job = input.job;
    if job.metadata.deletion_timestamp.is_some() {
        JobPhase::Deleting
    } else if degraded.status {
        JobPhase::Degraded
    } else if suspended && r.pending.is_none() && input.lifecycle_progressing.is_none() {
        JobPhase::Suspended
    } else if ready.status {
        JobPhase::Running
    } else if progressing.status {
        JobPhase::Deploying
    } else {
        JobPhase::Pending
    }
}

/// The part of a stored status this operator writes (all of it: `audit` too,
/// from the pods' reports).
pub fn owned_part(s: &StreamJoinJobStatus) -> StreamJoinJobStatus {
    s.clone()
}

/// Whether `new` must be written over what the job carries.
pub fn needs_write(job: &StreamJoinJob, new: &StreamJoinJobStatus) -> bool {
    job.status.as_ref().map(owned_part).as_ref() != Some(new)
}

/// Server-side apply of the status subresource, with the operator's field manager.
pub async fn write(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &StreamJoinJobStatus,
) -> Result<()> {
    // The response is read leniently: the status of an object whose spec cannot be
    // deserialized must still be writable.
    let api: Api<DeserializeGuard<StreamJoinJob>> = Api::namespaced(client.clone(), namespace);
    let patch = json!({
        "apiVersion": "streamjoin.dev/v1alpha1",
        "kind": "StreamJoinJob",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        object: ObjectName::new("StreamJoinJob", namespace, name),
        source: Box::new(source),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::sync::Arc;
    use streamjoin_api::JobState;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    fn sts(replicas: i32, ready: i32, updated: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(1),
                replicas,
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                current_revision: Some("r1".into()),
                update_revision: Some("r1".into()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn pod(name: &str, state: ContainerState, last: Option<ContainerState>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "runtime".into(),
                    state: Some(state),
                    last_state: last,
                    restart_count: 4,
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn waiting(reason: &str) -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(format!("{reason} details")),
            }),
            ..ContainerState::default()
        }
    }

    fn run(observed: &ObservedChildren, invalid: Option<String>) -> StreamJoinJobStatus {
        let job = test_support::job("clicks");
        compute(&Input {
            job: &job,
            observed,
            desired_replicas: 3,
            invalid,
            applied: false,
            not_applied: None,
            now: now(),
            suspended: job.spec.state == JobState::Suspended,
            lifecycle_degraded: None,
            lifecycle_progressing: None,
            extra: Vec::new(),
        })
    }

    fn cond<'a>(
        s: &'a StreamJoinJobStatus,
        t: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.condition(t).expect("condition present")
    }

    #[test]
    fn all_replicas_ready_is_ready_and_running() {
        let observed = ObservedChildren {
            stateful_set: Some(Arc::new(sts(3, 3, 3))),
            ..Default::default()
        };
        let s = run(&observed, None);
        assert_eq!(s.phase, Some(JobPhase::Running));
        assert!(s.is_true("Ready"));
        assert!(!s.is_true("Progressing"));
        assert!(!s.is_true("Degraded"));
        assert_eq!((s.replicas, s.ready_replicas), (Some(3), Some(3)));
        assert_eq!(
            s.selector.as_deref(),
            Some("app.kubernetes.io/name=streamjoin,streamjoin.dev/job=clicks")
        );
        assert_eq!(s.observed_generation, Some(1));
        assert!(
            s.watermark.is_none() && s.last_savepoint.is_none(),
            "unknown facts stay absent"
        );
    }

    #[test]
    fn rollout_in_progress_is_progressing() {
        let observed = ObservedChildren {
            stateful_set: Some(Arc::new(sts(3, 2, 1))),
            ..Default::default()
        };
        let s = run(&observed, None);
        assert_eq!(s.phase, Some(JobPhase::Deploying));
        let p = cond(&s, "Progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "RollingOut")
        );
        assert_eq!(p.message, "1 of 3 pods run the current spec");
        assert!(!s.is_true("Ready"));
        let none = run(&ObservedChildren::default(), None);
        assert_eq!(cond(&none, "Progressing").reason, "Creating");
        assert_eq!(
            none.replicas, None,
            "no StatefulSet observed: no replica count invented"
        );
    }

    #[test]
    fn each_failing_pod_state_gives_degraded_with_its_reason() {
        for reason in [
            "CrashLoopBackOff",
            "ImagePullBackOff",
            "ErrImagePull",
            "CreateContainerConfigError",
        ] {
            let observed = ObservedChildren {
                stateful_set: Some(Arc::new(sts(3, 2, 3))),
                pods: vec![Arc::new(pod("clicks-1", waiting(reason), None))],
                ..Default::default()
            };
            let s = run(&observed, None);
            let d = cond(&s, "Degraded");
            assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", reason));
            assert!(
                d.message.contains("pod clicks-1, container runtime"),
                "{}",
                d.message
            );
            assert_eq!(s.phase, Some(JobPhase::Degraded));
        }
    }

    #[test]
    fn a_recent_oom_kill_is_degraded_and_an_old_one_is_not() {
        let running = ContainerState {
            running: Some(Default::default()),
            ..ContainerState::default()
        };
        let oom_at = |t: Timestamp| ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some("OOMKilled".into()),
                exit_code: 137,
                finished_at: Some(Time(t)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        let recent = pod(
            "clicks-0",
            running.clone(),
            Some(oom_at(now() - SignedDuration::from_mins(2))),
        );
        assert_eq!(
            pod_problem(&recent, now()).map(|p| p.reason),
            Some("OOMKilled".into())
        );
        let old = pod(
            "clicks-0",
            running,
            Some(oom_at(now() - SignedDuration::from_hours(2))),
        );
        assert_eq!(pod_problem(&old, now()), None);
    }

    #[test]
    fn invalid_spec_is_degraded_with_the_message() {
        let observed = ObservedChildren {
            stateful_set: Some(Arc::new(sts(3, 3, 3))),
            ..Default::default()
        };
        let s = run(&observed, Some("spec.output.topic: must differ".into()));
        let d = cond(&s, "Degraded");
        assert_eq!(d.reason, "InvalidSpec");
        assert!(d.message.starts_with("spec.output.topic: must differ"));
        assert_eq!(cond(&s, "Ready").reason, "InvalidSpec");
        assert_eq!(s.phase, Some(JobPhase::Degraded));
    }

    #[test]
    fn suspended_job_scaled_to_zero_is_suspended() {
        let mut job = test_support::job("clicks");
        job.spec.state = JobState::Suspended;
        let observed = ObservedChildren {
            stateful_set: Some(Arc::new(sts(0, 0, 0))),
            ..Default::default()
        };
        let s = compute(&Input {
            job: &job,
            observed: &observed,
            desired_replicas: 0,
            invalid: None,
            applied: false,
            not_applied: None,
            now: now(),
            suspended: job.spec.state == JobState::Suspended,
            lifecycle_degraded: None,
            lifecycle_progressing: None,
            extra: Vec::new(),
        });
        assert_eq!(s.phase, Some(JobPhase::Suspended));
        assert_eq!(cond(&s, "Ready").reason, "Suspended");
    }

    #[test]
    fn recomputing_an_unchanged_status_needs_no_write() {
        let observed = ObservedChildren {
            stateful_set: Some(Arc::new(sts(3, 3, 3))),
            ..Default::default()
        };
        let mut job = test_support::job("clicks");
        let first = compute(&Input {
            job: &job,
            observed: &observed,
            desired_replicas: 3,
            invalid: None,
            applied: false,
            not_applied: None,
            now: now(),
            suspended: job.spec.state == JobState::Suspended,
            lifecycle_degraded: None,
            lifecycle_progressing: None,
            extra: Vec::new(),
        });
        assert!(needs_write(&job, &first));
        job.status = Some(first);
        let later = now() + SignedDuration::from_mins(5);
        let second = compute(&Input {
            job: &job,
            observed: &observed,
            desired_replicas: 3,
            invalid: None,
            applied: false,
            not_applied: None,
            now: later,
            suspended: false,
            lifecycle_degraded: None,
            lifecycle_progressing: None,
            extra: Vec::new(),
        });
        assert!(!needs_write(&job, &second));
    }
}
