//! A single-threaded engine over in-memory feeds with a manual clock, so tests
//! decide exactly what arrives when and how much processing time passes.
#![allow(dead_code)]

use std::sync::Arc;

use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::engine::runner::{Engine, EngineOptions, ShardIo};
use streamjoin_runtime::engine::shard::ShardSinks;
use streamjoin_runtime::engine::worker::Progress;
use streamjoin_runtime::io::sink::MemorySink;
use streamjoin_runtime::io::source::FeedHandle;
use streamjoin_runtime::model::counters::ShardCounters;
use streamjoin_runtime::time::watermark::ManualClock;

pub const T0: i64 = 1_700_000_000_000;
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;

pub struct Harness {
    pub engine: Engine,
    /// Per partition: impressions feed, plays feed.
    pub feeds: Vec<[FeedHandle; 2]>,
    pub entries: MemorySink,
    pub late: MemorySink,
    pub dead: MemorySink,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

pub fn config() -> EngineConfig {
    EngineConfig::default()
}

pub fn harness(partitions: u32, cfg: EngineConfig) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let (entries, late, dead) = (
        MemorySink::default(),
        MemorySink::default(),
        MemorySink::default(),
    );
    let mut feeds = Vec::new();
    let mut io = Vec::new();
    for p in 0..partitions {
        let pair = [FeedHandle::default(), FeedHandle::default()];
        io.push(ShardIo {
            partition: p,
            sources: [
                Box::new(pair[0].source(format!("impressions-{p}"))),
                Box::new(pair[1].source(format!("plays-{p}"))),
            ],
            sinks: ShardSinks {
                entries: Box::new(entries.clone()),
                late: Box::new(late.clone()),
                dead_letter: Box::new(dead.clone()),
                commit: None,
            },
            restore: None,
        });
        feeds.push(pair);
    }
    let mut opts = EngineOptions::new(dir.path().join("state"));
    opts.clock = clock.clone();
    let engine = Engine::new(cfg, io, opts).expect("engine");
    Harness {
        engine,
        feeds,
        entries,
        late,
        dead,
        clock,
        _dir: dir,
    }
}

impl Harness {
    pub fn imp(&self, p: usize, line: String) {
        self.feeds[p][0].push(line);
    }
    pub fn play(&self, p: usize, line: String) {
        self.feeds[p][1].push(line);
    }
    pub fn close_all(&self) {
        for f in self.feeds.iter().flatten() {
            f.close();
        }
    }
    pub fn run(&mut self) -> Progress {
        self.engine.run_until_blocked().expect("engine step")
    }
    /// Closes every input and runs to the end of input.
    pub fn finish(&mut self) -> Vec<String> {
        self.close_all();
        assert_eq!(self.run(), Progress::Done);
        self.entries.take()
    }
    pub fn counters(&self) -> ShardCounters {
        self.engine.counters()
    }
    pub fn watermark(&self) -> i64 {
        self.engine.board.job_watermark()
    }
}

pub fn imp(
    id: &str,
    t: i64,
    profile: i64,
    title: i64,
    row: i64,
    rank: i64,
    device: &str,
) -> String {
    format!(
        r#"{{"type":"impression","event_id":"{id}","event_time":{t},"profile_id":{profile},"title_id":{title},"row":{row},"rank":{rank},"device":"{device}"}}"#
    )
}

pub fn play(id: &str, t: i64, profile: i64, title: i64, device: &str, duration: i64) -> String {
    format!(
        r#"{{"type":"play","event_id":"{id}","event_time":{t},"profile_id":{profile},"title_id":{title},"device":"{device}","duration_ms":{duration}}}"#
    )
}

pub fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).expect("output line is JSON")
}
