//! `StreamJoinJob.spec`: what a platform team writes. Every field is documented
//! (the text becomes `kubectl explain` output) and every default lives here, so
//! the operator, the runtime and the CRD schema agree on them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, Toleration, Volume, VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// Container image pull policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// Pod-level settings merged into the runtime pods. Deliberately a small subset of
/// PodTemplateSpec so that the CRD stays small and apply-friendly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::pod_template_transform)]
pub struct PodTemplate {
    /// Extra labels for the runtime pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations for the runtime pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node selector for the runtime pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the runtime pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub tolerations: Vec<Toleration>,
    /// Affinity for the runtime pods; replaces the default preferred anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub affinity: Option<Affinity>,
    /// Service account the runtime pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra environment variables for the runtime container. Entries named like
    /// those the operator sets (POD_NAME, POD_NAMESPACE, POD_IP, STREAMJOIN_REPLICAS,
    /// STREAMJOIN_KAFKA_*, STREAMJOIN_SAVEPOINT_*) are ignored: the operator's value
    /// wins. Of a name listed twice, the last entry counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub env: Vec<EnvVar>,
    /// Priority class of the runtime pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Extra volumes of the runtime pods (core/v1 Volume, at most 32), e.g. a savepoint volume for an absolute savepoints.location. Names must differ from the operator's: data, config, tmp, admin-token, kafka-tls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::volume_list")]
    pub volumes: Vec<Volume>,
    /// Extra mounts of the runtime container (core/v1 VolumeMount, at most 32), each naming a volume of podTemplate.volumes; none at or below the operator's paths /var/lib/streamjoin, /etc/streamjoin, /tmp, /var/run/secrets/streamjoin/admin and /var/run/secrets/streamjoin/kafka-tls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::volume_mount_list")]
    pub volume_mounts: Vec<VolumeMount>,
}

/// Kafka security protocol, as in the Kafka client setting `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

/// A reference to a key of a Secret in the job's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// SASL mechanism.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    #[default]
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// SASL authentication; credentials come from Secrets, never from the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaslSpec {
    /// SASL mechanism.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Secret key holding the user name.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// TLS to the brokers; certificates come from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret with `ca.crt` and, for mutual TLS, `tls.crt` and `tls.key`.
    pub secret_ref: LocalSecretRef,
}

/// A Secret in the job's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Secret name.
    pub name: String,
}

/// Connection to the Kafka cluster holding inputs and outputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kafka_transform)]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of bootstrap brokers.
    #[schemars(length(min = 1, max = 4096))]
    pub bootstrap_servers: String,
    /// Protocol used to talk to the brokers.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// SASL authentication, for the SASL_* protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,
    /// TLS material, for the SSL and SASL_SSL protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Extra librdkafka consumer properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consumer_properties: BTreeMap<String, String>,
    /// Extra librdkafka producer properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producer_properties: BTreeMap<String, String>,
}

/// A Kafka topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicRef {
    /// Topic name.
    #[schemars(schema_with = "crate::schema::topic_name")]
    pub topic: String,
}

/// The two co-partitioned input streams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::inputs_transform)]
pub struct InputsSpec {
    /// Topic of impression records (a title shown to a member).
    pub impressions: TopicRef,
    /// Topic of play records; must have as many partitions as the impressions topic.
    pub plays: TopicRef,
}

fn default_key_fields() -> Vec<String> {
    vec!["profile_id".into(), "title_id".into()]
}
fn default_window() -> HumanDuration {
    HumanDuration::from_secs(4 * 3600)
}
fn default_allowed_lateness() -> HumanDuration {
    HumanDuration::from_secs(0)
}

/// The join itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::join_transform)]
pub struct JoinSpec {
    /// The two integer fields that form the key: the member field, then the title field.
    #[serde(default = "default_key_fields")]
    #[schemars(length(min = 2, max = 2), inner(length(min = 1, max = 253)))]
    pub key_fields: Vec<String>,
    /// Event-time length of an entry: the first event of a key opens a window of this
    /// length, and the entry is emitted when the watermark passes its end.
    #[serde(default = "default_window")]
    #[schemars(schema_with = "crate::schema::positive_duration")]
    pub window: HumanDuration,
    /// How far behind the watermark an event may be and still count.
    #[serde(default = "default_allowed_lateness")]
    pub allowed_lateness: HumanDuration,
}

