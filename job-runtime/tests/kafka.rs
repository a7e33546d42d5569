//! The runtime against a real Kafka-protocol broker: data sets of the
//! reference generator loaded into topics, runtime processes started as a pod
//! would start them, the output topic read back and compared with the oracle.

mod broker;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use broker::{Broker, Kind};

fn bench_dir() -> PathBuf {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest_dir).join("../../shared/bench")
}

fn dataset(events: u64, partitions: u32, seed: u64) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("gen-{events}-{partitions}-{seed}"));
    if dir.join("manifest.json").exists() {
        return dir;
    }
    let tmp = tempfile::tempdir_in(root).expect("tempdir");
    let status = Command::new("python3")
        .arg(bench_dir().join("gen_events.py"))
        .arg("--out")
        .arg(tmp.path())
        .args(["--events", &events.to_string()])
        .args(["--partitions", &partitions.to_string()])
        .args(["--seed", &seed.to_string()])
        .status()
        .expect("python3 runs the generator");
    assert!(status.success(), "gen_events.py failed");
    let _ = std::fs::rename(tmp.keep(), &dir);
    dir
}

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

fn job(broker: &Broker, extra: &str) -> Job {
    let dir = tempfile::tempdir().expect("job dir");
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
    idleTimeout: 1s
    inactivityTimeout: 2s
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

fn runtime(job: &Job, ordinal: u32, replicas: u32) -> Child {
    let data_dir = job.dir.path().join(format!("pod-{ordinal}"));
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
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("the runtime starts")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("runtime exits");
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
    let data = dataset(100_000, 4, 11);
    let broker = Broker::start(Kind::Tansu);
    load(&broker, &data, 4);
    let job = job(&broker, "");
    let a = runtime(&job, 0, 2);
    let b = runtime(&job, 1, 2);
    let expected = expected_entries(&data);
    let records = broker.consume_until(
        "entries",
        4,
        false,
        Duration::from_secs(300),
        until_distinct(expected),
    );
    stop(a);
    stop(b);
    let report = oracle_compare(&data, &records, &["--at-least-once"]);
    assert!(
        report.contains(" 0 missing") && report.contains(" 0 differing"),
        "{report}"
    );
}
