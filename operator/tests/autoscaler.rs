//! The autoscaler at reconcile level: the fake runtime reports load, the test clock
//! moves a minute per reconcile (no test sleeps), and the operator decides from the
//! samples it took. An oscillating load never rescales; a growing backlog rescales
//! up once, after the stabilisation window, through the rescale flow.

mod support;

use serde_json::{Value, json};
use streamjoin_api::{AutoscalerStatus, ChangeClass, LifecycleState};
use support::flows::{arg, events, events_of, record, rolled_out, running, sts};
use support::{Harness, ManualClock, job_json};

/// Two pods, autoscaled between 1 and 4 (the fake's pods own 4 partitions).
fn job() -> Value {
    let mut m = job_json("clicks");
    m["spec"]["parallelism"] = json!(2);
    m["spec"]["autoscaler"] = json!({"enabled": true, "minParallelism": 1, "maxParallelism": 4});
    m
}

fn autoscaler(h: &Harness) -> AutoscalerStatus {
    h.job("clicks")
        .status
        .and_then(|s| s.autoscaler)
        .expect("status.autoscaler")
}

/// What every pod reports: input rate, busy ratio, consumer lag.
fn load(h: &Harness, rate: f64, busy: f64, lag: i64) {
    h.runtime.set(|r| {
        r.records_in_per_second = Some(rate);
        r.busy_ratio = Some(busy);
        r.consumer_lag = Some(lag);
    });
}

async fn minute(h: &Harness, clock: &ManualClock) {
    clock.advance_secs(60);
    h.reconcile("clicks").await.expect("reconciles");
}

#[tokio::test]
async fn an_oscillating_load_never_rescales() {
    let (mut h, clock) = Harness::with_manual_clock();
    h.create_job(job());
    running(&mut h, "clicks", 2).await;
    let before = sts(&h, "clicks");
    h.fake.take_calls();

    // Busy flips between 0.95 (wants 3 pods) and 0.2 (wants 1) every minute, for
    // longer than both stabilisation windows (3 min up, 30 min down).
    for i in 0..45 {
        load(&h, 500.0, if i % 2 == 0 { 0.95 } else { 0.2 }, 0);
        minute(&h, &clock).await;
        let a = autoscaler(&h);
        assert_eq!(a.recommended_parallelism, Some(2), "minute {i}: {a:?}");
        assert_eq!(record(&h, "clicks").state, LifecycleState::Running);
    }
    let calls = h.fake.take_calls();
    assert!(h.runtime.triggered().is_empty(), "no savepoint requested");
    assert_eq!(sts(&h, "clicks"), before, "StatefulSet untouched");
    assert!(
        events_of(&calls, "Autoscaling").is_empty() && events_of(&calls, "Rescaling").is_empty()
    );
    let a = autoscaler(&h);
    assert!(
        a.reason
            .as_deref()
            .is_some_and(|r| r.contains("not stable")),
        "held by the stabilisation window, not by missing metrics: {a:?}"
    );
    assert_eq!(a.last_scale_time, None);
}

#[tokio::test]
async fn a_growing_backlog_rescales_up_once_after_the_stabilisation_window() {
    let (mut h, clock) = Harness::with_manual_clock();
    h.create_job(job());
    running(&mut h, "clicks", 2).await;
    h.fake.take_calls();

    // Busy 0.9 and a lag growing by 100k records per pod per minute.
    let mut minutes = 0;
    while h.runtime.triggered().is_empty() {
        minutes += 1;
        assert!(minutes <= 10, "never scaled up: {:?}", autoscaler(&h));
        load(&h, 500.0, 0.9, 100_000 * minutes);
        minute(&h, &clock).await;
    }
    let calls = h.fake.take_calls();
    // Samples from minute 1 on; the 3-minute window must be covered first.
    assert!(minutes > 3, "scaled after {minutes} min");
    let a = autoscaler(&h);
    let target = a.recommended_parallelism.expect("decided");
    assert!(target > 2 && target <= 4, "{a:?}");
    let reason = a.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!("scale up 2 → {target}")),
        "{reason}"
    );
    assert_eq!(
        a.last_scale_time.as_deref(),
        Some(clock.now().to_string().as_str())
    );
    let ev = events_of(&calls, "Autoscaling");
    assert_eq!(ev.len(), 1, "{:?}", events(&calls));
    assert!(ev[0].2.contains(&reason), "{}", ev[0].2);
    assert!(!events_of(&calls, "Rescaling").is_empty());
    let r = record(&h, "clicks");
    assert_eq!(r.state, LifecycleState::Savepointing);
    assert_eq!(r.last_change.map(|c| c.class), Some(ChangeClass::Scale));
    let t = h.runtime.triggered();
    assert_eq!(t.len(), 2, "both old pods");
    assert!(t.iter().all(|t| t.stop));
    assert_eq!(
        h.job("clicks").spec.parallelism,
        2,
        "the spec is not written"
    );

    // The savepoint completes: the new replica count restores from it.
    minute(&h, &clock).await;
    let s = sts(&h, "clicks");
    assert_eq!(s.spec.replicas, Some(target));
    assert!(arg(&s, "--restore-from").is_some_and(|p| p.ends_with(&t[0].id)));
    rolled_out(&mut h, "clicks", target).await;
    let r = record(&h, "clicks");
    assert_eq!(r.state, LifecycleState::Running);

    // The load is served now: no second rescale.
    for _ in 0..10 {
        load(&h, 500.0, 0.6, 0);
        minute(&h, &clock).await;
    }
    assert_eq!(h.runtime.triggered().len(), 2, "rescaled once");
    assert_eq!(sts(&h, "clicks").spec.replicas, Some(target));
}
