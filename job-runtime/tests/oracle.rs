//! Replays of the reference generator's data compared with the reference
//! oracle (`../shared/bench`): the streaming output must equal the batch truth,
//! whatever the thread count, read batch size or state-cache pressure.

use std::path::Path;
use std::process::Command;

mod data;

use data::{bench_dir, dataset};
use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::tools::replay::{ReplayOptions, SUMMARY_FILE, replay};

fn oracle(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(bench_dir().join("oracle.py"))
        .args(args)
        .output()
        .expect("python3 runs the oracle");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

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
    let (ok, text) = oracle(&[
        "compare",
        "--strict",
        "--in",
        input.to_str().expect("utf8 path"),
        "--actual",
        out.path().to_str().expect("utf8 path"),
    ]);
    let last = text.lines().last().unwrap_or_default().to_string();
    assert!(ok, "oracle compare --strict failed:\n{text}");
    assert!(
        last.contains(
            " 0 missing, 0 unexpected, 0 differing, 0 duplicates, 0 tolerated, 0 late-accepted"
        ),
        "{last}"
    );
    let summary_path = out.path().join(SUMMARY_FILE);
    let (ok, text) = oracle(&[
        "counts",
        "--in",
        input.to_str().expect("utf8 path"),
        "--counters",
        summary_path.to_str().expect("utf8 path"),
    ]);
    assert!(ok, "summary counters differ from the data set:\n{text}");
    assert!(text.contains("0 differing"), "{text}");
}

#[test]
fn replay_equals_the_oracle_exactly_with_one_thread() {
    run_and_compare(&dataset(200_000, 4, 7), EngineConfig::default(), 1);
}

#[test]
fn replay_equals_the_oracle_with_four_threads_and_small_batches() {
    let cfg = EngineConfig {
        read_batch: 64,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(200_000, 4, 7), cfg, 4);
}

#[test]
fn replay_equals_the_oracle_with_two_threads_and_large_batches() {
    let cfg = EngineConfig {
        read_batch: 5_000,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(200_000, 4, 7), cfg, 2);
}

#[test]
fn replay_equals_the_oracle_reading_one_record_per_turn() {
    let cfg = EngineConfig {
        read_batch: 1,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(50_000, 3, 11), cfg, 3);
}

#[test]
fn replay_equals_the_oracle_when_state_spills_to_rocksdb() {
    // A tiny entry cache and reorder budget force every RocksDB path.
    let cfg = EngineConfig {
        cache_entries: 64,
        pending_in_memory: 256,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(50_000, 3, 11), cfg, 2);
}

#[test]
fn replay_equals_the_oracle_with_every_entry_written_through() {
    let cfg = EngineConfig {
        cache_entries: 0,
        ..EngineConfig::default()
    };
    run_and_compare(&dataset(20_000, 2, 5), cfg, 1);
}
