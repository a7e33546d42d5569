//! Wiring: for each watch scope (the whole cluster, or each namespace given with
//! `--namespaces`), one label-filtered watch per child kind feeds both a cache the
//! reconciler reads and the controller's triggers, and one Controller runs the
//! reconcile pipeline. Jobs are watched through `DeserializeGuard`, so one object
//! that cannot be read is reported and skipped instead of breaking the watch.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use streamjoin_api::StreamJoinJob;
use tokio::sync::watch;

use crate::admin::{HttpAdmin, PodAddressing, resolver};
use crate::admin_key::AdminKeys;
use crate::build::networkpolicy::AdminPeers;
use crate::build::{JOB_LABEL, MANAGED_BY_SELECTOR};
use crate::metrics::Metrics;
use crate::observe::{Stores, mark_empty};
use crate::reconcile::{Context, Requeue, error_policy, reconcile};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// This replica's name, for Events.
    pub instance: Option<String>,
    pub requeue: Requeue,
    /// How the runtime pods' admin API is reached.
    pub pod_addressing: PodAddressing,
    /// `(namespace, name)` of the Secret holding the admin-token key; `None`: a
    /// random key per process (tests only: tokens would change on a restart).
    pub admin_key_secret: Option<(String, String)>,
    /// Who may reach the runtime pods' admin port, in a NetworkPolicy per job;
    /// `None`: no NetworkPolicy is generated, watched or touched.
    pub network_policy: Option<AdminPeers>,
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn owned_watch<K>(
    client: &Client,
    namespace: Option<&str>,
    writer: kube::runtime::reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let cfg = watcher::Config::default()
        .labels(MANAGED_BY_SELECTOR)
        .any_semantic();
    watcher(scoped::<K>(client, namespace), cfg)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
}

/// The job a runtime pod belongs to, from its labels.
pub fn job_of_pod(pod: Pod) -> Option<ObjectRef<DeserializeGuard<StreamJoinJob>>> {
    let ns = pod.metadata.namespace.as_deref()?;
    let job = pod.metadata.labels.as_ref()?.get(JOB_LABEL)?;
    Some(ObjectRef::new(job).within(ns))
}

async fn run_scope(
    client: Client,
    namespace: Option<String>,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ns = namespace.as_deref();
    let (stores, mut w) = Stores::new();
    let config_maps = owned_watch::<ConfigMap>(&client, ns, w.config_maps);
    let services = owned_watch::<Service>(&client, ns, w.services);
    let stateful_sets = owned_watch::<StatefulSet>(&client, ns, w.stateful_sets);
    let pdbs = owned_watch::<PodDisruptionBudget>(&client, ns, w.pdbs);
    let pods = owned_watch::<Pod>(&client, ns, w.pods);
    let cleanup_jobs = owned_watch::<Job>(&client, ns, w.jobs);
    // Not watched without generation: the operator then needs no right on them.
    let network_policies = match settings.network_policy {
        Some(_) => Some(owned_watch::<NetworkPolicy>(
            &client,
            ns,
            w.network_policies,
        )),
        None => {
            mark_empty(&mut w.network_policies);
            None
        }
    };

    let mut ctx = Context::new(client.clone(), stores, metrics, settings.instance.clone());
    ctx.requeue = settings.requeue;
    ctx.admin = Arc::new(HttpAdmin::new(resolver(settings.pod_addressing)));
    ctx.network_policy = settings.network_policy.clone().map(Arc::new);
    if let Some((key_ns, key_name)) = &settings.admin_key_secret {
        ctx.admin_keys = AdminKeys::in_secret(client.clone(), key_ns, key_name);
    }
    let jobs = scoped::<DeserializeGuard<StreamJoinJob>>(&client, ns);
    tracing::info!(
        scope = ns.unwrap_or("<all namespaces>"),
        "starting controller"
    );
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let mut controller = Controller::new(jobs, watcher::Config::default().any_semantic());
    if let Some(s) = network_policies {
        controller = controller.owns_stream(s);
    }
    controller
        .owns_stream(config_maps)
        .owns_stream(services)
        .owns_stream(stateful_sets)
        .owns_stream(pdbs)
        .owns_stream(cleanup_jobs)
        .watches_stream(pods, job_of_pod)
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(job = %obj, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
    tracing::info!(
        scope = ns.unwrap_or("<all namespaces>"),
        "controller stopped"
    );
}

/// Runs the controllers until `shutdown` becomes true.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let runs = scopes.into_iter().map(|ns| {
        run_scope(
            client.clone(),
            ns,
            settings.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
    });
    futures::future::join_all(runs).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    #[test]
    fn pods_map_to_their_job_by_label() {
        let pod = Pod {
            metadata: ObjectMeta {
                namespace: Some("streams".into()),
                labels: Some(BTreeMap::from([(
                    JOB_LABEL.to_owned(),
                    "clicks".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let r = job_of_pod(pod).expect("mapped");
        assert_eq!(r.name, "clicks");
        assert_eq!(r.namespace.as_deref(), Some("streams"));
        assert!(job_of_pod(Pod::default()).is_none());
    }
}
