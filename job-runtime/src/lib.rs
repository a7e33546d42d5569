//! The streamjoin join runtime: an exact event-time join of impressions with
//! plays on RocksDB state, per `docs/join-semantics.md`. The modules follow the
//! architecture in `docs/architecture.md`.

pub mod config;
pub mod control;
pub mod durability;
pub mod engine;
pub mod io;
pub mod job;
pub mod model;
pub mod state;
pub mod time;
pub mod tools;
