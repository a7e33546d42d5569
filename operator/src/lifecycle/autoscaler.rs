//! The autoscaler's decision, a pure function of a recorded metric series.
//!
//! Per sample, the parallelism that would (a) run every pod at `targetUtilization`
//! busy and (b) catch up the consumer lag within `catchUpDuration`:
//!
//! ```text
//! capacity per pod   = records_in_per_second / busy_ratio / current_parallelism
//! needed (records/s) = records_in_per_second + lag / catchUpDuration
//! recommendation     = ceil(needed / (capacity per pod × targetUtilization))
//! ```
//!
//! bounded by `minParallelism`/`maxParallelism` and the input partition count. A
//! change is acted on only when every recommendation in the stabilisation window
//! agrees (scale-up: `scaleUpStabilization`, scale-down: `scaleDownDelay`, which
//! must be fully covered by samples), never within the cool-down after a rescale
//! (`scaleUpStabilization`), never downwards while the lag grows, and not at all
//! when the metrics are missing or stale (a metric outage holds the parallelism).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use streamjoin_api::AutoscalerSpec;

/// Job-wide metrics at one time (sums over the pods).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    pub records_in_per_second: Option<f64>,
    /// Mean busy ratio of the pods, 0..1.
    pub busy_ratio: Option<f64>,
    pub consumer_lag: Option<i64>,
    /// Parallelism when the sample was taken.
    pub parallelism: i32,
}

/// Samples older than this are not evidence of the present.
pub const STALE_AFTER: SignedDuration = SignedDuration::from_mins(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The parallelism to run.
    pub parallelism: i32,
    /// What the metrics ask for now (may differ while stabilising).
    pub recommended: Option<i32>,
    pub reason: String,
}

fn secs(d: &streamjoin_api::HumanDuration) -> i64 {
    i64::try_from(d.0.as_secs()).unwrap_or(i64::MAX)
}

/// The recommendation of one sample, unbounded above by partitions and min/max.
pub fn recommend(cfg: &AutoscalerSpec, s: &Sample) -> Option<i32> {
    let rate = s.records_in_per_second?;
    let busy = s.busy_ratio?;
    let lag = s.consumer_lag?.max(0) as f64;
    if s.parallelism <= 0 || busy <= 0.0 || !rate.is_finite() {
        return None;
    }
    let per_pod = rate / busy / f64::from(s.parallelism);
    if per_pod <= 0.0 {
        // Nothing flows: only the lag says anything; keep one pod per... nothing to measure.
        return None;
    }
    let catch_up = secs(&cfg.catch_up_duration).max(1) as f64;
    let needed = rate + lag / catch_up;
    let n = (needed / (per_pod * cfg.target_utilization)).ceil();
    Some(n.clamp(1.0, 1_000_000.0) as i32)
}

fn bound(cfg: &AutoscalerSpec, partitions: Option<i32>, n: i32) -> i32 {
    let mut n = n.max(cfg.min_parallelism.unwrap_or(1)).max(1);
    if let Some(max) = cfg.max_parallelism {
        n = n.min(max);
    }
    if let Some(p) = partitions {
        n = n.min(p.max(1));
    }
    n
}

