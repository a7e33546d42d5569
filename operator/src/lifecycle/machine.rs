//! The lifecycle state machine: one type per state, each with a pure `step` over
//! observed [`Facts`]. A step returns the next record (written to status *before*
//! the action is carried out, so a restarted operator resumes from it) and the one
//! [`Action`] to carry out. Children are always built from the record
//! ([`deployed`]), never from the raw spec.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use streamjoin_api::{
    ChangeClass, ChangeStatus, JobState, LifecycleFailure, LifecycleState, LifecycleStatus,
    PendingSavepoint, SavepointRequest, SavepointTrigger, StreamJoinJobSpec, UpgradeMode,
};

use super::classify::classify;
use crate::admin::{SavepointInfo, SavepointState};

/// Time limits of the flows.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// A savepoint not completed by then has failed.
    pub savepoint_timeout: SignedDuration,
    /// New pods not Ready with a completed checkpoint by then have failed.
    pub deploy_timeout: SignedDuration,
    /// First retry delay after a failed savepoint; doubles per attempt.
    pub backoff_base: SignedDuration,
    pub backoff_max: SignedDuration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            savepoint_timeout: SignedDuration::from_mins(10),
            deploy_timeout: SignedDuration::from_mins(10),
            backoff_base: SignedDuration::from_secs(30),
            backoff_max: SignedDuration::from_mins(10),
        }
    }
}

/// What the reconcile observed, for one decision.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub generation: i64,
    /// The desired spec (valid; parallelism already the autoscaler's when it is on).
    pub spec: &'a StreamJoinJobSpec,
    pub now: Timestamp,
    /// The StatefulSet runs the deployed template with every replica ready.
    pub rollout_complete: bool,
    /// A pod of the job is failing (CrashLoopBackOff, image pull error, ...).
    pub pod_problem: Option<String>,
    /// Every pod reported a checkpoint completed after the deployment started.
    pub checkpointed_since_deploy: bool,
    /// Answers for the savepoint under way, by ordinal (absent: not asked or unreachable).
    pub savepoints: Vec<(i32, SavepointInfo)>,
    /// Time of the newest completed savepoint, for `savepoints.interval`.
    pub last_savepoint_at: Option<Timestamp>,
    /// The job is being deleted and a final savepoint is wanted.
    pub deleting: bool,
}

/// The one thing to do after the record is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond applying the children built from the record.
    None,
    /// Ask every pod of the deployed spec for the savepoint in the record.
    TriggerSavepoint,
    /// Poll the savepoint in the record.
    PollSavepoint,
    /// Restart these pods: they stopped after a savepoint that then failed.
    RestartPods(Vec<i32>),
}

/// Something for `kubectl describe`: an Event (and the record says the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub record: LifecycleStatus,
    pub action: Action,
    pub notes: Vec<Note>,
    /// A savepoint that completed in this step (for `lastSavepoint` and the history).
    pub completed: Option<Completed>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    pub id: String,
    pub location: String,
    pub trigger: SavepointTrigger,
    pub parallelism: i32,
}

/// The states, one type each.
#[derive(Clone, Debug, PartialEq)]
pub enum Lifecycle {
    Deploying(Deploying),
    Running(Running),
    Savepointing(Savepointing),
    RollingBack(RollingBack),
    Suspended(Suspended),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Deploying(pub LifecycleStatus);
#[derive(Clone, Debug, PartialEq)]
pub struct Running(pub LifecycleStatus);
#[derive(Clone, Debug, PartialEq)]
pub struct Savepointing(pub LifecycleStatus, pub PendingSavepoint);
#[derive(Clone, Debug, PartialEq)]
pub struct RollingBack(pub LifecycleStatus);
#[derive(Clone, Debug, PartialEq)]
pub struct Suspended(pub LifecycleStatus);

fn ts(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn parse_ts(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(|s| s.parse().ok())
}

pub fn spec_json(spec: &StreamJoinJobSpec) -> Option<String> {
    serde_json::to_string(spec).ok()
}

pub fn stable_spec(r: &LifecycleStatus) -> Option<StreamJoinJobSpec> {
    r.stable_spec
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
}

fn empty(state: LifecycleState) -> LifecycleStatus {
    LifecycleStatus {
        state,
        target_generation: None,
        deploy_started_at: None,
        restore_from: None,
        ignore_checkpoints_before: None,
        stable_generation: None,
        stable_spec: None,
        savepoint: None,
        last_change: None,
        failure: None,
        rejected_generation: None,
        handled_trigger_nonce: None,
        handled_force_advance_nonce: None,
        restart_marker: None,
        input_partitions: None,
    }
}

fn decision(record: LifecycleStatus, action: Action) -> Decision {
    Decision {
        record,
        action,
        notes: Vec::new(),
        completed: None,
    }
}

fn note(d: &mut Decision, warning: bool, reason: &'static str, message: String) {
    d.notes.push(Note {
        warning,
        reason,
        message,
    });
}

/// The spec the children are built from, and the savepoint the pods restore from.
/// `None` before the first decision.
pub fn deployed(
    r: &LifecycleStatus,
    desired: &StreamJoinJobSpec,
) -> Option<(StreamJoinJobSpec, Option<String>)> {
    // (the restart marker travels separately: `LifecycleStatus::restart_marker`)
    let mut spec = match r.state {
        LifecycleState::Deploying => desired.clone(),
        _ => stable_spec(r)?,
    };
    spec.state = if r.state == LifecycleState::Suspended {
        JobState::Suspended
    } else {
        JobState::Running
    };
    Some((spec, r.restore_from.clone()))
}

impl Lifecycle {
    /// The typed state of a record (`None`: a new job).
    pub fn from_record(r: Option<&LifecycleStatus>) -> Option<Lifecycle> {
        let r = r?.clone();
        Some(match r.state {
            LifecycleState::Deploying => Lifecycle::Deploying(Deploying(r)),
            LifecycleState::Running => Lifecycle::Running(Running(r)),
            LifecycleState::Savepointing => match r.savepoint.clone() {
                Some(p) => Lifecycle::Savepointing(Savepointing(r, p)),
                // A record without its savepoint cannot be resumed: start over from Running.
                None => Lifecycle::Running(Running(LifecycleStatus {
                    state: LifecycleState::Running,
                    ..r
                })),
            },
            LifecycleState::RollingBack => Lifecycle::RollingBack(RollingBack(r)),
            LifecycleState::Suspended => Lifecycle::Suspended(Suspended(r)),
        })
    }

    /// The decision for a job whose record is `r` (none for a new job). Pure.
    pub fn decide(r: Option<&LifecycleStatus>, f: &Facts<'_>, t: &Timing) -> Decision {
        match Lifecycle::from_record(r) {
            None => first(f),
            Some(Lifecycle::Deploying(s)) => s.step(f, t),
            Some(Lifecycle::Running(s)) => s.step(f, t),
            Some(Lifecycle::Savepointing(s)) => s.step(f, t),
            Some(Lifecycle::RollingBack(s)) => s.step(f, t),
            Some(Lifecycle::Suspended(s)) => s.step(f),
        }
    }
}

/// A new job: deploy it (from `initialSavepoint` if given), or record it suspended.
fn first(f: &Facts<'_>) -> Decision {
    let mut r = empty(LifecycleState::Deploying);
    r.target_generation = Some(f.generation);
    r.deploy_started_at = Some(ts(f.now));
    r.restore_from = f.spec.initial_savepoint.clone();
    r.handled_trigger_nonce = f.spec.savepoints.trigger_nonce;
    r.handled_force_advance_nonce = f.spec.watermarks.force_advance_nonce;
    if f.spec.state == JobState::Suspended {
        r.state = LifecycleState::Suspended;
        r.stable_spec = spec_json(f.spec);
        r.stable_generation = Some(f.generation);
        r.deploy_started_at = None;
    }
    let mut d = decision(r, Action::None);
    note(
        &mut d,
        false,
        "Deploying",
        match &f.spec.initial_savepoint {
            Some(sp) => format!("first deployment, restoring from {sp}"),
            None => "first deployment".to_owned(),
        },
    );
    d
}

fn start_savepoint(
    mut r: LifecycleStatus,
    f: &Facts<'_>,
    trigger: SavepointTrigger,
    stop: bool,
    parallelism: i32,
) -> Decision {
    r.state = LifecycleState::Savepointing;
    r.savepoint = Some(PendingSavepoint {
        id: format!(
            "sp-{}-{}-{}",
            f.generation,
            f.now.as_second(),
            trigger_word(trigger)
        ),
        trigger,
        stop,
        started_at: ts(f.now),
        parallelism,
        requests: Vec::new(),
    });
    decision(r, Action::TriggerSavepoint)
}

fn trigger_word(t: SavepointTrigger) -> &'static str {
    match t {
        SavepointTrigger::Periodic => "periodic",
        SavepointTrigger::Manual => "manual",
        SavepointTrigger::Upgrade => "upgrade",
        SavepointTrigger::Suspend => "suspend",
        SavepointTrigger::Delete => "delete",
    }
}

/// Which local checkpoints the pods of a new deployment may resume from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checkpoints {
    /// Any (the newest wins over `--restore-from` when it is newer).
    Any,
    /// None written before this step: a stateless start (`--ignore-checkpoints-before` now).
    NoneBeforeNow,
    /// As the deployment this one supersedes (same restore point).
    Keep,
}

