//! How a shard's step fails: reading an input, writing an output, its state or
//! a checkpoint. Shared by the shard, its worker and the checkpoint writer.

use crate::durability::checkpoint::CheckpointError;
use crate::io::sink::SinkError;
use crate::io::source::SourceError;
use crate::state::store::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {shard}: reading {input}: {source}")]
    Source {
        shard: u32,
        input: &'static str,
        source: SourceError,
    },
    #[error("shard {shard}: writing {output}: {source}")]
    Sink {
        shard: u32,
        output: &'static str,
        source: SinkError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}
