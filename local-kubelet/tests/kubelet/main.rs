//! The local kubelet against the local control plane (`scripts/cluster.sh up`). Each
//! test starts its own kubelet with its own node name, root directory and pod
//! address range, and works in its own namespace, so tests run in parallel.
//! `STREAMJOIN_KUBECONFIG` names the cluster's kubeconfig; without it the tests skip
//! (and fail under `CI=true`).

mod common;
mod lifecycle;
mod pods;
mod probes;
mod runtime_shape;
mod statefulset;
mod volumes;
