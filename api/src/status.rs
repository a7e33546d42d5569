//! `StreamJoinJob.status`: written by the operator only, from observed facts.
//! Fields the operator cannot fill stay absent: they are `Option`s (or empty
//! lists) that are skipped when serialised, never filled with guesses.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most savepoints listed in `status.savepointHistory`.
pub const SAVEPOINT_HISTORY_LIMIT: usize = 10;

/// Condition type: every runtime pod is ready and runs the current spec.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a rollout, scale or first deployment is under way.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: something needs a person (invalid spec, crashing pods, ...).
pub const CONDITION_DEGRADED: &str = "Degraded";

/// Lifecycle phase, a one-word summary of the conditions for `kubectl get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum JobPhase {
    /// Accepted; no runtime pod is ready yet.
    Pending,
    /// Pods are being created, updated or rescaled.
    Deploying,
    /// Every runtime pod is ready and runs the current spec.
    Running,
    /// Scaled to zero on request (`spec.state: suspended`); volumes are kept.
    Suspended,
    /// The spec is invalid or the pods are failing; see the Degraded condition.
    Degraded,
    /// The job is being deleted.
    Deleting,
}

impl JobPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Pending => "Pending",
            JobPhase::Deploying => "Deploying",
            JobPhase::Running => "Running",
            JobPhase::Suspended => "Suspended",
            JobPhase::Degraded => "Degraded",
            JobPhase::Deleting => "Deleting",
        }
    }
}

/// Observed state of a StreamJoinJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJoinJobStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase: a summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// Standard conditions: Ready, Progressing and Degraded. `lastTransitionTime` changes
    /// only when a condition's status changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// Runtime pods that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Runtime pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the runtime pods, for the scale subresource (and `kubectl scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Event-time progress, as reported by the runtime pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkStatus>,
    /// The most recent completed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointStatus>,
    /// The most recent completed savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint: Option<SavepointStatus>,
    /// Recent completed savepoints, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub savepoint_history: Vec<SavepointStatus>,
    /// The upgrade in progress or the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,
    /// What the autoscaler decided last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    /// Outcome of the last output audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditStatus>,
    /// The lifecycle record: where the job is in its upgrade/savepoint/suspend flow,
    /// written before each action so that a restarted operator resumes the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleStatus>,
}

impl StreamJoinJobStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is present with status "True".
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

/// Event-time progress of the job, as reported by its pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkStatus {
    /// The job's watermark (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Wall clock minus the watermark, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Partitions currently left out as idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_partitions: Option<i32>,
    /// Forced advances since the job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_advances: Option<i64>,
    /// Time of the last forced advance (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_forced_advance: Option<String>,
}

/// A completed checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Checkpoint id, increasing per job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// When it completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// Why a savepoint was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SavepointTrigger {
    /// `savepoints.interval` elapsed.
    Periodic,
    /// `savepoints.triggerNonce` changed.
    Manual,
    /// Before an upgrade in `savepoint` mode.
    Upgrade,
    /// Before suspending.
    Suspend,
    /// Before deleting the job.
    Delete,
}

/// A completed savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    /// Savepoint id (the runtime's, shared by all pods of one savepoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where it is stored (path or URL).
    pub location: String,
    /// When it completed (RFC 3339).
    pub time: String,
    /// Why it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<SavepointTrigger>,
    /// Parallelism of the job that took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// Why deleting it (retention, `onDelete`) failed the last time; it is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_error: Option<String>,
}

/// State of an upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// Step of the upgrade: Savepointing, Restarting, Restoring, Done or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Generation the upgrade starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_generation: Option<i64>,
    /// Generation the upgrade goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_generation: Option<i64>,
    /// Savepoint the new version restores from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<String>,
    /// When the upgrade started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// What the autoscaler decided last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// Parallelism the autoscaler recommends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_parallelism: Option<i32>,
    /// When it last changed the parallelism (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Outcome of the last output audit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditStatus {
    /// When the audit ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Observed fraction of malformed records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_ratio: Option<f64>,
    /// Observed fraction of late records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ratio: Option<f64>,
    /// Observed fraction of emitted entries that have plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_ratio: Option<f64>,
    /// Bounds of `spec.audit` that were breached, e.g. "maxLateRatio".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breaches: Vec<String>,
}

