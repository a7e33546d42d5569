//! The project's own reference implementation of the join contract
//! (`docs/join-semantics.md`): a small batch computation of the exact expected
//! output of a data set, and a comparison of a runtime's output with it that
//! reports missing, unexpected, differing and duplicate entries.
//!
//! Simple on purpose: read a partition's files, classify every record, order a
//! key's events, apply the contract's rules one after the other. It shares no
//! code with the engine (`streamjoin-runtime`), so the two check each other.

pub mod actual;
pub mod compare;
pub mod contract;
pub mod counters;
pub mod dataset;
pub mod entry;
pub mod expected;
pub mod record;
pub mod report;
pub mod tolerance;
