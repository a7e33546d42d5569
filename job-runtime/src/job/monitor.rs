//! What a job process measures while it runs, once per engine tick: input
//! rate and busy ratio, consumer lag (with offset commits for lag monitoring)
//! and the output audits of `spec.audit`. The status document reads it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use streamjoin_api::AuditSpec;

use crate::control::audit;
use crate::control::metrics::Metrics;
use crate::control::status::{AuditStatus, Measured};
use crate::engine::runner::EngineProgress;
use crate::io::kafka::{self, RuntimeConsumer};
use crate::job::connect::Position;

/// How often the output is audited against `spec.audit`.
const AUDIT_INTERVAL: Duration = Duration::from_secs(60);

fn metric_sum(m: &Metrics, name: &str, filter: impl Fn(&prometheus::proto::Metric) -> bool) -> f64 {
    m.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|x| filter(x))
        .map(|x| x.get_counter().get_value())
        .sum()
}

fn audit_totals(m: &Metrics) -> audit::AuditTotals {
    let all = |_: &prometheus::proto::Metric| true;
    audit::AuditTotals {
        records: metric_sum(m, "streamjoin_records_in_total", all),
        malformed: metric_sum(m, "streamjoin_malformed_records_total", all),
        late: metric_sum(m, "streamjoin_late_records_total", all),
        entries: metric_sum(m, "streamjoin_output_records_total", |x| {
            x.get_label()
                .iter()
                .any(|l| l.name() == "output" && l.value() == "entries")
        }),
        entries_with_plays: metric_sum(m, "streamjoin_entries_with_plays_total", all),
    }
}

/// The measurements of a running process, updated by [`Monitor::tick`].
pub struct Monitor {
    consumer: Arc<RuntimeConsumer>,
    positions: Vec<Position>,
    /// With exactly-once the transactions commit the offsets.
    exactly_once: bool,
    metrics: Metrics,
    measured: Arc<Mutex<Measured>>,
    audit_spec: AuditSpec,
    workers: f64,
    last_commit: Instant,
    last_audit: Instant,
    audit_base: audit::AuditTotals,
    rate_base: Option<(Instant, u64, u64)>,
}

impl Monitor {
    pub fn new(
        consumer: Arc<RuntimeConsumer>,
        positions: Vec<Position>,
        exactly_once: bool,
        metrics: Metrics,
        measured: Arc<Mutex<Measured>>,
        audit_spec: AuditSpec,
        workers: usize,
    ) -> Self {
        let last_commit = Instant::now();
        let last_audit = Instant::now();
        let audit_base = audit_totals(&metrics);
        Self {
            consumer,
            positions,
            exactly_once,
            metrics,
            measured,
            audit_spec,
            workers: workers as f64,
            last_commit,
            last_audit,
            audit_base,
            rate_base: None,
        }
    }

    /// Called by the engine about once a second.
    pub fn tick(&mut self, progress: EngineProgress) {
        self.measure_rate(&progress);
        if self.last_commit.elapsed() >= Duration::from_secs(5) {
            self.last_commit = Instant::now();
            self.commit();
            let l = self.lag();
            self.measured.lock().unwrap_or_else(|p| p.into_inner()).lag = l;
        }
        if self.last_audit.elapsed() >= AUDIT_INTERVAL {
            self.last_audit = Instant::now();
            self.audit();
        }
    }

    /// Input rate and busy ratio over the last tick.
    fn measure_rate(&mut self, progress: &EngineProgress) {
        let now = Instant::now();
        if let Some((at, records, idle)) = self.rate_base {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let mut m = self.measured.lock().unwrap_or_else(|p| p.into_inner());
                m.records_in_per_second =
                    Some(progress.records_read.saturating_sub(records) as f64 / secs);
                let idle_secs = progress.idle_nanos.saturating_sub(idle) as f64 / 1e9;
                m.busy_ratio = Some((1.0 - idle_secs / (secs * self.workers)).clamp(0.0, 1.0));
            }
        }
        self.rate_base = Some((now, progress.records_read, progress.idle_nanos));
    }

    /// Lag monitoring only; with exactly-once the transactions commit the offsets
    /// (with the checkpoint marker, which a plain commit would overwrite).
    pub fn commit(&self) {
        if self.exactly_once {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, p, pos) in &self.positions {
            let next = pos.next_offset.load(Relaxed);
            if next >= 0 {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(next));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!("offset commit for lag monitoring failed: {e}");
        }
    }

    fn lag(&self) -> BTreeMap<(String, i32), i64> {
        let mut out = BTreeMap::new();
        for (topic, p, pos) in &self.positions {
            if let Some((low, high)) = kafka::batch::cached_watermarks(&self.consumer, topic, *p) {
                let next = pos.next_offset.load(Relaxed).max(low.unwrap_or(0));
                let lag = (high - next).max(0);
                self.metrics
                    .checkpoints
                    .consumer_lag
                    .with_label_values(&[topic.as_str(), &p.to_string()])
                    .set(lag);
                out.insert((topic.clone(), *p), lag);
            }
        }
        out
    }

    /// The audits of the output since the last one, published as metrics and
    /// in the status.
    fn audit(&mut self) {
        let now = audit_totals(&self.metrics);
        let checks = audit::audit(&self.audit_base, &now, &self.audit_spec);
        for c in &checks {
            let m = &self.metrics.checkpoints;
            if let Some(r) = c.ratio {
                m.audit_ratio.with_label_values(&[c.name]).set(r);
            }
            m.audit_breached
                .with_label_values(&[c.name])
                .set(i64::from(c.breached));
            if c.breached {
                tracing::warn!(check = c.name, ratio = c.ratio, "audit bound breached");
            }
        }
        self.measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .audit = checks.iter().map(AuditStatus::from).collect();
        self.audit_base = now;
    }

    /// Records skipped as older than the recovery time (recovery by timestamp).
    pub fn skipped(&self) -> u64 {
        self.positions
            .iter()
            .map(|p| p.2.skipped.load(Relaxed))
            .sum()
    }
}
