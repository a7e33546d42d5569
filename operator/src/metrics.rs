//! Prometheus metrics of the operator, served on `/metrics`. Every name starts
//! with `streamjoin_operator_`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by result (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile duration, seconds.
    pub duration: HistogramVec,
    /// Failed reconciles by error kind (the failing step).
    pub errors: IntCounterVec,
    /// Children written, by kind.
    pub applied: IntCounterVec,
    /// Status writes.
    pub status_writes: IntCounter,
    /// StreamJoinJobs that could not be read at all.
    pub malformed: IntCounter,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
    /// Conditions of each job, 1 when "True", by `job_namespace`, `streamjoinjob`
    /// and `condition`. Only the leader, which reconciles, reports them.
    pub job_condition: IntGaugeVec,
    /// Checkpoint volumes found past their autoExpand threshold, by what was done
    /// (`expanded`, `at_max_size`, `not_expandable`, `invalid`, `failed`).
    pub volume_expansions: IntCounterVec,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "streamjoin_operator_reconcile_total",
                "Reconciles of StreamJoinJobs, by result.",
            ),
            &["result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "streamjoin_operator_reconcile_duration_seconds",
                "Time to reconcile one StreamJoinJob, including API calls.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "streamjoin_operator_reconcile_errors_total",
                "Failed reconciles, by the step that failed.",
            ),
            &["kind"],
        )?;
        let applied = IntCounterVec::new(
            Opts::new(
                "streamjoin_operator_children_applied_total",
                "Owned objects written with server-side apply, by kind.",
            ),
            &["kind"],
        )?;
        let status_writes = IntCounter::new(
            "streamjoin_operator_status_writes_total",
            "Status subresource writes.",
        )?;
        let malformed = IntCounter::new(
            "streamjoin_operator_malformed_objects_total",
            "StreamJoinJobs that could not be deserialized (reported, then skipped).",
        )?;
        let leader = IntGauge::new(
            "streamjoin_operator_leader",
            "1 while this replica holds the leader lease.",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(malformed.clone()))?;
        let job_condition = IntGaugeVec::new(
            Opts::new(
                "streamjoin_operator_job_condition",
                "Conditions of each StreamJoinJob (1 when True), as last written to its status.",
            ),
            &["job_namespace", "streamjoinjob", "condition"],
        )?;
        let volume_expansions = IntCounterVec::new(
            Opts::new(
                "streamjoin_operator_volume_expansions_total",
                "Checkpoint volumes found past their autoExpand threshold, by what the operator did.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(job_condition.clone()))?;
        registry.register(Box::new(volume_expansions.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            duration,
            errors,
            applied,
            status_writes,
            malformed,
            leader,
            job_condition,
            volume_expansions,
        })
    }

    /// Publishes the conditions of one job.
    pub fn set_job_conditions(
        &self,
        namespace: &str,
        name: &str,
        conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) {
        for c in conditions {
            self.job_condition
                .with_label_values(&[namespace, name, c.type_.as_str()])
                .set(i64::from(c.status == "True"));
        }
    }

    /// Forgets the conditions of a deleted job.
    pub fn forget_job(&self, namespace: &str, name: &str) {
        for c in [
            streamjoin_api::CONDITION_READY,
            streamjoin_api::CONDITION_PROGRESSING,
            streamjoin_api::CONDITION_DEGRADED,
        ] {
            let _ = self
                .job_condition
                .remove_label_values(&[namespace, name, c]);
        }
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_rendered() {
        let m = Metrics::new().expect("registers");
        m.reconciles.with_label_values(&["ok"]).inc();
        m.duration.with_label_values(&["ok"]).observe(0.002);
        m.errors.with_label_values(&["apply"]).inc();
        m.applied.with_label_values(&["StatefulSet"]).inc();
        m.set_job_conditions(
            "streams",
            "clicks",
            &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "Degraded".into(),
                status: "True".into(),
                reason: "PodFailing".into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            }],
        );
        let text = m.render();
        for name in [
            "streamjoin_operator_reconcile_total",
            "streamjoin_operator_reconcile_duration_seconds_bucket",
            "streamjoin_operator_reconcile_errors_total",
            "streamjoin_operator_children_applied_total",
            "streamjoin_operator_job_condition",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("streamjoin_operator_"), "{line}");
        }
        assert!(text.contains(
            r#"streamjoin_operator_job_condition{condition="Degraded",job_namespace="streams",streamjoinjob="clicks"} 1"#
        ));
        m.forget_job("streams", "clicks");
        assert!(!m.render().contains("streamjoin_operator_job_condition{"));
    }
}