impl Default for JoinSpec {
    fn default() -> Self {
        Self {
            key_fields: default_key_fields(),
            window: default_window(),
            allowed_lateness: default_allowed_lateness(),
        }
    }
}

fn default_max_out_of_orderness() -> HumanDuration {
    HumanDuration::from_secs(120)
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_inactivity_timeout() -> Option<HumanDuration> {
    Some(HumanDuration::from_secs(15 * 60))
}
fn default_alignment_max_drift() -> Option<HumanDuration> {
    Some(HumanDuration::from_secs(60))
}

/// Event-time progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarksSpec {
    /// How far behind the largest event time of a partition its records may arrive.
    #[serde(default = "default_max_out_of_orderness")]
    pub max_out_of_orderness: HumanDuration,
    /// A caught-up partition that receives nothing for this long is left out of the watermark.
    #[serde(default = "default_idle_timeout")]
    #[schemars(schema_with = "crate::schema::positive_duration")]
    pub idle_timeout: HumanDuration,
    /// When every input partition has been idle this long (traffic moved to another region),
    /// the watermark is force-advanced to wall clock minus maxOutOfOrderness. Null disables it;
    /// disable it for replays of historical data.
    #[serde(default = "default_inactivity_timeout")]
    #[schemars(schema_with = "crate::schema::positive_duration_nullable")]
    pub inactivity_timeout: Option<HumanDuration>,
    /// A partition whose watermark runs this far ahead of the job's watermark is paused.
    /// Null disables alignment.
    #[serde(default = "default_alignment_max_drift")]
    #[schemars(schema_with = "crate::schema::positive_duration_nullable")]
    pub alignment_max_drift: Option<HumanDuration>,
    /// Changing this value makes every runtime pod force-advance its watermark once, now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_advance_nonce: Option<i64>,
}

impl Default for WatermarksSpec {
    fn default() -> Self {
        Self {
            max_out_of_orderness: default_max_out_of_orderness(),
            idle_timeout: default_idle_timeout(),
            inactivity_timeout: default_inactivity_timeout(),
            alignment_max_drift: default_alignment_max_drift(),
            force_advance_nonce: None,
        }
    }
}

/// Delivery guarantee of the output topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// After a failure an entry may be emitted again, with the same bytes.
    #[default]
    AtLeastOnce,
    /// Kafka transactions aligned with checkpoints; read with isolation.level=read_committed.
    ExactlyOnce,
}

/// Growth of the checkpoint volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoExpandSpec {
    /// Usage (percent of capacity) above which the claim is grown.
    #[serde(default = "default_threshold_percent")]
    #[schemars(range(min = 1, max = 99))]
    pub threshold_percent: u8,
    /// Largest size the claim may grow to (a Kubernetes quantity).
    pub max_size: String,
}

fn default_threshold_percent() -> u8 {
    80
}

fn default_volume_size() -> String {
    "10Gi".into()
}

/// The per-pod volume holding RocksDB state and checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointVolumeSpec {
    /// Storage class of the claim; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Requested size (a Kubernetes quantity).
    #[serde(default = "default_volume_size")]
    pub size: String,
    /// Grow the claim when it fills up, if the storage class allows expansion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_expand: Option<AutoExpandSpec>,
}

impl Default for CheckpointVolumeSpec {
    fn default() -> Self {
        Self {
            storage_class_name: None,
            size: default_volume_size(),
            auto_expand: None,
        }
    }
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_retained() -> u32 {
    3
}

/// Periodic local checkpoints (state snapshot plus source offsets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointsSpec {
    /// Time between checkpoints.
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(schema_with = "crate::schema::positive_duration")]
    pub interval: HumanDuration,
    /// Completed checkpoints kept per shard.
    #[serde(default = "default_retained")]
    #[schemars(range(min = 1, max = 100))]
    pub retained: u32,
    /// The checkpoint volume.
    #[serde(default)]
    pub volume: CheckpointVolumeSpec,
}

impl Default for CheckpointsSpec {
    fn default() -> Self {
        Self {
            interval: default_checkpoint_interval(),
            retained: default_retained(),
            volume: CheckpointVolumeSpec::default(),
        }
    }
}

