//! Lease-based leader election against the API double.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use streamjoin_operator::leader::{Elector, LeaseConfig};
use support::fake_api::{FakeApi, lease_path};

fn elector(client: &Client, identity: &str) -> Elector {
    Elector::new(
        client.clone(),
        LeaseConfig {
            namespace: "ops".into(),
            name: "streamjoin-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        },
    )
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("valid")
}

#[tokio::test]
async fn one_leader_at_a_time_and_takeover_after_expiry() {
    let (client, fake) = FakeApi::start();
    let a = elector(&client, "operator-a");
    let b = elector(&client, "operator-b");
    let path = lease_path("ops", "streamjoin-operator");

    assert!(
        a.try_acquire_or_renew(t(0)).await.expect("round"),
        "free lease is taken"
    );
    assert!(
        !b.try_acquire_or_renew(t(1)).await.expect("round"),
        "held lease is not"
    );
    assert!(
        a.try_acquire_or_renew(t(5)).await.expect("round"),
        "holder renews"
    );
    assert!(
        !b.try_acquire_or_renew(t(19)).await.expect("round"),
        "renewed at 5, valid until 20"
    );

    // a stops renewing; after renewTime + 15s, b takes over.
    assert!(b.try_acquire_or_renew(t(21)).await.expect("round"));
    let lease: Lease = fake.get_as(&path).expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("operator-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(
        !a.try_acquire_or_renew(t(22)).await.expect("round"),
        "the old leader knows it lost"
    );

    // A graceful stop hands over at once.
    b.release().await.expect("release");
    assert!(a.try_acquire_or_renew(t(23)).await.expect("round"));
    let _ = SignedDuration::ZERO;
}

#[tokio::test]
async fn a_stale_write_loses_with_a_conflict() {
    let (client, fake) = FakeApi::start();
    let a = elector(&client, "operator-a");
    assert!(a.try_acquire_or_renew(t(0)).await.expect("round"));
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
