//! One hot key with 200,000 events (copies and conflicting copies among them)
//! under a state cache of a few hundred KiB: its event ids spill to RocksDB,
//! the cache stays within its byte budget, and the output equals the
//! reference's exactly, also when the job restarts from a checkpoint or a
//! savepoint taken in the middle of the key's window.

mod common;

use std::path::{Path, PathBuf};

use common::{T0, imp, play};
use streamjoin_reference::compare::{Options, compare_records};
use streamjoin_reference::dataset::{Dataset, Overrides};
use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::durability::checkpoint::{self, CheckpointManifest};
use streamjoin_runtime::durability::savepoint::{
    self, ProcessManifest, SavepointStore, ShardSummary, StagedShard, StoreSettings,
};
use streamjoin_runtime::engine::runner::{Engine, EngineOptions, ShardIo};
use streamjoin_runtime::engine::shard::ShardSinks;
use streamjoin_runtime::engine::worker::{CheckpointPlan, Progress};
use streamjoin_runtime::io::sink::MemorySink;
use streamjoin_runtime::io::source::FeedHandle;
use streamjoin_runtime::time::watermark::ManualClock;

const EVENTS: usize = 200_000;
/// Event time between two hot events: 200,000 span 2,000 s, in one 4 h window.
const STEP: i64 = 10;
/// The process's cache budget: the hot key's ids spill every ~400.
const BUDGET: usize = 256 << 10;
const DEVICES: [&str; 5] = ["tv", "ios", "android", "web", "other"];

/// An input line with the index of the hot event it was generated at.
struct Line {
    at: usize,
    play: bool,
    text: String,
}

fn hot_impression(i: usize) -> String {
    let i64 = i as i64;
    imp(
        &format!("h{i}"),
        T0 + i64 * STEP,
        7,
        7,
        1 + (i64 * 7919) % 50,
        1 + (i64 * 31) % 13,
        DEVICES[i % 5],
    )
}

/// The hot key's impressions, exact copies of earlier ones (up to 110 s back,
/// so on time under D = 2 min and mostly spilled by then), conflicting copies,
/// plays with copies, and impressions of 500 background keys.
fn hot_key_input(n: usize) -> Vec<Line> {
    let mut out = Vec::new();
    let mut push = |at, play, text| out.push(Line { at, play, text });
    for i in 0..n {
        let t = T0 + i as i64 * STEP;
        push(i, false, hot_impression(i));
        if i % 100 == 50 {
            let key = 1000 + (i as i64 / 100) % 500;
            push(i, false, imp(&format!("b{i}"), t, key, 3, 2, 1, "web"));
        }
        if i % 7 == 3 && i > 50 {
            let j = i - 1 - (i * 7919) % (i - 1).min(11_000);
            push(i, false, hot_impression(j));
        }
        if i % 997 == 500 && i > 25_000 {
            // Same id, other content, later time: the first one stays the event.
            let j = i - 5_000;
            let t = T0 + j as i64 * STEP + 1;
            push(i, false, imp(&format!("h{j}"), t, 7, 7, 99, 99, "tv"));
        }
        if i % 50 == 0 {
            push(
                i,
                true,
                play(&format!("p{i}"), t, 7, 7, "web", i as i64 % 1000),
            );
        }
        if i % 350 == 0 && i >= 350 {
            let j = i - 350;
            let t = T0 + j as i64 * STEP;
            push(
                i,
                true,
                play(&format!("p{j}"), t, 7, 7, "web", j as i64 % 1000),
            );
        }
    }
    out
}

/// Writes the input as a one-partition data set for the reference.
fn write_dataset(lines: &[Line], dir: &Path) {
    let text = |play: bool| {
        let mut s = String::new();
        for l in lines.iter().filter(|l| l.play == play) {
            s.push_str(&l.text);
            s.push('\n');
        }
        s
    };
    std::fs::write(dir.join("impressions-0.jsonl"), text(false)).expect("write impressions");
    std::fs::write(dir.join("plays-0.jsonl"), text(true)).expect("write plays");
}

fn config() -> EngineConfig {
    EngineConfig {
        cache_bytes: BUDGET,
        read_batch: 512,
        ..EngineConfig::default()
    }
}

