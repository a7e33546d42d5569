//! The `StreamJoinJob` custom resource: its spec (the CRD's top level, built from
//! the parts in [`crate::spec`]) and reading it from a manifest.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{
    AuditSpec, AutoscalerSpec, CheckpointsSpec, Delivery, ImagePullPolicy, InputsSpec, JobState,
    JoinSpec, KafkaSpec, PodTemplate, RecoverySpec, SavepointsSpec, StateSpec, TopicRef,
    UpgradeMode, WatermarksSpec,
};
use crate::status::StreamJoinJobStatus;

fn default_parallelism() -> i32 {
    1
}

fn default_image() -> String {
    format!(
        "ghcr.io/streamjoin/streamjoin-runtime:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// A stateful join of an impressions stream with a plays stream, keyed by
/// `(profile_id, title_id)` in event time, run as a StatefulSet.
// Several printer columns share a type, which clippy reads as a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "streamjoin.dev",
    version = "v1alpha1",
    kind = "StreamJoinJob",
    plural = "streamjoinjobs",
    shortname = "sjj",
    category = "streaming",
    namespaced,
    status = "StreamJoinJobStatus",
    derive = "PartialEq",
    doc = "A stateful event-time join of impressions with plays, run by the streamjoin operator.",
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Parallelism",
        type_ = "integer",
        json_path = ".spec.parallelism"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Watermark Lag",
        type_ = "number",
        json_path = ".status.watermark.lagSeconds"
    ),
    printcolumn(
        name = "Last Savepoint",
        type_ = "date",
        json_path = ".status.lastSavepoint.time"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::spec_transform)]
pub struct StreamJoinJobSpec {
    /// Runtime container image.
    #[serde(default = "default_image")]
    pub image: String,
    /// When to pull the image.
    #[serde(default)]
    pub image_pull_policy: ImagePullPolicy,
    /// Number of runtime pods (StatefulSet replicas); input partitions are spread over
    /// them. Also the target of the scale subresource (`kubectl scale sjj/NAME --replicas=N`).
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 0, max = 4096))]
    pub parallelism: i32,
    /// CPU and memory of each runtime pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub resources: Option<ResourceRequirements>,
    /// Pod settings merged into the runtime pods.
    #[serde(default)]
    pub pod_template: PodTemplate,
    /// The Kafka cluster.
    #[serde(default)]
    pub kafka: KafkaSpec,
    /// Input topics.
    #[serde(default)]
    pub inputs: InputsSpec,
    /// Topic of emitted entries, keyed "<profile_id>:<title_id>".
    #[serde(default)]
    pub output: TopicRef,
    /// Topic of malformed records, with the reason in a header.
    #[serde(default)]
    pub dead_letter: TopicRef,
    /// Topic of late records; late records are only counted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_output: Option<TopicRef>,
    /// The join.
    #[serde(default)]
    pub join: JoinSpec,
    /// Event-time progress.
    #[serde(default)]
    pub watermarks: WatermarksSpec,
    /// Delivery guarantee of the output.
    #[serde(default)]
    pub delivery: Delivery,
    /// Local checkpoints.
    #[serde(default)]
    pub checkpoints: CheckpointsSpec,
    /// Savepoints.
    #[serde(default)]
    pub savepoints: SavepointsSpec,
    /// How state is carried across upgrades. `savepoint` needs savepoints.location; without one, an upgrade at the same parallelism resumes from the checkpoints (as `lastState`) and a parallelism change is refused until a location is set.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Savepoint to start a new job from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint: Option<String>,
    /// Start even if the savepoint holds state no shard of this job owns.
    #[serde(default)]
    pub allow_non_restored_state: bool,
    /// Desired run state.
    #[serde(default)]
    pub state: JobState,
    /// Changing this value restarts every runtime pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_nonce: Option<i64>,
    /// Automatic parallelism.
    #[serde(default)]
    pub autoscaler: AutoscalerSpec,
    /// Output audit bounds.
    #[serde(default)]
    pub audit: AuditSpec,
    /// Recovery without a usable checkpoint.
    #[serde(default)]
    pub recovery: RecoverySpec,
    /// Keyed state tuning (in-memory cache and RocksDB budgets).
    #[serde(default)]
    pub state_store: StateSpec,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot parse StreamJoinJob manifest: {0}")]
    Parse(#[from] serde_norway::Error),
    #[error("manifest has kind {found:?}, expected StreamJoinJob")]
    WrongKind { found: String },
}

impl StreamJoinJob {
    /// Reads a StreamJoinJob from YAML (or JSON) text, as `kubectl apply` would accept it.
    pub fn from_yaml(text: &str) -> Result<Self, ManifestError> {
        let value: serde_norway::Value = serde_norway::from_str(text)?;
        if let Some(kind) = value.get("kind").and_then(|k| k.as_str())
            && kind != "StreamJoinJob"
        {
            return Err(ManifestError::WrongKind {
                found: kind.to_owned(),
            });
        }
        Ok(serde_norway::from_value(value)?)
    }
}

impl StreamJoinJobSpec {
    /// A spec with every default, for local runs without a manifest.
    pub fn local_default() -> Self {
        serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}