/// What happens to savepoints when the job is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SavepointOnDelete {
    /// Take a final savepoint, then delete the job's other savepoints: one is left.
    #[default]
    Take,
    /// No final savepoint; the job's savepoints are left as they are.
    Skip,
    /// No final savepoint, and every savepoint of the job is deleted.
    None,
}

fn default_max_retained() -> u32 {
    5
}

/// Portable snapshots of all shards, used for upgrades, rescaling and suspend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::savepoints_transform)]
pub struct SavepointsSpec {
    /// Where savepoints are written: an absolute path of a volume mounted in every pod, a file:// URL of one, or an object-store URL s3://<bucket>/<prefix>, gs://<bucket>/<prefix>, az://<container>/<prefix>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub location: Option<String>,
    /// Time between periodic savepoints; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::positive_duration_nullable")]
    pub interval: Option<HumanDuration>,
    /// Savepoints kept; one that a rollback or a resume depends on is never deleted.
    #[serde(default = "default_max_retained")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_retained: u32,
    /// What deleting the job does to savepoints: `take` a final one and delete the
    /// others, `skip` (leave them), or `none` (delete them all). Deletion waits until
    /// they are deleted; set `skip` to delete the job anyway.
    #[serde(default)]
    pub on_delete: SavepointOnDelete,
    /// Changing this value triggers one manual savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_nonce: Option<i64>,
    /// s3:// only: the S3 API endpoint of an S3-compatible store (http:// or https://); AWS's regional endpoint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^/?#@]+(/[^?#@]*)?$"))]
    pub endpoint: Option<String>,
    /// s3:// only: the bucket's region; AWS_REGION of the pod, then us-east-1, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// s3:// only: path-style requests (`<endpoint>/<bucket>/<key>`), as most S3-compatible stores need; virtual-hosted style (`<bucket>.<endpoint>`) when absent or false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Credentials of the object store, from a Secret; the pod's ambient identity (IRSA, Workload Identity, managed identity, instance metadata) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SavepointCredentials>,
}

/// Object-store credentials from a Secret in the job's namespace, passed to the
/// pods as environment variables and never written into the manifest, status,
/// events or logs. Keys by scheme: s3:// `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`; gs://
/// `service-account.json` (a service-account key file); az://
/// `AZURE_STORAGE_ACCOUNT_NAME` and `AZURE_STORAGE_ACCOUNT_KEY`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointCredentials {
    /// The Secret holding the keys. s3://: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`; gs://: `service-account.json` (a service-account key file); az://: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`. The pods get each key as the variable `STREAMJOIN_SAVEPOINT_<key>` (`STREAMJOIN_SAVEPOINT_GCS_SERVICE_ACCOUNT_KEY` for the key file).
    pub secret_ref: LocalSecretRef,
}

impl Default for SavepointsSpec {
    fn default() -> Self {
        Self {
            location: None,
            interval: None,
            max_retained: default_max_retained(),
            on_delete: SavepointOnDelete::default(),
            trigger_nonce: None,
            endpoint: None,
            region: None,
            path_style: None,
            credentials: None,
        }
    }
}

/// How state is carried across an upgrade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UpgradeMode {
    /// Stop with a savepoint, restore the new version from it; without savepoints.location, restart from the latest checkpoints (same parallelism only).
    #[default]
    Savepoint,
    /// Restore from the latest checkpoints (same parallelism only).
    LastState,
    /// Start from empty state; only when chosen explicitly.
    Stateless,
}

/// Desired run state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    #[default]
    Running,
    /// Take a savepoint and scale to zero, keeping volumes.
    Suspended,
}

/// Automatic parallelism from lag and throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::autoscaler_transform)]
pub struct AutoscalerSpec {
    /// Whether the operator changes parallelism by itself.
    #[serde(default)]
    pub enabled: bool,
    /// Lowest parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_parallelism: Option<i32>,
    /// Highest parallelism (never above the input partition count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_parallelism: Option<i32>,
    /// Busy fraction a pod should run at (0 < x ≤ 1).
    #[serde(default = "default_target_utilization")]
    #[schemars(range(min = 0.05, max = 1.0))]
    pub target_utilization: f64,
    /// Time within which a backlog should be caught up.
    #[serde(default = "default_catch_up")]
    #[schemars(schema_with = "crate::schema::positive_duration")]
    pub catch_up_duration: HumanDuration,
    /// How long a scale-up recommendation must hold before it is acted on.
    #[serde(default = "default_scale_up_stabilization")]
    pub scale_up_stabilization: HumanDuration,
    /// How long a scale-down recommendation must hold before it is acted on.
    #[serde(default = "default_scale_down_delay")]
    pub scale_down_delay: HumanDuration,
}

