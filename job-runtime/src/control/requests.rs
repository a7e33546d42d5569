//! Requests that reach the workers from outside their loop (the admin API):
//! savepoints, stop-with-savepoint, and the record of what each worker last
//! checkpointed. Workers look at one atomic counter per step; everything else
//! is behind locks taken only when that counter moved.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::durability::savepoint::StagedShard;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SavepointState {
    Pending,
    Completed,
    Failed,
}

/// What `GET /v1/savepoints/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavepointInfo {
    pub id: String,
    pub state: SavepointState,
    pub stop: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub requested_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// A savepoint the workers are taking.
#[derive(Debug)]
pub struct SavepointRun {
    pub id: String,
    pub stop: bool,
    /// Where the workers write their shards' parts before the upload.
    pub staging: PathBuf,
    remaining: AtomicUsize,
    staged: Mutex<Vec<StagedShard>>,
    errors: Mutex<Vec<String>>,
    done: tokio::sync::Notify,
}

impl SavepointRun {
    /// A worker's part: its shards, or the error that stopped them.
    pub fn worker_done(&self, shards: Vec<StagedShard>, error: Option<String>) {
        lock(&self.staged).extend(shards);
        if let Some(e) = error {
            lock(&self.errors).push(e);
        }
        if self.remaining.fetch_sub(1, Relaxed) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits until every worker did its part; the shards, or the errors.
    pub async fn finished(&self) -> Result<Vec<StagedShard>, String> {
        while self.remaining.load(Relaxed) > 0 {
            self.done.notified().await;
        }
        let errors = lock(&self.errors).clone();
        if errors.is_empty() {
            Ok(lock(&self.staged).clone())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The newest checkpoint a worker completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LastCheckpoint {
    pub id: u64,
    pub completed_at_ms: i64,
    pub duration_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("savepoint {0} is in progress; wait for it before requesting another")]
    Busy(String),
    #[error("the job was stopped with savepoint {0}; it takes no further savepoints")]
    Stopped(String),
    #[error("savepoints.location is not set in the job manifest")]
    NoLocation,
}

pub struct Control {
    workers: usize,
    /// Moves whenever a worker has something new to look at.
    generation: AtomicU64,
    active: Mutex<Option<Arc<SavepointRun>>>,
    savepoints: Mutex<BTreeMap<String, SavepointInfo>>,
    /// Set once every worker finished its part of a stop-with-savepoint.
    stopped_with: Mutex<Option<String>>,
    halted: AtomicBool,
    last_checkpoints: Mutex<Vec<Option<LastCheckpoint>>>,
    staging_root: PathBuf,
    has_location: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker poisons nothing we cannot still read.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Control {
    pub fn new(workers: usize, staging_root: PathBuf, has_location: bool) -> Arc<Self> {
        Arc::new(Self {
            workers,
            generation: AtomicU64::new(0),
            active: Mutex::new(None),
            savepoints: Mutex::new(BTreeMap::new()),
            stopped_with: Mutex::new(None),
            halted: AtomicBool::new(false),
            last_checkpoints: Mutex::new(vec![None; workers]),
            staging_root,
            has_location,
        })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Starts a savepoint; asking again for the id in progress or done answers
    /// with it (an operator that restarted repeats its request).
    pub fn request_savepoint(
        &self,
        id: String,
        stop: bool,
        now_ms: i64,
    ) -> Result<(Arc<SavepointRun>, bool), RequestError> {
        if !self.has_location {
            return Err(RequestError::NoLocation);
        }
        let mut active = lock(&self.active);
        if let Some(run) = active.as_ref() {
            if run.id == id {
                return Ok((run.clone(), false));
            }
            return Err(RequestError::Busy(run.id.clone()));
        }
        if let Some(done) = lock(&self.savepoints).get(&id)
            && done.state != SavepointState::Failed
        {
            let run = Arc::new(SavepointRun {
                id: id.clone(),
                stop: done.stop,
                staging: self.staging_root.join(&id),
                remaining: AtomicUsize::new(0),
                staged: Mutex::new(Vec::new()),
                errors: Mutex::new(Vec::new()),
                done: tokio::sync::Notify::new(),
            });
            return Ok((run, false));
        }
        if let Some(s) = lock(&self.stopped_with).as_ref() {
            return Err(RequestError::Stopped(s.clone()));
        }
        let run = Arc::new(SavepointRun {
            id: id.clone(),
            stop,
            staging: self.staging_root.join(&id),
            remaining: AtomicUsize::new(self.workers),
            staged: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            done: tokio::sync::Notify::new(),
        });
        let mut known = lock(&self.savepoints);
        known.insert(
            id.clone(),
            SavepointInfo {
                id,
                state: SavepointState::Pending,
                stop,
                path: None,
                error: None,
                requested_ms: now_ms,
                duration_ms: None,
            },
        );
        forget_oldest(&mut known);
        drop(known);
        *active = Some(run.clone());
        self.generation.fetch_add(1, Relaxed);
        Ok((run, true))
    }

    /// The savepoint a worker has not taken its part of yet, if any.
    pub fn active(&self) -> Option<Arc<SavepointRun>> {
        lock(&self.active).clone()
    }

    /// Records the outcome of the active savepoint and lets the next one start.
    pub fn finish_savepoint(
        &self,
        run: &SavepointRun,
        result: Result<String, String>,
        duration_ms: i64,
    ) {
        let mut active = lock(&self.active);
        if let Some(info) = lock(&self.savepoints).get_mut(&run.id) {
            info.duration_ms = Some(duration_ms);
            match result {
                Ok(path) => {
                    info.state = SavepointState::Completed;
                    info.path = Some(path);
                }
                Err(e) => {
                    info.state = SavepointState::Failed;
                    info.error = Some(e);
                }
            }
        }
        if run.stop {
            *lock(&self.stopped_with) = Some(run.id.clone());
        }
        *active = None;
    }

    pub fn savepoint(&self, id: &str) -> Option<SavepointInfo> {
        lock(&self.savepoints).get(id).cloned()
    }

    /// The newest savepoint requested, for the status.
    pub fn latest_savepoint(&self) -> Option<SavepointInfo> {
        lock(&self.savepoints)
            .values()
            .max_by_key(|s| s.requested_ms)
            .cloned()
    }

    /// A worker stopped reading for a stop-with-savepoint.
    pub fn set_halted(&self) {
        self.halted.store(true, Relaxed);
    }

    /// Whether input processing stopped for a stop-with-savepoint.
    pub fn halted(&self) -> bool {
        self.halted.load(Relaxed)
    }

    pub fn record_checkpoint(&self, worker: usize, c: LastCheckpoint) {
        if let Some(slot) = lock(&self.last_checkpoints).get_mut(worker) {
            *slot = Some(c);
        }
    }

    /// The process's last complete checkpoint: the oldest of the workers' newest,
    /// so every shard has one at least this recent; none until every worker has one.
    pub fn last_checkpoint(&self) -> Option<LastCheckpoint> {
        let all = lock(&self.last_checkpoints);
        let mut oldest: Option<LastCheckpoint> = None;
        for c in all.iter() {
            let c = (*c)?;
            if oldest.is_none_or(|o| c.completed_at_ms < o.completed_at_ms) {
                oldest = Some(c);
            }
        }
        oldest
    }
}

/// Savepoints remembered for `GET /v1/savepoints/{id}`: the newest; a process
/// taking one every few minutes for months must not grow without bound.
pub const REMEMBERED_SAVEPOINTS: usize = 64;

/// Drops the oldest finished savepoints beyond [`REMEMBERED_SAVEPOINTS`].
fn forget_oldest(known: &mut BTreeMap<String, SavepointInfo>) {
    while known.len() > REMEMBERED_SAVEPOINTS {
        let oldest = known
            .values()
            .filter(|i| i.state != SavepointState::Pending)
            .min_by_key(|i| i.requested_ms)
            .map(|i| i.id.clone());
        match oldest {
            Some(id) => known.remove(&id),
            None => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(workers: usize) -> Arc<Control> {
        Control::new(workers, PathBuf::from("/tmp/sp"), true)
    }

    #[test]
    fn a_second_savepoint_waits_for_the_first_and_the_same_id_is_idempotent() {
        let c = control(2);
        let (run, new) = c.request_savepoint("a".into(), false, 1).expect("first");
        assert!(new);
        let g = c.generation();
        let (again, new) = c.request_savepoint("a".into(), false, 2).expect("same id");
        assert!(!new);
        assert!(Arc::ptr_eq(&run, &again));
        assert_eq!(
            c.generation(),
            g,
            "a repeated request does not wake workers"
        );
        assert_eq!(
            c.request_savepoint("b".into(), false, 3).map(|_| ()),
            Err(RequestError::Busy("a".into()))
        );
        c.finish_savepoint(&run, Ok("/sp/a".into()), 5);
        let info = c.savepoint("a").expect("recorded");
        assert_eq!(info.state, SavepointState::Completed);
        assert_eq!(info.path.as_deref(), Some("/sp/a"));
        let (_, new) = c.request_savepoint("a".into(), false, 4).expect("done id");
        assert!(!new, "a completed savepoint is not taken again");
        assert!(c.request_savepoint("b".into(), false, 6).expect("next").1);
    }

    #[test]
    fn after_a_stop_with_savepoint_no_other_savepoint_starts() {
        let c = control(1);
        let (run, _) = c.request_savepoint("s".into(), true, 1).expect("stop");
        c.finish_savepoint(&run, Ok("/sp/s".into()), 1);
        assert_eq!(
            c.request_savepoint("t".into(), false, 2).map(|_| ()),
            Err(RequestError::Stopped("s".into()))
        );
    }

    #[test]
    fn a_failed_savepoint_can_be_requested_again_with_its_id() {
        let c = control(1);
        let (run, _) = c.request_savepoint("f".into(), false, 1).expect("first");
        c.finish_savepoint(&run, Err("disk full".into()), 1);
        assert_eq!(
            c.savepoint("f").expect("kept").state,
            SavepointState::Failed
        );
        assert!(c.request_savepoint("f".into(), false, 2).expect("retry").1);
    }

    #[test]
    fn only_the_newest_savepoints_are_remembered() {
        let c = control(1);
        let n = REMEMBERED_SAVEPOINTS as i64 + 10;
        for i in 0..n {
            let (run, _) = c
                .request_savepoint(format!("sp-{i}"), false, i)
                .expect("request");
            c.finish_savepoint(&run, Ok(format!("/sp/{i}")), 1);
        }
        assert!(c.savepoint("sp-0").is_none(), "the oldest is forgotten");
        assert!(c.savepoint(&format!("sp-{}", n - 1)).is_some());
        assert!(
            c.savepoint(&format!("sp-{}", n - REMEMBERED_SAVEPOINTS as i64))
                .is_some()
        );
        assert_eq!(c.latest_savepoint().map(|s| s.requested_ms), Some(n - 1));
    }

    #[test]
    fn no_location_refuses_savepoints() {
        let c = Control::new(1, PathBuf::from("/tmp"), false);
        assert_eq!(
            c.request_savepoint("x".into(), false, 1).map(|_| ()),
            Err(RequestError::NoLocation)
        );
    }

    #[test]
    fn the_last_checkpoint_is_the_oldest_of_the_workers_newest() {
        let c = control(2);
        let at = |t| LastCheckpoint {
            id: t as u64,
            completed_at_ms: t,
            duration_ms: 1,
        };
        c.record_checkpoint(0, at(10));
        assert_eq!(c.last_checkpoint(), None, "worker 1 has none yet");
        c.record_checkpoint(1, at(7));
        assert_eq!(c.last_checkpoint(), Some(at(7)));
        c.record_checkpoint(1, at(12));
        assert_eq!(c.last_checkpoint(), Some(at(10)));
    }

    #[tokio::test]
    async fn a_savepoint_finishes_when_every_worker_did_its_part() {
        let c = control(2);
        let (run, _) = c.request_savepoint("p".into(), false, 1).expect("start");
        let waiter = {
            let run = run.clone();
            tokio::spawn(async move { run.finished().await })
        };
        run.worker_done(Vec::new(), None);
        run.worker_done(Vec::new(), Some("shard 3: disk full".into()));
        let result = waiter.await.expect("joined");
        assert_eq!(result.map(|v| v.len()), Err("shard 3: disk full".into()));
    }
}
