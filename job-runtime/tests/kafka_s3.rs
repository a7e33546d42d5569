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
#[allow(dead_code)]
mod s3;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use broker::Broker;
use data::{dataset, expected_entries, oracle_compare};
use s3::S3Env;
use streamjoin_api::SavepointsSpec;
use streamjoin_runtime::durability::savepoint::{SavepointStore, StoreSettings};

const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A runtime process, killed if the test ends without stopping it.
struct Pod {
    child: Child,
    admin: String,
    agent: ureq::Agent,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The job: its manifest, the pods' data and logs, and the S3 credentials the
/// pods get in their environment.
struct Job {
    dir: tempfile::TempDir,
    s3: S3Env,
}

impl Job {
    fn new(broker: &Broker, s3: S3Env, location: &str) -> Job {
        let dir = tempfile::Builder::new()
            .prefix("kafka-s3-job-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("job dir");
        let manifest = format!(
            r#"apiVersion: streamjoin.dev/v1alpha1
kind: StreamJoinJob
metadata:
  name: kafka-s3-test
spec:
  parallelism: 2
  kafka:
    bootstrapServers: {bootstrap}
  inputs:
    impressions: {{ topic: impressions }}
    plays: {{ topic: plays }}
  output: {{ topic: entries }}
  deadLetter: {{ topic: dead-letter }}
  lateOutput: {{ topic: late }}
  watermarks:
    maxOutOfOrderness: 2m
    idleTimeout: 10s
    inactivityTimeout: 3s
  recovery:
    onMissingCheckpoint: earliest
  checkpoints:
    interval: 1s
  savepoints:
    location: {location}
    endpoint: {endpoint}
    region: {region}
    pathStyle: true
    credentials: {{ secretRef: {{ name: savepoint-store }} }}
"#,
            bootstrap = broker.bootstrap,
            endpoint = s3.endpoint,
            region = s3.region,
        );
        std::fs::write(dir.path().join("job.yaml"), manifest).expect("manifest");
        std::fs::write(dir.path().join("admin-token"), format!("{TOKEN}\n")).expect("token");
        Job { dir, s3 }
    }

    /// Process `ordinal` of `replicas`, with the admin API on a port of its own.
    fn pod(&self, ordinal: u32, replicas: u32, restore_from: Option<&str>) -> Pod {
        let d = self.dir.path();
        let addr_file = d.join(format!("pod-{ordinal}.admin-addr"));
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join(format!("pod-{ordinal}.log")))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamjoin-runtime"));
        cmd.args(["run", "--job"])
            .arg(d.join("job.yaml"))
            .args(["--ordinal", &ordinal.to_string()])
            .args(["--replicas", &replicas.to_string()])
            .arg("--data-dir")
            .arg(d.join(format!("pod-{ordinal}")))
            .args(["--threads", "1", "--admin-addr", "127.0.0.1:0"])
            .arg("--admin-addr-file")
            .arg(&addr_file)
            .arg("--admin-token-file")
            .arg(d.join("admin-token"))
            // As the operator passes the Secret's keys.
            .env(
                "STREAMJOIN_SAVEPOINT_AWS_ACCESS_KEY_ID",
                &self.s3.access_key_id,
            )
            .env(
                "STREAMJOIN_SAVEPOINT_AWS_SECRET_ACCESS_KEY",
                &self.s3.secret_access_key,
            )
            .env("RUST_LOG", "info")
            .stderr(log);
        if let Some(sp) = restore_from {
            cmd.args(["--restore-from", sp]);
        }
        let mut child = cmd.spawn().expect("the runtime starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                break format!("http://{}", addr.trim());
            }
            if let Some(status) = child.try_wait().expect("pod status") {
                panic!(
                    "runtime {ordinal} exited ({status}); log in {}",
                    d.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "runtime {ordinal}: no admin endpoint"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Pod {
            child,
            admin,
            agent,
        }
    }

    /// Every pod's log, to check what they printed.
    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).expect("job dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "log") {
                out.push_str(&std::fs::read_to_string(&p).expect("log"));
            }
        }
        out
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tmp"));
            eprintln!("job directory kept: {}", kept.keep().display());
        }
    }
}

