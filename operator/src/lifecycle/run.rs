//! Carries the lifecycle out, in three parts: observe the facts (the runtime pods
//! through the admin API, the StatefulSet's rollout: [`observe`], with the
//! autoscaler's parallelism from [`scaling`]), ask the state machine for a decision
//! ([`Lifecycle::decide`]), write the record to status *before* acting
//! (write-ahead), then act ([`act`]: savepoint requests, pod restarts, watermark
//! advances, retention) and summarise what the pods report ([`summary`]). Building
//! and applying the children from the record is left to the reconcile pipeline.

use k8s_openapi::jiff::Timestamp;
use streamjoin_api::{
    LifecycleState, LifecycleStatus, StreamJoinJob, StreamJoinJobSpec, StreamJoinJobStatus,
};

use super::machine::{self, Decision, Lifecycle, Note};
use super::observe::{self, HashOf};
use super::pods::{Scope, token};
use super::{act, audit, discard, scaling, summary};
use crate::admin::RuntimeStatus;
use crate::build::JobRef;
use crate::context::Context;
use crate::error::Result;
use crate::observe::ObservedChildren;

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
    /// The status as stored after the write-ahead: what came after it (retention,
    /// the pods' reports) is written only if the reconcile compares with this.
    pub written: StreamJoinJobStatus,
    pub notes: Vec<Note>,
    /// All inputs inactive and the watermark force-advanced: `Some(message)`;
    /// `None` when the pods were not heard from.
    pub inputs_inactive: Option<(bool, String)>,
    /// Whether the flow is waiting on something that will not trigger a watch event.
    pub busy: bool,
    /// A savepoint is under way: the pods say when it completes only when asked.
    pub savepoint_pending: bool,
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
    hash_of: HashOf<'_>,
) -> Result<LifecycleOutcome> {
    let s = Scope {
        job,
        ctx,
        r,
        observed,
        now,
    };
    let old_status = job.status.clone().unwrap_or_default();
    let old = old_status.lifecycle.clone();
    let token = token(ctx, r).await?;

    // Observe: 1. the pods, 2. the partitions, 3. the autoscaler's parallelism,
    // 4. the savepoint under way, 5. the deployment's progress.
    let pods = observe::runtime_statuses(&s).await;
    let partitions = observe::partitions(old.as_ref(), &pods);
    let scaling = scaling::desired_spec(&s, &old_status, &pods, partitions);
    let answers = observe::savepoint_answers(&s, old.as_ref()).await;
    let facts = observe::facts(&s, &old_status, &scaling.desired, &pods, answers, hash_of);

    // 6. Decide; keep the partitions learned.
    let mut d = Lifecycle::decide(old.as_ref(), &facts, &ctx.timing);
    d.record.input_partitions = partitions;
    let mut status = old_status.clone();
    status.autoscaler = scaling.status;
    let mut notes: Vec<Note> = scaling.note.into_iter().collect();
    notes.append(&mut d.notes);
    if let Some(done) = d.completed.take() {
        summary::record_savepoint(&mut status, &done, now);
    }
    // 7. The force-advance nonce.
    let advance = take_force_advance_nonce(job, &mut d.record, pods.ready, old.is_none());

    // Act: 8. write ahead, 9. the decided action, then watermark advances,
    // 10. retention, 11. what the pods report, 12. checkpoint volumes.
    write_ahead(&s, &d, old.as_ref(), &old_status, &mut status).await?;
    act::act(
        &s,
        &token,
        &mut d,
        &facts,
        partitions,
        &mut notes,
        &mut status,
    )
    .await?;
    let written = status.clone();
    if advance {
        act::advance_watermarks(&s, &token, pods.running_pods, &mut notes).await;
    }
    let deleting = act::delete_expired_savepoints(
        &s,
        &token,
        discard::answering(&pods),
        &d.record,
        &mut status,
        &mut notes,
    )
    .await?;
    let inputs_inactive = if pods.all_heard() {
        if let Some(a) = audit::from_pods(&pods.heard(), &job.spec.audit, now) {
            status.audit = Some(a);
        }
        summary::from_pod_reports(&pods.heard(), &old_status, now, &mut status, &mut notes)
    } else {
        None
    };
    status.upgrade = summary::upgrade_summary(&d.record, old_status.upgrade.as_ref());
    expand_volumes(&s, &pods.statuses, &mut notes).await;
    let mut out = outcome(job, d, &scaling.desired, status, notes, inputs_inactive);
    out.busy |= deleting;
    out.written = written;
    Ok(out)
}

/// Whether the pods advance their watermark now: `watermarks.forceAdvanceNonce`
/// changed and pods are up. The record marks the nonce handled (at most once per
/// value; also for a new job, which has no pods to advance yet).
fn take_force_advance_nonce(
    job: &StreamJoinJob,
    record: &mut LifecycleStatus,
    ready: i32,
    first_run: bool,
) -> bool {
    let nonce = job.spec.watermarks.force_advance_nonce;
    let advance = nonce.is_some() && nonce != record.handled_force_advance_nonce && ready > 0;
    if nonce.is_some() && nonce != record.handled_force_advance_nonce && (ready > 0 || first_run) {
        record.handled_force_advance_nonce = nonce;
    }
    advance
}

/// 8. Writes the record (and the status around it) before acting on it, when
///    anything changed.
async fn write_ahead(
    s: &Scope<'_>,
    d: &Decision,
    old: Option<&LifecycleStatus>,
    old_status: &StreamJoinJobStatus,
    status: &mut StreamJoinJobStatus,
) -> Result<()> {
    status.lifecycle = Some(d.record.clone());
    if Some(&d.record) != old || status != old_status {
        crate::status::write(&s.ctx.client, s.r.namespace, s.r.name, status).await?;
    }
    Ok(())
}

/// 12. Checkpoint volumes past their autoExpand threshold (an operator-only setting:
///     the job's own spec, not the deployed one).
async fn expand_volumes(s: &Scope<'_>, statuses: &[Option<RuntimeStatus>], notes: &mut Vec<Note>) {
    let uid = &s.r.owner.uid;
    let mut warned = s
        .ctx
        .with_memory(uid, |m| std::mem::take(&mut m.volume_warnings));
    notes.extend(
        crate::volume::expand::run(
            s.ctx,
            s.r,
            s.job.spec.checkpoints.volume.auto_expand.as_ref(),
            statuses,
            &mut warned,
        )
        .await,
    );
    s.ctx.with_memory(uid, |m| m.volume_warnings = warned);
}

/// What the reconcile gets: the deployment the record asks for, and whether the
/// job should be looked at again soon.
fn outcome(
    job: &StreamJoinJob,
    d: Decision,
    desired: &StreamJoinJobSpec,
    status: StreamJoinJobStatus,
    notes: Vec<Note>,
    inputs_inactive: Option<(bool, String)>,
) -> LifecycleOutcome {
    let (deployed, restore_from) =
        machine::deployed(&d.record, desired).unwrap_or_else(|| (desired.clone(), None));
    let busy = !matches!(
        d.record.state,
        LifecycleState::Running | LifecycleState::Suspended
    ) || d
        .record
        .failure
        .as_ref()
        .is_some_and(|f| f.retry_at.is_some())
        || job.spec.autoscaler.enabled;
    LifecycleOutcome {
        deployed,
        restore_from,
        restart_marker: d.record.restart_marker.clone(),
        ignore_checkpoints_before: d.record.ignore_checkpoints_before.clone(),
        written: status.clone(),
        status,
        notes,
        inputs_inactive,
        busy,
        savepoint_pending: d.record.savepoint.is_some(),
    }
}
