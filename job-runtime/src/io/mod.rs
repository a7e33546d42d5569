//! Input and output: partition sources and sinks (files, memory, Kafka).

pub mod kafka;
pub mod sink;
pub mod source;
