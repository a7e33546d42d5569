//! The `GET /v1/status` document of a Kafka job process: what the operator
//! reads for upgrades (last checkpoint), rescaling (shards), the autoscaler
//! (lag, input rate, busy ratio), region failover (watermarks, idleness,
//! forced advances), audits and volume expansion.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::control::audit::Check;
use crate::control::metrics::Metrics;
use crate::control::requests::{Control, LastCheckpoint, SavepointInfo};
use crate::io::kafka::source::PartitionPosition;
use crate::time::watermark::{Clock, MAX_WM, MIN_WM, WatermarkBoard};

/// Figures the run loop measures between two status reads.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub records_in_per_second: Option<f64>,
    pub busy_ratio: Option<f64>,
    /// Consumer lag per (topic, partition).
    pub lag: BTreeMap<(String, i32), i64>,
    pub audit: Vec<AuditStatus>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditStatus {
    pub check: &'static str,
    pub ratio: Option<f64>,
    pub breached: bool,
}

impl From<&Check> for AuditStatus {
    fn from(c: &Check) -> Self {
        Self {
            check: c.name,
            ratio: c.ratio,
            breached: c.breached,
        }
    }
}

pub struct StatusSources {
    pub ordinal: u32,
    pub replicas: u32,
    pub partitions: u32,
    pub shards: Vec<u32>,
    /// Impressions, then plays.
    pub topics: [String; 2],
    pub positions: Vec<(String, i32, Arc<PartitionPosition>)>,
    pub board: Arc<WatermarkBoard>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub control: Arc<Control>,
    pub data_dir: PathBuf,
    pub measured: Arc<Mutex<Measured>>,
}

#[derive(Debug, Serialize)]
pub struct ShardStatus {
    pub shard: u32,
    /// Next offset to read per input topic.
    pub offsets: BTreeMap<String, i64>,
    pub lag: BTreeMap<String, i64>,
    /// The shard's watermark: the lower of its two inputs' (−∞ and +∞ left out).
    pub watermark_ms: Option<i64>,
    /// Impressions, then plays.
    pub idle: [bool; 2],
}

#[derive(Debug, Serialize)]
pub struct VolumeUsage {
    pub used_bytes: u64,
    pub capacity_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RuntimeStatus {
    pub ordinal: u32,
    pub replicas: u32,
    pub partitions: u32,
    pub shards: Vec<ShardStatus>,
    pub job_watermark_ms: Option<i64>,
    pub watermark_lag_seconds: Option<f64>,
    pub idle_partitions: usize,
    pub forced_advances: u64,
    pub last_forced_advance_ms: Option<i64>,
    pub last_checkpoint: Option<LastCheckpoint>,
    pub live_entries: i64,
    pub records_in_per_second: Option<f64>,
    pub busy_ratio: Option<f64>,
    pub consumer_lag: i64,
    pub audit: Vec<AuditStatus>,
    pub checkpoint_volume: Option<VolumeUsage>,
    /// Input processing stopped for a stop-with-savepoint.
    pub stopped: bool,
    pub savepoint: Option<SavepointInfo>,
}

fn finite(wm: i64) -> Option<i64> {
    (wm != MIN_WM && wm != MAX_WM).then_some(wm)
}

fn volume_usage(dir: &std::path::Path) -> Option<VolumeUsage> {
    let s = rustix::fs::statvfs(dir).ok()?;
    let block = s.f_frsize.max(1);
    Some(VolumeUsage {
        used_bytes: s.f_blocks.saturating_sub(s.f_bfree).saturating_mul(block),
        capacity_bytes: s.f_blocks.saturating_mul(block),
    })
}

impl StatusSources {
    pub fn snapshot(&self) -> RuntimeStatus {
        let measured = self
            .measured
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let plays_base = self.board.partitions() / 2;
        let shards = self
            .shards
            .iter()
            .map(|&p| {
                let mut offsets = BTreeMap::new();
                let mut lag = BTreeMap::new();
                for (topic, part, pos) in &self.positions {
                    if *part == p as i32 {
                        let next = pos.next_offset.load(Relaxed);
                        if next >= 0 {
                            offsets.insert(topic.clone(), next);
                        }
                        if let Some(l) = measured.lag.get(&(topic.clone(), *part)) {
                            lag.insert(topic.clone(), *l);
                        }
                    }
                }
                let slots = [p as usize, plays_base + p as usize];
                let wm = slots
                    .iter()
                    .map(|&s| self.board.partition_watermark(s))
                    .min()
                    .and_then(finite);
                ShardStatus {
                    shard: p,
                    offsets,
                    lag,
                    watermark_ms: wm,
                    idle: slots.map(|s| self.board.is_idle(s) && !self.board.is_ended(s)),
                }
            })
            .collect();
        let job_wm = finite(self.board.job_watermark());
        let now = self.clock.now_ms();
        RuntimeStatus {
            ordinal: self.ordinal,
            replicas: self.replicas,
            partitions: self.partitions,
            shards,
            job_watermark_ms: job_wm,
            watermark_lag_seconds: job_wm.map(|wm| (now - wm) as f64 / 1000.0),
            idle_partitions: self.board.idle_partitions(),
            forced_advances: self.board.forced_advances(),
            last_forced_advance_ms: self.board.last_forced_ms(),
            last_checkpoint: self.control.last_checkpoint(),
            live_entries: self
                .shards
                .iter()
                .map(|p| {
                    self.metrics
                        .live_entries
                        .with_label_values(&[&p.to_string()])
                        .get()
                })
                .sum(),
            records_in_per_second: measured.records_in_per_second,
            busy_ratio: measured.busy_ratio,
            consumer_lag: measured.lag.values().sum(),
            audit: measured.audit,
            checkpoint_volume: volume_usage(&self.data_dir),
            stopped: self.control.halted(),
            savepoint: self.control.latest_savepoint(),
        }
    }
}
