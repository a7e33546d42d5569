//! Durability: shard checkpoints and their asynchronous snapshots, savepoints,
//! where state is restored from at start, and the exactly-once protocol.

pub mod checkpoint;
pub mod exactly_once;
pub mod restore;
pub mod savepoint;
pub mod snapshot;