fn deploy(
    mut r: LifecycleStatus,
    f: &Facts<'_>,
    restore_from: Option<String>,
    checkpoints: Checkpoints,
) -> LifecycleStatus {
    r.state = LifecycleState::Deploying;
    r.target_generation = Some(f.generation);
    r.deploy_started_at = Some(ts(f.now));
    r.restore_from = restore_from;
    match checkpoints {
        Checkpoints::Any => r.ignore_checkpoints_before = None,
        Checkpoints::NoneBeforeNow => r.ignore_checkpoints_before = Some(ts(f.now)),
        Checkpoints::Keep => {}
    }
    r.savepoint = None;
    r
}

fn backoff(t: &Timing, attempts: i32) -> SignedDuration {
    let factor = 1i64 << attempts.clamp(1, 16).saturating_sub(1);
    let d = SignedDuration::from_secs(t.backoff_base.as_secs().saturating_mul(factor));
    if d > t.backoff_max { t.backoff_max } else { d }
}

impl Running {
    fn step(self, f: &Facts<'_>, _t: &Timing) -> Decision {
        let mut r = self.0;
        let Some(stable) = stable_spec(&r) else {
            // No stable spec recorded (should not happen): deploy what is wanted.
            return decision(deploy(r, f, None, Checkpoints::Any), Action::None);
        };
        if f.deleting {
            return start_savepoint(r, f, SavepointTrigger::Delete, true, stable.parallelism);
        }
        // A failed step waits for its back-off, unless a newer generation supersedes it.
        if let Some(fail) = &r.failure
            && fail.generation == Some(f.generation)
            && let Some(at) = parse_ts(fail.retry_at.as_deref())
            && f.now < at
        {
            return decision(r, Action::None);
        }
        let retrying = r
            .failure
            .as_ref()
            .is_some_and(|x| x.generation == Some(f.generation) && x.retry_at.is_some());
        if f.spec.state == JobState::Suspended {
            if stable.parallelism == 0 {
                r.state = LifecycleState::Suspended;
                return decision(r, Action::None);
            }
            if stable.savepoints.location.is_none() {
                return suspend_on_claims(r);
            }
            let mut d = start_savepoint(r, f, SavepointTrigger::Suspend, true, stable.parallelism);
            note(
                &mut d,
                false,
                "Suspending",
                "spec.state is suspended: taking a savepoint, then scaling to zero".into(),
            );
            return d;
        }
        let change = classify(&stable, f.spec);
        let class = match change.class {
            None => return scheduled_savepoints(r, f, &stable),
            Some(ChangeClass::Ignore) => return ignore_change(r, f, &change.fields),
            Some(c) => c,
        };
        if r.rejected_generation == Some(f.generation) {
            return decision(r, Action::None);
        }
        if let Some((reason, msg)) = refusal(&r, f, &stable, &change.fields, class) {
            return refuse(r, f, &change.fields, class, reason, msg);
        }
        start_change(r, f, &stable, &change.fields, class, retrying)
    }
}

/// Only operator settings changed: the new spec is stable at once, no pod is touched.
fn ignore_change(mut r: LifecycleStatus, f: &Facts<'_>, fields: &[String]) -> Decision {
    r.stable_spec = spec_json(f.spec);
    r.stable_generation = Some(f.generation);
    r.target_generation = Some(f.generation);
    let r = record_change(
        r,
        f,
        fields,
        ChangeClass::Ignore,
        "none: only operator settings changed",
    );
    let mut d = scheduled_savepoints(r, f, f.spec);
    d.notes.insert(
        0,
        Note {
            warning: false,
            reason: "SpecChangeIgnored",
            message: format!(
                "generation {}: {} (class ignore): no pod is touched",
                f.generation,
                fields.join(", ")
            ),
        },
    );
    d
}

/// Why a change cannot be carried out (the reason and the message), if it cannot:
/// more pods than input partitions, or a redeploy without `upgradeMode: stateless`.
fn refusal(
    r: &LifecycleStatus,
    f: &Facts<'_>,
    stable: &StreamJoinJobSpec,
    fields: &[String],
    class: ChangeClass,
) -> Option<(&'static str, String)> {
    if let Some(p) = r.input_partitions
        && f.spec.parallelism > p
    {
        let msg = format!(
            "parallelism {} is above the {p} input partitions: a pod would own no partition; refused, the job keeps running with parallelism {}",
            f.spec.parallelism, stable.parallelism
        );
        return Some(("ParallelismAbovePartitions", msg));
    }
    if stable.savepoints.location.is_none()
        && stable.parallelism != f.spec.parallelism
        && f.spec.upgrade_mode != UpgradeMode::Stateless
        && class != ChangeClass::Redeploy
    {
        let msg = format!(
            "parallelism {} -> {} needs a savepoint, and spec.savepoints.location is not set; refused, the job keeps running with parallelism {}: set spec.savepoints.location (a volume path or an object-store URL) with parallelism {} first (that edit restarts the pods from their checkpoints), then change parallelism",
            stable.parallelism, f.spec.parallelism, stable.parallelism, stable.parallelism
        );
        return Some(("SavepointLocationRequired", msg));
    }
    if class == ChangeClass::Redeploy && f.spec.upgrade_mode != UpgradeMode::Stateless {
        let msg = format!(
            "{} changed: the job's state does not fit the new inputs/keys/window; set upgradeMode: stateless to start from empty state (a final savepoint is taken first)",
            fields.join(", ")
        );
        return Some(("StatelessRedeployRequired", msg));
    }
    None
}

