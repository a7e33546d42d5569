//! The counters of a local run (`replay`, `demo`) as `_summary.json` and the
//! HTML report show them.

use std::collections::BTreeMap;
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
