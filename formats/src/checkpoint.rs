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
    Ok(m)
}
