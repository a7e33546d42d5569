//! Every test on the local cluster (`scripts/cluster.sh`), in one binary: the
//! control plane, the CRD and its CEL rules, the operator under the chart's
//! ServiceAccount, the job's children, savepoints in the S3 store, each
//! lifecycle flow end to end. One binary, because each of these modules used to
//! be a test binary of its own that compiled the same harness (`cluster`,
//! `s3_job`, the runtime's `broker`, `data` and `s3`) again: about 80 s of CPU a
//! binary in a release build. nextest still runs each test as a process of its
//! own; `.config/nextest.toml` names the modules that need the machine to
//! themselves.

// The harness: the local cluster and its processes, Apache Kafka, the data sets
// and their reference, the S3 store, the job with savepoints in it, and what
// the lifecycle flows share.
#[path = "../../../job-runtime/tests/broker/mod.rs"]
mod broker;
mod cluster;
#[path = "../../../job-runtime/tests/data/mod.rs"]
mod data;
mod e2e_autoscale;
mod e2e_resilience;
mod e2e_scaling;
#[path = "../../../job-runtime/tests/s3/mod.rs"]
mod s3;
// It re-exports helpers of other tests (e.g. `savepoint_failed`).
#[allow(unused_imports)]
mod s3_job;

// The tests, a module each.
mod cluster_apply;
mod cluster_crd;
mod cluster_drift;
mod cluster_job;
mod cluster_network_policy;
mod cluster_retention;
mod cluster_savepoints;
mod cluster_secrets;
mod cluster_volume_expansion;
mod e2e_lifecycle_autoscale;
mod e2e_lifecycle_resilience;
mod e2e_lifecycle_scaling;
mod e2e_lifecycle_upgrades;
mod local_cluster;
mod local_demo;