/// Records the refused generation and its failure; the job keeps running as it is.
fn refuse(
    mut r: LifecycleStatus,
    f: &Facts<'_>,
    fields: &[String],
    class: ChangeClass,
    reason: &'static str,
    msg: String,
) -> Decision {
    r.rejected_generation = Some(f.generation);
    r.failure = Some(LifecycleFailure {
        reason: reason.into(),
        message: msg.clone(),
        generation: Some(f.generation),
        attempts: 0,
        retry_at: None,
    });
    let mut d = decision(record_change(r, f, fields, class, "refused"), Action::None);
    note(&mut d, true, reason, msg);
    d
}

/// Starts a rescale or an upgrade: by a savepoint, or by redeploying on the
/// checkpoints (lastState) or on empty state (stateless), as the class and
/// `upgradeMode` say.
fn start_change(
    mut r: LifecycleStatus,
    f: &Facts<'_>,
    stable: &StreamJoinJobSpec,
    fields: &[String],
    class: ChangeClass,
    retrying: bool,
) -> Decision {
    let same_parallelism = stable.parallelism == f.spec.parallelism;
    // The running pods write savepoints where *their* spec says; without a location
    // there is nowhere to write one (`refusal` already stopped a rescale).
    let no_location = stable.savepoints.location.is_none();
    let (action_words, savepoint) = match (class, f.spec.upgrade_mode) {
        (ChangeClass::Redeploy, _) if no_location => (
            "start from empty state (no final savepoint: savepoints.location is not set)",
            false,
        ),
        (ChangeClass::Redeploy, _) => ("final savepoint, then start from empty state", true),
        (_, UpgradeMode::Savepoint) if no_location => (
            "restart from the latest checkpoints (savepoints.location is not set: no savepoint to take)",
            false,
        ),
        (_, UpgradeMode::Savepoint) => {
            ("stop with a savepoint, restore the new spec from it", true)
        }
        (_, UpgradeMode::LastState) if same_parallelism => {
            ("restart from the latest checkpoints", false)
        }
        (_, UpgradeMode::LastState) => (
            "parallelism changes: stop with a savepoint (lastState needs the same parallelism)",
            true,
        ),
        (_, UpgradeMode::Stateless) => ("restart with empty state (upgradeMode: stateless)", false),
    };
    let kind = if class == ChangeClass::Scale {
        "rescale"
    } else {
        "upgrade"
    };
    let msg = format!(
        "generation {}: {} changed (class {}): {kind}: {action_words}",
        f.generation,
        fields.join(", "),
        class_word(class)
    );
    if !retrying {
        r.failure = None;
    }
    let r = record_change(r, f, fields, class, &format!("{kind}: {action_words}"));
    let mut d = if savepoint {
        start_savepoint(r, f, SavepointTrigger::Upgrade, true, stable.parallelism)
    } else {
        // lastState resumes from the checkpoints; stateless must not see them.
        let checkpoints =
            if f.spec.upgrade_mode == UpgradeMode::Stateless || class == ChangeClass::Redeploy {
                Checkpoints::NoneBeforeNow
            } else {
                Checkpoints::Any
            };
        decision(deploy(r, f, None, checkpoints), Action::None)
    };
    note(
        &mut d,
        false,
        if class == ChangeClass::Scale {
            "Rescaling"
        } else {
            "Upgrading"
        },
        msg,
    );
    d
}

pub fn class_word(c: ChangeClass) -> &'static str {
    match c {
        ChangeClass::Ignore => "ignore",
        ChangeClass::Scale => "scale",
        ChangeClass::Upgrade => "upgrade",
        ChangeClass::Redeploy => "redeploy",
    }
}

fn record_change(
    mut r: LifecycleStatus,
    f: &Facts<'_>,
    fields: &[String],
    class: ChangeClass,
    action: &str,
) -> LifecycleStatus {
    r.last_change = Some(ChangeStatus {
        generation: f.generation,
        class,
        fields: fields.to_vec(),
        action: action.to_owned(),
    });
    r
}

/// Suspending a job without a savepoint location: scale to zero at once; the
/// pods checkpoint on SIGTERM and the resume starts from their volumes' checkpoints.
fn suspend_on_claims(mut r: LifecycleStatus) -> Decision {
    r.state = LifecycleState::Suspended;
    r.restore_from = None;
    let mut d = decision(r, Action::None);
    note(
        &mut d,
        false,
        "Suspending",
        "spec.state is suspended and savepoints.location is not set: scaling to zero; the pods resume from the checkpoints on their volumes".into(),
    );
    d
}

/// Manual (`triggerNonce`) and periodic (`interval`) savepoints while Running.
fn scheduled_savepoints(
    mut r: LifecycleStatus,
    f: &Facts<'_>,
    stable: &StreamJoinJobSpec,
) -> Decision {
    if stable.parallelism == 0 {
        return decision(r, Action::None);
    }
    let nonce = f.spec.savepoints.trigger_nonce;
    if nonce.is_some() && nonce != r.handled_trigger_nonce {
        r.handled_trigger_nonce = nonce;
        let mut d = start_savepoint(r, f, SavepointTrigger::Manual, false, stable.parallelism);
        note(
            &mut d,
            false,
            "SavepointTriggered",
            "savepoints.triggerNonce changed: taking a savepoint".into(),
        );
        return d;
    }
    if let Some(interval) = &f.spec.savepoints.interval {
        let since = f
            .last_savepoint_at
            .or_else(|| parse_ts(r.deploy_started_at.as_deref()));
        let every =
            SignedDuration::from_secs(i64::try_from(interval.0.as_secs()).unwrap_or(i64::MAX));
        if since.is_none_or(|s| f.now.duration_since(s) >= every) {
            return start_savepoint(r, f, SavepointTrigger::Periodic, false, stable.parallelism);
        }
    }
    decision(r, Action::None)
}

impl Savepointing {
    fn step(self, f: &Facts<'_>, t: &Timing) -> Decision {
        let (r, p) = (self.0, self.1);
        if p.requests.is_empty() {
            // Written ahead, not (or not known to be) sent: send it (again; same id).
            return decision(r, Action::TriggerSavepoint);
        }
        let failed = failed_parts(&p, f);
        let started = parse_ts(Some(&p.started_at)).unwrap_or(f.now);
        let timed_out = f.now.duration_since(started) > t.savepoint_timeout;
        let all_done = p
            .requests
            .iter()
            .all(|q| answer(f, q.ordinal).is_some_and(|i| i.state == SavepointState::Completed));
        if all_done {
            return savepoint_completed(r, &p, f);
        }
        if failed.is_empty() && !timed_out {
            return decision(r, Action::PollSavepoint);
        }
        savepoint_failed(r, &p, f, t, &failed)
    }
}

