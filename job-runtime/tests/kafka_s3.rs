//! Savepoints on S3 with Apache Kafka: runtime processes started as pods are
//! (the store's endpoint, region and path style in the manifest, the access key
//! pair in `STREAMJOIN_SAVEPOINT_AWS_*`) take a savepoint, stop with savepoints
//! and restore from them through `s3://` while rescaling 2 → 3 → 1; the output
//! is compared `--strict` with the reference; a savepoint into a missing bucket
//! fails with the store's message while the job runs on. Needs the broker
//! (`scripts/kafka.sh`) and the S3 store (`scripts/s3.sh up`); runs in the
//! `kafka` serial group.

mod broker;
mod data;
mod runtime;
mod s3;

use broker::Broker;
use data::{dataset, expected_entries};
use runtime::{
    Job, load_slowly, read_distinct, rescale_to_three_then_one, savepoint, stop_with_savepoint,
};
use s3::S3Env;
use streamjoin_runtime::durability::savepoint::SavepointStore;

/// The job with savepoints at `location` on the S3 store, whose key pair the
/// pods get in `STREAMJOIN_SAVEPOINT_AWS_*` as the operator passes a Secret's keys.
fn job(broker: &Broker, s3: &S3Env, location: &str) -> Job {
    let extra = format!(
        r#"  checkpoints:
    interval: 1s
  savepoints:
    location: {location}
    endpoint: {endpoint}
    region: {region}
    pathStyle: true
    credentials: {{ secretRef: {{ name: savepoint-store }} }}
"#,
        endpoint = s3.endpoint,
        region = s3.region,
    );
    let mut job = Job::new(broker, "kafka-s3-test", &extra).with_env("RUST_LOG", "info");
    for (name, value) in s3.savepoint_env() {
        job = job.with_env(name, &value);
    }
    job
}

#[test]
fn savepoints_and_a_rescale_from_two_to_three_to_one_through_s3_are_exact() {
    let test = "savepoints_and_a_rescale_from_two_to_three_to_one_through_s3_are_exact";
    let Some(s3) = S3Env::from_env(test) else {
        return;
    };
    let data = dataset(100_000, 4, 15);
    let expected = expected_entries(&data);
    let Some(broker) = Broker::start() else {
        return;
    };
    let bucket = s3.new_bucket("kafka");
    let location = format!("s3://{bucket}/savepoints/kafka-s3-test");
    let secret = s3.secret_access_key.clone();
    let reader = SavepointStore::open(&location, &s3.savepoint_settings()).expect("open");
    let job = job(&broker, &s3, &location);
    let loader = load_slowly(&broker, &data, 4);
    let distinct_at_least = |n: usize| {
        read_distinct(&broker, 4, n);
    };

    let two: Vec<_> = (0..2).map(|o| job.pod_with_admin(o, 2, None)).collect();
    assert_eq!(two.iter().map(|(_, a)| a.owned_shards()).sum::<usize>(), 4);
    distinct_at_least(expected / 5);
    // A plain savepoint: the pods go on.
    let plain = savepoint(&two, "plain-1", false);
    assert_eq!(plain, format!("{location}/plain-1"));
    for (_, a) in &two {
        assert_eq!(a.get("/v1/status").1["stopped"], false);
    }
    distinct_at_least(expected / 4);
    let sp1 = stop_with_savepoint(two, "rescale-1");
    assert_eq!(sp1, format!("{location}/rescale-1"));
    let listed = tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(reader.list_complete())
        .expect("list");
    assert_eq!(listed, ["plain-1", "rescale-1"]);

    let sp2 = rescale_to_three_then_one(&job, &broker, (&data, expected), &sp1, loader);
    let logs = job.logs();
    assert!(logs.contains(&sp2), "the pods log the savepoint's location");
    assert!(!logs.contains(&secret), "a pod printed the secret key");
}

#[test]
fn a_savepoint_into_a_missing_bucket_fails_with_the_stores_message_and_the_job_runs_on() {
    let test =
        "a_savepoint_into_a_missing_bucket_fails_with_the_stores_message_and_the_job_runs_on";
    let Some(s3) = S3Env::from_env(test) else {
        return;
    };
    let data = dataset(20_000, 2, 16);
    let expected = expected_entries(&data);
    let Some(broker) = Broker::start() else {
        return;
    };
    let location = format!("s3://sj-missing-{}/savepoints", std::process::id());
    let secret = s3.secret_access_key.clone();
    let job = job(&broker, &s3, &location);
    let loader = load_slowly(&broker, &data, 2);
    let (pod, admin) = job.pod_with_admin(0, 1, None);
    assert_eq!(admin.owned_shards(), 2);
    admin.trigger_savepoint("sp-missing", false);
    let info = admin.savepoint_outcome("sp-missing");
    assert_eq!(info["state"], "failed", "{info}");
    let error = info["error"].as_str().expect("an error").to_owned();
    eprintln!("the admin API's error: {error}");
    assert!(
        error.contains(&format!("{location}/sp-missing")) && error.contains("NoSuchBucket"),
        "the location and the store's message: {error}"
    );
    assert!(!error.contains(&secret), "the error carries the secret");
    assert_eq!(admin.get("/v1/status").1["stopped"], false);
    // The job runs on: every entry arrives.
    loader.join().expect("loader");
    read_distinct(&broker, 2, expected);
    pod.stop();
    let logs = job.logs();
    assert!(logs.contains("NoSuchBucket"), "the failure is logged");
    assert!(!logs.contains(&secret), "a pod printed the secret key");
}
