//! The job lifecycle (issue 5): spec-change classes, the state machine, the
//! autoscaler's decision and savepoint retention — all pure — and [`run`], which
//! carries the decisions out against the API and the runtime admin API.

mod act;
mod audit;
pub mod autoscaler;
pub mod classify;
pub mod discard;
mod errtext;
pub mod machine;
pub mod memory;
mod observe;
mod pods;
pub mod retention;
mod run;
mod scaling;
mod summary;

pub use run::{LifecycleOutcome, run};

/// Per-job in-memory state of the lifecycle.
pub mod run_memory {
    pub use super::memory::Memory;
}
