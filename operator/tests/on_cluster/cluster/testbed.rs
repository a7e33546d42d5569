//! What most cluster tests start from: a client, kubectl, the CRD applied
//! server-side as a user applies it, and a namespace of the test's own.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use kube::runtime::wait::conditions;

use super::kubectl::Kubectl;
use super::namespace::TestNamespace;
use super::operator::repo_path;
use super::wait::watch_until;

pub const CRD_NAME: &str = "streamjoinjobs.streamjoin.dev";

pub struct Testbed {
    pub client: Client,
    pub kubectl: Kubectl,
    pub ns: TestNamespace,
}

/// `kubectl apply --server-side -f crds/`, as the install docs say, then waits
/// until the CRD is Established. Returns kubectl's output.
pub async fn install_crd(client: &Client, kubectl: &Kubectl) -> String {
    let path = repo_path("crds/");
    let out = kubectl.run(&["apply", "--server-side", "-f", &path.display().to_string()]);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    watch_until(
        &crds,
        CRD_NAME,
        "the StreamJoinJob CRD is Established",
        Duration::from_secs(60),
        conditions::is_crd_established(),
    )
    .await;
    out
}

/// The testbed, or `None` when there is no cluster outside CI (see `super::client`).
pub async fn testbed(test: &str) -> Option<Testbed> {
    let client = super::client(test).await?;
    let kubeconfig = super::kubeconfig_path()?;
    let kubectl = Kubectl::new(&kubeconfig);
    install_crd(&client, &kubectl).await;
    let ns = TestNamespace::create(&client, &kubectl, test).await;
    Some(Testbed {
        client,
        kubectl,
        ns,
    })
}
