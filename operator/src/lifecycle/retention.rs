//! Which savepoints to delete and how, all pure: retention by count (keep the
//! newest `maxRetained`, never one that a rollback or a resume restores from),
//! what deleting the job removes (`savepoints.onDelete`), the route of each
//! deletion (a running pod's admin API, else a cleanup Job; both hold the job's
//! store credentials, the operator does not) and the cleanup Job's next step.

use streamjoin_api::{SavepointOnDelete, SavepointStatus};

/// Savepoints to delete from `history` (newest first).
pub fn expired(
    history: &[SavepointStatus],
    max_retained: u32,
    protected: &[&str],
) -> Vec<SavepointStatus> {
    history
        .iter()
        .skip(max_retained as usize)
        .filter(|s| !protected.contains(&s.location.as_str()))
        .cloned()
        .collect()
}

/// Savepoints that deleting the job removes: `take` keeps the newest (the final
/// savepoint), `skip` keeps every one, `none` keeps none.
pub fn on_job_deletion(
    history: &[SavepointStatus],
    on_delete: SavepointOnDelete,
) -> Vec<SavepointStatus> {
    match on_delete {
        SavepointOnDelete::Take => history.iter().skip(1).cloned().collect(),
        SavepointOnDelete::Skip => Vec::new(),
        SavepointOnDelete::None => history.to_vec(),
    }
}

/// How one savepoint is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `DELETE /v1/savepoints/{id}` on a ready pod.
    Pod { id: String },
    /// Listed in a cleanup Job.
    CleanupJob,
}

/// Through a ready pod when the savepoint lies in the job's current location
/// under its id (where the pods' store points); else a cleanup Job.
pub fn route(sp: &SavepointStatus, location: Option<&str>, pod_ready: bool) -> Route {
    let id = sp.id.as_deref().or_else(|| sp.location.rsplit('/').next());
    match (pod_ready, location, id) {
        (true, Some(base), Some(id))
            if sp.location == format!("{}/{id}", base.trim_end_matches('/')) =>
        {
            Route::Pod { id: id.to_owned() }
        }
        _ => Route::CleanupJob,
    }
}

/// What the cleanup Job of a job tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupJobFacts {
    pub uid: String,
    /// The locations it deletes.
    pub locations: Vec<String>,
    pub outcome: CleanupOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupOutcome {
    Running,
    Succeeded,
    Failed(String),
}

/// The next step with cleanup Jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupStep {
    Nothing,
    /// Create a Job deleting these.
    Start(Vec<String>),
    /// A Job is at work.
    Wait,
    /// These are gone: drop them from the history. Others wait until the finished
    /// Job is removed (its TTL) and the next one starts.
    Deleted(Vec<String>),
    /// The Job failed: keep them in the history; they are tried again once the
    /// Job is removed.
    Failed {
        uid: String,
        locations: Vec<String>,
        message: String,
    },
}

/// Decides the step from the savepoints waiting for a Job and the Job seen.
pub fn cleanup_step(waiting: &[String], job: Option<&CleanupJobFacts>) -> CleanupStep {
    match job {
        None if waiting.is_empty() => CleanupStep::Nothing,
        None => CleanupStep::Start(waiting.to_vec()),
        Some(j) => match &j.outcome {
            CleanupOutcome::Running => CleanupStep::Wait,
            CleanupOutcome::Succeeded => CleanupStep::Deleted(j.locations.clone()),
            CleanupOutcome::Failed(message) => CleanupStep::Failed {
                uid: j.uid.clone(),
                locations: j.locations.clone(),
                message: message.clone(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(n: u32) -> SavepointStatus {
        SavepointStatus {
            id: Some(format!("sp-{n}")),
            location: format!("s3://b/jobs/a/sp-{n}"),
            time: format!("2027-01-01T00:00:{n:02}Z"),
            trigger: None,
            parallelism: Some(2),
            deletion_error: None,
        }
    }

    fn locations(v: Vec<SavepointStatus>) -> Vec<String> {
        v.into_iter().map(|s| s.location).collect()
    }

    #[test]
    fn keeps_the_newest_and_deletes_the_rest() {
        let h: Vec<_> = (0..5).rev().map(sp).collect(); // newest first: 4,3,2,1,0
        assert_eq!(
            locations(expired(&h, 2, &[])),
            [
                "s3://b/jobs/a/sp-2",
                "s3://b/jobs/a/sp-1",
                "s3://b/jobs/a/sp-0"
            ]
        );
    }

    #[test]
    fn never_deletes_what_a_rollback_or_resume_needs() {
        let h: Vec<_> = (0..5).rev().map(sp).collect();
        let gone = expired(&h, 1, &["s3://b/jobs/a/sp-0", "s3://b/jobs/a/sp-2"]);
        assert_eq!(
            locations(gone),
            ["s3://b/jobs/a/sp-3", "s3://b/jobs/a/sp-1"]
        );
    }

    #[test]
    fn deleting_the_job_keeps_the_final_savepoint_all_or_none() {
        let h: Vec<_> = (0..3).rev().map(sp).collect();
        assert_eq!(
            locations(on_job_deletion(&h, SavepointOnDelete::Take)),
            ["s3://b/jobs/a/sp-1", "s3://b/jobs/a/sp-0"]
        );
        assert!(on_job_deletion(&h, SavepointOnDelete::Skip).is_empty());
        assert_eq!(on_job_deletion(&h, SavepointOnDelete::None).len(), 3);
    }

    #[test]
    fn a_ready_pod_deletes_what_lies_in_its_location_and_a_job_the_rest() {
        let s = sp(1);
        let here = Some("s3://b/jobs/a/");
        assert_eq!(
            route(&s, here, true),
            Route::Pod {
                id: "sp-1".to_owned()
            }
        );
        assert_eq!(route(&s, here, false), Route::CleanupJob);
        assert_eq!(route(&s, Some("s3://b/jobs/old"), true), Route::CleanupJob);
        assert_eq!(route(&s, None, true), Route::CleanupJob);
    }

    #[test]
    fn the_cleanup_job_starts_waits_and_reports_what_it_did() {
        let waiting = vec!["s3://b/x/sp-1".to_owned()];
        assert_eq!(cleanup_step(&[], None), CleanupStep::Nothing);
        assert_eq!(
            cleanup_step(&waiting, None),
            CleanupStep::Start(waiting.clone())
        );
        let mut job = CleanupJobFacts {
            uid: "u1".to_owned(),
            locations: waiting.clone(),
            outcome: CleanupOutcome::Running,
        };
        assert_eq!(cleanup_step(&waiting, Some(&job)), CleanupStep::Wait);
        job.outcome = CleanupOutcome::Succeeded;
        assert_eq!(
            cleanup_step(&[], Some(&job)),
            CleanupStep::Deleted(waiting.clone())
        );
        job.outcome = CleanupOutcome::Failed("BackoffLimitExceeded".to_owned());
        assert!(matches!(
            cleanup_step(&waiting, Some(&job)),
            CleanupStep::Failed { .. }
        ));
    }
}
