//! Data sets for the flows: the second half of a generated set as input that
//! keeps arriving, a set without some of its records (an input gone quiet), and
//! sets whose event times follow the wall clock (a region failover, where the
//! watermark is force-advanced to the wall clock).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::trickle::Part;

pub const PARTITIONS: u32 = 4;
pub const STREAMS: [&str; 2] = ["impressions", "plays"];

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every partition's lines of `stream` in `data`, split where the harness splits
/// them (`S3Job::start` produces the first half): (first, second) per partition.
pub fn halves(data: &Path, stream: &str) -> Vec<(Vec<String>, Vec<String>)> {
    (0..PARTITIONS)
        .map(|p| {
            let mut all = lines(&data.join(format!("{stream}-{p}.jsonl")));
            let second = all.split_off(all.len() / 2);
            (all, second)
        })
        .collect()
}

/// The second half of `streams` of `data`, to produce to the topics of the same names.
pub fn second_half(data: &Path, streams: &[&str]) -> Vec<Part> {
    streams
        .iter()
        .flat_map(|stream| {
            halves(data, stream)
                .into_iter()
                .enumerate()
                .map(|(p, (_, second))| Part {
                    topic: (*stream).to_owned(),
                    partition: p as i32,
                    lines: second,
                })
        })
        .collect()
}

/// All of `data`'s lines of `stream` to `topic`, partition by partition.
pub fn whole(data: &Path, stream: &str, topic: &str) -> Vec<Part> {
    (0..PARTITIONS)
        .map(|p| Part {
            topic: topic.to_owned(),
            partition: p as i32,
            lines: lines(&data.join(format!("{stream}-{p}.jsonl"))),
        })
        .collect()
}

/// A data set at `dst` whose files hold `files(stream, partition)` lines, with
/// `src`'s manifest (parameters) and the record counts of the new files.
pub fn derived(src: &Path, dst: &Path, files: impl Fn(&str, u32) -> Vec<String>) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    let text = std::fs::read_to_string(src.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}/manifest.json: {e}", src.display()));
    let mut manifest: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}/manifest.json: {e}", src.display()));
    let mut total = 0;
    for stream in STREAMS {
        for p in 0..PARTITIONS {
            let name = format!("{stream}-{p}.jsonl");
            let body = files(stream, p);
            total += body.len();
            manifest["files"][&name]["records"] = body.len().into();
            let mut text = body.join("\n");
            text.push('\n');
            std::fs::write(dst.join(&name), text)
                .unwrap_or_else(|e| panic!("{}: {e}", dst.join(&name).display()));
        }
    }
    manifest["counts"]["records"] = total.into();
    std::fs::write(dst.join("manifest.json"), manifest.to_string())
        .unwrap_or_else(|e| panic!("{}/manifest.json: {e}", dst.display()));
    dst.to_path_buf()
}

/// `a`'s records followed by `b`'s, file by file (`b`'s event times come after `a`'s).
pub fn concatenated(a: &Path, b: &Path, dst: &Path) -> PathBuf {
    derived(a, dst, |stream, p| {
        let name = format!("{stream}-{p}.jsonl");
        let mut all = lines(&a.join(&name));
        all.extend(lines(&b.join(&name)));
        all
    })
}

/// What a generated set is made of.
pub struct Shape {
    pub seed: u64,
    pub events: u64,
    pub start_ms: i64,
    pub span_ms: i64,
    pub window_ms: i64,
    pub max_disorder_ms: i64,
}

/// A set of the runtime's generator at `dst`, without late records (a record
/// late here is late because of the flow, which the test wants to see).
pub fn generated(shape: &Shape, dst: &Path) -> PathBuf {
    let hours = shape.span_ms as f64 / 3_600_000.0;
    let out = Command::new(crate::data::runtime_binary())
        .args(["generate", "--out"])
        .arg(dst)
        .args(["--events", &shape.events.to_string()])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(["--seed", &shape.seed.to_string()])
        .args(["--start-ms", &shape.start_ms.to_string()])
        .args(["--hours", &hours.to_string()])
        .args(["--window-ms", &shape.window_ms.to_string()])
        .args(["--max-disorder-ms", &shape.max_disorder_ms.to_string()])
        .args(["--late-rate", "0"])
        .output()
        .unwrap_or_else(|e| panic!("streamjoin-runtime generate: {e}"));
    assert!(
        out.status.success(),
        "streamjoin-runtime generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dst.to_path_buf()
}

/// The largest event time in `stream`'s files of `data` (ms).
pub fn max_event_time(data: &Path, stream: &str, first_half_only: bool) -> i64 {
    halves(data, stream)
        .into_iter()
        .flat_map(|(first, second)| {
            let mut l = first;
            if !first_half_only {
                l.extend(second);
            }
            l
        })
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok()?["event_time"].as_i64())
        .max()
        .unwrap_or(i64::MIN)
}
