//! Per-job memory of the lifecycle that need not survive a restart: the
//! autoscaler's samples and the checkpoint-volume Warnings already given.

use std::collections::{BTreeMap, VecDeque};

use super::autoscaler::Sample;

/// Checkpoint-volume Warnings already given, by claim name: the situation they were about.
pub type Warned = BTreeMap<String, String>;

/// Per-job memory that need not survive a restart (the autoscaler's samples).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub samples: VecDeque<Sample>,
    /// Checkpoint-volume Warnings already given (one per claim and situation).
    pub volume_warnings: Warned,
    /// The uid of the failed savepoint cleanup Job already reported.
    pub cleanup_failure_reported: Option<String>,
}
