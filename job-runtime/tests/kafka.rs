//! The runtime against a real Kafka-protocol broker: data sets of the
//! reference generator loaded into topics, runtime processes started as a pod
//! would start them, the output topic read back and compared with the oracle.

mod broker;
mod data;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use broker::{Broker, Kind};
use data::{bench_dir, dataset};

fn expected_entries(data: &Path) -> usize {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    m["counts"]["expected_entries"]
        .as_u64()
        .expect("expected_entries") as usize
}

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
        .env("RUST_LOG", "info")
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

fn oracle_compare(data: &Path, records: &[Vec<u8>], extra: &[&str]) -> String {
    let out = tempfile::tempdir().expect("out dir");
    let mut text = Vec::new();
    for r in records {
        text.extend_from_slice(r);
        text.push(b'\n');
    }
    std::fs::write(out.path().join("entries.jsonl"), text).expect("write entries");
    let res = Command::new("python3")
        .arg(bench_dir().join("oracle.py"))
        .args(["compare", "--in"])
        .arg(data)
        .arg("--actual")
        .arg(out.path())
        .args(extra)
        .output()
        .expect("oracle runs");
    let report = String::from_utf8_lossy(&res.stdout).into_owned();
    assert!(res.status.success(), "oracle: {report}");
    report
}

#[test]
fn two_processes_through_tansu_match_the_oracle() {
    // STREAMJOIN_KAFKA_SMALL=1 runs the full `small` data set of WORKLOAD.md instead.
    let data = if std::env::var_os("STREAMJOIN_KAFKA_SMALL").is_some() {
        dataset(1_000_000, 4, 1)
    } else {
        dataset(100_000, 4, 11)
    };
    let broker = Broker::start(Kind::Tansu);
    load(&broker, &data, 4);
    let job = job(&broker, "");
    let a = runtime(&job, 0, 2);
    let b = runtime(&job, 1, 2);
    let records = read_entries(&broker, &data, 4);
    stop(a);
    stop(b);
    assert_matches_at_least_once(&data, &records);
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
    let broker = Broker::start(Kind::Tansu);
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
    let broker = Broker::start(Kind::Tansu);
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
    let broker = Broker::start(Kind::Tansu);
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
