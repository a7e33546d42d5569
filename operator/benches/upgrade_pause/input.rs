//! The benchmark's input: a set of the runtime's generator whose join window
//! (5 h) covers most of its span (6 h), so that after the first 90% of every
//! partition's records most entries are still open, and the last 10%, sent
//! while the upgrade runs, close the oldest ones: output keeps flowing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::s3_job::Feed;
use crate::s3_job::PARTITIONS;

pub const EVENTS: u64 = 3_200_000;
const HOURS: u32 = 6;
/// The job's `spec.join.window` and the manifest's `window_ms` (the reference's).
pub const WINDOW: &str = "5h";
const WINDOW_MS: i64 = 5 * 3_600_000;
const SEED: u64 = 16;
/// Per mille of every file sent before the upgrade.
const PRELOAD_PER_MILLE: usize = 900;
/// The job's input topics (the harness's own `impressions`/`plays` carry its
/// small data set, which this job does not read).
pub const TOPICS: [(&str, &str); 2] = [
    ("impressions", "bench-impressions"),
    ("plays", "bench-plays"),
];

/// The generated set and its two parts, `<dir>/preload/` and `<dir>/feed/`.
pub struct BigSet {
    pub data: PathBuf,
    pub preload: PathBuf,
    pub feed: PathBuf,
}

/// Generates the set once per machine (under the target's tmp dir) and cuts it.
pub fn big_set() -> BigSet {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("upgrade-pause-v1-{EVENTS}-{HOURS}h-{SEED}"));
    let data = root.join("data");
    if !data.join("manifest.json").exists() {
        let started = Instant::now();
        generate(&root.join("tmp"));
        std::fs::rename(root.join("tmp"), &data)
            .unwrap_or_else(|e| panic!("naming the data set {}: {e}", data.display()));
        eprintln!(
            "upgrade_pause: generated {EVENTS} records in {:?}",
            started.elapsed()
        );
    }
    let set = BigSet {
        preload: root.join("preload"),
        feed: root.join("feed"),
        data,
    };
    if !set
        .feed
        .join(format!("plays-{}.jsonl", PARTITIONS - 1))
        .exists()
    {
        cut(&set);
    }
    set
}

fn generate(dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    }
    let out = Command::new(crate::data::runtime_binary())
        .args(["generate", "--out"])
        .arg(dst)
        .args(["--events", &EVENTS.to_string()])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--hours", &HOURS.to_string()])
        .args(["--window-ms", &WINDOW_MS.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("streamjoin-runtime generate: {e}"));
    assert!(
        out.status.success(),
        "streamjoin-runtime generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file cut at `PRELOAD_PER_MILLE` of its lines.
fn cut(set: &BigSet) {
    for dir in [&set.preload, &set.feed] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    for p in 0..PARTITIONS {
        for (stream, _) in TOPICS {
            let name = format!("{stream}-{p}.jsonl");
            let path = set.data.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let lines: Vec<&str> = text.lines().collect();
            let (first, rest) = lines.split_at(lines.len() * PRELOAD_PER_MILLE / 1000);
            for (dir, part) in [(&set.preload, first), (&set.feed, rest)] {
                let mut body = part.join("\n");
                body.push('\n');
                let dst = dir.join(&name);
                std::fs::write(&dst, body).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
            }
        }
    }
}

/// Creates the input topics and sends `dir`'s files to them at once; how many
/// records and how long it took.
pub fn send_all(broker: &Broker, dir: &Path) -> (u64, Duration) {
    let started = Instant::now();
    for (_, topic) in TOPICS {
        broker.create_topic(topic, PARTITIONS);
    }
    let sent = Feed::start_to(&broker.bootstrap, dir, PARTITIONS, Duration::ZERO, TOPICS).finish();
    (sent, started.elapsed())
}