/// A one-shard engine over in-memory feeds, checkpointing only when told.
struct Job {
    engine: Engine,
    feeds: [FeedHandle; 2],
    entries: MemorySink,
}

fn job(state: &Path, checkpoints: &Path, restore: Option<(PathBuf, CheckpointManifest)>) -> Job {
    let feeds = [FeedHandle::default(), FeedHandle::default()];
    let entries = MemorySink::default();
    let io = ShardIo {
        partition: 0,
        sources: [
            Box::new(feeds[0].source("impressions-0")),
            Box::new(feeds[1].source("plays-0")),
        ],
        sinks: ShardSinks {
            entries: Box::new(entries.clone()),
            late: Box::new(MemorySink::default()),
            dead_letter: Box::new(MemorySink::default()),
            commit: None,
        },
        restore,
    };
    let mut opts = EngineOptions::new(state.to_path_buf());
    opts.clock = ManualClock::new(T0);
    let plan = CheckpointPlan {
        root: checkpoints.to_path_buf(),
        interval_ms: i64::MAX / 2,
        retained: 2,
        metrics: None,
    };
    opts.checkpoints = Some((plan, 0));
    let engine = Engine::new(config(), vec![io], opts).expect("engine");
    Job {
        engine,
        feeds,
        entries,
    }
}

impl Job {
    /// Feeds the lines generated at hot events `from..to`, a slice at a time,
    /// checking the cache's byte budget between slices.
    fn feed(&mut self, lines: &[Line], from: usize, to: usize) {
        let mut slice = lines
            .iter()
            .filter(|l| l.at >= from && l.at < to)
            .peekable();
        while slice.peek().is_some() {
            for l in slice.by_ref().take(5_000) {
                self.feeds[usize::from(l.play)].push(l.text.clone());
            }
            assert_ne!(
                self.engine.run_until_blocked().expect("step"),
                Progress::Done
            );
            let store_bytes: usize = self.engine.shards().map(|s| s.store().cached_bytes()).sum();
            let frozen = self.engine.shards().any(|s| s.store().is_frozen());
            assert!(
                frozen || store_bytes <= BUDGET,
                "cache holds {store_bytes} bytes, budget {BUDGET}"
            );
        }
    }

    fn finish(&mut self) -> Vec<String> {
        for f in &self.feeds {
            f.close();
        }
        assert_eq!(
            self.engine.run_until_blocked().expect("step"),
            Progress::Done
        );
        self.entries.take()
    }

    fn ids_spilled(&self) -> u64 {
        self.engine
            .shards()
            .map(|s| s.store().ids_spilled_total())
            .sum()
    }
}

/// The output and the engine's counters equal the reference's exactly.
fn assert_exact(data: &Path, entries: &[String], engine: &Engine) {
    let ds = Dataset::open(data, Overrides::default()).expect("data set");
    let records: Vec<Vec<u8>> = entries.iter().map(|e| e.clone().into_bytes()).collect();
    let strict = Options {
        strict: true,
        at_least_once: false,
    };
    let report = compare_records(&ds, &records, strict).expect("reference compare");
    assert!(
        report.ok(),
        "reference compare --strict: {}",
        report.render()
    );
    let c = engine.counters();
    let want = &report.counts;
    assert_eq!(
        c.duplicates.iter().sum::<u64>(),
        want.duplicates,
        "duplicates"
    );
    assert_eq!(c.malformed_total(), want.malformed, "malformed");
    assert_eq!(
        want.malformed_by_reason
            .get("conflicting_duplicate")
            .copied(),
        Some(c.malformed_total()),
        "every malformed record is a conflicting copy"
    );
    assert_eq!(c.events, want.events, "distinct events");
    assert_eq!(c.entries_emitted, want.entries, "entries");
    assert_eq!(c.late.iter().sum::<u64>(), 0, "nothing is late");
    assert!(want.duplicates > 25_000 && want.malformed > 100, "{want:?}");
}

