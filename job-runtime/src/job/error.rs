//! How a job process fails, and the exit code the operator reads from it.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::engine::runner::EngineError;
use crate::io::kafka::KafkaSetupError;
use crate::job::assignment::AssignmentError;

/// Exit codes the operator maps to `Degraded` reasons.
pub mod exit_code {
    /// The manifest or the process layout is invalid.
    pub const INVALID_CONFIG: u8 = 2;
    /// An input or output topic is missing, or the inputs are not co-partitioned.
    pub const TOPICS: u8 = 3;
    /// No checkpoint to restore and `recovery.onMissingCheckpoint: fail`.
    pub const NO_CHECKPOINT: u8 = 4;
    /// The state or checkpoint volume cannot be used.
    pub const STATE: u8 = 5;
    /// Anything else (a broker error that outlived its retries, a sink failure).
    pub const OTHER: u8 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("job manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot tell this process's ordinal: pass --ordinal or set POD_NAME to <statefulset>-<ordinal>"
    )]
    NoOrdinal,
    #[error("process layout: {0}")]
    Assignment(#[from] AssignmentError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error(
        "no checkpoint to restore and recovery.onMissingCheckpoint is fail; set it to earliest, latest or timestamp to start anyway"
    )]
    NoCheckpoint,
    #[error("recovery.fromTimestamp {value:?} is not an RFC 3339 time: {reason}")]
    Timestamp { value: String, reason: String },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("admin token file {path}: {reason}")]
    AdminToken { path: PathBuf, reason: String },
    #[error("{0}")]
    Savepoint(#[from] crate::durability::savepoint::SavepointError),
    #[error("savepoints.location: {0}")]
    SavepointLocation(crate::durability::savepoint::SavepointError),
    #[error("starting the I/O runtime: {0}")]
    Runtime(std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Manifest { .. }
            | RunError::Config(_)
            | RunError::NoOrdinal
            | RunError::Assignment(_)
            | RunError::Timestamp { .. }
            | RunError::AdminToken { .. }
            | RunError::SavepointLocation(_) => exit_code::INVALID_CONFIG,
            RunError::Kafka(
                KafkaSetupError::MissingTopic { .. } | KafkaSetupError::PartitionMismatch { .. },
            ) => exit_code::TOPICS,
            RunError::Kafka(KafkaSetupError::MissingCredential { .. }) => exit_code::INVALID_CONFIG,
            RunError::NoCheckpoint => exit_code::NO_CHECKPOINT,
            RunError::StateDir { .. }
            | RunError::Savepoint(_)
            | RunError::Engine(EngineError::State(_)) => exit_code::STATE,
            _ => exit_code::OTHER,
        }
    }
}