/// The failed parts of a savepoint, one line per distinct error (condensed: no
/// XML body, no URL query, at most a few hundred characters), naming the pods.
fn failed_parts(p: &PendingSavepoint, f: &Facts<'_>) -> Vec<String> {
    let mut by_error: Vec<(String, Vec<i32>)> = Vec::new();
    for q in &p.requests {
        let Some(i) = answer(f, q.ordinal).filter(|i| i.state == SavepointState::Failed) else {
            continue;
        };
        let text = super::errtext::condense(i.error.as_deref().unwrap_or("failed"));
        match by_error.iter_mut().find(|(t, _)| *t == text) {
            Some((_, pods)) => pods.push(q.ordinal),
            None => by_error.push((text, vec![q.ordinal])),
        }
    }
    by_error
        .into_iter()
        .map(|(text, pods)| match pods.as_slice() {
            [one] => format!("pod {one}: {text}"),
            _ => format!("pods {pods:?}: {text}"),
        })
        .collect()
}

/// The answer of pod `ordinal` for the savepoint under way.
fn answer<'f>(f: &'f Facts<'_>, ordinal: i32) -> Option<&'f SavepointInfo> {
    f.savepoints
        .iter()
        .find(|(o, _)| *o == ordinal)
        .map(|(_, i)| i)
}

/// Every pod completed its part: the savepoint is recorded, and what it was for
/// goes on (the upgrade deploys from it, the suspend scales to zero, ...).
fn savepoint_completed(mut r: LifecycleStatus, p: &PendingSavepoint, f: &Facts<'_>) -> Decision {
    let mut paths: Vec<String> = p
        .requests
        .iter()
        .filter_map(|q| answer(f, q.ordinal).and_then(|i| i.path.clone()))
        .collect();
    paths.dedup();
    let location = paths.join(",");
    let done = Completed {
        id: p.id.clone(),
        location: location.clone(),
        trigger: p.trigger,
        parallelism: p.parallelism,
    };
    r.savepoint = None;
    if r.failure.as_ref().is_some_and(|x| x.retry_at.is_some()) {
        r.failure = None;
    }
    let mut d = match p.trigger {
        SavepointTrigger::Upgrade => {
            let redeploy = r
                .last_change
                .as_ref()
                .is_some_and(|c| c.class == ChangeClass::Redeploy);
            // A redeploy (stateless only) starts from empty state: no savepoint,
            // and none of the local checkpoints of the old job.
            let restore = (!redeploy).then(|| location.clone());
            let checkpoints = if redeploy {
                Checkpoints::NoneBeforeNow
            } else {
                Checkpoints::Any
            };
            decision(deploy(r, f, restore, checkpoints), Action::None)
        }
        SavepointTrigger::Suspend if f.spec.state == JobState::Suspended => {
            r.state = LifecycleState::Suspended;
            r.restore_from = Some(location.clone());
            decision(r, Action::None)
        }
        // Resumed before the suspend finished: the pods stopped; restart them from it.
        SavepointTrigger::Suspend => decision(
            deploy(r, f, Some(location.clone()), Checkpoints::Any),
            Action::None,
        ),
        SavepointTrigger::Delete | SavepointTrigger::Manual | SavepointTrigger::Periodic => {
            r.state = LifecycleState::Running;
            decision(r, Action::None)
        }
    };
    note(
        &mut d,
        false,
        "SavepointCompleted",
        format!(
            "savepoint {} ({}) completed at {location}",
            p.id,
            trigger_word(p.trigger)
        ),
    );
    d.completed = Some(done);
    d
}

/// A pod refused or the savepoint timed out: back to Running on the last stable
/// spec, with a back-off before the next attempt; pods that already stopped restart.
fn savepoint_failed(
    mut r: LifecycleStatus,
    p: &PendingSavepoint,
    f: &Facts<'_>,
    t: &Timing,
    failed: &[String],
) -> Decision {
    let reason = if failed.is_empty() {
        "SavepointTimedOut"
    } else {
        "SavepointFailed"
    };
    let detail = if failed.is_empty() {
        format!(
            "savepoint {} not completed within {}s",
            p.id,
            t.savepoint_timeout.as_secs()
        )
    } else {
        format!("savepoint {} failed: {}", p.id, failed.join("; "))
    };
    let attempts = r
        .failure
        .as_ref()
        .filter(|x| x.generation == Some(f.generation) && x.retry_at.is_some())
        .map_or(0, |x| x.attempts)
        + 1;
    let wait = backoff(t, attempts);
    let message = format!(
        "{detail}; the running pods keep the last stable spec; attempt {attempts}, retrying in {}s (a newer spec retries at once)",
        wait.as_secs()
    );
    r.failure = Some(LifecycleFailure {
        reason: reason.into(),
        message: message.clone(),
        generation: Some(f.generation),
        attempts,
        retry_at: Some(ts(f.now + wait)),
    });
    r.state = LifecycleState::Running;
    r.savepoint = None;
    // A manual savepoint is tried again after the back-off like the others: its
    // nonce counts as handled only once one completes.
    if p.trigger == SavepointTrigger::Manual {
        r.handled_trigger_nonce = None;
    }
    // Pods that stopped after their part completed must consume again.
    let stopped: Vec<i32> = if p.stop {
        p.requests
            .iter()
            .filter(|q| answer(f, q.ordinal).is_some_and(|i| i.state == SavepointState::Completed))
            .map(|q| q.ordinal)
            .collect()
    } else {
        Vec::new()
    };
    let action = if stopped.is_empty() {
        Action::None
    } else {
        // Rolling the pod template restarts them (the operator deletes no pod).
        r.restart_marker = Some(p.id.clone());
        Action::RestartPods(stopped)
    };
    let mut d = decision(r, action);
    note(
        &mut d,
        true,
        if reason == "SavepointFailed" {
            "SavepointFailed"
        } else {
            "SavepointTimedOut"
        },
        message,
    );
    d
}

/// Shared by Deploying and RollingBack: done, failed or still waiting.
enum Progress {
    Done,
    Failed(String),
    Waiting,
}

fn progress(r: &LifecycleStatus, f: &Facts<'_>, t: &Timing) -> Progress {
    if let Some(p) = &f.pod_problem {
        return Progress::Failed(p.clone());
    }
    if f.rollout_complete && f.checkpointed_since_deploy {
        return Progress::Done;
    }
    let started = parse_ts(r.deploy_started_at.as_deref()).unwrap_or(f.now);
    if f.now.duration_since(started) > t.deploy_timeout {
        return Progress::Failed(format!(
            "the pods were not Ready with a completed checkpoint within {}s",
            t.deploy_timeout.as_secs()
        ));
    }
    Progress::Waiting
}

