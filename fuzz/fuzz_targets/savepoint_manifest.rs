//! A savepoint's process manifests (`_process-<ordinal>.json`): one manifest,
//! or a JSON array of them as a restore gathers them. Decoding never panics, a
//! decoded manifest reads back identical from what the runtime writes, and
//! `is_complete` answers as the definition says (every ordinal and shard of
//! the job's shape, nothing else), without work that grows with the numbers
//! a manifest claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamjoin_formats::savepoint::{ProcessManifest, decode_process_manifest, is_complete};

fuzz_target!(|data: &[u8]| {
    let manifests = match decode_process_manifest(data) {
        Ok(m) => {
            let written = serde_json::to_vec_pretty(&m).expect("serialise");
            let back = decode_process_manifest(&written).expect("a written manifest decodes");
            assert_eq!(back, m);
            vec![m]
        }
        Err(_) => match serde_json::from_slice::<Vec<ProcessManifest>>(data) {
            Ok(list) => list,
            Err(_) => return,
        },
    };
    let complete = is_complete(&manifests);
    assert_eq!(complete, expected_complete(&manifests), "{manifests:?}");
    let twice: Vec<ProcessManifest> = manifests.iter().chain(&manifests).cloned().collect();
    assert_eq!(
        is_complete(&twice),
        complete,
        "a repeated manifest changes nothing"
    );
});

/// The definition, counted instead of enumerated.
fn expected_complete(manifests: &[ProcessManifest]) -> bool {
    let Some(first) = manifests.first() else {
        return false;
    };
    let (replicas, partitions) = (first.replicas, first.partitions);
    let same_job = manifests
        .iter()
        .all(|m| m.replicas == replicas && m.partitions == partitions);
    let mut ordinals: Vec<u32> = manifests.iter().map(|m| m.ordinal).collect();
    let mut shards: Vec<u32> = manifests
        .iter()
        .flat_map(|m| m.shards.iter().map(|s| s.shard))
        .collect();
    same_job && exactly_below(&mut ordinals, replicas) && exactly_below(&mut shards, partitions)
}

/// Whether `values` holds every number below `n` and nothing else.
fn exactly_below(values: &mut Vec<u32>, n: u32) -> bool {
    values.sort_unstable();
    values.dedup();
    values.len() == n as usize && values.iter().all(|&v| v < n)
}