/// The decision. `samples` are oldest first; `last_scale` is when the parallelism last changed.
pub fn decide(
    cfg: &AutoscalerSpec,
    current: i32,
    partitions: Option<i32>,
    samples: &[Sample],
    last_scale: Option<Timestamp>,
    now: Timestamp,
) -> Decision {
    let hold = |recommended, reason: String| Decision {
        parallelism: current,
        recommended,
        reason,
    };
    let Some(latest) = samples.last() else {
        return hold(
            None,
            format!("no metrics yet; keeping parallelism {current}"),
        );
    };
    if now.duration_since(latest.at) > STALE_AFTER {
        return hold(
            None,
            format!(
                "metrics unavailable since {}; keeping parallelism {current}",
                latest.at
            ),
        );
    }
    let Some(now_rec) = recommend(cfg, latest).map(|n| bound(cfg, partitions, n)) else {
        return hold(
            None,
            format!(
                "incomplete metrics (lag, input rate or busy ratio missing); keeping parallelism {current}"
            ),
        );
    };
    if now_rec == current {
        return hold(
            Some(now_rec),
            format!("parallelism {current} meets the target utilization"),
        );
    }
    let cooldown = SignedDuration::from_secs(secs(&cfg.scale_up_stabilization));
    if let Some(t) = last_scale
        && now.duration_since(t) < cooldown
    {
        return hold(
            Some(now_rec),
            format!("cooling down after the rescale at {t}; recommending {now_rec}"),
        );
    }
    let up = now_rec > current;
    let window = SignedDuration::from_secs(if up {
        secs(&cfg.scale_up_stabilization)
    } else {
        secs(&cfg.scale_down_delay)
    });
    let start = now - window;
    // The window must be covered: a sample at or before its start, and none missing in it.
    let covered = samples.first().is_some_and(|s| s.at <= start);
    let in_window: Vec<&Sample> = samples.iter().filter(|s| s.at >= start).collect();
    let recs: Option<Vec<i32>> = in_window
        .iter()
        .map(|s| recommend(cfg, s).map(|n| bound(cfg, partitions, n)))
        .collect();
    let Some(recs) = recs.filter(|r| !r.is_empty()) else {
        return hold(
            Some(now_rec),
            format!(
                "metrics missing within the stabilisation window; keeping parallelism {current}"
            ),
        );
    };
    if !covered {
        return hold(
            Some(now_rec),
            format!(
                "recommending {now_rec}; waiting for {}s of stable metrics",
                window.as_secs()
            ),
        );
    }
    if up {
        if recs.iter().all(|r| *r > current) {
            let target = recs.iter().copied().min().unwrap_or(now_rec);
            let lag = latest.consumer_lag.unwrap_or(0);
            return Decision {
                parallelism: target,
                recommended: Some(now_rec),
                reason: format!(
                    "scale up {current} → {target}: busy {:.2}, lag {lag}, held for {}s",
                    latest.busy_ratio.unwrap_or(0.0),
                    window.as_secs()
                ),
            };
        }
        return hold(
            Some(now_rec),
            format!(
                "recommending {now_rec}, not stable for {}s; keeping {current}",
                window.as_secs()
            ),
        );
    }
    let lags: Vec<i64> = in_window.iter().filter_map(|s| s.consumer_lag).collect();
    let growing = lags.len() >= 2 && lags.last() > lags.first();
    if growing {
        return hold(
            Some(now_rec),
            format!(
                "lag grows ({} → {}); no scale-down",
                lags.first().copied().unwrap_or(0),
                lags.last().copied().unwrap_or(0)
            ),
        );
    }
    if recs.iter().all(|r| *r < current) {
        let target = recs.iter().copied().max().unwrap_or(now_rec);
        return Decision {
            parallelism: target,
            recommended: Some(now_rec),
            reason: format!(
                "scale down {current} → {target}: below target utilization for {}s",
                window.as_secs()
            ),
        };
    }
    hold(
        Some(now_rec),
        format!(
            "recommending {now_rec}, not stable for {}s; keeping {current}",
            window.as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamjoin_api::HumanDuration;

    fn cfg() -> AutoscalerSpec {
        AutoscalerSpec {
            enabled: true,
            min_parallelism: Some(1),
            max_parallelism: Some(8),
            target_utilization: 0.7,
            catch_up_duration: HumanDuration::from_secs(600),
            scale_up_stabilization: HumanDuration::from_secs(180),
            scale_down_delay: HumanDuration::from_secs(1800),
        }
    }

    fn t(min: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + min * 60).expect("time")
    }

    fn s(min: i64, rate: f64, busy: f64, lag: i64, p: i32) -> Sample {
        Sample {
            at: t(min),
            records_in_per_second: Some(rate),
            busy_ratio: Some(busy),
            consumer_lag: Some(lag),
            parallelism: p,
        }
    }

    /// Replays a series minute by minute, applying each decision as a rescale.
    /// Returns the parallelism after each minute.
    fn replay(series: &[(f64, f64, i64)], start: i32, partitions: Option<i32>) -> Vec<i32> {
        let mut p = start;
        let mut samples = Vec::new();
        let mut last_scale = None;
        let mut out = Vec::new();
        for (i, (rate_per_pod_at_busy1, busy_if_p_is_2, lag)) in series.iter().enumerate() {
            let min = i as i64;
            // The workload: total demand fixed by the series, spread over p pods.
            let demand = rate_per_pod_at_busy1 * busy_if_p_is_2 * 2.0;
            let busy = (demand / rate_per_pod_at_busy1 / f64::from(p)).min(1.0);
            samples.push(s(min, demand, busy, *lag, p));
            let d = decide(&cfg(), p, partitions, &samples, last_scale, t(min));
            if d.parallelism != p {
                p = d.parallelism;
                last_scale = Some(t(min));
            }
            out.push(p);
        }
        out
    }

    #[test]
    fn recommendation_meets_utilization_and_catches_up_the_lag() {
        // 2 pods, 1000 rec/s at busy 0.5 → 1000 rec/s per pod at full speed.
        let c = cfg();
        assert_eq!(recommend(&c, &s(0, 1000.0, 0.5, 0, 2)), Some(2)); // 1000 / 700 → 2
        // 600k lag over 600 s adds 1000 rec/s: 2000 / 700 → 3.
        assert_eq!(recommend(&c, &s(0, 1000.0, 0.5, 600_000, 2)), Some(3));
    }

    #[test]
    fn a_flapping_load_never_rescales() {
        // Busy alternates between 0.95 and 0.2 every minute for two hours.
        let series: Vec<(f64, f64, i64)> = (0..120)
            .map(|i| (1000.0, if i % 2 == 0 { 0.95 } else { 0.2 }, 0))
            .collect();
        let ps = replay(&series, 2, None);
        assert!(ps.iter().all(|p| *p == 2), "{ps:?}");
    }

    #[test]
    fn a_backlog_scales_up_after_stabilisation_and_never_down_while_lag_grows() {
        // Busy 0.9 at 2 pods and a lag growing by 100k per minute.
        let series: Vec<(f64, f64, i64)> = (0..60).map(|i| (1000.0, 0.9, 100_000 * i)).collect();
        let ps = replay(&series, 2, Some(16));
        let first_up = ps.iter().position(|p| *p > 2).expect("scaled up");
        assert!(first_up >= 3, "stabilisation window respected: {ps:?}");
        assert!(ps.windows(2).all(|w| w[1] >= w[0]), "never down: {ps:?}");
        assert!(*ps.last().unwrap_or(&0) <= 8, "bounded by maxParallelism");
    }

    #[test]
    fn scale_down_waits_for_the_delay_and_is_bounded_by_partitions_and_min() {
        let mut c = cfg();
        c.min_parallelism = Some(2);
        let samples: Vec<Sample> = (0..=31).map(|m| s(m, 100.0, 0.05, 0, 6)).collect();
        let d = decide(&c, 6, Some(4), &samples[..20], None, t(19));
        assert_eq!(d.parallelism, 6, "{}", d.reason);
        let d = decide(&c, 6, Some(4), &samples, None, t(31));
        assert_eq!(d.parallelism, 2, "{}", d.reason);
        // Up, but never above the partitions.
        let hot: Vec<Sample> = (0..=5)
            .map(|m| s(m, 10_000.0, 1.0, 10_000_000, 2))
            .collect();
        assert_eq!(decide(&c, 2, Some(4), &hot, None, t(5)).parallelism, 4);
    }

    #[test]
    fn a_metric_outage_holds_the_parallelism() {
        let samples: Vec<Sample> = (0..10).map(|m| s(m, 10_000.0, 1.0, 5_000_000, 2)).collect();
        // The last sample is 10 minutes old.
        let d = decide(&cfg(), 2, None, &samples, None, t(19));
        assert_eq!(d.parallelism, 2);
        assert!(d.reason.contains("unavailable"), "{}", d.reason);
        // A sample with a missing metric holds too, even when the rest says "up".
        let mut gap = samples.clone();
        gap[8].busy_ratio = None;
        let d = decide(&cfg(), 2, None, &gap, None, t(9));
        assert_eq!(d.parallelism, 2, "{}", d.reason);
    }

    #[test]
    fn no_rescale_during_the_cool_down() {
        let samples: Vec<Sample> = (0..10).map(|m| s(m, 10_000.0, 1.0, 5_000_000, 2)).collect();
        let d = decide(&cfg(), 2, None, &samples, Some(t(8)), t(9));
        assert_eq!(d.parallelism, 2);
        assert!(d.reason.contains("cooling down"), "{}", d.reason);
    }
}