impl Deploying {
    fn step(self, f: &Facts<'_>, t: &Timing) -> Decision {
        let mut r = self.0;
        // A newer generation supersedes the rollout: deploy it from the same restore point.
        if r.target_generation != Some(f.generation) && r.rejected_generation != Some(f.generation)
        {
            let restore = r.restore_from.clone();
            r.failure = None;
            let mut d = decision(deploy(r, f, restore, Checkpoints::Keep), Action::None);
            note(
                &mut d,
                false,
                "Superseded",
                format!(
                    "generation {} supersedes the rollout under way",
                    f.generation
                ),
            );
            return d;
        }
        match progress(&r, f, t) {
            Progress::Waiting => decision(r, Action::None),
            Progress::Done => {
                r.state = LifecycleState::Running;
                r.stable_spec = spec_json(f.spec);
                r.stable_generation = r.target_generation;
                r.failure = None;
                r.rejected_generation = None;
                let mut d = decision(r, Action::None);
                note(
                    &mut d,
                    false,
                    "Stable",
                    format!(
                        "generation {} runs: all pods ready and checkpointed",
                        f.generation
                    ),
                );
                d
            }
            Progress::Failed(why) => {
                let can_roll_back =
                    r.stable_spec.is_some() && r.stable_generation != r.target_generation;
                if can_roll_back {
                    let msg = format!(
                        "generation {} failed ({why}); rolling back to generation {} from {}",
                        f.generation,
                        r.stable_generation.unwrap_or_default(),
                        r.restore_from
                            .as_deref()
                            .unwrap_or("its latest checkpoints")
                    );
                    r.state = LifecycleState::RollingBack;
                    r.rejected_generation = Some(f.generation);
                    r.deploy_started_at = Some(ts(f.now));
                    // The failed pods may have written checkpoints: the rollback pods
                    // ignore every local checkpoint written before now and restore from
                    // the savepoint (or, stateless, start empty). Without a savepoint
                    // (lastState) they resume from the newest checkpoints there are.
                    if r.restore_from.is_some() || f.spec.upgrade_mode == UpgradeMode::Stateless {
                        r.ignore_checkpoints_before = Some(ts(f.now));
                    }
                    r.failure = Some(LifecycleFailure {
                        reason: "RolledBack".into(),
                        message: msg.clone(),
                        generation: Some(f.generation),
                        attempts: 1,
                        retry_at: None,
                    });
                    let mut d = decision(r, Action::None);
                    note(&mut d, true, "RollingBack", msg);
                    d
                } else {
                    let msg = format!("generation {} failed to deploy: {why}", f.generation);
                    let changed = r.failure.as_ref().map(|x| &x.message) != Some(&msg);
                    r.failure = Some(LifecycleFailure {
                        reason: "DeployFailed".into(),
                        message: msg.clone(),
                        generation: Some(f.generation),
                        attempts: 1,
                        retry_at: None,
                    });
                    let mut d = decision(r, Action::None);
                    if changed {
                        note(&mut d, true, "DeployFailed", msg);
                    }
                    d
                }
            }
        }
    }
}

impl RollingBack {
    fn step(self, f: &Facts<'_>, t: &Timing) -> Decision {
        let mut r = self.0;
        // A newer generation than the failed one: try it (from the same restore point).
        if r.rejected_generation != Some(f.generation) {
            let restore = r.restore_from.clone();
            r.failure = None;
            r.rejected_generation = None;
            return decision(deploy(r, f, restore, Checkpoints::Keep), Action::None);
        }
        match progress(&r, f, t) {
            Progress::Done => {
                r.state = LifecycleState::Running;
                r.deploy_started_at = Some(ts(f.now));
                let stable = r.stable_generation.unwrap_or_default();
                let mut d = decision(r, Action::None);
                note(
                    &mut d,
                    true,
                    "RolledBack",
                    format!("rolled back: generation {stable} runs again"),
                );
                d
            }
            Progress::Waiting => decision(r, Action::None),
            Progress::Failed(why) => {
                let msg = format!("the rollback is failing too: {why}");
                if r.failure
                    .as_ref()
                    .is_some_and(|x| x.reason == "RollbackFailed")
                {
                    return decision(r, Action::None);
                }
                r.failure = Some(LifecycleFailure {
                    reason: "RollbackFailed".into(),
                    message: msg.clone(),
                    generation: Some(f.generation),
                    attempts: 1,
                    retry_at: None,
                });
                let mut d = decision(r, Action::None);
                note(&mut d, true, "RollbackFailed", msg);
                d
            }
        }
    }
}

impl Suspended {
    fn step(self, f: &Facts<'_>) -> Decision {
        let r = self.0;
        if f.spec.state == JobState::Running {
            let restore = r.restore_from.clone();
            let mut d = decision(
                deploy(r, f, restore.clone(), Checkpoints::Any),
                Action::None,
            );
            note(
                &mut d,
                false,
                "Resuming",
                match restore {
                    Some(sp) => format!("spec.state is running: restoring from {sp}"),
                    None => "spec.state is running".into(),
                },
            );
            return d;
        }
        decision(r, Action::None)
    }
}

