//! The streamjoin operator: runs StreamJoinJobs as StatefulSets.
//!
//! The reconcile pipeline, one file per step: [`validate`] → [`build`]
//! (`configmap`, `service`, `statefulset`, `pdb`, `networkpolicy`) → [`apply`] → [`status`]
//! (with [`conditions`]), driven by [`reconcile`] and wired in [`controller`].
//! Observed state comes from caches ([`observe`]).

pub mod admin;
pub mod admin_key;
pub mod apply;
pub mod build;
pub mod conditions;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod events;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod validate;
pub mod volume;
