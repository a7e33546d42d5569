//! The "observe" half of a lifecycle run: what the runtime pods report through the
//! admin API, the input partitions they own, the answers for the savepoint under
//! way and the progress of the deployment, gathered into the state machine's
//! [`Facts`].

use k8s_openapi::jiff::Timestamp;
use streamjoin_api::{LifecycleState, LifecycleStatus, StreamJoinJobSpec, StreamJoinJobStatus};

use super::machine::{self, Facts};
use super::pods::Scope;
use crate::admin::{RuntimeStatus, SavepointInfo};
use crate::build;
use crate::observe::ObservedChildren;
use crate::status::pod_problem;

/// Builds the StatefulSet of a deployment (spec, restore point) and returns its
/// applied hash.
pub type HashOf<'a> = &'a (dyn Fn(&StreamJoinJobSpec, Option<&str>) -> Option<String> + Sync);

/// What the runtime pods said in this run.
pub(super) struct PodReports {
    /// Replicas of the StatefulSet.
    pub running_pods: i32,
    /// Ready replicas of the StatefulSet.
    pub ready: i32,
    /// One entry per pod when some are ready (`None`: the pod did not answer).
    pub statuses: Vec<Option<RuntimeStatus>>,
}

impl PodReports {
    pub fn heard(&self) -> Vec<&RuntimeStatus> {
        self.statuses.iter().flatten().collect()
    }

    /// Every pod answered (and there was at least one).
    pub fn all_heard(&self) -> bool {
        !self.statuses.is_empty() && self.heard().len() == self.statuses.len()
    }
}

/// 1. The runtime pods' statuses, when some are ready.
pub(super) async fn runtime_statuses(s: &Scope<'_>) -> PodReports {
    let sts = s.observed.stateful_set.as_deref();
    let running_pods = sts.and_then(|s| s.spec.replicas).unwrap_or(0);
    let ready = sts
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let mut statuses: Vec<Option<RuntimeStatus>> = Vec::new();
    if ready > 0 {
        for i in 0..running_pods {
            match s.ctx.admin.status(&s.pod(i)).await {
                Ok(st) => statuses.push(Some(st)),
                Err(e) => {
                    tracing::debug!(job = s.r.name, error = %e, "runtime status unavailable");
                    statuses.push(None);
                }
            }
        }
    }
    PodReports {
        running_pods,
        ready,
        statuses,
    }
}

/// 2. Partitions: the distinct shards the pods own (each shard is one partition
///    index of both co-partitioned inputs); the record's when not every pod answered.
pub(super) fn partitions(old: Option<&LifecycleStatus>, pods: &PodReports) -> Option<i32> {
    let mut partitions = old.and_then(|o| o.input_partitions);
    if pods.all_heard() {
        let mut shards: Vec<i32> = pods
            .heard()
            .iter()
            .flat_map(|s| s.shards.iter().map(|x| x.shard))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        if !shards.is_empty() {
            partitions = Some(i32::try_from(shards.len()).unwrap_or(i32::MAX));
        }
    }
    partitions
}

/// 4. The pods' answers for the savepoint under way.
pub(super) async fn savepoint_answers(
    s: &Scope<'_>,
    old: Option<&LifecycleStatus>,
) -> Vec<(i32, SavepointInfo)> {
    let mut answers: Vec<(i32, SavepointInfo)> = Vec::new();
    if let Some(p) = old.and_then(|o| o.savepoint.as_ref()) {
        for q in &p.requests {
            match s.ctx.admin.savepoint(&s.pod(q.ordinal), &q.id).await {
                Ok(info) => answers.push((q.ordinal, info)),
                Err(e) => {
                    tracing::debug!(job = s.r.name, error = %e, "savepoint state unavailable")
                }
            }
        }
    }
    answers
}

/// 5. Deployment progress: whether the rollout the record waits for is complete, and
///    whether every pod completed a checkpoint since the deployment started.
fn deployment_progress(
    s: &Scope<'_>,
    old: Option<&LifecycleStatus>,
    desired: &StreamJoinJobSpec,
    pods: &PodReports,
    hash_of: HashOf<'_>,
) -> (bool, bool) {
    match old {
        Some(o)
            if matches!(
                o.state,
                LifecycleState::Deploying | LifecycleState::RollingBack
            ) =>
        {
            let hash = machine::deployed(o, desired).and_then(|(s, rf)| hash_of(&s, rf.as_deref()));
            let started_ms = o
                .deploy_started_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map_or(i64::MAX, |t| t.as_millisecond());
            let checkpointed = pods.all_heard()
                && pods.heard().iter().all(|s| {
                    s.last_checkpoint
                        .as_ref()
                        .is_some_and(|c| c.completed_at_ms >= started_ms)
                });
            (rollout_complete(s.observed, hash.as_deref()), checkpointed)
        }
        _ => (false, false),
    }
}