impl Pod {
    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match self.agent.get(format!("{}{path}", self.admin)).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
            ),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// The shards it owns, once it restored them and serves its status.
    fn wait_ready(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (code, status) = self.get("/v1/status");
            if code == 200 {
                return status["shards"].as_array().expect("shards").len();
            }
            assert!(
                Instant::now() < deadline,
                "{}: not ready ({code})",
                self.admin
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn trigger_savepoint(&self, id: &str, stop: bool) {
        let mut r = self
            .agent
            .post(format!("{}/v1/savepoints", self.admin))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(serde_json::json!({ "id": id, "stop": stop }))
            .expect("admin API reachable");
        let body: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
        assert_eq!(r.status().as_u16(), 202, "{body}");
    }

    /// Polls the savepoint until it completed or failed; what the admin API says.
    fn savepoint_outcome(&self, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (code, info) = self.get(&format!("/v1/savepoints/{id}"));
            assert_eq!(code, 200, "{info}");
            if matches!(info["state"].as_str(), Some("completed" | "failed")) {
                return info;
            }
            assert!(Instant::now() < deadline, "savepoint {id} still pending");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the savepoint until it completed; its path.
    fn savepoint_path(&self, id: &str) -> String {
        let info = self.savepoint_outcome(id);
        assert_eq!(info["state"], "completed", "savepoint {id}: {info}");
        info["path"].as_str().expect("path").to_owned()
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("runtime exits");
        assert!(status.success(), "runtime exited with {status}");
    }
}

/// The same savepoint id on every pod (as the operator does); its one path.
fn savepoint(pods: &[Pod], id: &str, stop: bool) -> String {
    for p in pods {
        p.trigger_savepoint(id, stop);
    }
    let paths: HashSet<String> = pods.iter().map(|p| p.savepoint_path(id)).collect();
    assert_eq!(paths.len(), 1, "every pod writes to one place: {paths:?}");
    paths.into_iter().next().expect("one path")
}

fn stop_with_savepoint(pods: Vec<Pod>, id: &str) -> String {
    let path = savepoint(&pods, id, true);
    for p in pods {
        assert_eq!(p.get("/v1/status").1["stopped"], true);
        p.stop();
    }
    path
}

/// Produces the data set in twenty flushed slices from a thread, so savepoints
/// are taken while input still arrives.
fn load_slowly(broker: &Broker, data: &Path, partitions: u32) -> std::thread::JoinHandle<()> {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use std::io::BufRead;
    for topic in ["impressions", "plays", "entries", "dead-letter", "late"] {
        broker.create_topic(topic, partitions);
    }
    let bootstrap = broker.bootstrap.clone();
    let data = data.to_path_buf();
    std::thread::spawn(move || {
        let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let mut files: Vec<(&str, i32, Vec<Vec<u8>>)> = Vec::new();
        for p in 0..partitions {
            for topic in ["impressions", "plays"] {
                let f = std::fs::File::open(data.join(format!("{topic}-{p}.jsonl"))).expect("file");
                let lines = std::io::BufReader::new(f)
                    .split(b'\n')
                    .map(|l| l.expect("line"))
                    .collect();
                files.push((topic, p as i32, lines));
            }
        }
        for slice in 0..20 {
            for (topic, p, lines) in &files {
                let n = lines.len();
                for line in &lines[n * slice / 20..n * (slice + 1) / 20] {
                    let mut r = BaseRecord::<(), [u8]>::to(topic)
                        .partition(*p)
                        .payload(&line[..]);
                    while let Err((_, back)) = producer.send(r) {
                        r = back;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            producer.flush(Duration::from_secs(60)).expect("flush");
        }
    })
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
    let reader = SavepointStore::open(
        &location,
        &StoreSettings::from_spec(&SavepointsSpec {
            endpoint: Some(s3.endpoint.clone()),
            region: Some(s3.region.clone()),
            path_style: Some(true),
            ..SavepointsSpec::default()
        })
        .with_env({
            let (id, key) = (s3.access_key_id.clone(), secret.clone());
            move |name| match name {
                "STREAMJOIN_SAVEPOINT_AWS_ACCESS_KEY_ID" => Some(id.clone()),
                "STREAMJOIN_SAVEPOINT_AWS_SECRET_ACCESS_KEY" => Some(key.clone()),
                _ => None,
            }
        }),
    )
    .expect("open");
    let job = Job::new(&broker, s3, &location);
    let loader = load_slowly(&broker, &data, 4);
    let distinct_at_least = |n: usize| {
        let mut seen = HashSet::new();
        broker.consume_until("entries", 4, false, Duration::from_secs(300), |r| {
            seen.insert(r.to_vec());
            seen.len() >= n
        });
    };

    let two: Vec<Pod> = (0..2).map(|o| job.pod(o, 2, None)).collect();
    assert_eq!(two.iter().map(Pod::wait_ready).sum::<usize>(), 4);
    distinct_at_least(expected / 5);
    // A plain savepoint: the pods go on.
    let plain = savepoint(&two, "plain-1", false);
    assert_eq!(plain, format!("{location}/plain-1"));
    for p in &two {
        assert_eq!(p.get("/v1/status").1["stopped"], false);
    }
    distinct_at_least(expected / 4);
    let sp1 = stop_with_savepoint(two, "rescale-1");
    assert_eq!(sp1, format!("{location}/rescale-1"));
    let listed = tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(reader.list_complete())
        .expect("list");
    assert_eq!(listed, ["plain-1", "rescale-1"]);

    let three: Vec<Pod> = (0..3).map(|o| job.pod(o, 3, Some(&sp1))).collect();
    let owned: usize = three.iter().map(Pod::wait_ready).sum();
    assert_eq!(owned, 4, "each shard has exactly one owner");
    distinct_at_least(expected / 2);
    let sp2 = stop_with_savepoint(three, "rescale-2");

    let one = job.pod(0, 1, Some(&sp2));
    assert_eq!(one.wait_ready(), 4);
    loader.join().expect("loader");
    distinct_at_least(expected);
    one.stop();
    let records = broker.consume_all("entries", 4, false, expected, Duration::from_secs(120));
    let report = oracle_compare(&data, &records, &["--strict"]);
    eprintln!("reference, {} records read back:\n{report}", records.len());
    for zero in [
        " 0 missing",
        " 0 unexpected",
        " 0 differing",
        " 0 duplicates",
    ] {
        assert!(report.contains(zero), "{report}");
    }
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
    let job = Job::new(&broker, s3, &location);
    let loader = load_slowly(&broker, &data, 2);
    let pod = job.pod(0, 1, None);
    assert_eq!(pod.wait_ready(), 2);
    pod.trigger_savepoint("sp-missing", false);
    let info = pod.savepoint_outcome("sp-missing");
    assert_eq!(info["state"], "failed", "{info}");
    let error = info["error"].as_str().expect("an error").to_owned();
    eprintln!("the admin API's error: {error}");
    assert!(
        error.contains(&format!("{location}/sp-missing")) && error.contains("NoSuchBucket"),
        "the location and the store's message: {error}"
    );
    assert!(!error.contains(&secret), "the error carries the secret");
    assert_eq!(pod.get("/v1/status").1["stopped"], false);
    // The job runs on: every entry arrives.
    loader.join().expect("loader");
    let mut seen = HashSet::new();
    broker.consume_until("entries", 2, false, Duration::from_secs(300), |r| {
        seen.insert(r.to_vec());
        seen.len() >= expected
    });
    pod.stop();
    let logs = job.logs();
    assert!(logs.contains("NoSuchBucket"), "the failure is logged");
    assert!(!logs.contains(&secret), "a pod printed the secret key");
}