/// The requests recorded once the pods accepted a savepoint.
pub fn with_requests(mut r: LifecycleStatus, requests: Vec<SavepointRequest>) -> LifecycleStatus {
    if let Some(p) = r.savepoint.as_mut() {
        p.requests = requests;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("time")
    }

    fn spec(image: &str, parallelism: i32) -> StreamJoinJobSpec {
        let mut s = StreamJoinJobSpec::local_default();
        s.image = image.into();
        s.parallelism = parallelism;
        s.savepoints.location = Some("/savepoints".into());
        s
    }

    fn facts<'a>(generation: i64, spec: &'a StreamJoinJobSpec) -> Facts<'a> {
        Facts {
            generation,
            spec,
            now: now(),
            rollout_complete: false,
            pod_problem: None,
            checkpointed_since_deploy: false,
            savepoints: Vec::new(),
            last_savepoint_at: None,
            deleting: false,
        }
    }

    fn running(stable: &StreamJoinJobSpec) -> LifecycleStatus {
        let mut r = empty(LifecycleState::Running);
        r.stable_spec = spec_json(stable);
        r.stable_generation = Some(1);
        r.target_generation = Some(1);
        r
    }

    fn info(state: SavepointState) -> SavepointInfo {
        SavepointInfo {
            id: "sp".into(),
            state,
            path: Some("/sp/sp".into()),
            error: (state == SavepointState::Failed).then(|| "disk full".into()),
        }
    }

    fn savepointing(stable: &StreamJoinJobSpec, stop: bool) -> LifecycleStatus {
        let v2 = spec("v2", stable.parallelism);
        let d = Lifecycle::decide(Some(&running(stable)), &facts(2, &v2), &Timing::default());
        let requests = (0..stable.parallelism)
            .map(|o| SavepointRequest {
                ordinal: o,
                id: "sp".into(),
                path: None,
            })
            .collect();
        let mut r = with_requests(d.record, requests);
        if let Some(p) = r.savepoint.as_mut() {
            p.stop = stop;
        }
        r
    }

    #[test]
    fn a_new_job_deploys_from_its_initial_savepoint() {
        let mut s = spec("v1", 2);
        s.initial_savepoint = Some("/sp/start".into());
        let d = Lifecycle::decide(None, &facts(1, &s), &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Deploying);
        assert_eq!(d.record.restore_from.as_deref(), Some("/sp/start"));
        assert_eq!(
            deployed(&d.record, &s).map(|(x, _)| x.image),
            Some("v1".into())
        );
    }

    #[test]
    fn an_upgrade_in_savepoint_mode_writes_the_savepoint_ahead_and_keeps_the_old_spec_deployed() {
        let v1 = spec("v1", 2);
        let v2 = spec("v2", 2);
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.action, Action::TriggerSavepoint);
        assert_eq!(d.record.state, LifecycleState::Savepointing);
        let p = d.record.savepoint.clone().expect("pending");
        assert!(p.stop && p.requests.is_empty() && p.trigger == SavepointTrigger::Upgrade);
        assert_eq!(
            deployed(&d.record, &v2).map(|(x, _)| x.image),
            Some("v1".into())
        );
        // Resumed with no ids recorded: asks again with the same id.
        let again = Lifecycle::decide(Some(&d.record), &facts(2, &v2), &Timing::default());
        assert_eq!(again.action, Action::TriggerSavepoint);
        assert_eq!(again.record.savepoint.map(|p| p.id), Some(p.id));
    }

    #[test]
    fn last_state_restarts_from_checkpoints_unless_parallelism_changes_and_stateless_needs_no_savepoint()
     {
        let v1 = spec("v1", 2);
        let mut v2 = spec("v2", 2);
        v2.upgrade_mode = UpgradeMode::LastState;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(
            (d.record.state, d.record.restore_from.clone()),
            (LifecycleState::Deploying, None)
        );
        v2.parallelism = 3;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Savepointing);
        let mut v3 = spec("v2", 3);
        v3.upgrade_mode = UpgradeMode::Stateless;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v3), &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Deploying);
    }

    #[test]
    fn stateless_deployments_and_rollbacks_ignore_older_local_checkpoints_and_other_deployments_do_not()
     {
        let v1 = spec("v1", 2);
        // Stateless upgrade: no savepoint, and the old local checkpoints are ignored.
        let mut v2 = spec("v2", 2);
        v2.upgrade_mode = UpgradeMode::Stateless;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Deploying);
        assert_eq!(d.record.restore_from, None);
        assert_eq!(d.record.ignore_checkpoints_before, Some(ts(now())));
        // Kept once stable (the pod template must not change), until the next deployment.
        let mut later = facts(2, &v2);
        later.now = now() + SignedDuration::from_mins(1);
        later.rollout_complete = true;
        later.checkpointed_since_deploy = true;
        let stable = Lifecycle::decide(Some(&d.record), &later, &Timing::default());
        assert_eq!(stable.record.state, LifecycleState::Running);
        assert_eq!(stable.record.ignore_checkpoints_before, Some(ts(now())));
        // lastState resumes from the checkpoints: no cut-off.
        let mut v3 = spec("v3", 2);
        v3.upgrade_mode = UpgradeMode::LastState;
        let d = Lifecycle::decide(Some(&stable.record), &facts(3, &v3), &Timing::default());
        assert_eq!(
            (d.record.state, d.record.ignore_checkpoints_before),
            (LifecycleState::Deploying, None)
        );
        // A stateless redeploy: a final savepoint, then empty state and no old checkpoint.
        let mut v4 = v1.clone();
        v4.inputs.plays.topic = "plays-eu".into();
        v4.upgrade_mode = UpgradeMode::Stateless;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(4, &v4), &Timing::default());
        let r = with_requests(
            d.record,
            (0..2)
                .map(|o| SavepointRequest {
                    ordinal: o,
                    id: "sp".into(),
                    path: None,
                })
                .collect(),
        );
        let mut f = facts(4, &v4);
        f.now = now() + SignedDuration::from_secs(20);
        f.savepoints = vec![
            (0, info(SavepointState::Completed)),
            (1, info(SavepointState::Completed)),
        ];
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.record.restore_from, None);
        assert_eq!(d.record.ignore_checkpoints_before, Some(ts(f.now)));
        // A savepoint upgrade restores from the savepoint: no cut-off.
        let r = savepointing(&v1, true);
        let v2 = spec("v2", 2);
        let mut f = facts(2, &v2);
        f.savepoints = vec![
            (0, info(SavepointState::Completed)),
            (1, info(SavepointState::Completed)),
        ];
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.record.ignore_checkpoints_before, None);
    }

    #[test]
    fn a_redeploy_class_change_is_refused_unless_stateless_is_chosen() {
        let v1 = spec("v1", 2);
        let mut v2 = v1.clone();
        v2.inputs.plays.topic = "plays-eu".into();
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Running);
        assert_eq!(
            d.record.failure.map(|f| f.reason),
            Some("StatelessRedeployRequired".into())
        );
        v2.upgrade_mode = UpgradeMode::Stateless;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(3, &v2), &Timing::default());
        assert_eq!(
            d.record.state,
            LifecycleState::Savepointing,
            "a final savepoint first"
        );
    }

    #[test]
    fn a_completed_upgrade_savepoint_deploys_the_new_spec_from_it() {
        let v1 = spec("v1", 2);
        let v2 = spec("v2", 2);
        let r = savepointing(&v1, true);
        let mut f = facts(2, &v2);
        f.savepoints = vec![
            (0, info(SavepointState::Completed)),
            (1, info(SavepointState::Completed)),
        ];
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Deploying);
        assert_eq!(d.record.restore_from.as_deref(), Some("/sp/sp"));
        assert!(d.completed.is_some());
        // Half done: keep polling.
        f.savepoints.pop();
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.action, Action::PollSavepoint);
    }

    #[test]
    fn a_failed_stop_savepoint_restarts_the_stopped_pods_and_backs_off_exponentially() {
        let v1 = spec("v1", 2);
        let v2 = spec("v2", 2);
        let t = Timing::default();
        let r = savepointing(&v1, true);
        let mut f = facts(2, &v2);
        f.savepoints = vec![
            (0, info(SavepointState::Completed)),
            (1, info(SavepointState::Failed)),
        ];
        let d = Lifecycle::decide(Some(&r), &f, &t);
        assert_eq!(d.action, Action::RestartPods(vec![0]));
        assert_eq!(
            d.record.restart_marker.as_deref(),
            Some("sp-2-1800000000-upgrade")
        );
        assert_eq!(d.record.state, LifecycleState::Running);
        let fail = d.record.failure.clone().expect("failure");
        assert_eq!(
            (fail.reason.as_str(), fail.attempts),
            ("SavepointFailed", 1)
        );
        assert_eq!(
            fail.retry_at,
            Some(ts(now() + SignedDuration::from_secs(30)))
        );
        // Waiting out the back-off, then retrying: the second failure waits twice as long.
        let wait = Lifecycle::decide(Some(&d.record), &facts(2, &v2), &t);
        assert_eq!(wait.action, Action::None);
        let mut later = facts(2, &v2);
        later.now = now() + SignedDuration::from_secs(31);
        let retry = Lifecycle::decide(Some(&d.record), &later, &t);
        assert_eq!(retry.action, Action::TriggerSavepoint);
        let mut r2 = with_requests(
            retry.record,
            vec![SavepointRequest {
                ordinal: 0,
                id: "sp".into(),
                path: None,
            }],
        );
        if let Some(p) = r2.savepoint.as_mut() {
            p.started_at = ts(later.now);
        }
        let mut f2 = facts(2, &v2);
        f2.now = later.now;
        f2.savepoints = vec![(0, info(SavepointState::Failed))];
        let d2 = Lifecycle::decide(Some(&r2), &f2, &t);
        let fail2 = d2.record.failure.expect("failure");
        assert_eq!(fail2.attempts, 2);
        assert_eq!(
            fail2.retry_at,
            Some(ts(later.now + SignedDuration::from_secs(60)))
        );
    }

    #[test]
    fn a_savepoint_that_never_completes_times_out() {
        let v1 = spec("v1", 1);
        let v2 = spec("v2", 1);
        let r = savepointing(&v1, false);
        let mut f = facts(2, &v2);
        f.now = now() + SignedDuration::from_mins(11);
        f.savepoints = vec![(0, info(SavepointState::Pending))];
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(
            d.record.failure.map(|f| f.reason),
            Some("SavepointTimedOut".into())
        );
        assert_eq!(d.action, Action::None, "no stop: nothing to restart");
    }

    #[test]
    fn failing_new_pods_roll_back_once_and_a_failing_first_deployment_just_degrades() {
        let v1 = spec("v1", 2);
        let v2 = spec("v2", 2);
        let mut r = running(&v1);
        r.state = LifecycleState::Deploying;
        r.target_generation = Some(2);
        r.restore_from = Some("/sp/a".into());
        r.deploy_started_at = Some(ts(now()));
        let mut f = facts(2, &v2);
        f.pod_problem = Some("CrashLoopBackOff".into());
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.record.state, LifecycleState::RollingBack);
        assert_eq!(d.record.rejected_generation, Some(2));
        // The failed pods' checkpoints are newer than the savepoint: ignored.
        assert_eq!(d.record.ignore_checkpoints_before, Some(ts(now())));
        let (spec_back, restore) = deployed(&d.record, &v2).expect("deployed");
        assert_eq!(
            (spec_back.image.as_str(), restore.as_deref()),
            ("v1", Some("/sp/a"))
        );
        // Not Ready in time counts as failing too.
        let mut slow = facts(2, &v2);
        slow.now = now() + SignedDuration::from_mins(11);
        assert_eq!(
            Lifecycle::decide(Some(&r), &slow, &Timing::default())
                .record
                .state,
            LifecycleState::RollingBack
        );
        // A first deployment has nothing to roll back to.
        let mut first = empty(LifecycleState::Deploying);
        first.target_generation = Some(2);
        first.deploy_started_at = Some(ts(now()));
        let d = Lifecycle::decide(Some(&first), &f, &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Deploying);
        assert_eq!(
            d.record.failure.map(|f| f.reason),
            Some("DeployFailed".into())
        );
    }

    #[test]
    fn a_deployment_is_stable_only_when_ready_and_checkpointed_and_a_newer_generation_supersedes_it()
     {
        let v2 = spec("v2", 2);
        let mut r = running(&spec("v1", 2));
        r.state = LifecycleState::Deploying;
        r.target_generation = Some(2);
        r.deploy_started_at = Some(ts(now()));
        let mut f = facts(2, &v2);
        f.rollout_complete = true;
        assert_eq!(
            Lifecycle::decide(Some(&r), &f, &Timing::default())
                .record
                .state,
            LifecycleState::Deploying
        );
        f.checkpointed_since_deploy = true;
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(
            (d.record.state, d.record.stable_generation),
            (LifecycleState::Running, Some(2))
        );
        let v3 = spec("v3", 2);
        let d = Lifecycle::decide(Some(&r), &facts(3, &v3), &Timing::default());
        assert_eq!(
            (d.record.state, d.record.target_generation),
            (LifecycleState::Deploying, Some(3))
        );
    }

    #[test]
    fn suspend_without_a_location_scales_to_zero_and_resumes_from_the_volumes() {
        let mut v1 = spec("v1", 2);
        v1.savepoints.location = None;
        let mut sus = v1.clone();
        sus.state = JobState::Suspended;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &sus), &Timing::default());
        assert!(d.record.savepoint.is_none(), "no savepoint is asked for");
        assert_eq!(d.record.state, LifecycleState::Suspended);
        assert_eq!(
            deployed(&d.record, &sus).map(|(s, _)| s.state),
            Some(JobState::Suspended)
        );
        let d = Lifecycle::decide(Some(&d.record), &facts(3, &v1), &Timing::default());
        assert_eq!(
            (d.record.state, d.record.restore_from.as_deref()),
            (LifecycleState::Deploying, None)
        );
    }

    #[test]
    fn suspend_savepoints_then_suspends_and_resume_restores_from_that_savepoint() {
        let v1 = spec("v1", 2);
        let mut sus = v1.clone();
        sus.state = JobState::Suspended;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &sus), &Timing::default());
        let p = d.record.savepoint.clone().expect("pending");
        assert_eq!((p.trigger, p.stop), (SavepointTrigger::Suspend, true));
        let r = with_requests(
            d.record,
            vec![
                SavepointRequest {
                    ordinal: 0,
                    id: "sp".into(),
                    path: None,
                },
                SavepointRequest {
                    ordinal: 1,
                    id: "sp".into(),
                    path: None,
                },
            ],
        );
        let mut f = facts(2, &sus);
        f.savepoints = vec![
            (0, info(SavepointState::Completed)),
            (1, info(SavepointState::Completed)),
        ];
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Suspended);
        assert_eq!(
            deployed(&d.record, &sus).map(|(s, _)| s.state),
            Some(JobState::Suspended)
        );
        let d = Lifecycle::decide(Some(&d.record), &facts(3, &v1), &Timing::default());
        assert_eq!(
            (d.record.state, d.record.restore_from.as_deref()),
            (LifecycleState::Deploying, Some("/sp/sp"))
        );
    }

    #[test]
    fn periodic_and_manual_savepoints_do_not_stop_the_pods() {
        let mut v1 = spec("v1", 2);
        v1.savepoints.interval = Some(streamjoin_api::HumanDuration::from_secs(3600));
        let mut r = running(&v1);
        r.deploy_started_at = Some(ts(now()));
        let mut f = facts(1, &v1);
        f.last_savepoint_at = Some(now() - SignedDuration::from_mins(30));
        assert_eq!(
            Lifecycle::decide(Some(&r), &f, &Timing::default()).action,
            Action::None
        );
        f.last_savepoint_at = Some(now() - SignedDuration::from_mins(61));
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        let p = d.record.savepoint.expect("periodic");
        assert_eq!((p.trigger, p.stop), (SavepointTrigger::Periodic, false));
    }

    fn without_location(image: &str, parallelism: i32) -> StreamJoinJobSpec {
        let mut s = spec(image, parallelism);
        s.savepoints.location = None;
        s
    }

    #[test]
    fn an_upgrade_without_a_savepoint_location_restarts_from_the_checkpoints() {
        let v1 = without_location("v1", 2);
        let v2 = without_location("v2", 2);
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.action, Action::None, "no savepoint is asked for");
        assert_eq!(d.record.state, LifecycleState::Deploying);
        assert!(d.record.savepoint.is_none() && d.record.failure.is_none());
        assert_eq!(d.record.restore_from, None);
        assert_eq!(
            d.record.ignore_checkpoints_before, None,
            "the checkpoints are kept"
        );
        assert_eq!(
            deployed(&d.record, &v2).map(|(x, _)| x.image),
            Some("v2".into())
        );
        assert!(d.notes[0].message.contains("latest checkpoints"));
        // Setting the location in the same edit: the old pods have none to write to.
        let mut with = spec("v2", 2);
        with.savepoints.location = Some("s3://bucket/sp".into());
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &with), &Timing::default());
        assert_eq!(
            (d.action, d.record.state),
            (Action::None, LifecycleState::Deploying)
        );
    }

    #[test]
    fn a_rescale_without_a_savepoint_location_is_refused_and_says_to_set_one() {
        let v1 = without_location("v1", 2);
        for mode in [UpgradeMode::Savepoint, UpgradeMode::LastState] {
            let mut v2 = without_location("v1", 3);
            v2.upgrade_mode = mode;
            let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
            assert_eq!(d.action, Action::None);
            assert_eq!(d.record.state, LifecycleState::Running);
            assert_eq!(d.record.rejected_generation, Some(2));
            let fail = d.record.failure.clone().expect("failure");
            assert_eq!(fail.reason, "SavepointLocationRequired");
            assert!(
                fail.message.contains("set spec.savepoints.location"),
                "{}",
                fail.message
            );
            assert_eq!(
                deployed(&d.record, &v2).map(|(x, _)| x.parallelism),
                Some(2),
                "the job keeps running as it is"
            );
            assert!(d.notes.iter().any(|n| n.warning));
        }
        // Stateless needs no savepoint: a rescale from empty state goes ahead.
        let mut v2 = without_location("v1", 3);
        v2.upgrade_mode = UpgradeMode::Stateless;
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.record.state, LifecycleState::Deploying);
    }

    #[test]
    fn a_stateless_redeploy_without_a_location_starts_empty_without_a_final_savepoint() {
        let v1 = without_location("v1", 2);
        let mut v2 = without_location("v1", 2);
        v2.upgrade_mode = UpgradeMode::Stateless;
        v2.join.window = streamjoin_api::HumanDuration::from_secs(60);
        let d = Lifecycle::decide(Some(&running(&v1)), &facts(2, &v2), &Timing::default());
        assert_eq!(d.action, Action::None);
        assert_eq!(d.record.state, LifecycleState::Deploying);
        assert_eq!(d.record.restore_from, None);
        assert_eq!(d.record.ignore_checkpoints_before, Some(ts(now())));
    }

    const S3_ERROR: &str = "savepoint s3://missing/sp/sp: Generic S3 error: Error performing PUT http://127.0.0.1:9000/missing/sp/sp/shard-0 - Server returned non-success status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>missing</BucketName></Error>";

    #[test]
    fn a_failed_upgrade_savepoint_degrades_with_one_condensed_line_and_keeps_the_old_pods() {
        let v1 = spec("v1", 2);
        let v2 = spec("v2", 2);
        let r = savepointing(&v1, true);
        let mut f = facts(2, &v2);
        let failed = SavepointInfo {
            error: Some(S3_ERROR.into()),
            ..info(SavepointState::Failed)
        };
        f.savepoints = vec![(0, failed.clone()), (1, failed)];
        let d = Lifecycle::decide(Some(&r), &f, &Timing::default());
        assert_eq!(d.action, Action::None, "no pod stopped, none restarts");
        assert_eq!(d.record.state, LifecycleState::Running);
        assert_eq!(
            deployed(&d.record, &v2).map(|(x, restore)| (x.image, restore)),
            Some(("v1".into(), None)),
            "no rollout: the old spec stays deployed"
        );
        let fail = d.record.failure.clone().expect("failure");
        assert_eq!(fail.reason, "SavepointFailed");
        assert!(
            !fail.message.contains('\n') && !fail.message.contains('<'),
            "{}",
            fail.message
        );
        assert!(
            fail.message.contains(
                "pods [0, 1]: savepoint s3://missing/sp/sp: Generic S3 error: Error performing PUT"
            ) && fail
                .message
                .contains("404 Not Found: NoSuchBucket: The specified bucket does not exist;"),
            "{}",
            fail.message
        );
        let event = d
            .notes
            .iter()
            .find(|n| n.reason == "SavepointFailed")
            .expect("an event");
        assert!(event.warning);
        assert_eq!(event.message, fail.message);
    }

    /// Manual savepoint (nonce 1 of `v1n`) that pod 0 failed: the decision on it.
    fn failed_manual_savepoint(v1n: &StreamJoinJobSpec) -> Decision {
        let mut v1 = v1n.clone();
        v1.savepoints.trigger_nonce = None;
        let mut r = running(&v1);
        r.stable_spec = spec_json(v1n);
        let d = Lifecycle::decide(Some(&r), &facts(1, v1n), &Timing::default());
        assert_eq!(d.action, Action::TriggerSavepoint);
        let r = with_requests(
            d.record,
            vec![SavepointRequest {
                ordinal: 0,
                id: "sp".into(),
                path: None,
            }],
        );
        let mut f = facts(1, v1n);
        f.savepoints = vec![(
            0,
            SavepointInfo {
                error: Some("upload: connection refused\n  caused by: os error 111".into()),
                ..info(SavepointState::Failed)
            },
        )];
        Lifecycle::decide(Some(&r), &f, &Timing::default())
    }

    fn with_nonce(image: &str) -> StreamJoinJobSpec {
        let mut s = spec(image, 2);
        s.savepoints.trigger_nonce = Some(1);
        s
    }

    #[test]
    fn a_failed_manual_savepoint_is_tried_again_after_its_back_off() {
        let v1n = with_nonce("v1");
        let failed = failed_manual_savepoint(&v1n).record;
        let t = Timing::default();
        let early = Lifecycle::decide(Some(&failed), &facts(1, &v1n), &t);
        assert_eq!(early.action, Action::None, "waits for the back-off");
        let mut later = facts(1, &v1n);
        later.now = now() + SignedDuration::from_secs(31);
        let d = Lifecycle::decide(Some(&failed), &later, &t);
        assert_eq!(d.action, Action::TriggerSavepoint);
        let again = d.record.savepoint.expect("a savepoint under way");
        assert_eq!(
            (again.trigger, again.stop),
            (SavepointTrigger::Manual, false)
        );
        assert_eq!(d.record.handled_trigger_nonce, Some(1));
        assert_eq!(
            d.record.failure.map(|f| f.attempts),
            Some(1),
            "the failure stays until one completes"
        );
    }

    #[test]
    fn a_failed_manual_savepoint_degrades_and_the_job_keeps_running() {
        let d = failed_manual_savepoint(&with_nonce("v1"));
        assert_eq!(
            (d.action, d.record.state),
            (Action::None, LifecycleState::Running)
        );
        let fail = d.record.failure.expect("failure");
        assert_eq!(fail.reason, "SavepointFailed");
        assert!(
            fail.message
                .contains("pod 0: upload: connection refused; the running pods"),
            "{}",
            fail.message
        );
    }
}