struct Setup {
    dir: tempfile::TempDir,
    lines: Vec<Line>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = hot_key_input(EVENTS);
    std::fs::create_dir(dir.path().join("data")).expect("data dir");
    write_dataset(&lines, &dir.path().join("data"));
    Setup { dir, lines }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn a_hot_key_under_a_tiny_cache_budget_spills_its_ids_and_equals_the_reference() {
    let s = setup();
    let mut j = job(&s.path("state"), &s.path("checkpoints"), None);
    j.feed(&s.lines, 0, EVENTS);
    let spilled = j.ids_spilled();
    let out = j.finish();
    assert!(
        spilled > EVENTS as u64 / 2,
        "only {spilled} ids spilled to RocksDB"
    );
    assert_exact(&s.path("data"), &out, &j.engine);
}

/// Runs 60% of the input, begins a checkpoint, runs to 80% while it is written
/// (the output of that stretch is lost with the process), and returns the
/// output up to the checkpoint and the checkpoint.
fn run_to_a_checkpoint(s: &Setup) -> (Vec<String>, PathBuf, CheckpointManifest) {
    let mut first = job(&s.path("state-1"), &s.path("checkpoints"), None);
    first.feed(&s.lines, 0, EVENTS * 6 / 10);
    assert!(
        first.ids_spilled() > 0,
        "the hot key spilled before the checkpoint"
    );
    first.engine.workers[0]
        .begin_checkpoint()
        .expect("begin checkpoint");
    let before = first.entries.take();
    first.feed(&s.lines, EVENTS * 6 / 10, EVENTS * 8 / 10);
    first.engine.workers[0]
        .collect_checkpoints(true)
        .expect("checkpoint written");
    drop(first);
    let (_, dir) = checkpoint::list(&s.path("checkpoints"), 0)
        .expect("list checkpoints")
        .into_iter()
        .next()
        .expect("a checkpoint");
    let manifest = checkpoint::validate(&dir).expect("valid checkpoint");
    (before, dir, manifest)
}

/// Restores from `restore` and reads the rest of the input (from 60%).
fn resume(s: &Setup, before: Vec<String>, restore: (PathBuf, CheckpointManifest)) {
    let mut second = job(&s.path("state-2"), &s.path("checkpoints-2"), Some(restore));
    second.feed(&s.lines, EVENTS * 6 / 10, EVENTS);
    let mut out = before;
    out.extend(second.finish());
    assert_exact(&s.path("data"), &out, &second.engine);
}

#[test]
fn a_hot_key_with_spilled_ids_is_exact_across_a_checkpoint_and_restore() {
    let s = setup();
    let (before, dir, manifest) = run_to_a_checkpoint(&s);
    resume(&s, before, (dir, manifest));
}

#[test]
fn a_hot_key_with_spilled_ids_is_exact_across_a_savepoint_and_restore() {
    let s = setup();
    let (before, dir, manifest) = run_to_a_checkpoint(&s);
    let location = s.path("savepoints");
    std::fs::create_dir(&location).expect("savepoint dir");
    let store = SavepointStore::open(
        location.to_str().expect("utf-8 path"),
        &StoreSettings::default(),
    )
    .expect("savepoint location")
    .child("sp-1");
    let summary = ShardSummary {
        shard: 0,
        checkpoint_id: manifest.id,
        inputs: manifest.inputs,
        job_watermark: manifest.job_watermark,
        live_entries: manifest.live_entries,
        bytes: 0,
    };
    let process = ProcessManifest {
        format_version: savepoint::FORMAT_VERSION,
        id: "sp-1".into(),
        created_ms: manifest.created_ms,
        ordinal: 0,
        replicas: 1,
        partitions: 1,
        shards: vec![summary],
    };
    let staged = StagedShard { dir, manifest };
    let downloaded = s.path("downloaded");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let manifest = rt.block_on(async {
        store.upload_shard(&staged).await.expect("upload shard");
        store
            .write_process_manifest(&process)
            .await
            .expect("process manifest");
        store
            .download_shard(0, &downloaded)
            .await
            .expect("download shard")
    });
    resume(&s, before, (downloaded, manifest));
}

#[test]
fn the_hot_keys_state_is_gone_from_rocksdb_once_its_entry_is_emitted() {
    let s = setup();
    let mut j = job(&s.path("state"), &s.path("checkpoints"), None);
    j.feed(&s.lines, 0, EVENTS / 4);
    assert!(j.ids_spilled() > 0);
    j.finish();
    for shard in j.engine.shards() {
        assert_eq!(shard.store().db_entry_count().expect("count"), 0);
        assert_eq!(
            shard.store().db_id_count().expect("ids"),
            0,
            "spilled ids are deleted with their entry"
        );
    }
}
