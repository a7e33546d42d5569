//! Lease-based leader election against the API double: one leader at a time,
//! takeover judged by each replica's own monotonic clock (so skewed wall clocks
//! make no second leader), a leader that stops leading within its renew deadline
//! (before anyone may take over), and stale writes fenced off by resourceVersion.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use streamjoin_operator::leader::{Elector, LeaseConfig, still_leading};
use support::fake_api::{FakeApi, lease_path};
use tokio::time::Instant;

fn elector(client: &Client, identity: &str) -> Elector {
    Elector::new(
        client.clone(),
        LeaseConfig::with_lease_duration(
            "ops".into(),
            "streamjoin-operator".into(),
            identity.into(),
            Duration::from_secs(15),
        ),
    )
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("valid")
}

/// A replica's monotonic clock, `s` seconds after a common origin.
fn at(origin: Instant, s: u64) -> Instant {
    origin + Duration::from_secs(s)
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let (client, fake) = FakeApi::start();
    let a = elector(&client, "operator-a");
    let b = elector(&client, "operator-b");
    let path = lease_path("ops", "streamjoin-operator");
    let o = Instant::now();

    assert!(
        a.try_acquire_or_renew(t(0), at(o, 0)).await.expect("round"),
        "free lease is taken"
    );
    assert!(
        !b.try_acquire_or_renew(t(1), at(o, 1)).await.expect("round"),
        "held lease is not"
    );
    assert!(
        a.try_acquire_or_renew(t(5), at(o, 5)).await.expect("round"),
        "holder renews"
    );
    assert!(
        !b.try_acquire_or_renew(t(6), at(o, 6)).await.expect("round"),
        "b sees the renewal at 6"
    );
    assert!(
        !b.try_acquire_or_renew(t(20), at(o, 20))
            .await
            .expect("round"),
        "unchanged since 6: valid until 21 by b's clock"
    );

    // a stops renewing; 15 s of b's clock after b saw the last renewal, b takes over.
    assert!(
        b.try_acquire_or_renew(t(21), at(o, 21))
            .await
            .expect("round")
    );
    let lease: Lease = fake.get_as(&path).expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("operator-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(
        !a.try_acquire_or_renew(t(22), at(o, 22))
            .await
            .expect("round"),
        "the old leader knows it lost"
    );

    // A graceful stop hands over; a sees the released lease change and takes it.
    b.release().await.expect("release");
    assert!(
        a.try_acquire_or_renew(t(23), at(o, 23))
            .await
            .expect("round")
    );
}

#[tokio::test]
async fn a_replica_whose_wall_clock_runs_an_hour_ahead_does_not_take_a_renewed_lease() {
    let (client, _fake) = FakeApi::start();
    let a = elector(&client, "operator-a");
    let b = elector(&client, "operator-b");
    let o = Instant::now();
    let skew = 3600;
    assert!(a.try_acquire_or_renew(t(0), at(o, 0)).await.expect("round"));
    // b's wall clock says the lease's renewTime is an hour old; a keeps renewing.
    for s in (1..120).step_by(5) {
        assert!(
            !b.try_acquire_or_renew(t(s + skew), at(o, s as u64))
                .await
                .expect("round"),
            "b must not take the lease at {s} s"
        );
        assert!(
            a.try_acquire_or_renew(t(s + 2), at(o, s as u64 + 2))
                .await
                .expect("round"),
            "a keeps it at {} s",
            s + 2
        );
    }
    // Likewise a replica whose clock runs behind takes over after the lease
    // duration of its own clock, not an hour late.
    let c = elector(&client, "operator-c");
    assert!(
        !c.try_acquire_or_renew(t(200 - skew), at(o, 200))
            .await
            .expect("round")
    );
    assert!(
        c.try_acquire_or_renew(t(215 - skew), at(o, 215))
            .await
            .expect("round")
    );
}

#[test]
fn a_stalled_leader_stops_leading_before_anyone_may_take_over() {
    let cfg = LeaseConfig::with_lease_duration(
        "ops".into(),
        "streamjoin-operator".into(),
        "operator-a".into(),
        Duration::from_secs(15),
    );
    assert!(cfg.renew_deadline < cfg.lease_duration);
    assert!(cfg.renew_every < cfg.renew_deadline);
    let o = Instant::now();
    let last = Some(at(o, 0));
    // Renewals failing (or hanging: the round is cut at the deadline).
    assert!(still_leading(true, last, at(o, 9), cfg.renew_deadline));
    assert!(!still_leading(true, last, at(o, 10), cfg.renew_deadline));
    // Another replica needs a whole lease duration of unchanged record: 15 s > 10 s.
    assert!(!still_leading(false, last, at(o, 1), cfg.renew_deadline));
}

#[tokio::test]
async fn a_stale_write_loses_with_a_conflict() {
    let (client, fake) = FakeApi::start();
    let a = elector(&client, "operator-a");
    assert!(
        a.try_acquire_or_renew(t(0), Instant::now())
            .await
            .expect("round")
    );
    // Another writer updates the lease between our read and our write: the double
    // rejects the stale resourceVersion exactly as the API server would.
    let path = lease_path("ops", "streamjoin-operator");
    let mut v = fake.get(&path).expect("lease");
    v["metadata"]["resourceVersion"] = serde_json::json!("stale");
    let lease: Lease = serde_json::from_value(v).expect("lease");
    let api: kube::Api<Lease> = kube::Api::namespaced(client, "ops");
    let err = api
        .replace("streamjoin-operator", &Default::default(), &lease)
        .await
        .expect_err("conflict");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
}
