//! End to end against a real cluster, only when `STREAMJOIN_E2E_KUBECONFIG` names a
//! kubeconfig: installs the CRD, runs the controller in-process (scoped to the
//! manifest's namespace), applies the example and waits (by watching, not by
//! polling) until the job is Ready.
//!
//! The cluster must provide what the manifest references (the runtime image, Kafka,
//! secrets, storage class, ...). `STREAMJOIN_E2E_MANIFEST` picks another manifest;
//! `STREAMJOIN_E2E_TIMEOUT_SECS` (default 600) bounds the wait.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use streamjoin_api::StreamJoinJob;
use streamjoin_operator::controller::{self, Settings};
use streamjoin_operator::metrics::Metrics;
use tokio::sync::watch;

const MANAGER: &str = "streamjoin-e2e";

#[tokio::test]
async fn example_job_becomes_ready_on_a_real_cluster() -> anyhow::Result<()> {
    let Ok(kubeconfig) = std::env::var("STREAMJOIN_E2E_KUBECONFIG") else {
        eprintln!(
            "SKIPPED example_job_becomes_ready_on_a_real_cluster: set STREAMJOIN_E2E_KUBECONFIG to a kubeconfig to run it"
        );
        return Ok(());
    };
    let timeout = Duration::from_secs(
        std::env::var("STREAMJOIN_E2E_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    );
    let manifest = std::env::var("STREAMJOIN_E2E_MANIFEST").unwrap_or_else(|_| {
        format!(
            "{}/../examples/streamjoinjob.yaml",
            env!("CARGO_MANIFEST_DIR")
        )
    });

    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    let ssa = PatchParams::apply(MANAGER).force();

    let crd = streamjoin_operator::crd::crd()?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd_name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(&crd_name, &ssa, &Patch::Apply(&crd)).await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, &crd_name, conditions::is_crd_established()),
    )
    .await??;

    let mut job = StreamJoinJob::from_yaml(&std::fs::read_to_string(&manifest)?)?;
    let ns = job
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = job.metadata.name.clone().unwrap_or_default();
    job.metadata.namespace = Some(ns.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj =
        serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
    namespaces.patch(&ns, &ssa, &Patch::Apply(&ns_obj)).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let settings = Settings {
        namespaces: vec![ns.clone()],
        ..Settings::default()
    };
    let operator = tokio::spawn(controller::run(
        client.clone(),
        settings,
        Arc::new(Metrics::new()?),
        stop_rx,
    ));

    let jobs: Api<StreamJoinJob> = Api::namespaced(client.clone(), &ns);
    jobs.patch(&name, &ssa, &Patch::Apply(&job)).await?;
    let ready = |obj: Option<&StreamJoinJob>| {
        obj.and_then(|j| j.status.as_ref())
            .is_some_and(|s| s.is_true("Ready"))
    };
    let outcome = tokio::time::timeout(timeout, await_condition(jobs.clone(), &name, ready)).await;
    let _ = stop_tx.send(true);
    let _ = operator.await;
    match outcome {
        Ok(r) => {
            r?;
            Ok(())
        }
        Err(_) => {
            let status = jobs.get(&name).await.ok().and_then(|j| j.status);
            anyhow::bail!("{name} not Ready within {timeout:?}; status: {status:#?}")
        }
    }
}
