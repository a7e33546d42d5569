//! Prometheus metrics of the runtime. Shards count in plain integers on the hot
//! path and publish deltas here once per batch.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

use crate::model::record::{Input, Malformed};

/// All runtime metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_in: IntCounterVec,
    pub malformed: IntCounterVec,
    pub late: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub entries_inserted: IntCounterVec,
    pub entries_evicted: IntCounterVec,
    pub entries_spilled: IntCounterVec,
    pub ids_spilled: IntCounterVec,
    pub live_entries: IntGaugeVec,
    pub pending_events: IntGaugeVec,
    pub state_bytes: IntGaugeVec,
    pub output_records: IntCounterVec,
    pub partition_watermark: GaugeVec,
    pub watermark: Gauge,
    pub watermark_lag: Gauge,
    pub idle_partitions: IntGauge,
    pub paused_partitions: IntGauge,
    pub forced_advances: IntCounter,
    pub batch_seconds: Histogram,
    pub checkpoints: CheckpointMetrics,
}

/// Checkpoints, restores, consumer lag and audits.
#[derive(Clone)]
pub struct CheckpointMetrics {
    pub duration: Histogram,
    pub stall: Histogram,
    pub size_bytes: IntGaugeVec,
    pub completed: IntCounter,
    pub failures: IntCounter,
    pub last_completed: Gauge,
    pub restore_fallbacks: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub audit_ratio: GaugeVec,
    pub audit_breached: IntGaugeVec,
    pub entries_with_plays: IntCounter,
    pub savepoint_duration: Histogram,
    pub savepoint_failures: IntCounter,
    pub restore_seconds: Gauge,
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(r, Box::new(h.clone()));
    h
}

