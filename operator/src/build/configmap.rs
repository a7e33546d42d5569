//! The ConfigMap holding the job manifest the runtime reads at
//! `/etc/streamjoin/job.yaml` (`streamjoin-runtime run --job ...`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use streamjoin_api::StreamJoinJob;

use super::meta::{CONFIG_KEY, JobRef, config_map_name, owned_meta, stamp};
use crate::error::{Error, Result};

/// The manifest as the runtime sees it: apiVersion, kind, name, namespace and spec;
/// no status and no server-managed metadata, so it only changes when the spec does.
pub fn runtime_manifest(job: &JobRef<'_>) -> Result<String> {
    // Operator-only fields are left out, so editing them never rolls a pod.
    let mut clean = StreamJoinJob::new(
        job.name,
        crate::lifecycle::classify::runtime_view(&job.job.spec),
    );
    clean.metadata = ObjectMeta {
        name: Some(job.name.to_owned()),
        namespace: Some(job.namespace.to_owned()),
        ..ObjectMeta::default()
    };
    serde_norway::to_string(&clean).map_err(|e| Error::Build {
        object: job.object("ConfigMap", &config_map_name(job.name)),
        reason: format!("cannot render the job manifest: {e}"),
    })
}

pub fn build(job: &JobRef<'_>) -> Result<ConfigMap> {
    let name = config_map_name(job.name);
    let object = job.object("ConfigMap", &name);
    let cm = ConfigMap {
        metadata: owned_meta(job, name),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            runtime_manifest(job)?,
        )])),
        ..ConfigMap::default()
    };
    stamp(cm, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;

    #[test]
    fn the_runtime_can_read_the_manifest_back() {
        let job = test_support::job("clicks");
        let cm = build(&JobRef::new(&job).expect("meta")).expect("builds");
        assert_eq!(cm.metadata.name.as_deref(), Some("clicks-config"));
        let text = &cm.data.as_ref().expect("data")[CONFIG_KEY];
        let parsed = StreamJoinJob::from_yaml(text).expect("runtime parses it");
        assert_eq!(parsed.spec, job.spec);
        assert_eq!(parsed.metadata.name.as_deref(), Some("clicks"));
        assert!(parsed.status.is_none());
        assert!(
            parsed.metadata.uid.is_none(),
            "no server metadata in the manifest"
        );
    }
}
