//! What every child builder shares: the names of the owned objects, their labels,
//! the job's identity ([`JobRef`]) and owner reference, and the applied-hash stamp.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;
use streamjoin_api::StreamJoinJob;

use crate::error::{Error, ObjectName, Result};

/// The field manager of every write of the operator (server-side apply).
pub const MANAGER: &str = "streamjoin-operator";
/// Label on the pods naming their job; part of the selector.
pub const JOB_LABEL: &str = "streamjoin.dev/job";
/// `app.kubernetes.io/name` of every runtime pod; part of the selector.
pub const APP_NAME: &str = "streamjoin";
/// `app.kubernetes.io/managed-by` of every owned object; the operator's watches filter on it.
pub const MANAGED_BY: &str = "streamjoin-operator";
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=streamjoin-operator";
/// Hash of the applied content of an owned object.
pub const APPLIED_HASH: &str = "streamjoin.dev/applied-hash";
/// Hash of the job manifest, on the pod template, so a config change rolls the pods.
pub const CONFIG_HASH: &str = "streamjoin.dev/config-hash";
/// Where the runtime reads its manifest, and the key in the ConfigMap.
pub const CONFIG_DIR: &str = "/etc/streamjoin";
pub const CONFIG_KEY: &str = "job.yaml";
/// Mount point of the checkpoint volume.
pub const DATA_DIR: &str = "/var/lib/streamjoin";
/// Name of the volume claim template (PVCs are `data-<job>-<ordinal>`).
pub const DATA_VOLUME: &str = "data";
/// The runtime's admin port (health, readiness, metrics).
pub const ADMIN_PORT: i32 = 9249;
pub const ADMIN_PORT_NAME: &str = "admin";
/// Longest job name: the StatefulSet's pods get a `controller-revision-hash` label of
/// `<name>-<10 chars>`, and label values are at most 63 characters.
pub const MAX_NAME_LEN: usize = 52;

/// Identity of the job the builders work for, read once.
#[derive(Clone, Debug)]
pub struct JobRef<'a> {
    pub job: &'a StreamJoinJob,
    pub name: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    /// Savepoint the pods restore from (`--restore-from`), decided by the lifecycle.
    pub restore_from: Option<String>,
    /// Changing it restarts every pod (after a failed stop-with-savepoint).
    pub restart_marker: Option<String>,
    /// Local checkpoints older than this (RFC 3339) are ignored at start
    /// (`--ignore-checkpoints-before`), decided by the lifecycle.
    pub ignore_checkpoints_before: Option<String>,
}

impl<'a> JobRef<'a> {
    pub fn new(job: &'a StreamJoinJob) -> Result<Self> {
        let missing = |what| Error::MissingMetadata {
            object: format!("StreamJoinJob {:?}", job.metadata.name),
            what,
        };
        let name = job
            .metadata
            .name
            .as_deref()
            .ok_or_else(|| missing("name"))?;
        let namespace = job
            .metadata
            .namespace
            .as_deref()
            .ok_or_else(|| missing("namespace"))?;
        let mut owner = job
            .controller_owner_ref(&())
            .ok_or_else(|| missing("uid"))?;
        // Foreground deletion of a job waits for its children.
        owner.block_owner_deletion = Some(true);
        Ok(Self {
            job,
            name,
            namespace,
            owner,
            restore_from: None,
            restart_marker: None,
            ignore_checkpoints_before: None,
        })
    }

    pub fn object(&self, kind: &'static str, name: &str) -> ObjectName {
        ObjectName::new(kind, self.namespace, name)
    }
}

/// Names of the owned objects.
pub fn config_map_name(job: &str) -> String {
    format!("{job}-config")
}
pub fn service_name(job: &str) -> String {
    job.to_owned()
}
pub fn stateful_set_name(job: &str) -> String {
    job.to_owned()
}
pub fn pdb_name(job: &str) -> String {
    job.to_owned()
}
/// The NetworkPolicy guarding the runtime pods' admin port.
pub fn network_policy_name(job: &str) -> String {
    format!("{job}-admin")
}
/// The Secret holding the job's admin API token.
pub fn admin_secret_name(job: &str) -> String {
    format!("{job}-admin-token")
}

/// The labels that select a job's pods.
pub fn selector_labels(job: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        (JOB_LABEL.to_owned(), job.to_owned()),
    ])
}

/// The selector as a string, for `status.selector` (the scale subresource).
pub fn selector_string(job: &str) -> String {
    selector_labels(job)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels of every owned object: the selector labels plus `managed-by`.
pub fn common_labels(job: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(job);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "stream-join".to_owned(),
    );
    labels
}

/// Metadata of an owned object: name, namespace, labels, controller owner reference.
pub fn owned_meta(job: &JobRef<'_>, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(job.namespace.to_owned()),
        labels: Some(common_labels(job.name)),
        owner_references: Some(vec![job.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// FNV-1a, 64 bit: stable across Rust releases and platforms (unlike `DefaultHasher`),
/// so an operator upgrade does not rewrite every child.
pub fn stable_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Sets [`APPLIED_HASH`] on an object to the hash of everything else in it.
pub fn stamp<K: Serialize + Resource>(mut obj: K, object: &ObjectName) -> Result<K> {
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .remove(APPLIED_HASH);
    let bytes = serde_json::to_vec(&obj).map_err(|source| Error::Serialize {
        object: object.clone(),
        source,
    })?;
    let hash = stable_hash(&bytes);
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH.to_owned(), hash);
    Ok(obj)
}

/// The applied hash recorded on an object, if any.
pub fn applied_hash<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH))
        .map(String::as_str)
}
