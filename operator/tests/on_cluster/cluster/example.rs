//! The example job for the local cluster, made the way `scripts/local-demo.sh`
//! (and a user) makes it: `examples/streamjoinjob.yaml` with
//! `examples/local/patch.yaml` (or another overlay: `examples/local-s3/`), then a
//! patch of what only the moment knows (the namespace, the broker's address, the
//! node).

use serde_json::{Value, json};

use super::kubectl::Kubectl;
use super::operator::repo_path;

pub const JOB: &str = "impressions-plays";

/// The example with the local patch and then `extra` (JSON-patch operations).
pub fn local_example(kubectl: &Kubectl, extra: &[Value]) -> String {
    patched_example(kubectl, "examples/local/patch.yaml", extra)
}

/// The example with the patch file `overlay` (relative to the repository, e.g.
/// `examples/local-s3/patch.yaml`) and then `extra`.
pub fn patched_example(kubectl: &Kubectl, overlay: &str, extra: &[Value]) -> String {
    let example = repo_path("examples/streamjoinjob.yaml")
        .display()
        .to_string();
    let patch = repo_path(overlay).display().to_string();
    let local = kubectl.run(&[
        "patch",
        "--local",
        "-f",
        &example,
        "--type",
        "json",
        "--patch-file",
        &patch,
        "-o",
        "yaml",
    ]);
    if extra.is_empty() {
        return local;
    }
    let ops = serde_json::to_string(extra).unwrap_or_default();
    kubectl
        .try_run(
            &[
                "patch", "--local", "-f", "-", "--type", "json", "-p", &ops, "-o", "yaml",
            ],
            Some(&local),
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The operations that put the example in `namespace`, on `bootstrap`, on `node`.
pub fn placed(namespace: &str, bootstrap: &str, node: Option<&str>) -> Vec<Value> {
    let mut ops = vec![
        json!({ "op": "replace", "path": "/metadata/namespace", "value": namespace }),
        json!({ "op": "replace", "path": "/spec/kafka/bootstrapServers", "value": bootstrap }),
    ];
    if let Some(node) = node {
        ops.push(json!({
            "op": "add",
            "path": "/spec/podTemplate/nodeSelector",
            "value": { "kubernetes.io/hostname": node }
        }));
    }
    ops
}
