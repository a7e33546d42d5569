//! A checkpoint's manifest (`MANIFEST.json`): offsets, watermarks, counters,
//! the format version and the size and hash of every file, and its decoding.
//! Writing, listing and checking the files is the runtime's
//! (`durability::checkpoint`).

use serde::{Deserialize, Serialize};

use crate::counters::ShardCounters;

pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "MANIFEST.json";

/// What one input partition had reached at the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputState {
    /// The next offset to read; `None` when nothing was read yet.
    pub next_offset: Option<i64>,
    /// The largest event time seen (the partition watermark is this minus D).
    pub max_event_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub path: String,
    pub size: u64,
    pub xxh3: Option<u64>,
}

/// Reorder-buffer bookkeeping; the events themselves are in `pending.bin` and,
/// when spilled, in the RocksDB checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingState {
    pub in_memory: u64,
    pub spilled: u64,
    pub spill_floor: Option<i64>,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointManifest {
    pub format_version: u32,
    pub shard: u32,
    pub id: u64,
    pub created_ms: i64,
    /// Impressions, then plays.
    pub inputs: [InputState; 2],
    pub job_watermark: i64,
    pub live_entries: u64,
    pub pending: PendingState,
    pub counters: ShardCounters,
    /// Written by an exactly-once job: its output is visible only once the
    /// consumer group's committed offsets name this checkpoint.
    #[serde(default)]
    pub transactional: bool,
    /// When the process that wrote it started (ms since the epoch):
    /// `--ignore-checkpoints-before` passes over what earlier processes wrote.
    #[serde(default)]
    pub process_started_ms: Option<i64>,
    pub files: Vec<FileSum>,
}

impl CheckpointManifest {
    /// Written by a process that started at `since_ms` or later.
    pub fn written_since(&self, since_ms: i64) -> bool {
        self.process_started_ms.unwrap_or(self.created_ms) >= since_ms
    }
}

/// Decodes a manifest and refuses a format newer than this release's; the
/// error is the reason a checkpoint is unusable.
pub fn decode_manifest(text: &[u8]) -> Result<CheckpointManifest, String> {
    let m: CheckpointManifest =
        serde_json::from_slice(text).map_err(|e| format!("manifest: {e}"))?;
    if m.format_version > FORMAT_VERSION {
        return Err(format!(
            "format version {} is newer than this release's {FORMAT_VERSION}",
            m.format_version
        ));
    }
    // The files are read (sized, hashed, linked) under the checkpoint's own
    // directory: a tampered manifest must not point outside it.
    if let Some(f) = m.files.iter().find(|f| !inside_checkpoint(&f.path)) {
        return Err(format!(
            "file path {:?} is not a relative path inside the checkpoint",
            f.path
        ));
    }
    Ok(m)
}

/// A relative path of names (no root, no `..`) naming at least one.
fn inside_checkpoint(path: &str) -> bool {
    use std::path::{Component, Path};
    let components = Path::new(path).components();
    components
        .clone()
        .any(|c| matches!(c, Component::Normal(_)))
        && components
            .into_iter()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with_file(path: &str) -> Vec<u8> {
        let m = CheckpointManifest {
            format_version: FORMAT_VERSION,
            shard: 0,
            id: 1,
            created_ms: 0,
            inputs: [InputState {
                next_offset: None,
                max_event_time: 0,
            }; 2],
            job_watermark: 0,
            live_entries: 0,
            pending: PendingState::default(),
            counters: ShardCounters::default(),
            transactional: false,
            process_started_ms: None,
            files: vec![FileSum {
                path: path.into(),
                size: 1,
                xxh3: None,
            }],
        };
        serde_json::to_vec(&m).unwrap_or_default()
    }

    #[test]
    fn a_manifest_naming_a_file_outside_its_checkpoint_is_refused() {
        for path in ["../x", "/etc/passwd", "rocksdb/../../x", "", "./"] {
            let err = decode_manifest(&manifest_with_file(path)).err();
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("not a relative path")),
                "{path:?}: {err:?}"
            );
        }
        for path in ["pending.bin", "rocksdb/000012.sst", "./rocksdb/CURRENT"] {
            assert!(
                decode_manifest(&manifest_with_file(path)).is_ok(),
                "{path:?}"
            );
        }
    }
}
