//! A savepoint's process manifests (`_process-<ordinal>.json`): what one
//! process wrote into a savepoint, their decoding, and when together they make
//! a complete savepoint. The store and its transfers are the runtime's
//! (`durability::savepoint`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::checkpoint::InputState;

pub const FORMAT_VERSION: u32 = 1;

/// What one process wrote into a savepoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessManifest {
    pub format_version: u32,
    pub id: String,
    pub created_ms: i64,
    pub ordinal: u32,
    pub replicas: u32,
    pub partitions: u32,
    pub shards: Vec<ShardSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    pub shard: u32,
    pub checkpoint_id: u64,
    /// Impressions, then plays.
    pub inputs: [InputState; 2],
    pub job_watermark: i64,
    pub live_entries: u64,
    pub bytes: u64,
}

/// Decodes one process manifest.
pub fn decode_process_manifest(data: &[u8]) -> Result<ProcessManifest, serde_json::Error> {
    serde_json::from_slice(data)
}

/// Complete: the manifests agree on the job's shape, every ordinal of it wrote
/// one, and they list every shard.
pub fn is_complete(manifests: &[ProcessManifest]) -> bool {
    let Some(first) = manifests.first() else {
        return false;
    };
    let same_job = manifests
        .iter()
        .all(|m| m.replicas == first.replicas && m.partitions == first.partitions);
    let ordinals: BTreeSet<u32> = manifests.iter().map(|m| m.ordinal).collect();
    let shards: BTreeSet<u32> = manifests
        .iter()
        .flat_map(|m| m.shards.iter().map(|s| s.shard))
        .collect();
    same_job
        && ordinals == (0..first.replicas).collect()
        && shards == (0..first.partitions).collect()
}
