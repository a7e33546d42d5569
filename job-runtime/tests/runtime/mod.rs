//! Runtime processes against a test's Kafka broker, as a pod starts them: the
//! job's directory (manifest, admin token, each pod's data and log), the
//! processes, their admin API as the operator calls it, and the loaders that
//! put a data set into the input topics. Shared by the `kafka` and `kafka_s3`
//! test binaries.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::data::oracle_compare;

pub const TOKEN: &str = "test-admin-token-0123456789abcdef";

const TOPICS: [&str; 5] = ["impressions", "plays", "entries", "dead-letter", "late"];

/// A job's directory, kept when the test fails so its logs can be read.
pub struct Job {
    pub manifest: PathBuf,
    pub dir: tempfile::TempDir,
    /// Variables every pod gets, after the defaults.
    env: Vec<(String, String)>,
}

impl Job {
    /// A job `name` on the broker's five topics, `extra` appended to its spec.
    pub fn new(broker: &Broker, name: &str, extra: &str) -> Job {
        // Under the target's temporary directory, so a failed run's logs can be read.
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("job dir");
        let manifest = dir.path().join("job.yaml");
        std::fs::write(
            &manifest,
            format!(
                r#"apiVersion: streamjoin.dev/v1alpha1
kind: StreamJoinJob
metadata:
  name: {name}
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
        Job {
            manifest,
            dir,
            env: Vec::new(),
        }
    }

    /// Every pod gets `name=value` in its environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Job {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The log of pod `ordinal` (empty before it started).
    pub fn log(&self, ordinal: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("pod-{ordinal}.log")))
            .unwrap_or_default()
    }

    /// Every pod's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.dir.path()).expect("job dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "log") {
                out.push_str(&std::fs::read_to_string(&p).expect("log"));
            }
        }
        out
    }

    /// Process `ordinal` of `replicas`, with `extra` arguments.
    pub fn pod(&self, ordinal: u32, replicas: u32, extra: &[String]) -> Pod {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("pod-{ordinal}.log")))
            .expect("log file");
        Command::new(env!("CARGO_BIN_EXE_streamjoin-runtime"))
            .args(["run", "--job"])
            .arg(&self.manifest)
            .args([
                "--ordinal",
                &ordinal.to_string(),
                "--replicas",
                &replicas.to_string(),
            ])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("pod-{ordinal}")))
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(log)
            .spawn()
            .map(Pod)
            .expect("the runtime starts")
    }

    /// A pod with an admin API and the admin token, restoring from
    /// `restore_from` if given. The admin endpoint binds port 0 and reports the
    /// port it got: a port picked beforehand could be taken by a client
    /// connection before the process binds it.
    pub fn pod_with_admin(
        &self,
        ordinal: u32,
        replicas: u32,
        restore_from: Option<&str>,
    ) -> (Pod, Admin) {
        let token_file = self.dir.path().join("admin-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
        let addr_file = self.dir.path().join(format!("pod-{ordinal}.admin-addr"));
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
        let mut pod = self.pod(ordinal, replicas, &args);
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                break addr.trim().to_owned();
            }
            if let Some(status) = pod.0.try_wait().expect("pod status") {
                panic!(
                    "runtime {ordinal} exited before its admin endpoint listened ({status}); log: {}",
                    self.dir.path().join(format!("pod-{ordinal}.log")).display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "runtime {ordinal}: no admin endpoint after 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (pod, Admin::new(&addr, TOKEN))
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Keep a failed run's manifests, checkpoints and logs.
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tmp"));
            eprintln!("job directory kept: {}", kept.keep().display());
        }
    }
}

/// A runtime process, killed if the test ends without stopping it.
pub struct Pod(pub Child);

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Pod {
    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// SIGTERM, and a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let status = self.0.wait().expect("runtime exits");
        assert!(status.success(), "runtime exited with {status}");
    }
}

