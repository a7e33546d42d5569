//! The join engine: shards (one input partition of both streams with its
//! state, classifying records and applying events in event-time order), their
//! checkpoint snapshots, the worker threads that own shards, and the runner
//! that assembles and drives them.

pub mod error;
pub mod rate;
pub mod runner;
pub mod shard;
pub mod snapshot;
pub mod worker;
