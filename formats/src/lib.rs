//! What the join runtime reads from outside, as types and pure parse and
//! validate functions (no I/O): input records, the checkpoint and savepoint
//! manifests, and the admin API's request bodies. The runtime re-exports them
//! where they used to live; `fuzz/` runs each parser under libFuzzer.

pub mod admin;
mod checked;
pub mod checkpoint;
pub mod counters;
pub mod record;
pub mod savepoint;
