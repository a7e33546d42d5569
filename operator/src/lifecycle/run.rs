//! Carries the lifecycle out: observes the runtime pods through the admin API,
//! asks the state machine for a decision, writes the record to status *before*
//! acting (write-ahead), then acts (savepoint requests, pod restarts, watermark
//! advances, retention). Building and applying the children from the record is
//! left to the reconcile pipeline.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use streamjoin_api::{
    AutoscalerStatus, CheckpointStatus, JobState, LifecycleState, LifecycleStatus,
    SAVEPOINT_HISTORY_LIMIT, SavepointRequest, SavepointStatus, SavepointTrigger, StreamJoinJob,
    StreamJoinJobSpec, StreamJoinJobStatus, UpgradeStatus, WatermarkStatus,
};

use super::autoscaler::{self, Sample};
use super::machine::{self, Action, Facts, Lifecycle, Note};
use super::retention;
use crate::admin::{PodAddr, RuntimeStatus, SavepointInfo, SavepointState};
use crate::build::{self, JobRef, secret};
use crate::context::Context;
use crate::error::{Error, ObjectName, Result};
use crate::observe::ObservedChildren;
use crate::status::pod_problem;

/// What the rest of the reconcile needs from the lifecycle.
#[derive(Clone, Debug)]
pub struct LifecycleOutcome {
    /// The spec the children are built from (the record's, not always the job's).
    pub deployed: StreamJoinJobSpec,
    pub restore_from: Option<String>,
    /// Pod-template marker that restarts the pods (see `LifecycleStatus::restart_marker`).
    pub restart_marker: Option<String>,
    /// `--ignore-checkpoints-before` (see `LifecycleStatus::ignore_checkpoints_before`).
    pub ignore_checkpoints_before: Option<String>,
    /// Status fields owned by the lifecycle (record, savepoints, watermark, ...).
    pub status: StreamJoinJobStatus,
    pub notes: Vec<Note>,
    /// All inputs inactive and the watermark force-advanced: `Some(message)`;
    /// `None` when the pods were not heard from.
    pub inputs_inactive: Option<(bool, String)>,
    /// Whether the flow is waiting on something that will not trigger a watch event.
    pub busy: bool,
}

