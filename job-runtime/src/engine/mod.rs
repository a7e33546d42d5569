//! The join engine: records and their parsing, summarised entries, shards
//! (one input partition of both streams with its state), the worker threads
//! that own shards, and the runner that assembles and drives them.

pub mod counters;
pub mod entry;
pub mod error;
pub mod record;
pub mod runner;
pub mod shard;
pub mod snapshot;
pub mod worker;
