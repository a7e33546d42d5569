//! The apply step: server-side apply of each child whose applied hash differs from
//! the observed one (or that is missing, or lost its owner reference), or that was
//! changed by someone else since the operator last applied it (drift: its
//! [`marker`] moved). One field manager (`streamjoin-operator`), forced, so the
//! operator's intent wins over stale managers and hand edits. A child that is up to
//! date costs nothing: no request at all.

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

/// What moves when anyone changes a child: the generation of objects that have
/// one (their spec changed; status writes do not count), else the resourceVersion.
pub fn marker<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    match m.generation {
        Some(g) => format!("g{g}"),
        None => format!("v{}", m.resource_version.as_deref().unwrap_or_default()),
    }
}

/// The markers of the five children, in [`Children`] order (an empty marker for
/// a NetworkPolicy the operator does not generate).
pub type Markers = [String; 5];

/// Server-side apply of one object, forced, as the operator's field manager.
/// Returns the object as stored.
pub async fn ssa<K>(client: &Client, namespace: &str, obj: &K) -> Result<K>
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
    })
}

fn static_kind<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "StatefulSet" => "StatefulSet",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "NetworkPolicy" => "NetworkPolicy",
        "Job" => "Job",
        _ => "object",
    }
}

/// What an apply did: the objects written and every child's marker afterwards.
pub struct AppliedChildren {
    pub written: Vec<ObjectName>,
    pub markers: Markers,
}

/// Applies what changed: the NetworkPolicy first (no pod runs unguarded), then the
/// ConfigMap (the pods read it), the StatefulSet after the Service it names. `last`
/// holds the markers after the operator's last apply; without them (a new
/// operator process) every child is applied once.
pub async fn apply_children(
    client: &Client,
    job: &JobRef<'_>,
    desired: &Children,
    observed: &ObservedChildren,
    last: Option<&Markers>,
) -> Result<AppliedChildren> {
    let last = |i: usize| last.map(|m| m[i].as_str());
    let policy = match &desired.network_policy {
        Some(np) => apply_one(client, job, np, observed.network_policy.as_deref(), last(4)).await?,
        None => (String::new(), None),
    };
    let results = [
        apply_one(
            client,
            job,
            &desired.config_map,
            observed.config_map.as_deref(),
            last(0),
        )
        .await?,
        apply_one(
            client,
            job,
            &desired.service,
            observed.service.as_deref(),
            last(1),
        )
        .await?,
        apply_one(
            client,
            job,
            &desired.stateful_set,
            observed.stateful_set.as_deref(),
            last(2),
        )
        .await?,
        apply_one(client, job, &desired.pdb, observed.pdb.as_deref(), last(3)).await?,
        policy,
    ];
    let mut out = AppliedChildren {
        written: Vec::new(),
        markers: Markers::default(),
    };
    for (i, (marker, written)) in results.into_iter().enumerate() {
        out.markers[i] = marker;
        out.written.extend(written);
    }
    Ok(out)
}

/// Applies one child when it changed on either side; returns its marker and,
/// when written, its name.
async fn apply_one<K>(
    client: &Client,
    job: &JobRef<'_>,
    desired: &K,
    observed: Option<&K>,
    last: Option<&str>,
) -> Result<(String, Option<ObjectName>)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let seen = observed.map(marker);
    let drifted = last.is_none() || seen.as_deref() != last;
    if !needs_apply(desired, observed, &job.owner.uid) && !drifted {
        return Ok((seen.unwrap_or_default(), None));
    }
    let stored = ssa(client, job.namespace, desired).await?;
    let name = desired.meta().name.as_deref().unwrap_or_default();
    Ok((marker(&stored), Some(job.object(static_kind::<K>(), name))))
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
