//! The NetworkPolicy of a job's runtime pods: only the operator's pods (and the
//! peers the operator is configured with, e.g. Prometheus) reach the admin port,
//! whose API is plain HTTP and can stop or savepoint the job.
//!
//! The runtime container listens on the admin port only (its one container port,
//! see `statefulset.rs`; Kafka and the savepoint store are outgoing connections,
//! which an Ingress-only policy leaves alone), so the one rule below is every
//! ingress the pods need. Kubelet probes come from the node and are not subject
//! to NetworkPolicies.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{ADMIN_PORT, JobRef, network_policy_name, owned_meta, selector_labels, stamp};
use crate::error::Result;

/// The label every namespace carries with its own name (Kubernetes ≥ 1.22).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Who may reach the admin port, besides nobody: the operator's pods, and extras.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdminPeers {
    /// The operator's own namespace (`POD_NAMESPACE`).
    pub operator_namespace: String,
    /// The labels that select the operator's pods in that namespace.
    pub operator_labels: PodLabels,
    /// More peers, as given (`networkPolicy.extraAdminPeers` of the chart).
    pub extra: ExtraPeers,
}

/// A `key=value,key=value` label selector (equality only), as the chart's
/// selector labels of the operator's Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodLabels(pub BTreeMap<String, String>);

/// A JSON list of NetworkPolicyPeer objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraPeers(pub Vec<NetworkPolicyPeer>);

/// Parses `key=value[,key=value...]`; every pair needs a key and a value.
pub fn parse_pod_labels(s: &str) -> std::result::Result<PodLabels, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                labels.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => return Err(format!("{pair:?} is not key=value")),
        }
    }
    if labels.is_empty() {
        return Err("the operator's pod selector is empty: it would admit every pod of the operator's namespace".to_owned());
    }
    Ok(PodLabels(labels))
}

/// Parses a JSON list of NetworkPolicyPeer objects (`[]` or empty: none).
pub fn parse_extra_peers(s: &str) -> std::result::Result<ExtraPeers, String> {
    if s.trim().is_empty() {
        return Ok(ExtraPeers::default());
    }
    let peers: Vec<NetworkPolicyPeer> = serde_json::from_str(s)
        .map_err(|e| format!("not a JSON list of NetworkPolicyPeer objects: {e}"))?;
    if let Some(i) = peers.iter().position(|p| {
        p.pod_selector.is_none() && p.namespace_selector.is_none() && p.ip_block.is_none()
    }) {
        // An empty peer is invalid in the API; say so at start, not at every apply.
        return Err(format!(
            "peer {i} has no podSelector, namespaceSelector or ipBlock"
        ));
    }
    Ok(ExtraPeers(peers))
}

fn matching(labels: BTreeMap<String, String>) -> Option<LabelSelector> {
    Some(LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    })
}

