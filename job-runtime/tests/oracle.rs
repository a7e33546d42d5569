//! Replays of the built-in generator's data sets compared with the project's
//! reference implementation (`streamjoin-reference`): the streaming output
//! must equal the batch truth exactly (`--strict`), counters included,
//! whatever the thread count, read batch size or state-cache pressure.

use std::path::Path;

mod data;

use data::dataset;
use streamjoin_reference::compare::{Options, compare_path};
use streamjoin_reference::counters;
use streamjoin_reference::dataset::{Dataset, Overrides};
use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::tools::replay::{ReplayOptions, SUMMARY_FILE, replay};

fn run_and_compare(input: &Path, cfg: EngineConfig, threads: usize) {
    let out = tempfile::tempdir().expect("tempdir");
    let summary = replay(
        cfg,
        ReplayOptions {
            input: input.to_path_buf(),
            output: out.path().to_path_buf(),
            threads,
            state_dir: None,
            keep_state: false,
            metrics: None,
        },
    )
    .expect("replay");
    assert_eq!(summary.live_entries_at_end, 0);
    assert!(
        !out.path().join(".state").exists(),
        "state directory removed at the end"
    );
    let ds = Dataset::open(input, Overrides::default()).expect("data set");
    let strict = Options {
        strict: true,
        at_least_once: false,
    };
    let report = compare_path(&ds, out.path(), strict).expect("reference compare");
    let text = report.render();
    assert!(report.ok(), "reference compare --strict failed:\n{text}");
    assert!(
        report.summary_line().contains(
            " 0 missing, 0 unexpected, 0 differing, 0 duplicates, 0 tolerated, 0 late-accepted"
        ),
        "{text}"
    );
    let summary_path = out.path().join(SUMMARY_FILE);
    let reported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).expect("summary")).expect("json");
    let check = counters::check(&report.counts, &reported).expect("counters");
    assert_eq!(
        check.differing, 0,
        "summary counters differ from the data set:\n{}",
        check.text
    );
}

#[test]
fn replay_equals_the_reference_exactly_with_one_thread() {
    run_and_compare(&dataset(200_000, 4, 7), EngineConfig::default(), 1);
}

#[test]
fn replay_equals_the_reference_with_four_threads_and_small_batches() {
    let cfg = EngineConfig {
        read_batch: 64,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(200_000, 4, 7), cfg, 4);
}

#[test]
fn replay_equals_the_reference_with_two_threads_and_large_batches() {
    let cfg = EngineConfig {
        read_batch: 5_000,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(200_000, 4, 7), cfg, 2);
}

#[test]
fn replay_equals_the_reference_reading_one_record_per_turn() {
    let cfg = EngineConfig {
        read_batch: 1,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(50_000, 3, 11), cfg, 3);
}

#[test]
fn replay_equals_the_reference_when_state_spills_to_rocksdb() {
    // A tiny entry cache and reorder budget force every RocksDB path.
    let cfg = EngineConfig {
        cache_entries: 64,
        pending_in_memory: 256,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(50_000, 3, 11), cfg, 2);
}

#[test]
fn replay_equals_the_reference_with_every_entry_written_through() {
    let cfg = EngineConfig {
        cache_entries: 0,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(20_000, 2, 5), cfg, 1);
}
