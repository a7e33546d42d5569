//! The "act" half of a lifecycle run, after the record is written: savepoint
//! requests (deciding again when pods refuse), pod restarts, watermark advances and
//! savepoint retention.

use k8s_openapi::jiff::SignedDuration;
use streamjoin_api::{LifecycleStatus, PendingSavepoint, SavepointRequest, StreamJoinJobStatus};

use super::machine::{self, Action, Decision, Facts, Lifecycle, Note};
use super::pods::{Scope, ts_string};
use super::{discard, retention};
use crate::admin::{SavepointInfo, SavepointState};
use crate::context::Context;
use crate::error::Result;

/// 9. Carries out the decided action; a savepoint's requests go into the record,
///    which is written again.
pub(super) async fn act(
    s: &Scope<'_>,
    token: &str,
    d: &mut Decision,
    facts: &Facts<'_>,
    partitions: Option<i32>,
    notes: &mut Vec<Note>,
    status: &mut StreamJoinJobStatus,
) -> Result<()> {
    match d.action.clone() {
        Action::None | Action::PollSavepoint => {}
        Action::TriggerSavepoint => {
            if let Some(p) = d.record.savepoint.clone() {
                let (requests, failed) = request_savepoints(s, token, &p).await;
                let mut rec = machine::with_requests(d.record.clone(), requests);
                if !failed.is_empty() {
                    rec = decide_after_refusals(s, rec, facts, failed, partitions, notes);
                }
                d.record = rec;
                status.lifecycle = Some(d.record.clone());
                crate::status::write(&s.ctx.client, s.r.namespace, s.r.name, status).await?;
            }
        }
        Action::RestartPods(ords) => restart_note(notes, &ords),
    }
    Ok(())
}

/// Asks every pod of the savepoint for its part: the requests made, and the pods
/// that refused (as failed answers).
async fn request_savepoints(
    s: &Scope<'_>,
    token: &str,
    p: &PendingSavepoint,
) -> (Vec<SavepointRequest>, Vec<(i32, SavepointInfo)>) {
    let mut requests = Vec::new();
    let mut failed = Vec::new();
    for i in 0..p.parallelism {
        match s
            .ctx
            .admin
            .trigger_savepoint(&s.pod(i), token, &p.id, p.stop)
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
    (requests, failed)
}

/// Decides again with the refusals: Degraded, back-off, restart stopped pods.
fn decide_after_refusals(
    s: &Scope<'_>,
    rec: LifecycleStatus,
    facts: &Facts<'_>,
    failed: Vec<(i32, SavepointInfo)>,
    partitions: Option<i32>,
    notes: &mut Vec<Note>,
) -> LifecycleStatus {
    let ctx = s.ctx;
    let now = s.now;
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
    notes.append(&mut d2.notes);
    if let Action::RestartPods(ords) = d2.action {
        restart_note(notes, &ords);
    }
    d2.record
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

/// `watermarks.forceAdvanceNonce` changed: every running pod advances its watermark.
pub(super) async fn advance_watermarks(
    s: &Scope<'_>,
    token: &str,
    running_pods: i32,
    notes: &mut Vec<Note>,
) {
    for i in 0..running_pods {
        if let Err(e) = s.ctx.admin.advance_watermark(&s.pod(i), token).await {
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

/// 10. Retention: deletes the savepoints beyond `savepoints.maxRetained`, never the
///     one the record restores from (through a pod, or a cleanup Job while none
///     runs). Returns whether a deletion is still on its way.
pub(super) async fn delete_expired_savepoints(
    s: &Scope<'_>,
    token: &str,
    answering: Option<i32>,
    record: &LifecycleStatus,
    status: &mut StreamJoinJobStatus,
    notes: &mut Vec<Note>,
) -> Result<bool> {
    let protected: Vec<&str> = record.restore_from.as_deref().into_iter().collect();
    let max_retained = s.job.spec.savepoints.max_retained;
    let expired = retention::expired(&status.savepoint_history, max_retained, &protected);
    discard::delete(s, token, answering, &expired, status, notes).await
}
