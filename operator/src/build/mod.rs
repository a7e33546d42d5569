//! Pure builders: from a (validated) StreamJoinJob to the objects the operator
//! owns. No I/O here; every function is a plain transformation tested on its own.
//!
//! Every built object carries [`APPLIED_HASH`], a hash of its own content. The apply
//! step compares it with the hash on the observed object to decide, without reading
//! API-server defaults, whether a write is needed at all.

pub mod configmap;
pub mod pdb;
pub mod secret;
pub mod service;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
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

/// All objects one job owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub config_map: ConfigMap,
    pub service: Service,
    pub stateful_set: StatefulSet,
    pub pdb: PodDisruptionBudget,
}

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

/// Builds every owned object of a validated job.
pub fn children(job: &JobRef<'_>) -> Result<Children> {
    let config_map = configmap::build(job)?;
    let config_hash = applied_hash(&config_map).unwrap_or_default().to_owned();
    Ok(Children {
        service: service::build(job)?,
        stateful_set: statefulset::build(job, &config_hash)?,
        pdb: pdb::build(job)?,
        config_map,
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use kube::api::ObjectMeta;
    use streamjoin_api::{StreamJoinJob, StreamJoinJobSpec};

    pub fn job(name: &str) -> StreamJoinJob {
        let mut spec = StreamJoinJobSpec::local_default();
        spec.kafka.bootstrap_servers = "kafka:9092".into();
        spec.inputs.impressions.topic = "impressions".into();
        spec.inputs.plays.topic = "plays".into();
        spec.output.topic = "joined".into();
        spec.dead_letter.topic = "dead-letter".into();
        spec.parallelism = 3;
        let mut job = StreamJoinJob::new(name, spec);
        job.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("streams".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_content_sensitive() {
        assert_eq!(stable_hash(b"abc"), stable_hash(b"abc"));
        assert_ne!(stable_hash(b"abc"), stable_hash(b"abd"));
        // FNV-1a reference value for "a".
        assert_eq!(stable_hash(b"a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn every_child_is_owned_by_the_job_labelled_and_stamped() {
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("job has metadata");
        let c = children(&r).expect("builds");
        let metas = [
            &c.config_map.metadata,
            &c.service.metadata,
            &c.stateful_set.metadata,
            &c.pdb.metadata,
        ];
        for meta in metas {
            let owners = meta.owner_references.as_ref().expect("owner refs");
            assert_eq!(owners.len(), 1);
            let o = &owners[0];
            assert_eq!(o.kind, "StreamJoinJob");
            assert_eq!(o.api_version, "streamjoin.dev/v1alpha1");
            assert_eq!(o.name, "clicks");
            assert_eq!(o.uid, "uid-clicks");
            assert_eq!(o.controller, Some(true));
            assert_eq!(o.block_owner_deletion, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("streams"));
            let labels = meta.labels.as_ref().expect("labels");
            assert_eq!(labels[JOB_LABEL], "clicks");
            assert_eq!(labels["app.kubernetes.io/managed-by"], MANAGED_BY);
            assert!(
                meta.annotations
                    .as_ref()
                    .expect("annotations")
                    .contains_key(APPLIED_HASH)
            );
        }
    }

    #[test]
    fn building_twice_gives_identical_objects_and_a_spec_change_changes_the_hash() {
        let job = test_support::job("clicks");
        let a = children(&JobRef::new(&job).expect("meta")).expect("builds");
        let b = children(&JobRef::new(&job).expect("meta")).expect("builds");
        assert_eq!(a, b);
        let mut changed = job.clone();
        changed.spec.image = "example/runtime:2".into();
        let c = children(&JobRef::new(&changed).expect("meta")).expect("builds");
        assert_ne!(applied_hash(&a.stateful_set), applied_hash(&c.stateful_set));
        assert_ne!(applied_hash(&a.config_map), applied_hash(&c.config_map));
        assert_eq!(applied_hash(&a.service), applied_hash(&c.service));
    }
}
