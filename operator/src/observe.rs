//! Observed state: the children and pods of a job, read from reflector stores
//! (one label-filtered watch per kind, shared with the controller's triggers).
//! Reading from caches keeps a reconcile that changes nothing free of API calls.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher;

use crate::build::{self, JOB_LABEL};

/// Read handles of the caches the reconciler consults.
#[derive(Clone)]
pub struct Stores {
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub stateful_sets: Store<StatefulSet>,
    pub pdbs: Store<PodDisruptionBudget>,
    /// Fed only while the operator generates NetworkPolicies; else empty.
    pub network_policies: Store<NetworkPolicy>,
    pub pods: Store<Pod>,
    /// Savepoint cleanup Jobs.
    pub jobs: Store<Job>,
}

/// Write handles, fed by watchers in production and by hand in tests and benchmarks.
pub struct Writers {
    pub config_maps: Writer<ConfigMap>,
    pub services: Writer<Service>,
    pub stateful_sets: Writer<StatefulSet>,
    pub pdbs: Writer<PodDisruptionBudget>,
    pub network_policies: Writer<NetworkPolicy>,
    pub pods: Writer<Pod>,
    pub jobs: Writer<Job>,
}

/// What exists of one job's children.
#[derive(Clone, Debug, Default)]
pub struct ObservedChildren {
    pub config_map: Option<Arc<ConfigMap>>,
    pub service: Option<Arc<Service>>,
    pub stateful_set: Option<Arc<StatefulSet>>,
    pub pdb: Option<Arc<PodDisruptionBudget>>,
    pub network_policy: Option<Arc<NetworkPolicy>>,
    /// The job's pods (ordinals up to the StatefulSet's largest replica count), by ordinal.
    pub pods: Vec<Arc<Pod>>,
    /// The Job deleting savepoints while no pod runs, if any.
    pub cleanup_job: Option<Arc<Job>>,
}

impl Stores {
    pub fn new() -> (Stores, Writers) {
        let (config_maps, cm) = reflector::store();
        let (services, svc) = reflector::store();
        let (stateful_sets, sts) = reflector::store();
        let (pdbs, pdb) = reflector::store();
        let (network_policies, np) = reflector::store();
        let (pods, pod) = reflector::store();
        let (jobs, job) = reflector::store();
        (
            Stores {
                config_maps,
                services,
                stateful_sets,
                pdbs,
                network_policies,
                pods,
                jobs,
            },
            Writers {
                config_maps: cm,
                services: svc,
                stateful_sets: sts,
                pdbs: pdb,
                network_policies: np,
                pods: pod,
                jobs: job,
            },
        )
    }

    /// Waits (at most `limit`) until every cache holds its initial list. Returns false
    /// on timeout: acting on a half-filled cache would re-apply children that exist.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let all = async {
            self.config_maps.wait_until_ready().await.is_ok()
                && self.services.wait_until_ready().await.is_ok()
                && self.stateful_sets.wait_until_ready().await.is_ok()
                && self.pdbs.wait_until_ready().await.is_ok()
                && self.network_policies.wait_until_ready().await.is_ok()
                && self.pods.wait_until_ready().await.is_ok()
                && self.jobs.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(limit, all).await.unwrap_or(false)
    }

    pub fn observe(&self, namespace: &str, job: &str) -> ObservedChildren {
        fn get<K>(store: &Store<K>, namespace: &str, name: String) -> Option<Arc<K>>
        where
            K: Resource<DynamicType = ()> + Clone + 'static,
        {
            store.get(&ObjectRef::new(&name).within(namespace))
        }
        let stateful_set = get(
            &self.stateful_sets,
            namespace,
            build::stateful_set_name(job),
        );
        // StatefulSet pods are `<name>-<ordinal>`: look each up by name instead of
        // scanning every pod in the cache (O(parallelism), not O(pods in the cluster)).
        let ordinals = stateful_set.as_deref().map_or(0, |sts| {
            let status = sts.status.as_ref();
            [
                sts.spec.replicas.unwrap_or(0),
                status.map_or(0, |s| s.replicas),
                status.and_then(|s| s.current_replicas).unwrap_or(0),
                status.and_then(|s| s.updated_replicas).unwrap_or(0),
            ]
            .into_iter()
            .max()
            .unwrap_or(0)
        });
        let sts_name = build::stateful_set_name(job);
        let pods = (0..ordinals)
            .filter_map(|i| get(&self.pods, namespace, format!("{sts_name}-{i}")))
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(JOB_LABEL))
                    .is_some_and(|v| v == job)
            })
            .collect();
        ObservedChildren {
            config_map: get(&self.config_maps, namespace, build::config_map_name(job)),
            service: get(&self.services, namespace, build::service_name(job)),
            stateful_set,
            pdb: get(&self.pdbs, namespace, build::pdb_name(job)),
            network_policy: get(
                &self.network_policies,
                namespace,
                build::network_policy_name(job),
            ),
            pods,
            cleanup_job: get(
                &self.jobs,
                namespace,
                build::cleanup_job::cleanup_job_name(job),
            ),
        }
    }
}

