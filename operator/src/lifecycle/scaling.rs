//! Step 3 of a lifecycle run: the parallelism the autoscaler wants, when it is on.
//! Samples of the pods' load are remembered per job; the decision itself is
//! [`autoscaler::decide`] (pure).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use streamjoin_api::{
    AutoscalerStatus, JobState, LifecycleState, StreamJoinJobSpec, StreamJoinJobStatus,
};

use super::autoscaler::{self, Sample};
use super::machine::{self, Note};
use super::memory::Memory;
use super::observe::PodReports;
use super::pods::{Scope, ts_string};
use crate::admin::RuntimeStatus;

/// The spec to decide on (the job's, with the autoscaler's parallelism) and the
/// autoscaler's status and Event.
pub(super) struct Scaling {
    pub desired: StreamJoinJobSpec,
    pub status: Option<AutoscalerStatus>,
    pub note: Option<Note>,
}

/// 3. The autoscaler's parallelism, when it is on.
pub(super) fn desired_spec(
    s: &Scope<'_>,
    old_status: &StreamJoinJobStatus,
    pods: &PodReports,
    partitions: Option<i32>,
) -> Scaling {
    let old = old_status.lifecycle.as_ref();
    let mut scaling = Scaling {
        desired: s.job.spec.clone(),
        status: old_status.autoscaler.clone(),
        note: None,
    };
    let desired = &mut scaling.desired;
    if desired.autoscaler.enabled && desired.state == JobState::Running {
        let current = old
            .and_then(machine::stable_spec)
            .map_or(desired.parallelism, |s| s.parallelism);
        let stable_now = old.is_some_and(|o| o.state == LifecycleState::Running);
        let heard = pods.heard();
        let record = stable_now && pods.all_heard();
        let samples: Vec<Sample> = s.ctx.with_memory(&s.r.owner.uid, |m| {
            if record {
                m.samples.push_back(sample(&heard, s.now, current));
            }
            forget_old_samples(m, desired, s.now);
            m.samples.iter().copied().collect()
        });
        let prev = scaling.status.clone().unwrap_or_default();
        if stable_now {
            decide(&mut scaling, current, partitions, &samples, prev, s.now);
        } else {
            // A step is under way (the rescale the autoscaler chose, an upgrade, ...):
            // it goes to the parallelism decided last, and nothing new is decided
            // until the job is stable again.
            desired.parallelism = prev
                .recommended_parallelism
                .filter(|p| *p > 0)
                .unwrap_or(current);
        }
    } else if !desired.autoscaler.enabled {
        scaling.status = None;
    }
    scaling
}

/// The pods' load now (rate, busy ratio and lag only when every pod reported them).
fn sample(heard: &[&RuntimeStatus], now: Timestamp, current: i32) -> Sample {
    let lag: i64 = heard.iter().filter_map(|s| s.consumer_lag).sum();
    let rate: f64 = heard.iter().filter_map(|s| s.records_in_per_second).sum();
    let busy: Vec<f64> = heard.iter().filter_map(|s| s.busy_ratio).collect();
    let complete = busy.len() == heard.len()
        && heard
            .iter()
            .all(|s| s.consumer_lag.is_some() && s.records_in_per_second.is_some());
    Sample {
        at: now,
        records_in_per_second: complete.then_some(rate),
        busy_ratio: complete.then(|| busy.iter().sum::<f64>() / busy.len() as f64),
        consumer_lag: complete.then_some(lag),
        parallelism: current,
    }
}

/// Drops samples older than the longest window the autoscaler looks at, plus 5 minutes.
fn forget_old_samples(m: &mut Memory, desired: &StreamJoinJobSpec, now: Timestamp) {
    let keep = SignedDuration::from_secs(
        i64::try_from(
            desired
                .autoscaler
                .scale_down_delay
                .0
                .as_secs()
                .max(desired.autoscaler.scale_up_stabilization.0.as_secs()),
        )
        .unwrap_or(i64::MAX),
    ) + SignedDuration::from_mins(5);
    while m
        .samples
        .front()
        .is_some_and(|s| now.duration_since(s.at) > keep)
    {
        m.samples.pop_front();
    }
}

/// A stable job: the autoscaler decides, and a change of parallelism is an Event.
fn decide(
    scaling: &mut Scaling,
    current: i32,
    partitions: Option<i32>,
    samples: &[Sample],
    prev: AutoscalerStatus,
    now: Timestamp,
) {
    let last_scale = prev.last_scale_time.as_deref().and_then(|t| t.parse().ok());
    let d = autoscaler::decide(
        &scaling.desired.autoscaler,
        current,
        partitions,
        samples,
        last_scale,
        now,
    );
    let scaled = d.parallelism != current;
    if scaled {
        scaling.note = Some(Note {
            warning: false,
            reason: "Autoscaling",
            message: format!("autoscaler: {}", d.reason),
        });
    }
    scaling.status = Some(AutoscalerStatus {
        recommended_parallelism: Some(d.parallelism),
        last_scale_time: if scaled {
            Some(ts_string(now))
        } else {
            prev.last_scale_time
        },
        reason: Some(d.reason),
    });
    scaling.desired.parallelism = d.parallelism;
}