fn ms_to_ts(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

fn ts_string(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The address of one pod; its IP from the pod cache (used with `--pod-address ip`).
fn pod(r: &JobRef<'_>, observed: &ObservedChildren, ordinal: i32) -> PodAddr {
    let name = format!("{}-{ordinal}", build::stateful_set_name(r.name));
    let pod_ip = observed
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        .and_then(|p| p.status.as_ref()?.pod_ip.clone());
    PodAddr {
        namespace: r.namespace.to_owned(),
        job: r.name.to_owned(),
        service: build::service_name(r.name),
        ordinal,
        pod_ip,
    }
}

/// The admin token: from memory, else the Secret, else a new Secret.
async fn token(ctx: &Context, r: &JobRef<'_>) -> Result<String> {
    let uid = r.owner.uid.clone();
    if let Some(t) = ctx.token(&uid) {
        return Ok(t);
    }
    let name = build::admin_secret_name(r.name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), r.namespace);
    let object = ObjectName::new("Secret", r.namespace, &name);
    let err = |source| Error::Apply {
        object: object.clone(),
        source: Box::new(source),
    };
    let found = api.get_opt(&name).await.map_err(err)?;
    let t = match (found.as_ref().map(secret::token_of), found.is_some()) {
        (Some(Some(t)), _) => t,
        (_, true) => {
            // Never overwritten (the pods read it): a person must delete it.
            return Err(Error::Build {
                object,
                reason: "the admin token Secret has no `token` key; delete it and the operator creates a new one".into(),
            });
        }
        (_, false) => {
            let t = secret::new_token();
            api.create(&PostParams::default(), &secret::build(r, &t))
                .await
                .map_err(err)?;
            t
        }
    };
    ctx.remember_token(&uid, &t);
    Ok(t)
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

/// Runs the lifecycle for a valid job. `hash_of` builds the StatefulSet of a
/// deployment and returns its applied hash (to tell whether the observed rollout is
/// the one the record is waiting for).
pub async fn run(
    job: &StreamJoinJob,
    ctx: &Context,
    r: &JobRef<'_>,
    observed: &ObservedChildren,
    now: Timestamp,
    hash_of: &(dyn Fn(&StreamJoinJobSpec, Option<&str>) -> Option<String> + Sync),
) -> Result<LifecycleOutcome> {
    let generation = job.metadata.generation.unwrap_or(0);
    let old_status = job.status.clone().unwrap_or_default();
    let old = old_status.lifecycle.clone();
    let uid = r.owner.uid.clone();
    let token = token(ctx, r).await?;

    // 1. The runtime pods, when some are ready.
    let sts = observed.stateful_set.as_deref();
    let running_pods = sts.and_then(|s| s.spec.replicas).unwrap_or(0);
    let ready = sts
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let mut statuses: Vec<Option<RuntimeStatus>> = Vec::new();
    if ready > 0 {
        for i in 0..running_pods {
            match ctx.admin.status(&pod(r, observed, i)).await {
                Ok(s) => statuses.push(Some(s)),
                Err(e) => {
                    tracing::debug!(job = r.name, error = %e, "runtime status unavailable");
                    statuses.push(None);
                }
            }
        }
    }
    let heard: Vec<&RuntimeStatus> = statuses.iter().flatten().collect();
    let all_heard = !statuses.is_empty() && heard.len() == statuses.len();

    // 2. Partitions: the distinct shards the pods own (each shard is one partition
    //    index of both co-partitioned inputs).
    let mut partitions = old.as_ref().and_then(|o| o.input_partitions);
    if all_heard {
        let mut shards: Vec<i32> = heard
            .iter()
            .flat_map(|s| s.shards.iter().map(|x| x.shard))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        if !shards.is_empty() {
            partitions = Some(i32::try_from(shards.len()).unwrap_or(i32::MAX));
        }
    }

    // 3. The autoscaler's parallelism, when it is on.
    let mut desired = job.spec.clone();
    let mut autoscaler_status = old_status.autoscaler.clone();
    let mut autoscaler_note = None;
    if desired.autoscaler.enabled && desired.state == JobState::Running {
        let current = old
            .as_ref()
            .and_then(machine::stable_spec)
            .map_or(desired.parallelism, |s| s.parallelism);
        let stable_now = old
            .as_ref()
            .is_some_and(|o| o.state == LifecycleState::Running);
        let samples: Vec<Sample> = ctx.with_memory(&uid, |m| {
            if stable_now && all_heard {
                let lag: i64 = heard.iter().filter_map(|s| s.consumer_lag).sum();
                let rate: f64 = heard.iter().filter_map(|s| s.records_in_per_second).sum();
                let busy: Vec<f64> = heard.iter().filter_map(|s| s.busy_ratio).collect();
                let complete = busy.len() == heard.len()
                    && heard
                        .iter()
                        .all(|s| s.consumer_lag.is_some() && s.records_in_per_second.is_some());
                m.samples.push_back(Sample {
                    at: now,
                    records_in_per_second: complete.then_some(rate),
                    busy_ratio: complete.then(|| busy.iter().sum::<f64>() / busy.len() as f64),
                    consumer_lag: complete.then_some(lag),
                    parallelism: current,
                });
            }
            let keep = SignedDuration::from_secs(
                i64::try_from(
                    desired
                        .autoscaler
                        .scale_down_delay
                        .0
                        .as_secs()
                        .max(desired.autoscaler.scale_up_stabilization.0.as_secs()),
                )
                .unwrap_or(i64::MAX),
            ) + SignedDuration::from_mins(5);
            while m
                .samples
                .front()
                .is_some_and(|s| now.duration_since(s.at) > keep)
            {
                m.samples.pop_front();
            }
            m.samples.iter().copied().collect()
        });
        let prev = autoscaler_status.clone().unwrap_or_default();
        if stable_now {
            let last_scale = prev.last_scale_time.as_deref().and_then(|t| t.parse().ok());
            let d = autoscaler::decide(
                &desired.autoscaler,
                current,
                partitions,
                &samples,
                last_scale,
                now,
            );
            let scaled = d.parallelism != current;
            if scaled {
                autoscaler_note = Some(Note {
                    warning: false,
                    reason: "Autoscaling",
                    message: format!("autoscaler: {}", d.reason),
                });
            }
            autoscaler_status = Some(AutoscalerStatus {
                recommended_parallelism: Some(d.parallelism),
                last_scale_time: if scaled {
                    Some(ts_string(now))
                } else {
                    prev.last_scale_time
                },
                reason: Some(d.reason),
            });
            desired.parallelism = d.parallelism;
        } else {
            // A step is under way (the rescale the autoscaler chose, an upgrade, ...):
            // it goes to the parallelism decided last, and nothing new is decided
            // until the job is stable again.
            desired.parallelism = prev
                .recommended_parallelism
                .filter(|p| *p > 0)
                .unwrap_or(current);
        }
    } else if !desired.autoscaler.enabled {
        autoscaler_status = None;
    }

    // 4. The savepoint under way.
    let mut answers: Vec<(i32, SavepointInfo)> = Vec::new();
    if let Some(p) = old.as_ref().and_then(|o| o.savepoint.as_ref()) {
        for q in &p.requests {
            match ctx
                .admin
                .savepoint(&pod(r, observed, q.ordinal), &q.id)
                .await
            {
                Ok(info) => answers.push((q.ordinal, info)),
                Err(e) => tracing::debug!(job = r.name, error = %e, "savepoint state unavailable"),
            }
        }
    }

    // 5. Deployment progress.
    let (rollout, checkpointed) = match old.as_ref() {
        Some(o)
            if matches!(
                o.state,
                LifecycleState::Deploying | LifecycleState::RollingBack
            ) =>
        {
            let hash =
                machine::deployed(o, &desired).and_then(|(s, rf)| hash_of(&s, rf.as_deref()));
            let started_ms = o
                .deploy_started_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map_or(i64::MAX, |t| t.as_millisecond());
            let checkpointed = all_heard
                && heard.iter().all(|s| {
                    s.last_checkpoint
                        .as_ref()
                        .is_some_and(|c| c.completed_at_ms >= started_ms)
                });
            (rollout_complete(observed, hash.as_deref()), checkpointed)
        }
        _ => (false, false),
    };
    let problem = observed
        .pods
        .iter()
        .find_map(|p| pod_problem(p, now))
        .map(|p| format!("{}: {}", p.reason, p.message));

    let last_savepoint_at = old_status
        .last_savepoint
        .as_ref()
        .and_then(|s| s.time.parse().ok());
    let deleting = job.metadata.deletion_timestamp.is_some();
    let facts = Facts {
        generation,
        spec: &desired,
        now,
        rollout_complete: rollout,
        pod_problem: problem,
        checkpointed_since_deploy: checkpointed,
        savepoints: answers,
        last_savepoint_at,
        deleting,
    };

    // 6. Decide; keep the partitions learned.
    let mut d = Lifecycle::decide(old.as_ref(), &facts, &ctx.timing);
    d.record.input_partitions = partitions;
    let mut status = old_status.clone();
    status.autoscaler = autoscaler_status;
    let mut notes: Vec<Note> = autoscaler_note.into_iter().collect();
    notes.append(&mut d.notes);
    if let Some(done) = d.completed.take() {
        record_savepoint(&mut status, &done, now);
    }

    // 7. The force-advance nonce (any state with pods up; at most once per value).
    let nonce = job.spec.watermarks.force_advance_nonce;
    let advance = nonce.is_some() && nonce != d.record.handled_force_advance_nonce && ready > 0;
    if nonce.is_some()
        && nonce != d.record.handled_force_advance_nonce
        && (ready > 0 || old.is_none())
    {
        d.record.handled_force_advance_nonce = nonce;
    }

    // 8. Write ahead.
    status.lifecycle = Some(d.record.clone());
    if Some(&d.record) != old.as_ref() || status != old_status {
        crate::status::write(&ctx.client, r.namespace, r.name, &status).await?;
    }

    // 9. Act.
    match d.action.clone() {
        Action::None | Action::PollSavepoint => {}
        Action::TriggerSavepoint => {
            if let Some(p) = d.record.savepoint.clone() {
                let mut requests = Vec::new();
                let mut failed = Vec::new();
                for i in 0..p.parallelism {
                    match ctx
                        .admin
                        .trigger_savepoint(&pod(r, observed, i), &token, &p.id, p.stop)
                        .await
                    {
                        Ok(id) => requests.push(SavepointRequest {
                            ordinal: i,
                            id,
                            path: None,
                        }),
                        Err(e) => {
                            requests.push(SavepointRequest {
                                ordinal: i,
                                id: p.id.clone(),
                                path: None,
                            });
                            failed.push((
                                i,
                                SavepointInfo {
                                    id: p.id.clone(),
                                    state: SavepointState::Failed,
                                    path: None,
                                    error: Some(e.to_string()),
                                },
                            ));
                        }
                    }
                }
                let mut rec = machine::with_requests(d.record.clone(), requests);
                if !failed.is_empty() {
                    // Decide again with the refusals: Degraded, back-off, restart stopped pods.
                    let mut f2 = facts.clone();
                    let refused: Vec<i32> = failed.iter().map(|(o, _)| *o).collect();
                    // Pods that accepted stop-with-savepoint count as stopped (completed or not).
                    f2.savepoints = rec
                        .savepoint
                        .iter()
                        .flat_map(|p| p.requests.iter())
                        .filter(|q| !refused.contains(&q.ordinal))
                        .map(|q| {
                            (
                                q.ordinal,
                                SavepointInfo {
                                    id: q.id.clone(),
                                    state: SavepointState::Completed,
                                    path: None,
                                    error: None,
                                },
                            )
                        })
                        .chain(failed)
                        .collect();
                    f2.now = now + ctx.timing.savepoint_timeout;
                    let mut d2 = Lifecycle::decide(Some(&rec), &f2, &ctx.timing);
                    if let Some(fl) = d2.record.failure.as_mut() {
                        // Back-off counted from now, not from the forced timeout.
                        fl.retry_at = Some(ts_string(now + machine_backoff(ctx, fl.attempts)));
                    }
                    d2.record.input_partitions = partitions;
                    rec = d2.record;
                    notes.append(&mut d2.notes);
                    if let Action::RestartPods(ords) = d2.action {
                        restart_note(&mut notes, &ords);
                    }
                }
                d.record = rec;
                status.lifecycle = Some(d.record.clone());
                crate::status::write(&ctx.client, r.namespace, r.name, &status).await?;
            }
        }
        Action::RestartPods(ords) => restart_note(&mut notes, &ords),
    }
    if advance {
        for i in 0..running_pods {
            if let Err(e) = ctx
                .admin
                .advance_watermark(&pod(r, observed, i), &token)
                .await
            {
                notes.push(Note {
                    warning: true,
                    reason: "ForceAdvanceFailed",
                    message: e.to_string(),
                });
            }
        }
        notes.push(Note {
            warning: false,
            reason: "WatermarkForceAdvanced",
            message: "watermarks.forceAdvanceNonce changed: every pod advanced its watermark now"
                .into(),
        });
    }

    // 10. Retention (works while suspended: the operator deletes, not the pods).
    let mut protected: Vec<&str> = Vec::new();
    if let Some(rf) = d.record.restore_from.as_deref() {
        protected.push(rf);
    }
    let expired = retention::expired(
        &status.savepoint_history,
        job.spec.savepoints.max_retained,
        &protected,
    );
    if !expired.is_empty() {
        for sp in &expired {
            match ctx.savepoint_store.delete(&sp.location) {
                Ok(()) => {
                    status
                        .savepoint_history
                        .retain(|h| h.location != sp.location);
                    notes.push(Note {
                        warning: false,
                        reason: "SavepointDeleted",
                        message: format!(
                            "savepoint {} deleted (savepoints.maxRetained {})",
                            sp.location, job.spec.savepoints.max_retained
                        ),
                    });
                }
                Err(e) => notes.push(Note {
                    warning: true,
                    reason: "SavepointNotDeleted",
                    message: format!("savepoint {}: {e}", sp.location),
                }),
            }
        }
    }

    // 11. What the pods report.
    let mut inputs_inactive = None;
    if all_heard {
        let wm = heard.iter().filter_map(|s| s.job_watermark_ms).min();
        let lag = heard
            .iter()
            .filter_map(|s| s.watermark_lag_seconds)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        let idle: i32 = heard.iter().filter_map(|s| s.idle_partitions).sum();
        let forced: i64 = heard.iter().filter_map(|s| s.forced_advances).sum();
        let prev = old_status.watermark.clone().unwrap_or_default();
        let last_forced = if forced > prev.forced_advances.unwrap_or(0) {
            Some(ts_string(now))
        } else {
            prev.last_forced_advance.clone()
        };
        status.watermark = Some(WatermarkStatus {
            current: wm.and_then(ms_to_ts).map(ts_string),
            lag_seconds: lag.map(|l| (l * 10.0).round() / 10.0),
            idle_partitions: Some(idle),
            forced_advances: Some(forced),
            last_forced_advance: last_forced,
        });
        let all_idle = heard.iter().all(|s| {
            !s.shards.is_empty()
                && s.shards
                    .iter()
                    .all(|x| !x.idle.is_empty() && x.idle.iter().all(|b| *b))
        });
        let inactive = all_idle && forced > 0;
        if inactive && forced > prev.forced_advances.unwrap_or(0) {
            notes.push(Note { warning: true, reason: "InputsInactive", message: format!("every input partition is inactive (traffic moved to another region?); the watermark was force-advanced ({forced} times so far)") });
        }
        inputs_inactive = Some((
            inactive,
            if inactive {
                format!(
                    "all {idle} input partitions are inactive; the watermark is force-advanced ({forced} forced advances)"
                )
            } else {
                "inputs are active".to_owned()
            },
        ));
        let newest = heard
            .iter()
            .filter_map(|s| s.last_checkpoint.as_ref())
            .max_by_key(|c| c.completed_at_ms);
        if let Some(c) = newest {
            status.last_checkpoint = Some(CheckpointStatus {
                id: Some(c.id),
                time: ms_to_ts(c.completed_at_ms).map(ts_string),
            });
        }
    }
    status.upgrade = upgrade_summary(&d.record, old_status.upgrade.as_ref());

    // 12. Checkpoint volumes past their autoExpand threshold (an operator-only setting:
    //     the job's own spec, not the deployed one).
    let mut warned = ctx.with_memory(&uid, |m| std::mem::take(&mut m.volume_warnings));
    notes.extend(
        crate::volume::expand::run(
            ctx,
            r,
            job.spec.checkpoints.volume.auto_expand.as_ref(),
            &statuses,
            &mut warned,
        )
        .await,
    );
    ctx.with_memory(&uid, |m| m.volume_warnings = warned);

    let (deployed, restore_from) =
        machine::deployed(&d.record, &desired).unwrap_or_else(|| (desired.clone(), None));
    let busy = !matches!(
        d.record.state,
        LifecycleState::Running | LifecycleState::Suspended
    ) || d
        .record
        .failure
        .as_ref()
        .is_some_and(|f| f.retry_at.is_some())
        || job.spec.autoscaler.enabled;
    Ok(LifecycleOutcome {
        deployed,
        restore_from,
        restart_marker: d.record.restart_marker.clone(),
        ignore_checkpoints_before: d.record.ignore_checkpoints_before.clone(),
        status,
        notes,
        inputs_inactive,
        busy,
    })
}

fn machine_backoff(ctx: &Context, attempts: i32) -> SignedDuration {
    let factor = 1i64 << attempts.clamp(1, 16).saturating_sub(1);
    let d = SignedDuration::from_secs(ctx.timing.backoff_base.as_secs().saturating_mul(factor));
    d.min(ctx.timing.backoff_max)
}

/// Stopped pods restart through the pod template (`restart_marker`), not by deletion.
fn restart_note(notes: &mut Vec<Note>, ordinals: &[i32]) {
    notes.push(Note {
        warning: false,
        reason: "RestartingStoppedPods",
        message: format!(
            "pods {ordinals:?} stopped after their part of the failed savepoint; the pods restart from their checkpoints"
        ),
    });
}

fn record_savepoint(status: &mut StreamJoinJobStatus, done: &machine::Completed, now: Timestamp) {
    let sp = SavepointStatus {
        id: Some(done.id.clone()),
        location: done.location.clone(),
        time: ts_string(now),
        trigger: Some(done.trigger),
        parallelism: Some(done.parallelism),
    };
    status.last_savepoint = Some(sp.clone());
    status
        .savepoint_history
        .retain(|h| h.location != sp.location);
    status.savepoint_history.insert(0, sp);
    status.savepoint_history.truncate(SAVEPOINT_HISTORY_LIMIT);
}

fn upgrade_summary(r: &LifecycleStatus, prev: Option<&UpgradeStatus>) -> Option<UpgradeStatus> {
    let state = match r.state {
        LifecycleState::Savepointing
            if r.savepoint
                .as_ref()
                .is_some_and(|p| p.trigger == SavepointTrigger::Upgrade) =>
        {
            "Savepointing"
        }
        LifecycleState::Deploying if r.stable_generation.is_some() => "Restoring",
        LifecycleState::RollingBack => "RollingBack",
        _ => {
            return match (prev, &r.failure) {
                (Some(p), Some(f)) if f.reason == "RolledBack" => Some(UpgradeStatus {
                    state: Some("RolledBack".into()),
                    ..p.clone()
                }),
                (Some(p), _)
                    if p.state.as_deref() != Some("Done")
                        && r.stable_generation == p.to_generation =>
                {
                    Some(UpgradeStatus {
                        state: Some("Done".into()),
                        ..p.clone()
                    })
                }
                (Some(p), _) => Some(p.clone()),
                (None, _) => None,
            };
        }
    };
    let same = prev.filter(|p| {
        p.to_generation
            == r.target_generation
                .or(r.last_change.as_ref().map(|c| c.generation))
    });
    Some(UpgradeStatus {
        state: Some(state.into()),
        from_generation: r.stable_generation,
        to_generation: r
            .last_change
            .as_ref()
            .map(|c| c.generation)
            .or(r.target_generation),
        savepoint: r
            .restore_from
            .clone()
            .or_else(|| same.and_then(|p| p.savepoint.clone())),
        started_at: same
            .and_then(|p| p.started_at.clone())
            .or_else(|| r.deploy_started_at.clone())
            .or_else(|| r.savepoint.as_ref().map(|p| p.started_at.clone())),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Pod, PodStatus};
    use kube::api::ObjectMeta;

    use super::*;
    use crate::build::test_support;

    fn with_ip(name: &str, ip: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                ..PodStatus::default()
            }),
            ..Pod::default()
        })
    }

    #[test]
    fn a_pod_address_carries_the_observed_pod_ip_of_its_ordinal() {
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let observed = ObservedChildren {
            pods: vec![
                with_ip("clicks-0", Some("127.0.0.3")),
                with_ip("clicks-1", None),
            ],
            ..ObservedChildren::default()
        };
        assert_eq!(pod(&r, &observed, 0).pod_ip.as_deref(), Some("127.0.0.3"));
        assert_eq!(pod(&r, &observed, 1).pod_ip, None, "no IP assigned yet");
        assert_eq!(pod(&r, &observed, 2).pod_ip, None, "pod not observed");
        assert_eq!(pod(&r, &observed, 0).service, "clicks");
    }
}
