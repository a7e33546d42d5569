//! The local control plane of `scripts/cluster.sh` is the pinned Kubernetes release,
//! ready, and takes the project's CRD (needs `STREAMJOIN_KUBECONFIG`; see `cluster/mod.rs`).
//! Its start restarts a component that dies while starting, and says how it ended.

use crate::cluster;
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

    let path = repo_file("crds/streamjoinjob.yaml");
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

/// A file of the repository. The runner's `CARGO_MANIFEST_DIR` first: a test
/// binary reused from a shared target directory may have been compiled in
/// another checkout.
fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
    .join(rel)
}

/// Runs `launch` of `scripts/cluster/procs.sh` on a stand-in component (a script
/// in the state directory that dies as `behaviour` says) and returns whether it
/// succeeded and its stderr.
fn launch_stand_in(behaviour: &str) -> (bool, String) {
    let state = tempfile::tempdir().expect("a temporary state directory");
    let component = state.path().join("component.sh");
    let body = format!(
        "#!/usr/bin/env bash\nstate=\"$(dirname \"$0\")\"\n{behaviour}\n\
         touch \"$state/ready\"\nexec tail -f \"$state/ready\"\n"
    );
    std::fs::write(&component, body).expect("writing the stand-in component");
    let procs = repo_file("scripts/cluster/procs.sh");
    let procs = procs.display();
    let script = format!(
        "set -euo pipefail\nSTATE=\"$1\"\nsay() {{ echo \"cluster: $*\" >&2; }}\n\
         fail() {{ say \"error: $*\"; exit 1; }}\nsource {procs}\n\
         ready() {{ [ -e \"$STATE/ready\" ]; }}\n\
         launch stand-in 30 ready -- bash \"$STATE/component.sh\"\n\
         stop_one stand-in\n"
    );
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(state.path())
        .output()
        .expect("running bash");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stderr)
}

#[test]
fn a_component_killed_while_starting_is_started_again_and_the_cause_is_said() {
    // The first start kills itself before it is ready; the second comes up.
    let (ok, stderr) = launch_stand_in(
        "if [ ! -e \"$state/once\" ]; then touch \"$state/once\"; kill -KILL $$; fi",
    );
    assert!(ok, "launch failed:\n{stderr}");
    assert!(
        stderr.contains("stand-in exited while starting: killed by signal 9 (KILL)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("starting stand-in again (attempt 2 of 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("stand-in healthy after"), "{stderr}");
}

#[test]
fn a_component_that_keeps_exiting_while_starting_fails_the_start_with_its_status() {
    let (ok, stderr) = launch_stand_in("echo 'no port for me' >&2; exit 7");
    assert!(!ok, "launch succeeded:\n{stderr}");
    assert_eq!(
        stderr
            .matches("stand-in exited while starting: exit status 7")
            .count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("no port for me"), "{stderr}");
    assert!(
        stderr.contains("error: stand-in exited while starting, three times"),
        "{stderr}"
    );
}
