//! Deleting savepoints (retention, and what deleting the job removes): each one
//! through a ready pod's admin API when it lies in the pods' location, the rest
//! through a cleanup Job. A deletion that fails stays in the history with its
//! error, reported as a Warning, and is tried again.

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::events::EventType;
use streamjoin_api::{SavepointStatus, StreamJoinJob, StreamJoinJobStatus};

use super::machine::Note;
use super::observe::{PodReports, runtime_statuses};
use super::pods::{Scope, token};
use super::retention::{self, CleanupJobFacts, CleanupOutcome, CleanupStep, Route};
use crate::build::JobRef;
use crate::build::cleanup_job::{self, SAVEPOINTS_ANNOTATION};
use crate::context::Context;
use crate::error::Result;

/// Deletes `doomed`. Returns whether some are still on their way (a cleanup Job
/// at work or to be started).
/// `answering`: a pod whose admin API answered in this reconcile.
pub(super) async fn delete(
    s: &Scope<'_>,
    token: &str,
    answering: Option<i32>,
    doomed: &[SavepointStatus],
    status: &mut StreamJoinJobStatus,
    notes: &mut Vec<Note>,
) -> Result<bool> {
    let ready = answering;
    let location = s.job.spec.savepoints.location.as_deref();
    let mut waiting = Vec::new();
    for sp in doomed {
        match (retention::route(sp, location, ready.is_some()), ready) {
            (Route::Pod { id }, Some(ordinal)) => {
                let pod = s.pod(ordinal);
                match s.ctx.admin.delete_savepoint(&pod, token, &id).await {
                    Ok(()) => forget(status, &sp.location, notes),
                    Err(e) => not_deleted(status, &sp.location, &e.to_string(), notes),
                }
            }
            _ => waiting.push(sp.location.clone()),
        }
    }
    let facts = s.observed.cleanup_job.as_deref().map(job_facts);
    match retention::cleanup_step(&waiting, facts.as_ref()) {
        CleanupStep::Nothing => Ok(false),
        CleanupStep::Start(locations) => {
            let job = cleanup_job::build(s.r, &locations)?;
            crate::apply::ssa(&s.ctx.client, s.r.namespace, &job).await?;
            notes.push(Note {
                warning: false,
                reason: "SavepointCleanupStarted",
                message: format!(
                    "no pod runs to delete {} savepoint(s): Job {} deletes them",
                    locations.len(),
                    cleanup_job::cleanup_job_name(s.r.name)
                ),
            });
            Ok(true)
        }
        CleanupStep::Wait => Ok(true),
        CleanupStep::Deleted(locations) => {
            for l in &locations {
                forget(status, l, notes);
            }
            Ok(!waiting.is_empty())
        }
        CleanupStep::Failed {
            uid,
            locations,
            message,
        } => {
            let first = s.ctx.with_memory(&s.r.owner.uid, |m| {
                m.cleanup_failure_reported.replace(uid.clone()) != Some(uid)
            });
            if first {
                let name = cleanup_job::cleanup_job_name(s.r.name);
                let what = format!(
                    "Job {name} failed ({message}; `kubectl logs job/{name}`), tried again in {} s",
                    cleanup_job::TTL_SECONDS
                );
                for l in &locations {
                    not_deleted(status, l, &what, notes);
                }
            }
            Ok(true)
        }
    }
}

/// Drops `location` from the history, with a Normal note, when it was there.
fn forget(status: &mut StreamJoinJobStatus, location: &str, notes: &mut Vec<Note>) {
    let before = status.savepoint_history.len();
    status.savepoint_history.retain(|h| h.location != location);
    if status.savepoint_history.len() < before {
        notes.push(Note {
            warning: false,
            reason: "SavepointDeleted",
            message: format!("savepoint {location} deleted"),
        });
    }
}

/// Keeps `location` in the history with `why`, with a Warning note.
fn not_deleted(status: &mut StreamJoinJobStatus, location: &str, why: &str, notes: &mut Vec<Note>) {
    for h in status
        .savepoint_history
        .iter_mut()
        .filter(|h| h.location == location)
    {
        h.deletion_error = Some(why.chars().take(300).collect());
    }
    notes.push(Note {
        warning: true,
        reason: "SavepointNotDeleted",
        message: format!(
            "savepoint {location} not deleted (kept in the history, tried again): {why}"
        ),
    });
}

/// The first pod that answered the admin API.
pub(super) fn answering(pods: &PodReports) -> Option<i32> {
    pods.statuses
        .iter()
        .position(Option::is_some)
        .and_then(|i| i32::try_from(i).ok())
}

fn job_facts(job: &Job) -> CleanupJobFacts {
    let locations = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SAVEPOINTS_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let true_of = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let outcome = if true_of("Complete").is_some() {
        CleanupOutcome::Succeeded
    } else if let Some(c) = true_of("Failed") {
        CleanupOutcome::Failed(
            [c.reason.as_deref(), c.message.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        )
    } else {
        CleanupOutcome::Running
    };
    CleanupJobFacts {
        uid: job.metadata.uid.clone().unwrap_or_default(),
        locations,
        outcome,
    }
}

/// A job being deleted: deletes the savepoints `savepoints.onDelete` removes.
/// Returns whether some are left (the finalizer waits for them), with the notes
/// to publish.
pub async fn on_job_deletion(
    job: &StreamJoinJob,
    ctx: &Context,
) -> Result<(bool, Vec<(EventType, &'static str, String)>)> {
    let r = JobRef::new(job)?;
    let old = job.status.clone().unwrap_or_default();
    let doomed = retention::on_job_deletion(&old.savepoint_history, job.spec.savepoints.on_delete);
    if doomed.is_empty() {
        return Ok((false, Vec::new()));
    }
    let observed = ctx.stores.observe(r.namespace, r.name);
    let s = Scope {
        job,
        ctx,
        r: &r,
        observed: &observed,
        now: (ctx.now)(),
    };
    let token = token(ctx, &r).await?;
    let mut status = old.clone();
    let mut notes = Vec::new();
    let pods = runtime_statuses(&s).await;
    let pending = delete(
        &s,
        &token,
        answering(&pods),
        &doomed,
        &mut status,
        &mut notes,
    )
    .await?;
    if status != old {
        crate::status::write(&ctx.client, r.namespace, r.name, &status).await?;
    }
    let left = pending
        || !retention::on_job_deletion(&status.savepoint_history, job.spec.savepoints.on_delete)
            .is_empty();
    let events = notes
        .into_iter()
        .map(|n| {
            let t = if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            (t, n.reason, n.message)
        })
        .collect();
    Ok((left, events))
}
