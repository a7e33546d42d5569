//! The `StreamJoinJob` API (`streamjoin.dev/v1alpha1`), shared by the operator
//! and the join runtime. It depends on Kubernetes types but not on a client, so
//! the runtime can read the same manifest as its job configuration.

pub mod duration;
mod job;
mod rules;
mod schema;
pub mod spec;
pub mod status;
pub mod validation;

pub use duration::HumanDuration;
pub use job::{ManifestError, StreamJoinJob, StreamJoinJobSpec};
pub use spec::*;
pub use status::*;
pub use validation::{SpecViolations, Violation};