fn upsert<K>(w: &mut Writer<K>, obj: K)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    w.apply_watcher_event(&watcher::Event::Apply(obj));
}

fn remove<K>(w: &mut Writer<K>, obj: K)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    w.apply_watcher_event(&watcher::Event::Delete(obj));
}

impl Writers {
    /// Marks every cache as holding its initial (empty) list.
    pub fn mark_ready(&mut self) {
        for ev in [watcher::Event::Init, watcher::Event::InitDone] {
            self.config_maps.apply_watcher_event(&ev_cast(&ev));
            self.services.apply_watcher_event(&ev_cast(&ev));
            self.stateful_sets.apply_watcher_event(&ev_cast(&ev));
            self.pdbs.apply_watcher_event(&ev_cast(&ev));
            self.network_policies.apply_watcher_event(&ev_cast(&ev));
            self.pods.apply_watcher_event(&ev_cast(&ev));
            self.jobs.apply_watcher_event(&ev_cast(&ev));
        }
    }

    pub fn config_map(&mut self, o: ConfigMap) {
        upsert(&mut self.config_maps, o)
    }
    pub fn service(&mut self, o: Service) {
        upsert(&mut self.services, o)
    }
    pub fn stateful_set(&mut self, o: StatefulSet) {
        upsert(&mut self.stateful_sets, o)
    }
    pub fn pdb(&mut self, o: PodDisruptionBudget) {
        upsert(&mut self.pdbs, o)
    }
    pub fn pod(&mut self, o: Pod) {
        upsert(&mut self.pods, o)
    }
    pub fn network_policy(&mut self, o: NetworkPolicy) {
        upsert(&mut self.network_policies, o)
    }
    pub fn remove_network_policy(&mut self, o: NetworkPolicy) {
        remove(&mut self.network_policies, o)
    }
    pub fn remove_pdb(&mut self, o: PodDisruptionBudget) {
        remove(&mut self.pdbs, o)
    }
    pub fn remove_pod(&mut self, o: Pod) {
        remove(&mut self.pods, o)
    }
    pub fn job(&mut self, o: Job) {
        upsert(&mut self.jobs, o)
    }
}

/// Marks one cache as holding its initial, empty list: a kind that is not watched
/// (NetworkPolicies while the operator generates none).
pub fn mark_empty<K>(w: &mut Writer<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    for ev in [watcher::Event::Init, watcher::Event::InitDone] {
        w.apply_watcher_event(&ev_cast(&ev));
    }
}

/// `Init`/`InitDone` carry no object, so one value serves every kind.
fn ev_cast<K>(ev: &watcher::Event<()>) -> watcher::Event<K> {
    match ev {
        watcher::Event::Init => watcher::Event::Init,
        _ => watcher::Event::InitDone,
    }
}