/// The first problem of a pod of the rollout under way: a pod the StatefulSet
/// runs from its update revision, once that revision is the deployed template
/// (`hash`). The pods of the template it replaces are not its failure: a
/// rollback would otherwise be "failing too" from the failed version's
/// crash-looping pods it is about to replace.
pub fn rollout_pod_problem(
    observed: &ObservedChildren,
    hash: Option<&str>,
    now: Timestamp,
) -> Option<String> {
    let sts = observed.stateful_set.as_deref()?;
    let st = sts.status.as_ref()?;
    if hash.is_some() && build::applied_hash(sts) != hash {
        return None;
    }
    if st.observed_generation < sts.metadata.generation {
        return None;
    }
    let revision = st.update_revision.as_deref()?;
    observed
        .pods
        .iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller-revision-hash"))
                .is_some_and(|r| r == revision)
        })
        .find_map(|p| pod_problem(p, now))
        .map(|p| format!("{}: {}", p.reason, p.message))
}

/// Whether the StatefulSet runs exactly `hash` with every replica ready and current.
pub fn rollout_complete(observed: &ObservedChildren, hash: Option<&str>) -> bool {
    let Some(sts) = observed.stateful_set.as_deref() else {
        return false;
    };
    if build::applied_hash(sts) != hash {
        return false;
    }
    let Some(st) = sts.status.as_ref() else {
        return false;
    };
    let want = sts.spec.replicas.unwrap_or(0);
    st.observed_generation >= sts.metadata.generation
        && st.replicas == want
        && st.ready_replicas.unwrap_or(0) == want
        && st.updated_replicas.unwrap_or(0) == want
        && (st.current_revision.is_none() || st.current_revision == st.update_revision)
}

/// Everything the state machine decides on.
pub(super) fn facts<'a>(
    s: &Scope<'_>,
    old_status: &StreamJoinJobStatus,
    desired: &'a StreamJoinJobSpec,
    pods: &PodReports,
    answers: Vec<(i32, SavepointInfo)>,
    hash_of: HashOf<'_>,
) -> Facts<'a> {
    let old = old_status.lifecycle.as_ref();
    let (rollout, checkpointed) = deployment_progress(s, old, desired, pods, hash_of);
    let rolling_out = old.and_then(|o| {
        matches!(
            o.state,
            LifecycleState::Deploying | LifecycleState::RollingBack
        )
        .then(|| machine::deployed(o, desired).and_then(|(s, rf)| hash_of(&s, rf.as_deref())))
    });
    let problem = match rolling_out {
        Some(hash) => rollout_pod_problem(s.observed, hash.as_deref(), s.now),
        None => s
            .observed
            .pods
            .iter()
            .find_map(|p| pod_problem(p, s.now))
            .map(|p| format!("{}: {}", p.reason, p.message)),
    };
    let last_savepoint_at = old_status
        .last_savepoint
        .as_ref()
        .and_then(|s| s.time.parse().ok());
    Facts {
        generation: s.job.metadata.generation.unwrap_or(0),
        spec: desired,
        now: s.now,
        rollout_complete: rollout,
        pod_problem: problem,
        checkpointed_since_deploy: checkpointed,
        savepoints: answers,
        last_savepoint_at,
        deleting: s.job.metadata.deletion_timestamp.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn crash_looping(name: &str, revision: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(
                    "controller-revision-hash".to_owned(),
                    revision.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "runtime".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off 10s".into()),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        })
    }

    /// A StatefulSet applied with `hash` (its generation 2), the controller
    /// having seen generation `seen`, updating to revision `update`.
    fn stateful_set(hash: &str, seen: i64, update: &str) -> Arc<StatefulSet> {
        Arc::new(StatefulSet {
            metadata: ObjectMeta {
                generation: Some(2),
                annotations: Some(BTreeMap::from([(
                    crate::build::APPLIED_HASH.to_owned(),
                    hash.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(seen),
                update_revision: Some(update.into()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        })
    }

    fn observed(sts: Arc<StatefulSet>, pods: Vec<Arc<Pod>>) -> ObservedChildren {
        ObservedChildren {
            stateful_set: Some(sts),
            pods,
            ..ObservedChildren::default()
        }
    }

    #[test]
    fn a_rollback_is_not_failing_from_the_failed_versions_pods_it_replaces() {
        let now = Timestamp::now();
        let failed = vec![
            crash_looping("j-0", "rev-bad"),
            crash_looping("j-1", "rev-bad"),
        ];
        // The rollback's template applied, not yet seen by the controller.
        let o = observed(stateful_set("stable", 1, "rev-bad"), failed.clone());
        assert_eq!(rollout_pod_problem(&o, Some("stable"), now), None);
        // Seen: its revision is the update revision; the old pods are not of it.
        let o = observed(stateful_set("stable", 2, "rev-stable"), failed.clone());
        assert_eq!(rollout_pod_problem(&o, Some("stable"), now), None);
        // The StatefulSet still carries the failed template: nothing to judge.
        let o = observed(stateful_set("bad", 2, "rev-bad"), failed);
        assert_eq!(rollout_pod_problem(&o, Some("stable"), now), None);
    }

    #[test]
    fn a_crash_looping_pod_of_the_deployed_template_fails_the_rollout() {
        let now = Timestamp::now();
        let pods = vec![crash_looping("j-0", "rev-new")];
        let o = observed(stateful_set("new", 2, "rev-new"), pods);
        let problem = rollout_pod_problem(&o, Some("new"), now);
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.starts_with("CrashLoopBackOff") && p.contains("j-0")),
            "{problem:?}"
        );
    }
}