/// The policy of one job: its pods, ingress on the admin port from the peers only.
pub fn build(job: &JobRef<'_>, peers: &AdminPeers) -> Result<NetworkPolicy> {
    let name = network_policy_name(job.name);
    let object = job.object("NetworkPolicy", &name);
    let operator = NetworkPolicyPeer {
        namespace_selector: matching(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_owned(),
            peers.operator_namespace.clone(),
        )])),
        pod_selector: matching(peers.operator_labels.0.clone()),
        ip_block: None,
    };
    let mut from = vec![operator];
    from.extend(peers.extra.0.iter().cloned());
    let np = NetworkPolicy {
        metadata: owned_meta(job, name),
        spec: Some(NetworkPolicySpec {
            pod_selector: matching(selector_labels(job.name)),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(ADMIN_PORT)),
                    protocol: Some("TCP".to_owned()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    };
    stamp(np, &object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{self, test_support};
    use serde_json::json;

    fn peers(extra: &str) -> AdminPeers {
        AdminPeers {
            operator_namespace: "streamjoin-system".into(),
            operator_labels: parse_pod_labels(
                "app.kubernetes.io/name=streamjoin-operator,app.kubernetes.io/instance=sj",
            )
            .expect("labels"),
            extra: parse_extra_peers(extra).expect("peers"),
        }
    }

    fn built(extra: &str) -> serde_json::Value {
        let job = test_support::job("clicks");
        let np = build(&JobRef::new(&job).expect("meta"), &peers(extra)).expect("builds");
        serde_json::to_value(np).expect("json")
    }

    #[test]
    fn the_policy_selects_the_job_pods_and_admits_only_the_operator_to_the_admin_port() {
        let np = built("");
        assert_eq!(np["metadata"]["name"], "clicks-admin");
        assert_eq!(np["metadata"]["namespace"], "streams");
        let spec = &np["spec"];
        assert_eq!(
            spec["podSelector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "streamjoin", "streamjoin.dev/job": "clicks"}})
        );
        assert_eq!(spec["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            spec["ingress"],
            json!([{
                "from": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "streamjoin-system"}},
                    "podSelector": {"matchLabels": {
                        "app.kubernetes.io/instance": "sj",
                        "app.kubernetes.io/name": "streamjoin-operator"
                    }}
                }],
                "ports": [{"port": ADMIN_PORT, "protocol": "TCP"}]
            }])
        );
        assert!(
            spec.get("egress").is_none(),
            "outgoing traffic is left alone"
        );
    }

    #[test]
    fn extra_peers_are_admitted_after_the_operator() {
        let prometheus = json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
        });
        let cidr = json!({"ipBlock": {"cidr": "10.0.0.0/8"}});
        let np = built(&json!([prometheus, cidr]).to_string());
        let from = np["spec"]["ingress"][0]["from"]
            .as_array()
            .expect("from")
            .clone();
        assert_eq!(from.len(), 3);
        assert_eq!(from[1], prometheus);
        assert_eq!(from[2], cidr);
        assert_eq!(np["spec"]["ingress"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn every_port_the_runtime_container_listens_on_is_in_the_policy() {
        // A port added to the runtime container later must be opened here too,
        // or the policy would cut it off.
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let sts = build::children(&r).expect("builds").stateful_set;
        let pod = sts.spec.template.spec.expect("pod spec");
        let np = build(&r, &peers("")).expect("builds");
        let open: Vec<IntOrString> = np
            .spec
            .and_then(|s| s.ingress)
            .into_iter()
            .flatten()
            .flat_map(|rule| rule.ports.unwrap_or_default())
            .filter_map(|p| p.port)
            .collect();
        let listening: Vec<i32> = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .flat_map(|c| c.ports.clone().unwrap_or_default())
            .map(|p| p.container_port)
            .collect();
        assert!(!listening.is_empty());
        for port in listening {
            assert!(
                open.contains(&IntOrString::Int(port)),
                "port {port} is not in the policy"
            );
        }
    }

    #[test]
    fn the_policy_is_an_owned_stamped_child_and_its_hash_follows_the_peers() {
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let a = build(&r, &peers("")).expect("builds");
        assert_eq!(a, build(&r, &peers("")).expect("builds"));
        let owners = a.metadata.owner_references.clone().expect("owner");
        assert_eq!(owners[0].uid, "uid-clicks");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(
            a.metadata
                .labels
                .as_ref()
                .map(|l| l[build::JOB_LABEL].as_str()),
            Some("clicks")
        );
        let b = build(&r, &peers(r#"[{"ipBlock": {"cidr": "10.0.0.0/8"}}]"#)).expect("builds");
        assert!(build::applied_hash(&a).is_some());
        assert_ne!(build::applied_hash(&a), build::applied_hash(&b));
    }

    #[test]
    fn settings_that_would_open_the_port_to_anyone_or_cannot_be_read_are_refused() {
        assert!(
            parse_pod_labels("").is_err(),
            "an empty selector admits every pod"
        );
        assert!(parse_pod_labels("app").is_err());
        assert!(parse_pod_labels("=x").is_err());
        assert_eq!(
            parse_pod_labels(" a=b , c=d ").expect("parses").0,
            BTreeMap::from([("a".into(), "b".into()), ("c".into(), "d".into())])
        );
        assert!(parse_extra_peers("{}").is_err(), "an object, not a list");
        assert!(parse_extra_peers("[{}]").is_err(), "an empty peer");
        assert!(parse_extra_peers(r#"[{"podSelector": 3}]"#).is_err());
        assert_eq!(parse_extra_peers("").expect("none"), ExtraPeers::default());
        assert_eq!(
            parse_extra_peers("[]").expect("none"),
            ExtraPeers::default()
        );
    }
}
