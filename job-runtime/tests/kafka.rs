//! The runtime against Apache Kafka (a broker of its own per test, see
//! `broker/`): data sets of the built-in generator loaded into topics, runtime
//! processes started as a pod would start them, the output topic read back and
//! compared with the reference implementation (`streamjoin-reference`).

mod broker;
mod data;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use broker::Broker;
use data::{dataset, expected_entries, oracle_compare};

struct Job {
    manifest: PathBuf,
    dir: tempfile::TempDir,
}

impl Job {
    /// Replaces the watermark timeouts of the manifest.
    fn with_watermarks(self, idle: &str, inactivity: &str) -> Job {
        let text = std::fs::read_to_string(&self.manifest).expect("manifest");
        let text = text
            .replace("idleTimeout: 10s", idle)
            .replace("inactivityTimeout: 3s", inactivity);
        std::fs::write(&self.manifest, text).expect("manifest");
        self
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep a failed run's manifests, checkpoints and logs.
            let path = self.dir.path().to_path_buf();
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tmp"));
            let _ = kept.keep();
            eprintln!("job directory kept: {}", path.display());
        }
    }
}

fn job(broker: &Broker, extra: &str) -> Job {
    // Under the target's temporary directory, so a failed run's logs can be read.
    let dir = tempfile::Builder::new()
        .prefix("kafka-job-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("job dir");
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: streamjoin.dev/v1alpha1
kind: StreamJoinJob
metadata:
  name: kafka-test
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
{extra}"#,
            bootstrap = broker.bootstrap
        ),
    )
    .expect("write manifest");
    Job { manifest, dir }
}

fn load(broker: &Broker, data: &Path, partitions: u32) {
    for topic in ["impressions", "plays", "entries", "dead-letter", "late"] {
        broker.create_topic(topic, partitions);
    }
    for p in 0..partitions {
        broker.produce_lines(
            "impressions",
            p as i32,
            &data.join(format!("impressions-{p}.jsonl")),
        );
        broker.produce_lines("plays", p as i32, &data.join(format!("plays-{p}.jsonl")));
    }
}

/// A runtime process, killed if the test ends without stopping it.
struct Pod(Child);

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Pod {
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }
}

fn runtime(job: &Job, ordinal: u32, replicas: u32) -> Pod {
    runtime_with(job, ordinal, replicas, &[])
}