impl CheckpointMetrics {
    fn new(r: &Registry) -> Self {
        let seconds = prometheus::exponential_buckets(0.001, 2.0, 16).unwrap_or_default();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)
                .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
            register(r, Box::new(c.clone()));
            c
        };
        let last = Gauge::new(
            "streamjoin_last_checkpoint_timestamp_seconds",
            "Completion time of the last checkpoint (Unix seconds)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(r, Box::new(last.clone()));
        let restore = Gauge::new(
            "streamjoin_restore_duration_seconds",
            "Time the last start took to restore the owned shards (checkpoints or a savepoint)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(r, Box::new(restore.clone()));
        let ratio = GaugeVec::new(
            Opts::new(
                "streamjoin_audit_ratio",
                "Audited ratio over the last interval: malformed or late records per record, entries with plays per entry",
            ),
            &["check"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(r, Box::new(ratio.clone()));
        Self {
            duration: histogram(
                r,
                "streamjoin_checkpoint_duration_seconds",
                "Time to write one shard's checkpoint",
                seconds.clone(),
            ),
            stall: histogram(
                r,
                "streamjoin_checkpoint_stall_seconds",
                "Time a worker stopped processing records for a checkpoint round (the copy; the rest is written by a thread of its own)",
                seconds.clone(),
            ),
            savepoint_duration: histogram(
                r,
                "streamjoin_savepoint_duration_seconds",
                "Time from a savepoint request to this process's part uploaded",
                prometheus::exponential_buckets(0.01, 2.0, 16).unwrap_or_default(),
            ),
            savepoint_failures: counter(
                "streamjoin_savepoint_failures_total",
                "Savepoints this process could not complete",
            ),
            restore_seconds: restore,
            size_bytes: gauge_vec(
                r,
                "streamjoin_checkpoint_size_bytes",
                "Size of the last checkpoint of a shard",
                &["partition"],
            ),
            completed: counter(
                "streamjoin_checkpoints_total",
                "Shard checkpoints completed",
            ),
            failures: counter(
                "streamjoin_checkpoint_failures_total",
                "Shard checkpoints that failed (the previous one stays in use)",
            ),
            last_completed: last,
            restore_fallbacks: counter(
                "streamjoin_checkpoint_restore_fallbacks_total",
                "Corrupt checkpoints skipped at restore in favour of an older one",
            ),
            consumer_lag: gauge_vec(
                r,
                "streamjoin_consumer_lag_records",
                "Records between the high watermark and the next offset to read",
                &["topic", "partition"],
            ),
            audit_ratio: ratio,
            entries_with_plays: counter(
                "streamjoin_entries_with_plays_total",
                "Emitted entries that have at least one play (the join ratio's numerator)",
            ),
            audit_breached: gauge_vec(
                r,
                "streamjoin_audit_breached",
                "1 when the audited ratio of the last interval is outside the job's bounds",
                &["check"],
            ),
        }
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(r, Box::new(c.clone()));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name} is well-formed: {e}"));
    register(r, Box::new(g.clone()));
    g
}

fn register(r: &Registry, c: Box<dyn prometheus::core::Collector>) {
    // Names are fixed and unique within this registry.
    if let Err(e) = r.register(c) {
        unreachable!("metric registration: {e}");
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let fwm = GaugeVec::new(
            Opts::new(
                "streamjoin_partition_watermark_seconds",
                "Watermark of one input partition (Unix seconds; max event time minus maxOutOfOrderness)",
            ),
            &["input", "partition"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(fwm.clone()));
        let watermark = Gauge::new(
            "streamjoin_watermark_seconds",
            "The job watermark (Unix seconds)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(watermark.clone()));
        let watermark_lag = Gauge::new(
            "streamjoin_watermark_lag_seconds",
            "Wall clock minus the job watermark",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(watermark_lag.clone()));
        let idle = IntGauge::new(
            "streamjoin_idle_partitions",
            "Input partitions currently idle",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(idle.clone()));
        let paused = IntGauge::new(
            "streamjoin_paused_partitions",
            "Input partitions paused by watermark alignment",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(paused.clone()));
        let forced = IntCounter::new(
            "streamjoin_watermark_forced_advances_total",
            "Watermark force-advances (inactivity episodes and manual requests)",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(forced.clone()));
        let batch = Histogram::with_opts(
            HistogramOpts::new(
                "streamjoin_batch_duration_seconds",
                "Time to process one read batch of one partition",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 4.0, 10).unwrap_or_default()),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        register(&r, Box::new(batch.clone()));
        let checkpoints = CheckpointMetrics::new(&r);
        Self {
            checkpoints,
            records_in: counter_vec(
                &r,
                "streamjoin_records_in_total",
                "Records read",
                &["input", "partition"],
            ),
            malformed: counter_vec(
                &r,
                "streamjoin_malformed_records_total",
                "Records sent to the dead-letter output",
                &["input", "reason"],
            ),
            late: counter_vec(
                &r,
                "streamjoin_late_records_total",
                "Records behind the watermark",
                &["input"],
            ),
            duplicates: counter_vec(
                &r,
                "streamjoin_duplicate_records_total",
                "Copies of an event already in its entry",
                &["input"],
            ),
            entries_inserted: counter_vec(
                &r,
                "streamjoin_entries_inserted_total",
                "State entries opened",
                &["partition"],
            ),
            entries_evicted: counter_vec(
                &r,
                "streamjoin_entries_evicted_total",
                "State entries emitted and removed",
                &["partition"],
            ),
            entries_spilled: counter_vec(
                &r,
                "streamjoin_state_cache_spills_total",
                "Open entries written from the memory cache to RocksDB",
                &["partition"],
            ),
            ids_spilled: counter_vec(
                &r,
                "streamjoin_state_ids_spilled_total",
                "Event ids of hot entries written to RocksDB instead of kept in memory",
                &["partition"],
            ),
            live_entries: gauge_vec(
                &r,
                "streamjoin_live_entries",
                "Open state entries",
                &["partition"],
            ),
            pending_events: gauge_vec(
                &r,
                "streamjoin_pending_events",
                "On-time events waiting for the watermark",
                &["partition"],
            ),
            state_bytes: gauge_vec(
                &r,
                "streamjoin_state_bytes",
                "Estimated state size (RocksDB estimates and memory cache)",
                &["partition", "tier"],
            ),
            output_records: counter_vec(
                &r,
                "streamjoin_output_records_total",
                "Records written per output",
                &["output"],
            ),
            partition_watermark: fwm,
            watermark,
            watermark_lag,
            idle_partitions: idle,
            paused_partitions: paused,
            forced_advances: forced,
            batch_seconds: batch,
            registry: r,
        }
    }

    /// Pre-resolved handles for one shard, so publishing takes no label lookup.
    pub fn shard(&self, partition: u32) -> ShardMetrics {
        let p = partition.to_string();
        let per_input =
            |v: &IntCounterVec| Input::ALL.map(|i| v.with_label_values(&[i.name(), &p]));
        let by_input = |v: &IntCounterVec| Input::ALL.map(|i| v.with_label_values(&[i.name()]));
        ShardMetrics {
            records_in: per_input(&self.records_in),
            malformed: Input::ALL.map(|i| {
                Malformed::ALL.map(|m| self.malformed.with_label_values(&[i.name(), m.reason()]))
            }),
            late: by_input(&self.late),
            duplicates: by_input(&self.duplicates),
            inserted: self.entries_inserted.with_label_values(&[&p]),
            evicted: self.entries_evicted.with_label_values(&[&p]),
            spilled: self.entries_spilled.with_label_values(&[&p]),
            ids_spilled: self.ids_spilled.with_label_values(&[&p]),
            live: self.live_entries.with_label_values(&[&p]),
            pending: self.pending_events.with_label_values(&[&p]),
            rocks_bytes: self.state_bytes.with_label_values(&[&p, "rocksdb"]),
            memory_bytes: self.state_bytes.with_label_values(&[&p, "memory"]),
            out_entries: self.output_records.with_label_values(&["entries"]),
            out_late: self.output_records.with_label_values(&["late"]),
            out_dead: self.output_records.with_label_values(&["dead_letter"]),
            with_plays: self.checkpoints.entries_with_plays.clone(),
            watermark: Input::ALL
                .map(|i| self.partition_watermark.with_label_values(&[i.name(), &p])),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct ShardMetrics {
    pub records_in: [IntCounter; 2],
    pub malformed: [[IntCounter; 5]; 2],
    pub late: [IntCounter; 2],
    pub duplicates: [IntCounter; 2],
    pub inserted: IntCounter,
    pub evicted: IntCounter,
    pub spilled: IntCounter,
    pub ids_spilled: IntCounter,
    pub live: IntGauge,
    pub pending: IntGauge,
    pub rocks_bytes: IntGauge,
    pub memory_bytes: IntGauge,
    pub out_entries: IntCounter,
    pub out_late: IntCounter,
    pub out_dead: IntCounter,
    pub with_plays: IntCounter,
    pub watermark: [Gauge; 2],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_follows_conventions() {
        let m = Metrics::new();
        let _ = m.shard(0);
        m.forced_advances.inc();
        for family in m.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("streamjoin_"), "{name}");
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(counter, name.ends_with("_total"), "{name}");
        }
        assert!(m.render().contains("streamjoin_records_in_total"));
    }
}
