//! One process of a Kafka job (`streamjoin-runtime run`): which shards it owns
//! and the wiring of sources, engine, sinks, checkpoints and admin API.

pub mod assignment;
pub mod connect;
pub mod discard;
pub mod error;
pub mod monitor;
pub mod recovery;
pub mod run;
pub mod startup;
