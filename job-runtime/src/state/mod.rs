//! A shard's keyed state: the RocksDB store behind its write-back cache of open
//! entries, the timer index, and the reorder buffer of pending events.

pub mod handover;
pub mod ids;
pub mod pending;
pub mod store;
pub mod table;
pub mod timers;
