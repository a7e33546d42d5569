//! Pure builders: from a (validated) StreamJoinJob to the objects the operator
//! owns. No I/O here; every function is a plain transformation tested on its own.
//!
//! Every built object carries [`APPLIED_HASH`], a hash of its own content. The apply
//! step compares it with the hash on the observed object to decide, without reading
//! API-server defaults, whether a write is needed at all.

pub mod cleanup_job;
pub mod configmap;
mod meta;
pub mod networkpolicy;
pub mod pdb;
pub mod secret;
pub mod service;
pub mod statefulset;
mod store_env;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::error::Result;
pub use meta::*;

/// All objects one job owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub config_map: ConfigMap,
    pub service: Service,
    pub stateful_set: StatefulSet,
    pub pdb: PodDisruptionBudget,
    /// The admin port's NetworkPolicy; `None` when the operator generates none
    /// (`--network-policy-generation=false`).
    pub network_policy: Option<NetworkPolicy>,
}

/// Builds every owned object of a validated job, without a NetworkPolicy.
pub fn children(job: &JobRef<'_>) -> Result<Children> {
    children_with_policy(job, None)
}

/// Builds every owned object of a validated job, with the admin port's
/// NetworkPolicy when `peers` is given.
pub fn children_with_policy(
    job: &JobRef<'_>,
    peers: Option<&networkpolicy::AdminPeers>,
) -> Result<Children> {
    let config_map = configmap::build(job)?;
    let config_hash = applied_hash(&config_map).unwrap_or_default().to_owned();
    Ok(Children {
        service: service::build(job)?,
        stateful_set: statefulset::build(job, &config_hash)?,
        pdb: pdb::build(job)?,
        network_policy: peers.map(|p| networkpolicy::build(job, p)).transpose()?,
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
        let peers = networkpolicy::AdminPeers::default();
        let c = children_with_policy(&r, Some(&peers)).expect("builds");
        let np = c.network_policy.as_ref().expect("a policy");
        let metas = [
            &c.config_map.metadata,
            &c.service.metadata,
            &c.stateful_set.metadata,
            &c.pdb.metadata,
            &np.metadata,
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
        assert!(a.network_policy.is_none(), "only with the operator's peers");
        let mut changed = job.clone();
        changed.spec.image = "example/runtime:2".into();
        let c = children(&JobRef::new(&changed).expect("meta")).expect("builds");
        assert_ne!(applied_hash(&a.stateful_set), applied_hash(&c.stateful_set));
        assert_ne!(applied_hash(&a.config_map), applied_hash(&c.config_map));
        assert_eq!(applied_hash(&a.service), applied_hash(&c.service));
    }
}
