//! `StreamJoinJob.status`: written by the operator only, from observed facts.
//! Fields the operator cannot fill stay absent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a StreamJoinJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJoinJobStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Pods that exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Event-time progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkStatus>,
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
