//! The local control plane of `scripts/cluster.sh` is the pinned Kubernetes release,
//! ready, and takes the project's CRD (needs `STREAMJOIN_KUBECONFIG`; see `cluster/mod.rs`).

mod cluster;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

/// The release that `scripts/cluster/build.sh` pins (and k8s-openapi's `latest`).
const PINNED_VERSION: &str = "v1.37.2";

#[tokio::test]
async fn api_server_is_ready_and_accepts_the_crd() {
    let test = "api_server_is_ready_and_accepts_the_crd";
    let Some(client) = cluster::client(test).await else {
        return;
    };

    let version = client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.git_version, PINNED_VERSION);
    let readyz = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("a GET /readyz request");
    assert_eq!(
        client.request_text(readyz).await.expect("GET /readyz"),
        "ok"
    );

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/streamjoinjob.yaml");
    let text = std::fs::read_to_string(path).expect("reading crds/streamjoinjob.yaml");
    let crd: CustomResourceDefinition =
        serde_norway::from_str(&text).expect("parsing crds/streamjoinjob.yaml");
    let name = crd.metadata.name.clone().expect("the CRD's name");
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let ssa = PatchParams::apply("streamjoin-local-cluster-test").force();
    crds.patch(&name, &ssa, &Patch::Apply(&crd))
        .await
        .expect("server-side apply of the CRD");
    let established = tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await;
    assert!(
        matches!(established, Ok(Ok(Some(_)))),
        "{name} not Established within 60 s: {established:?}"
    );
}
