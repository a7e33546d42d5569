//! Durability: the checkpoint format and how checkpoints become visible and are
//! found again, savepoints, where state is restored from at start, and the
//! exactly-once protocol's decisions.

pub mod checkpoint;
pub mod exactly_once;
pub mod location;
pub mod restore;
pub mod savepoint;