/// A runtime process's admin API, as the operator calls it.
pub struct Admin {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(addr: &str, token: &str) -> Admin {
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

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match self.agent.get(format!("{}{path}", self.base)).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
            ),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    pub fn post(
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
    pub fn wait_ready(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (code, status) = self.get("/v1/status");
            if code == 200 {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not ready ({code})",
                self.base
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The number of shards the process owns, once it is ready.
    pub fn owned_shards(&self) -> usize {
        self.wait_ready()["shards"]
            .as_array()
            .expect("shards")
            .len()
    }

    pub fn trigger_savepoint(&self, id: &str, stop: bool) {
        let (code, body) = self.post(
            "/v1/savepoints",
            Some(&self.token.clone()),
            serde_json::json!({ "id": id, "stop": stop }),
        );
        assert_eq!(code, 202, "{body}");
        assert_eq!(body["id"], id);
    }

    /// Polls the savepoint until it completed or failed; what the admin API says.
    pub fn savepoint_outcome(&self, id: &str) -> serde_json::Value {
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
    pub fn savepoint_path(&self, id: &str) -> String {
        let info = self.savepoint_outcome(id);
        assert_eq!(info["state"], "completed", "savepoint {id} failed: {info}");
        info["path"].as_str().expect("path").to_owned()
    }
}

/// Takes savepoint `id` on every process (the same id, as the operator does);
/// its one location.
pub fn savepoint(pods: &[(Pod, Admin)], id: &str, stop: bool) -> String {
    for (_, admin) in pods {
        admin.trigger_savepoint(id, stop);
    }
    let paths: HashSet<String> = pods.iter().map(|(_, a)| a.savepoint_path(id)).collect();
    assert_eq!(
        paths.len(),
        1,
        "every process writes to the same place: {paths:?}"
    );
    paths.into_iter().next().expect("one path")
}

/// Takes a stop-with-savepoint on every process, then stops them; the
/// savepoint's location.
pub fn stop_with_savepoint(pods: Vec<(Pod, Admin)>, id: &str) -> String {
    let path = savepoint(&pods, id, true);
    for (_, admin) in &pods {
        assert_eq!(admin.get("/v1/status").1["stopped"], true);
    }
    for (pod, _) in pods {
        pod.stop();
    }
    path
}

/// The rest of a rescale 2 → 3 → 1 over four partitions, from the two
/// processes' stop-with-savepoint `sp1`: three processes restore it with one
/// owner for each shard and stop with savepoint `rescale-2` once half of the
/// `expected` entries of `data` are out; one process restores that and runs
/// until the `loader` is done and every entry is out; the output is exact.
/// Returns the second savepoint's location.
pub fn rescale_to_three_then_one(
    job: &Job,
    broker: &Broker,
    (data, expected): (&Path, usize),
    sp1: &str,
    loader: std::thread::JoinHandle<()>,
) -> String {
    let three: Vec<_> = (0..3)
        .map(|o| job.pod_with_admin(o, 3, Some(sp1)))
        .collect();
    let owned: usize = three.iter().map(|(_, a)| a.owned_shards()).sum();
    assert_eq!(owned, 4, "each shard has exactly one owner");
    read_distinct(broker, 4, expected / 2);
    let sp2 = stop_with_savepoint(three, "rescale-2");

    let (one, admin) = job.pod_with_admin(0, 1, Some(&sp2));
    assert_eq!(admin.owned_shards(), 4);
    loader.join().expect("loader");
    read_distinct(broker, 4, expected);
    one.stop();
    let records = broker.consume_all("entries", 4, false, expected, Duration::from_secs(120));
    assert_exact(data, &records);
    sp2
}

/// Creates the job's five topics with `partitions` each.
fn create_topics(broker: &Broker, partitions: u32) {
    for topic in TOPICS {
        broker.create_topic(topic, partitions);
    }
}

/// Creates the topics and produces the whole data set before returning.
pub fn load(broker: &Broker, data: &Path, partitions: u32) {
    load_part(broker, data, partitions, 0, 1);
}

/// Produces part `part` of `parts` of every input file before returning; the
/// first part creates the topics.
pub fn load_part(broker: &Broker, data: &Path, partitions: u32, part: usize, parts: usize) {
    if part == 0 {
        create_topics(broker, partitions);
    }
    for p in 0..partitions {
        for topic in ["impressions", "plays"] {
            let file = data.join(format!("{topic}-{p}.jsonl"));
            broker.produce_part(topic, p as i32, &file, part, parts);
        }
    }
}

/// Creates the topics and produces the data set in the background, a slice at
/// a time, so that the runtimes are killed or take savepoints while input is
/// still arriving.
pub fn load_slowly(broker: &Broker, data: &Path, partitions: u32) -> std::thread::JoinHandle<()> {
    create_topics(broker, partitions);
    let bootstrap = broker.bootstrap.clone();
    let data = data.to_path_buf();
    std::thread::spawn(move || {
        use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
        use std::io::BufRead;
        let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            // Retries neither repeat nor reorder the data set.
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        let mut lines: Vec<(&str, i32, Vec<Vec<u8>>)> = Vec::new();
        for p in 0..partitions {
            for topic in ["impressions", "plays"] {
                let f = std::fs::File::open(data.join(format!("{topic}-{p}.jsonl"))).expect("file");
                let recs = std::io::BufReader::new(f)
                    .split(b'\n')
                    .map(|l| l.expect("line"))
                    .collect();
                lines.push((topic, p as i32, recs));
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

/// Counts distinct records (an identical repeat counts once) up to `n`.
pub fn until_distinct(n: usize) -> impl FnMut(&[u8]) -> bool {
    let mut seen = HashSet::new();
    move |r| {
        seen.insert(r.to_vec());
        seen.len() >= n
    }
}

/// Reads the output topic until `n` distinct entries arrived (repeats allowed).
pub fn read_distinct(broker: &Broker, partitions: u32, n: usize) -> Vec<Vec<u8>> {
    broker.consume_until(
        "entries",
        partitions,
        false,
        Duration::from_secs(300),
        until_distinct(n),
    )
}

/// Exactly once: the reference's `--strict` comparison finds nothing missing,
/// unexpected, differing or repeated.
pub fn assert_exact(data: &Path, records: &[Vec<u8>]) {
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
