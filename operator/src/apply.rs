//! The apply step: server-side apply of each child whose applied hash differs from
//! the observed one (or that is missing, or lost its owner reference). One field
//! manager (`streamjoin-operator`), forced, so the operator's intent wins over
//! stale managers. A child that is up to date costs nothing: no request at all.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{Children, JobRef, MANAGER, applied_hash};
use crate::error::{Error, ObjectName, Result};
use crate::observe::ObservedChildren;

/// Whether `desired` must be written over `observed`.
pub fn needs_apply<K: Resource>(desired: &K, observed: Option<&K>, owner_uid: &str) -> bool {
    let Some(observed) = observed else {
        return true;
    };
    let owned = observed
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    !owned || applied_hash(desired) != applied_hash(observed)
}

/// Server-side apply of one object, forced, as the operator's field manager.
pub async fn ssa<K>(client: &Client, namespace: &str, obj: &K) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| Error::Apply {
        object: ObjectName::new(static_kind::<K>(), namespace, &name),
        source: Box::new(source),
    })?;
    Ok(())
}

fn static_kind<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "StatefulSet" => "StatefulSet",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "Job" => "Job",
        _ => "object",
    }
}

/// Applies what changed, ConfigMap first (the pods read it), StatefulSet after the
/// Service it names. Returns the objects written.
pub async fn apply_children(
    client: &Client,
    job: &JobRef<'_>,
    desired: &Children,
    observed: &ObservedChildren,
) -> Result<Vec<ObjectName>> {
    let uid = job.owner.uid.as_str();
    let mut written = Vec::new();
    let mut record = |kind: &'static str, name: &Option<String>| {
        written.push(job.object(kind, name.as_deref().unwrap_or_default()));
    };
    if needs_apply(&desired.config_map, observed.config_map.as_deref(), uid) {
        ssa(client, job.namespace, &desired.config_map).await?;
        record("ConfigMap", &desired.config_map.metadata.name);
    }
    if needs_apply(&desired.service, observed.service.as_deref(), uid) {
        ssa(client, job.namespace, &desired.service).await?;
        record("Service", &desired.service.metadata.name);
    }
    if needs_apply(&desired.stateful_set, observed.stateful_set.as_deref(), uid) {
        ssa(client, job.namespace, &desired.stateful_set).await?;
        record("StatefulSet", &desired.stateful_set.metadata.name);
    }
    if needs_apply(&desired.pdb, observed.pdb.as_deref(), uid) {
        ssa(client, job.namespace, &desired.pdb).await?;
        record("PodDisruptionBudget", &desired.pdb.metadata.name);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{self, test_support};

    #[test]
    fn up_to_date_children_need_no_write() {
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let c = build::children(&r).expect("builds");
        assert!(needs_apply(&c.stateful_set, None, "uid-clicks"));
        assert!(!needs_apply(
            &c.stateful_set,
            Some(&c.stateful_set),
            "uid-clicks"
        ));
        // Adopted by someone else (or orphaned): take it back.
        assert!(needs_apply(
            &c.stateful_set,
            Some(&c.stateful_set),
            "other-uid"
        ));
        let mut changed = job.clone();
        changed.spec.parallelism = 5;
        let c2 = build::children(&JobRef::new(&changed).expect("meta")).expect("builds");
        assert!(needs_apply(
            &c2.stateful_set,
            Some(&c.stateful_set),
            "uid-clicks"
        ));
        assert!(!needs_apply(&c2.service, Some(&c.service), "uid-clicks"));
    }
}
