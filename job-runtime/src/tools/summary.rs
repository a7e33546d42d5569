//! The counters of a local run (`replay`, `demo`) as `_summary.json` and the
//! HTML report show them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::model::counters::ShardCounters;
use crate::model::record::{Input, Malformed};

/// The counters written to `_summary.json`; the first names are the oracle's.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub records: u64,
    pub malformed: u64,
    pub late: u64,
    pub duplicates: u64,
    pub events: u64,
    pub entries: u64,
    pub malformed_by_reason: BTreeMap<&'static str, u64>,
    pub records_by_input: BTreeMap<&'static str, u64>,
    pub entries_with_impressions: u64,
    pub entries_with_plays: u64,
    pub entries_joined: u64,
    /// count(entries with impressions and plays) / count(entries with impressions).
    pub take_fraction: Option<f64>,
    pub live_entries_at_end: u64,
    /// The most open entries seen (sampled with the run's progress, every 100 ms).
    pub peak_live_entries: u64,
    /// Bytes of the RocksDB state directory, the largest sampled during the run
    /// and at its end; "data" counts SST, blob and write-ahead-log files only.
    pub state_dir_bytes_peak: Option<u64>,
    pub state_data_bytes_peak: Option<u64>,
    pub state_dir_bytes_at_end: Option<u64>,
    pub partitions: u32,
    pub threads: usize,
    pub elapsed_seconds: f64,
    pub records_per_second: f64,
    pub peak_rss_bytes: Option<u64>,
}

impl Summary {
    pub fn new(
        c: &ShardCounters,
        live: u64,
        partitions: u32,
        threads: usize,
        elapsed: Duration,
    ) -> Self {
        let mut by_reason = BTreeMap::new();
        for m in Malformed::ALL {
            let n: u64 = c.malformed.iter().map(|per| per[m as usize]).sum();
            if n > 0 {
                by_reason.insert(m.reason(), n);
            }
        }
        let records = c.records.iter().sum::<u64>();
        let secs = elapsed.as_secs_f64();
        Summary {
            records,
            malformed: c.malformed_total(),
            late: c.late.iter().sum(),
            duplicates: c.duplicates.iter().sum(),
            events: c.events,
            entries: c.entries_emitted,
            malformed_by_reason: by_reason,
            records_by_input: Input::ALL
                .iter()
                .map(|i| (i.name(), c.records[i.index()]))
                .collect(),
            entries_with_impressions: c.entries_with_impressions,
            entries_with_plays: c.entries_with_plays,
            entries_joined: c.entries_joined,
            take_fraction: (c.entries_with_impressions > 0)
                .then(|| c.entries_joined as f64 / c.entries_with_impressions as f64),
            live_entries_at_end: live,
            peak_live_entries: live,
            state_dir_bytes_peak: None,
            state_data_bytes_peak: None,
            state_dir_bytes_at_end: None,
            partitions,
            threads,
            elapsed_seconds: secs,
            records_per_second: if secs > 0.0 {
                records as f64 / secs
            } else {
                0.0
            },
            peak_rss_bytes: peak_rss_bytes(),
        }
    }
}

/// Peak resident set size of this process (Linux), for reports.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes under a state directory: every file, and RocksDB's data files
/// (`*.sst`, `*.blob`, the write-ahead `*.log`; not its `LOG` text log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirBytes {
    pub total: u64,
    pub data: u64,
}

impl DirBytes {
    pub fn max(self, other: DirBytes) -> DirBytes {
        DirBytes {
            total: self.total.max(other.total),
            data: self.data.max(other.data),
        }
    }
}

/// Best effort: RocksDB deletes files while it runs, and a file gone between
/// listing and reading its size counts 0.
pub fn dir_bytes(dir: &Path) -> DirBytes {
    let mut sum = DirBytes::default();
    let Ok(read) = std::fs::read_dir(dir) else {
        return sum;
    };
    for entry in read.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            let sub = dir_bytes(&entry.path());
            sum.total += sub.total;
            sum.data += sub.data;
        } else {
            sum.total += meta.len();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if [".sst", ".blob", ".log"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                sum.data += meta.len();
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_counts_every_file_and_rocksdb_data_files_apart() {
        let dir = tempfile::tempdir().expect("tmp");
        let shard = dir.path().join("shard-0");
        std::fs::create_dir(&shard).expect("mkdir");
        for (name, len) in [
            ("000012.sst", 100),
            ("000013.log", 20),
            ("LOG", 7),
            ("OPTIONS-000007", 3),
        ] {
            std::fs::write(shard.join(name), vec![0u8; len]).expect("write");
        }
        std::fs::write(dir.path().join("top.blob"), [0u8; 5]).expect("write");
        assert_eq!(
            dir_bytes(dir.path()),
            DirBytes {
                total: 135,
                data: 125
            }
        );
        assert_eq!(dir_bytes(&dir.path().join("absent")), DirBytes::default());
    }
}
