//! The streamjoin join runtime: an exact event-time join of impressions with
//! plays on RocksDB state, per `docs/join-semantics.md`.

pub mod admin;
pub mod assignment;
pub mod audit;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod demo;
pub mod engine;
pub mod entry;
pub mod exactly_once;
pub mod generator;
pub mod kafka;
pub mod metrics;
pub mod pending;
pub mod record;
pub mod replay;
pub mod report;
pub mod restore;
pub mod run;
pub mod savepoint;
pub mod shard;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod store;
pub mod timers;
pub mod watermark;
pub mod worker;