/// Condition type: every input went inactive and the watermark was force-advanced
/// (traffic moved to another region).
pub const CONDITION_INPUTS_INACTIVE: &str = "InputsInactive";

/// How much of the job an edit touches; the largest class among the changed fields
/// decides the action.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ChangeClass {
    /// Read by the operator only (savepoint schedule, autoscaler bounds, nonces): no pod changes.
    Ignore,
    /// Parallelism only: a rescale (savepoint, then the new replica count restores from it).
    Scale,
    /// Runtime image or configuration: an upgrade in `spec.upgradeMode`.
    Upgrade,
    /// Inputs, keys, window or cluster: the old state does not fit the new job; only an
    /// explicit `upgradeMode: stateless` starts it (after a final savepoint).
    Redeploy,
}

/// Step of the lifecycle state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LifecycleState {
    /// Pods of `targetGeneration` are rolling out; done when all are ready and have
    /// completed a checkpoint.
    Deploying,
    /// The last stable spec runs; nothing under way.
    Running,
    /// A savepoint is being taken (`savepoint` says why and of which pods).
    Savepointing,
    /// New pods failed; the last stable spec is being restored from the same savepoint.
    RollingBack,
    /// Scaled to zero after a savepoint; volumes are kept.
    Suspended,
}

/// One pod's part of a savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRequest {
    /// Pod ordinal.
    pub ordinal: i32,
    /// Savepoint id returned by the pod.
    pub id: String,
    /// Where the pod wrote it, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A savepoint under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSavepoint {
    /// Job-wide savepoint id (each pod writes `<location>/<id>`).
    pub id: String,
    /// Why it is taken.
    pub trigger: SavepointTrigger,
    /// Whether the pods stop consuming after it (upgrade, suspend, delete).
    pub stop: bool,
    /// When it was requested (RFC 3339).
    pub started_at: String,
    /// Parallelism of the pods taking it.
    pub parallelism: i32,
    /// Ids per pod; empty until the pods accepted the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<SavepointRequest>,
}

/// The last spec edit the operator looked at and what it caused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeStatus {
    /// Generation of the edit.
    pub generation: i64,
    /// The largest class among the changed fields.
    pub class: ChangeClass,
    /// Changed fields (spec paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The action taken, in words.
    pub action: String,
}

/// A failed step, kept until a retry succeeds or a newer generation supersedes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleFailure {
    /// Machine-readable reason (SavepointFailed, SavepointTimedOut, RolledBack, ...).
    pub reason: String,
    /// What happened.
    pub message: String,
    /// Generation the failure belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Attempts so far.
    pub attempts: i32,
    /// Earliest time of the next attempt (RFC 3339); none when not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// The lifecycle record (write-ahead: written before each action).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleStatus {
    /// Current step.
    pub state: LifecycleState,
    /// Generation the pods run (Running) or are moved to (Deploying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_generation: Option<i64>,
    /// When the current deployment started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_started_at: Option<String>,
    /// Savepoint the current pods were started from; kept by retention (a rollback needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Local checkpoints written by runtime processes started before this time (RFC 3339)
    /// are ignored when the pods start (`--ignore-checkpoints-before`): set by a stateless
    /// deployment and by a rollback, so their pods do not resume from state they must not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_checkpoints_before: Option<String>,
    /// Generation of the last spec that reached Ready with a completed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_generation: Option<i64>,
    /// That spec (JSON), the rollback target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_spec: Option<String>,
    /// The savepoint under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<PendingSavepoint>,
    /// The last edit and the action it caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<ChangeStatus>,
    /// The last failure, while it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<LifecycleFailure>,
    /// A generation that was rolled back or refused; not tried again until the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_generation: Option<i64>,
    /// `savepoints.triggerNonce` already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_trigger_nonce: Option<i64>,
    /// `watermarks.forceAdvanceNonce` already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_force_advance_nonce: Option<i64>,
    /// Set when pods stopped by a failed stop-with-savepoint must consume again: put on
    /// the pod template, so the pods restart from their checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_marker: Option<String>,
    /// Input partitions per topic, as reported by the runtime pods (the shards they own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_partitions: Option<i32>,
}