fn runtime_with(job: &Job, ordinal: u32, replicas: u32, extra: &[String]) -> Pod {
    let data_dir = job.dir.path().join(format!("pod-{ordinal}"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(job.dir.path().join(format!("pod-{ordinal}.log")))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_streamjoin-runtime"))
        .args(["run", "--job"])
        .arg(&job.manifest)
        .args([
            "--ordinal",
            &ordinal.to_string(),
            "--replicas",
            &replicas.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--threads", "1"])
        .args(match std::env::var("STREAMJOIN_TEST_ADMIN_BASE") {
            Ok(base) => vec![
                "--admin-addr".to_owned(),
                format!(
                    "127.0.0.1:{}",
                    base.parse::<u32>().unwrap_or(19700) + ordinal
                ),
            ],
            Err(_) => Vec::new(),
        })
        .args(extra)
        .env("RUST_LOG", "info,streamjoin_runtime::engine::worker=debug")
        .stderr(log)
        .spawn()
        .map(Pod)
        .expect("the runtime starts")
}

fn stop(mut pod: Pod) {
    let _ = Command::new("kill")
        .args(["-TERM", &pod.0.id().to_string()])
        .status();
    let status = pod.0.wait().expect("runtime exits");
    assert!(status.success(), "runtime exited with {status}");
}

/// Counts distinct records (an identical repeat counts once) up to `n`.
fn until_distinct(n: usize) -> impl FnMut(&[u8]) -> bool {
    let mut seen = HashSet::new();
    move |r| {
        seen.insert(r.to_vec());
        seen.len() >= n
    }
}

/// Reads the output topic until every expected entry arrived (repeats allowed).
fn read_entries(broker: &Broker, data: &Path, partitions: u32) -> Vec<Vec<u8>> {
    broker.consume_until(
        "entries",
        partitions,
        false,
        Duration::from_secs(300),
        until_distinct(expected_entries(data)),
    )
}

/// At least once: 0 missing and 0 differing, identical repeats allowed.
fn assert_matches_at_least_once(data: &Path, records: &[Vec<u8>]) {
    let report = oracle_compare(data, records, &["--at-least-once"]);
    assert!(
        report.contains(" 0 missing") && report.contains(" 0 differing"),
        "{report}"
    );
}

#[test]
fn two_processes_match_the_reference() {
    // STREAMJOIN_KAFKA_SMALL=1 runs a `small`-sized data set (1M records) instead.
    let data = if std::env::var_os("STREAMJOIN_KAFKA_SMALL").is_some() {
        dataset(1_000_000, 4, 1)
    } else {
        dataset(100_000, 4, 11)
    };
    let Some(broker) = Broker::start() else {
        return;
    };
    load(&broker, &data, 4);
    let job = job(&broker, "");
    let a = runtime(&job, 0, 2);
    let b = runtime(&job, 1, 2);
    let records = read_entries(&broker, &data, 4);
    stop(a);
    stop(b);
    assert_matches_at_least_once(&data, &records);
}

#[test]
fn every_fetched_record_reaches_its_partitions_source_and_none_the_main_queue() {
    use rdkafka::consumer::Consumer;
    use std::sync::Arc;
    use streamjoin_runtime::io::kafka::source::{SourceSpec, open_then_assign};
    use streamjoin_runtime::io::kafka::{CONSUMER_FETCH_SETTINGS, QuietEof, RuntimeConsumer};
    use streamjoin_runtime::io::source::{Next, PartitionSource};

    let data = dataset(20_000, 2, 21);
    let Some(broker) = Broker::start() else {
        return;
    };
    let mut specs = Vec::new();
    let mut expected = Vec::new();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in ["impressions", "plays"] {
        broker.create_topic(topic, 2);
        for p in 0..2 {
            let file = data.join(format!("{topic}-{p}.jsonl"));
            expected.push(broker.produce_lines(topic, p, &file));
            specs.push(SourceSpec {
                topic,
                partition: p,
                skip_before_ms: None,
                start: None,
            });
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    let mut config = broker.client();
    config
        .set("group.id", "streamjoin-queues-test")
        .set("enable.partition.eof", "true");
    for (k, v) in CONSUMER_FETCH_SETTINGS {
        config.set(k, v);
    }
    let consumer: Arc<RuntimeConsumer> =
        Arc::new(config.create_with_context(QuietEof).expect("consumer"));
    // Connected first, as the runtime is by its topic checks: a fetch can then
    // follow the assignment at once.
    consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata");
    let mut sources = open_then_assign(&consumer, &specs, &assignment).expect("sources");

    // Every record of every partition arrives through that partition's source.
    let mut read = vec![0u64; sources.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while read != expected {
        for (i, (source, _)) in sources.iter_mut().enumerate() {
            while let Next::Record(_) = source.next().expect("read") {
                read[i] += 1;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read {read:?} of {expected:?}"
        );
        std::thread::yield_now();
    }
    for (i, (_, position)) in sources.iter().enumerate() {
        let next = position
            .next_offset
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(next, expected[i] as i64, "position of source {i}");
    }
    // Nothing was left on the consumer's main queue.
    if let Some(Ok(m)) = consumer.poll(Duration::ZERO) {
        use rdkafka::Message;
        panic!(
            "a record reached the main queue: {} {} @{}",
            m.topic(),
            m.partition(),
            m.offset()
        );
    }
}

/// Produces the data set in the background, a slice at a time, so that the
/// runtimes are killed while input is still arriving.
fn load_slowly(broker: &Broker, data: &Path, partitions: u32) -> std::thread::JoinHandle<()> {
    for topic in ["impressions", "plays", "entries", "dead-letter", "late"] {
        broker.create_topic(topic, partitions);
    }
    let bootstrap = broker.bootstrap.clone();
    let data = data.to_path_buf();
    std::thread::spawn(move || {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        use std::io::BufRead;
        let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let mut lines: Vec<(String, i32, Vec<Vec<u8>>)> = Vec::new();
        for p in 0..partitions {
            for topic in ["impressions", "plays"] {
                let f = std::fs::File::open(data.join(format!("{topic}-{p}.jsonl"))).expect("file");
                let recs = std::io::BufReader::new(f)
                    .split(b'\n')
                    .map(|l| l.expect("line"))
                    .collect();
                lines.push((topic.to_owned(), p as i32, recs));
            }
        }
        // Twenty slices, each followed by a flush: the broker holds a growing prefix.
        for slice in 0..20 {
            for (topic, p, recs) in &lines {
                let n = recs.len();
                for rec in &recs[n * slice / 20..n * (slice + 1) / 20] {
                    let mut r = BaseRecord::<(), [u8]>::to(topic)
                        .partition(*p)
                        .payload(&rec[..]);
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

fn checkpoint_count(job: &Job, ordinal: u32) -> usize {
    let root = job.dir.path().join(format!("pod-{ordinal}/checkpoints"));
    let Ok(shards) = std::fs::read_dir(&root) else {
        return 0;
    };
    shards
        .flatten()
        .filter_map(|s| std::fs::read_dir(s.path()).ok())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
                .count()
        })
        .sum()
}

/// Identical repeats are allowed (at-least-once); differing ones are not.
fn assert_repeats_identical(records: &[Vec<u8>]) {
    let mut by_key: std::collections::HashMap<(i64, i64, i64), &[u8]> = Default::default();
    for r in records {
        let v: serde_json::Value = serde_json::from_slice(r).expect("entry json");
        let k = (
            v["profile_id"].as_i64().expect("profile"),
            v["title_id"].as_i64().expect("title"),
            v["window_start"].as_i64().expect("window_start"),
        );
        if let Some(prev) = by_key.insert(k, r) {
            assert_eq!(prev, &r[..], "a repeated entry differs");
        }
    }
}

#[test]
fn processes_killed_ten_times_and_restarted_lose_nothing() {
    use rand::{Rng, SeedableRng};
    let data = dataset(100_000, 4, 12);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 4);
    let job = job(
        &broker,
        "  checkpoints:\n    interval: 300ms\n    retained: 2\n",
    );
    let mut pods = [runtime(&job, 0, 2), runtime(&job, 1, 2)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    while kills < 12 {
        // A random moment: the test's input, not a wait for something observable.
        std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
        let i = rng.random_range(0..2usize);
        pods[i].kill();
        pods[i] = runtime(&job, i as u32, 2);
        kills += 1;
    }
    loader.join().expect("loader");
    let records = read_entries(&broker, &data, 4);
    let [a, b] = pods;
    stop(a);
    stop(b);
    assert!(checkpoint_count(&job, 0) > 0 && checkpoint_count(&job, 1) > 0);
    let log0 = std::fs::read_to_string(job.dir.path().join("pod-0.log")).unwrap_or_default();
    assert!(
        log0.contains("restoring from"),
        "no restart restored a checkpoint:\n{log0}"
    );
    assert_repeats_identical(&records);
    assert_matches_at_least_once(&data, &records);
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
    let data = dataset(50_000, 2, 13);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 2);
    let job = job(
        &broker,
        "  checkpoints:\n    interval: 200ms\n    retained: 3\n",
    );
    let mut pod = runtime(&job, 0, 1);
    // Observable: wait until at least two checkpoints of shard 0 exist.
    let shard0 = job.dir.path().join("pod-0/checkpoints/shard-0");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let newest = loop {
        let mut chks: Vec<PathBuf> = std::fs::read_dir(&shard0)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        chks.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        });
        chks.sort();
        if chks.len() >= 2 {
            pod.kill();
            break chks.pop().expect("newest");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoints were written"
        );
    };
    // Truncate the largest file that belongs to the newest checkpoint alone (SST
    // and OPTIONS files are hard links shared with older checkpoints).
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(newest.join("db"))
        .expect("db dir")
        .flatten()
        .chain(
            std::fs::read_dir(&newest)
                .expect("checkpoint dir")
                .flatten(),
        )
        .filter_map(|e| {
            let m = e.metadata().expect("meta");
            (m.is_file() && m.nlink() == 1 && m.len() > 1).then(|| (m.len(), e.path()))
        })
        .collect();
    files.sort();
    let (size, victim) = files.pop().expect("a file");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .expect("open");
    f.set_len(size / 2).expect("truncate");
    let pod = runtime(&job, 0, 1);
    loader.join().expect("loader");
    let records = read_entries(&broker, &data, 2);
    stop(pod);
    let log = std::fs::read_to_string(job.dir.path().join("pod-0.log")).unwrap_or_default();
    assert!(
        log.contains("falling back to the previous checkpoint"),
        "{log}"
    );
    assert_matches_at_least_once(&data, &records);
}

#[test]
fn a_broker_paused_for_30_seconds_is_recovered_from_without_loss() {
    let data = dataset(50_000, 2, 14);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 2);
    // The inactivity rule must not fire while the broker is frozen.
    let job = job(&broker, "  checkpoints:\n    interval: 1s\n")
        .with_watermarks("idleTimeout: 60s", "inactivityTimeout: 40s");
    let pod = runtime(&job, 0, 1);
    // Observable: the runtime has produced output before the broker freezes.
    broker.consume_until("entries", 2, false, Duration::from_secs(120), |_| true);
    broker.pause();
    // The pause length is the test's input.
    std::thread::sleep(Duration::from_secs(30));
    broker.resume();
    loader.join().expect("loader");
    let records = read_entries(&broker, &data, 2);
    stop(pod);
    assert_matches_at_least_once(&data, &records);
}

/// A runtime process's admin API, as the operator calls it.
struct Admin {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Admin {
    fn new(addr: &str, token: &str) -> Admin {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Admin {
            agent,
            base: format!("http://{addr}"),
            token: token.to_owned(),
        }
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match self.agent.get(format!("{}{path}", self.base)).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
            ),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send_json(body).expect("admin API reachable");
        (
            r.status().as_u16(),
            r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until the process restored its shards and serves `/v1/status`.
    fn wait_ready(&self) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (code, status) = self.get("/v1/status");
            if code == 200 {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: not ready ({code})",
                self.base
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn trigger_savepoint(&self, id: &str, stop: bool) {
        let (code, body) = self.post(
            "/v1/savepoints",
            Some(&self.token.clone()),
            serde_json::json!({ "id": id, "stop": stop }),
        );
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["id"], id);
    }

    /// Polls the savepoint until it completed; its path.
    fn savepoint_path(&self, id: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (code, info) = self.get(&format!("/v1/savepoints/{id}"));
            assert_eq!(code, 200, "{info}");
            match info["state"].as_str() {
                Some("completed") => return info["path"].as_str().expect("path").to_owned(),
                Some("failed") => panic!("savepoint {id} failed: {info}"),
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "savepoint {id} still pending"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A runtime with an admin API and the admin token. The admin endpoint binds
/// port 0 and reports the port it got: a port picked beforehand could be taken
/// by a client connection before the process binds it.
fn runtime_admin(
    job: &Job,
    ordinal: u32,
    replicas: u32,
    restore_from: Option<&str>,
) -> (Pod, Admin) {
    let token_file = job.dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let addr_file = job.dir.path().join(format!("pod-{ordinal}.admin-addr"));
    match std::fs::remove_file(&addr_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{}: {e}", addr_file.display()),
    }
    let mut args = vec![
        "--admin-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--admin-addr-file".to_owned(),
        addr_file.display().to_string(),
        "--admin-token-file".to_owned(),
        token_file.display().to_string(),
    ];
    if let Some(sp) = restore_from {
        args.extend(["--restore-from".to_owned(), sp.to_owned()]);
    }
    let mut pod = runtime_with(job, ordinal, replicas, &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Ok(addr) = std::fs::read_to_string(&addr_file) {
            break addr.trim().to_owned();
        }
        if let Some(status) = pod.0.try_wait().expect("pod status") {
            panic!(
                "runtime {ordinal} exited before its admin endpoint listened ({status}); log: {}",
                job.dir.path().join(format!("pod-{ordinal}.log")).display()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runtime {ordinal}: no admin endpoint after 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (pod, Admin::new(&addr, TOKEN))
}

/// Takes a stop-with-savepoint on every process (the same id, as the operator
/// does), then stops them; the savepoint's location.
fn stop_with_savepoint(pods: Vec<(Pod, Admin)>, id: &str) -> String {
    for (_, admin) in &pods {
        admin.trigger_savepoint(id, true);
    }
    let mut paths: Vec<String> = pods.iter().map(|(_, a)| a.savepoint_path(id)).collect();
    paths.dedup();
    assert_eq!(
        paths.len(),
        1,
        "every process writes to the same place: {paths:?}"
    );
    for (_, admin) in &pods {
        assert_eq!(admin.get("/v1/status").1["stopped"], true);
    }
    for (pod, _) in pods {
        stop(pod);
    }
    paths.remove(0)
}

fn assert_exact(data: &Path, records: &[Vec<u8>]) {
    let report = oracle_compare(data, records, &["--strict"]);
    eprintln!("reference, {} records read back:\n{report}", records.len());
    for zero in [
        " 0 missing",
        " 0 unexpected",
        " 0 differing",
        " 0 duplicates",
    ] {
        assert!(report.contains(zero), "{report}");
    }
}

#[test]
fn rescale_by_stop_with_savepoint_from_two_to_three_to_one_is_exact() {
    let data = dataset(100_000, 4, 15);
    let expected = expected_entries(&data);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 4);
    let savepoints = tempfile::tempdir().expect("savepoint dir");
    let job = job(
        &broker,
        &format!(
            "  checkpoints:\n    interval: 1s\n  savepoints:\n    location: {}\n",
            savepoints.path().display()
        ),
    );
    let distinct_at_least = |n: usize| {
        broker.consume_until(
            "entries",
            4,
            false,
            Duration::from_secs(300),
            until_distinct(n),
        );
    };

    let two: Vec<_> = (0..2).map(|o| runtime_admin(&job, o, 2, None)).collect();
    for (_, a) in &two {
        let status = a.wait_ready();
        assert_eq!(status["shards"].as_array().expect("shards").len(), 2);
    }
    // Mid-stream: some output exists, input is still arriving.
    distinct_at_least(expected / 4);
    let sp1 = stop_with_savepoint(two, "rescale-1");
    assert_eq!(sp1, format!("{}/rescale-1", savepoints.path().display()));
    for p in 0..4 {
        assert!(
            Path::new(&sp1)
                .join(format!("shard-{p}/MANIFEST.json"))
                .exists(),
            "shard {p} is in the savepoint"
        );
    }

    let three: Vec<_> = (0..3)
        .map(|o| runtime_admin(&job, o, 3, Some(&sp1)))
        .collect();
    let owned: usize = three
        .iter()
        .map(|(_, a)| a.wait_ready()["shards"].as_array().expect("shards").len())
        .sum();
    assert_eq!(owned, 4, "each shard has exactly one owner");
    distinct_at_least(expected / 2);
    let sp2 = stop_with_savepoint(three, "rescale-2");

    let (one, admin) = runtime_admin(&job, 0, 1, Some(&sp2));
    assert_eq!(
        admin.wait_ready()["shards"]
            .as_array()
            .expect("shards")
            .len(),
        4
    );
    loader.join().expect("loader");
    distinct_at_least(expected);
    stop(one);
    let records = broker.consume_all("entries", 4, false, expected, Duration::from_secs(120));
    assert_exact(&data, &records);
}

#[test]
fn admin_api_reports_status_and_requires_the_token_for_changes() {
    let data = dataset(20_000, 2, 16);
    let Some(broker) = Broker::start() else {
        return;
    };
    load(&broker, &data, 2);
    let savepoints = tempfile::tempdir().expect("savepoint dir");
    let job = job(
        &broker,
        &format!(
            "  checkpoints:\n    interval: 500ms\n  savepoints:\n    location: {}\n",
            savepoints.path().display()
        ),
    );
    let (pod, admin) = runtime_admin(&job, 0, 1, None);
    admin.wait_ready();
    // Observable: every entry was emitted, so offsets and checkpoints exist.
    read_entries(&broker, &data, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = admin.get("/v1/status").1;
        if !s["last_checkpoint"].is_null() && s["shards"][1]["offsets"]["plays"].is_i64() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["ordinal"], 0);
    assert_eq!(status["partitions"], 2);
    assert!(status["job_watermark_ms"].is_i64(), "{status}");
    assert!(status["checkpoint_volume"]["capacity_bytes"].as_u64() > Some(0));
    assert_eq!(status["stopped"], false);

    let body = serde_json::json!({ "id": "sp-auth" });
    assert_eq!(admin.post("/v1/savepoints", None, body.clone()).0, 401);
    assert_eq!(
        admin.post("/v1/savepoints", Some("wrong"), body.clone()).0,
        401
    );
    assert_eq!(
        admin
            .post("/v1/watermark/advance", None, serde_json::json!({}))
            .0,
        401
    );
    assert_eq!(
        admin
            .post(
                "/v1/savepoints",
                Some(TOKEN),
                serde_json::json!({ "id": "../x" })
            )
            .0,
        400
    );
    let before = status["forced_advances"].as_u64().expect("forced advances");
    let (code, answer) = admin.post("/v1/watermark/advance", Some(TOKEN), serde_json::json!({}));
    assert_eq!(code, 200, "{answer}");
    assert!(admin.get("/v1/status").1["forced_advances"].as_u64() > Some(before));

    admin.trigger_savepoint("sp-auth", false);
    let path = admin.savepoint_path("sp-auth");
    assert!(Path::new(&path).join("_process-0.json").exists());
    assert_eq!(
        admin.get("/v1/status").1["stopped"],
        false,
        "a plain savepoint keeps running"
    );
    assert_eq!(admin.get("/v1/savepoints/unknown").0, 404);
    stop(pod);
}

/// Splits every input file of a data set at its middle: the first halves, and
/// the second halves with the data set's parameters (for the reference).
fn split_dataset(data: &Path, partitions: u32) -> (tempfile::TempDir, tempfile::TempDir) {
    let first = tempfile::tempdir().expect("first half");
    let second = tempfile::tempdir().expect("second half");
    for p in 0..partitions {
        for stream in ["impressions", "plays"] {
            let name = format!("{stream}-{p}.jsonl");
            let text = std::fs::read(data.join(&name)).expect("input");
            let lines: Vec<&[u8]> = text
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let (a, b) = lines.split_at(lines.len() / 2);
            let join = |ls: &[&[u8]]| {
                let mut out = Vec::new();
                for l in ls {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                }
                out
            };
            std::fs::write(first.path().join(&name), join(a)).expect("write");
            std::fs::write(second.path().join(&name), join(b)).expect("write");
        }
    }
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let params = serde_json::json!({ "params": manifest["params"] });
    for dir in [&first, &second] {
        std::fs::write(dir.path().join("manifest.json"), params.to_string()).expect("manifest");
    }
    (first, second)
}

/// Checkpoints lost, `onMissingCheckpoint: timestamp`: the runtime reads from
/// the first record produced at or after the time, so its output is the join of
/// exactly the records after it.
fn recovery_by_timestamp(path: RecoveryPath) {
    let data = dataset(20_000, 2, 17);
    let (first, second) = split_dataset(&data, 2);
    let Some(broker) = Broker::start() else {
        return;
    };
    for topic in [
        "impressions",
        "plays",
        "entries",
        "entries-after",
        "dead-letter",
        "late",
    ] {
        broker.create_topic(topic, 2);
    }
    let produce = |dir: &Path| {
        for p in 0..2 {
            for topic in ["impressions", "plays"] {
                broker.produce_lines(topic, p, &dir.join(format!("{topic}-{p}.jsonl")));
            }
        }
    };
    produce(first.path());
    let job = job(&broker, "  checkpoints:\n    interval: 300ms\n");
    let mut pod = runtime(&job, 0, 1);
    // Observable: the first run wrote checkpoints.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while checkpoint_count(&job, 0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pod.kill();
    std::fs::remove_dir_all(job.dir.path().join("pod-0/checkpoints")).expect("delete checkpoints");

    // Kafka timestamps are the producer's clock: a millisecond boundary between the halves.
    std::thread::sleep(Duration::from_millis(20));
    let from = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(20));
    produce(second.path());
    let manifest = std::fs::read_to_string(&job.manifest).expect("manifest");
    let manifest = manifest
        .replace(
            "output: { topic: entries }",
            "output: { topic: entries-after }",
        )
        .replace(
            "onMissingCheckpoint: earliest",
            &format!("onMissingCheckpoint: timestamp\n    fromTimestamp: \"{from}\""),
        );
    std::fs::write(&job.manifest, manifest).expect("manifest");
    // Kafka answers offsets-for-times lookups, so the runtime seeks unless told
    // to filter (its path for brokers that cannot look offsets up).
    let pod = match path {
        RecoveryPath::Seek => runtime(&job, 0, 1),
        RecoveryPath::Filter => runtime_with(
            &job,
            0,
            1,
            &["--timestamp-recovery".to_owned(), "filter".to_owned()],
        ),
    };
    let expected = expected_entries(second.path());
    let records = broker.consume_until(
        "entries-after",
        2,
        false,
        Duration::from_secs(300),
        until_distinct(expected),
    );
    stop(pod);
    let log = std::fs::read_to_string(job.dir.path().join("pod-0.log")).unwrap_or_default();
    let skipped: u64 = log
        .lines()
        .find_map(|l| {
            l.split("recovery by timestamp: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of skipped records:\n{log}"));
    match path {
        // Seeking: the lookup lands on the first record of the second half.
        RecoveryPath::Seek => {
            assert!(log.contains("the broker looked the offsets up"), "{log}");
            assert_eq!(skipped, 0, "{log}");
        }
        // Filtering: every record of the first half is read and skipped.
        RecoveryPath::Filter => assert!(skipped >= 9_000, "{skipped} skipped\n{log}"),
    }
    assert_matches_at_least_once(second.path(), &records);
}

#[derive(Clone, Copy)]
enum RecoveryPath {
    Seek,
    Filter,
}

#[test]
fn lost_checkpoints_recover_by_timestamp_seeking_to_the_offsets_the_broker_looks_up() {
    recovery_by_timestamp(RecoveryPath::Seek);
}

#[test]
fn lost_checkpoints_recover_by_timestamp_filtering_out_earlier_records() {
    recovery_by_timestamp(RecoveryPath::Filter);
}

/// Exactly-once with Kafka transactions on a `small`-sized data set (1M
/// records of the built-in generator): two processes, ten SIGKILLs at random moments while input is
/// still arriving, the output read back with `read_committed`: nothing missing
/// and nothing twice.
#[test]
fn exactly_once_through_ten_kills_on_the_small_set_has_no_loss_and_no_duplicates() {
    use rand::{Rng, SeedableRng};
    let data = dataset(1_000_000, 4, 1);
    let expected = expected_entries(&data);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 4);
    let job = job(
        &broker,
        "  delivery: exactlyOnce\n  checkpoints:\n    interval: 300ms\n    retained: 2\n",
    );
    let mut pods = [runtime(&job, 0, 2), runtime(&job, 1, 2)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    for _ in 0..10 {
        // A random moment: the test's input, not a wait for something observable.
        // Ten of them span the load and most of the processing of 1M records.
        std::thread::sleep(Duration::from_millis(rng.random_range(500..3_000)));
        let i = rng.random_range(0..2usize);
        pods[i].kill();
        pods[i] = runtime(&job, i as u32, 2);
    }
    loader.join().expect("loader");
    // On a timeout the comparison below says what is missing.
    let _ = broker.consume_for(
        "entries",
        4,
        true,
        Duration::from_secs(600),
        until_distinct(expected),
    );
    let [a, b] = pods;
    stop(a);
    stop(b);
    let log = std::fs::read_to_string(job.dir.path().join("pod-0.log")).unwrap_or_default();
    assert!(log.contains("transactions initialised"), "{log}");
    let committed = broker.consume_all("entries", 4, true, 0, Duration::from_secs(300));
    assert_exact(&data, &committed);
}

/// The broker itself crashes (SIGKILL) and comes back on the same ports and
/// data while an exactly-once job runs and input still arrives. A runtime
/// process that exits meanwhile is started again, as its StatefulSet would: the
/// committed output is still exact.
#[test]
fn a_broker_killed_and_restarted_mid_run_leaves_the_committed_output_exact() {
    let data = dataset(100_000, 2, 19);
    let expected = expected_entries(&data);
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 2);
    let job = job(
        &broker,
        "  delivery: exactlyOnce\n  checkpoints:\n    interval: 300ms\n",
    );
    let mut pod = runtime(&job, 0, 1);
    // Observable: committed output exists before the crash.
    broker.consume_until("entries", 2, true, Duration::from_secs(120), |_| true);
    broker.kill_and_restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut restarts = 0;
    loop {
        let read = broker.consume_for(
            "entries",
            2,
            true,
            Duration::from_secs(10),
            until_distinct(expected),
        );
        if read.is_ok() {
            break;
        }
        if let Some(status) = pod.0.try_wait().expect("pod status") {
            eprintln!("runtime exited ({status}); started again");
            pod = runtime(&job, 0, 1);
            restarts += 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every entry was committed within 300 s after the broker restart ({restarts} runtime restarts)"
        );
    }
    loader.join().expect("loader");
    stop(pod);
    let committed = broker.consume_all("entries", 2, true, 0, Duration::from_secs(120));
    assert_exact(&data, &committed);
}
