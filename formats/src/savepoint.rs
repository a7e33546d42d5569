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
    same_job && exactly_below(&ordinals, first.replicas) && exactly_below(&shards, first.partitions)
}

/// Whether `set` is `0..n`: `n` distinct numbers, all below `n`. Counted rather
/// than compared with `(0..n).collect()`, which for a manifest claiming billions
/// of replicas took minutes and gigabytes before answering.
fn exactly_below(set: &BTreeSet<u32>, n: u32) -> bool {
    usize::try_from(n).is_ok_and(|n| n == set.len()) && set.last().is_none_or(|&max| max < n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(ordinal: u32, replicas: u32, partitions: u32, shards: &[u32]) -> ProcessManifest {
        let summary = |shard| ShardSummary {
            shard,
            checkpoint_id: 7,
            inputs: [InputState {
                next_offset: Some(1),
                max_event_time: 5,
            }; 2],
            job_watermark: 5,
            live_entries: 3,
            bytes: 1,
        };
        ProcessManifest {
            format_version: FORMAT_VERSION,
            id: "sp".into(),
            created_ms: 1,
            ordinal,
            replicas,
            partitions,
            shards: shards.iter().copied().map(summary).collect(),
        }
    }

    #[test]
    fn complete_means_every_ordinal_and_every_shard_of_one_shape() {
        assert!(is_complete(&[
            process(0, 2, 3, &[0, 2]),
            process(1, 2, 3, &[1])
        ]));
        assert!(
            !is_complete(&[process(0, 2, 3, &[0, 1, 2])]),
            "ordinal 1 missing"
        );
        assert!(
            !is_complete(&[process(0, 1, 3, &[0, 2])]),
            "shard 1 missing"
        );
        assert!(
            !is_complete(&[process(0, 1, 2, &[0, 1, 2])]),
            "shard 2 is not the job's"
        );
        assert!(!is_complete(&[
            process(0, 2, 2, &[0]),
            process(1, 3, 2, &[1])
        ]));
        assert!(!is_complete(&[]));
        assert!(is_complete(&[process(0, 1, 0, &[])]));
    }

    #[test]
    fn a_manifest_claiming_billions_of_replicas_is_incomplete_at_once() {
        // Enumerating 0..replicas here needed 4 billion set entries (a timeout
        // of fuzz/savepoint_manifest on such a manifest, then memory exhaustion).
        assert!(!is_complete(&[process(0, u32::MAX, u32::MAX, &[0])]));
        assert!(!is_complete(&[process(u32::MAX - 1, u32::MAX, 1, &[0])]));
    }
}
