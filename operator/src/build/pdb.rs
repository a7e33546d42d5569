//! The PodDisruptionBudget: voluntary disruptions (node drains) take at most one
//! runtime pod at a time, so at most one shard's partitions stall at once.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{JobRef, owned_meta, pdb_name, selector_labels, stamp};
use crate::error::Result;

pub fn build(job: &JobRef<'_>) -> Result<PodDisruptionBudget> {
    let name = pdb_name(job.name);
    let object = job.object("PodDisruptionBudget", &name);
    let pdb = PodDisruptionBudget {
        metadata: owned_meta(job, name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(job.name)),
                ..LabelSelector::default()
            }),
            // A pod that is not ready yet may be evicted: it serves nothing.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    stamp(pdb, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support;

    #[test]
    fn pdb_allows_one_disruption_and_selects_the_job_pods() {
        let job = test_support::job("clicks");
        let pdb = build(&JobRef::new(&job).expect("meta")).expect("builds");
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.and_then(|s| s.match_labels),
            Some(selector_labels("clicks"))
        );
    }
}
