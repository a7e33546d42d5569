//! A kubelet for tests: registers a Node, runs the pods bound to it as local processes
//! (each container in its own mount namespace), makes their volumes, probes them and
//! reports their status; also provisions host-directory volumes for claims of its
//! StorageClass. See docs/local-kubelet.md.

pub mod backoff;
pub mod config;
pub mod container;
pub mod events;
pub mod images;
pub mod ipam;
pub mod kubelet;
pub mod node;
pub mod pods;
pub mod probes;
pub mod provisioner;
pub mod retry;
pub mod sources;
pub mod volumes;