fn default_target_utilization() -> f64 {
    0.7
}
fn default_catch_up() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}
fn default_scale_up_stabilization() -> HumanDuration {
    HumanDuration::from_secs(3 * 60)
}
fn default_scale_down_delay() -> HumanDuration {
    HumanDuration::from_secs(30 * 60)
}

impl Default for AutoscalerSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_parallelism: None,
            max_parallelism: None,
            target_utilization: default_target_utilization(),
            catch_up_duration: default_catch_up(),
            scale_up_stabilization: default_scale_up_stabilization(),
            scale_down_delay: default_scale_down_delay(),
        }
    }
}

/// Bounds checked on the output per audit interval; a breach is reported, not fatal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::audit_transform)]
pub struct AuditSpec {
    /// Largest acceptable fraction of malformed records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_malformed_ratio: Option<f64>,
    /// Largest acceptable fraction of late records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_late_ratio: Option<f64>,
    /// Smallest acceptable fraction of emitted entries that have plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_join_ratio: Option<f64>,
    /// Largest acceptable fraction of emitted entries that have plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_join_ratio: Option<f64>,
}

/// Where to start when no usable checkpoint exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnMissingCheckpoint {
    /// Refuse to start and report it.
    #[default]
    Fail,
    /// Read the inputs from their earliest offsets.
    Earliest,
    /// Read only what arrives from now on.
    Latest,
    /// Read from `recovery.fromTimestamp`.
    Timestamp,
}

/// Recovery when the checkpoints are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::recovery_transform)]
pub struct RecoverySpec {
    /// What to do when no usable checkpoint exists.
    #[serde(default)]
    pub on_missing_checkpoint: OnMissingCheckpoint,
    /// RFC 3339 time to replay from, for `timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub from_timestamp: Option<String>,
}

fn default_cache_entries() -> u64 {
    4_000_000
}
/// A byte quantity as the runtime reads it: an integer with an optional
/// decimal (`k`, `M`, `G`) or binary (`Ki`, `Mi`, `Gi`, `Ti`) unit.
pub const BYTE_QUANTITY_PATTERN: &str = "^[0-9]+(k|K|M|G|Ki|Mi|Gi|Ti)?$";

fn default_cache_size() -> String {
    "512Mi".into()
}
fn default_block_cache() -> String {
    "256Mi".into()
}
fn default_write_buffer() -> String {
    "128Mi".into()
}

/// Tuning of the keyed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateSpec {
    /// Open entries kept in memory per pod before the least recently used are written to
    /// RocksDB. 0 keeps every entry in RocksDB only.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: u64,
    /// Heap bytes the pod's in-memory entry cache may hold across its shards (a Kubernetes
    /// quantity), each entry counted with its event-id set. Past it the least recently used
    /// entries are written to RocksDB; a key whose event-id set alone grows past a share of
    /// it keeps its older ids in RocksDB.
    #[serde(default = "default_cache_size")]
    #[schemars(extend("pattern" = BYTE_QUANTITY_PATTERN))]
    pub cache_size: String,
    /// RocksDB block cache shared by the pod's shards (a Kubernetes quantity).
    #[serde(default = "default_block_cache")]
    #[schemars(extend("pattern" = BYTE_QUANTITY_PATTERN))]
    pub block_cache_size: String,
    /// RocksDB write-buffer budget shared by the pod's shards (a Kubernetes quantity).
    #[serde(default = "default_write_buffer")]
    #[schemars(extend("pattern" = BYTE_QUANTITY_PATTERN))]
    pub write_buffer_size: String,
}

impl Default for StateSpec {
    fn default() -> Self {
        Self {
            cache_entries: default_cache_entries(),
            cache_size: default_cache_size(),
            block_cache_size: default_block_cache(),
            write_buffer_size: default_write_buffer(),
        }
    }
}
