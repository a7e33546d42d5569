//! Data sets of the runtime's built-in generator (`streamjoin-runtime
//! generate`) and their truth from the project's reference implementation
//! (`streamjoin-reference`), shared by the test binaries and benchmarks.
//! Nothing here needs anything outside this repository.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use streamjoin_reference::compare::{Options, compare_records};
use streamjoin_reference::contract::Counts;
use streamjoin_reference::dataset::{Dataset, Overrides};

/// The runtime binary of this build: Cargo names it for the runtime's own
/// tests and benchmarks; other packages' tests find it beside their own binary
/// (`target/release/deps/..` -> `target/release/streamjoin-runtime`).
pub fn runtime_binary() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_streamjoin-runtime") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lies in target/<profile>/deps");
    let bin = release.join("streamjoin-runtime");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace --release --all-targets)",
        bin.display()
    );
    bin
}

/// Generates (once per machine and parameters) a data set with the runtime's
/// built-in generator: `events` records over `partitions`, seeded.
pub fn dataset(events: u64, partitions: u32, seed: u64) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // The generator's version is part of the name: a cached set of another
    // version is not reused.
    let dir = root.join(format!("rtgen-v3-{events}-{partitions}-{seed}"));
    if dir.join("manifest.json").exists() {
        return dir;
    }
    let tmp = tempfile::tempdir_in(root).expect("tempdir");
    let out = Command::new(runtime_binary())
        .args(["generate", "--out"])
        .arg(tmp.path())
        .args(["--events", &events.to_string()])
        .args(["--partitions", &partitions.to_string()])
        .args(["--seed", &seed.to_string()])
        .output()
        .expect("streamjoin-runtime generate runs");
    assert!(
        out.status.success(),
        "streamjoin-runtime generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test process may have won the race; either copy is identical.
    let _ = std::fs::rename(tmp.keep(), &dir);
    dir
}

fn open(data: &Path) -> Dataset {
    Dataset::open(data, Overrides::default())
        .unwrap_or_else(|e| panic!("data set {}: {e:#}", data.display()))
}

/// The reference's input counters of a data set (records, malformed, late,
/// duplicates, events, entries, keys, malformed_by_reason).
pub fn expected_counts(data: &Path) -> Counts {
    streamjoin_reference::expected::counts(&open(data))
        .unwrap_or_else(|e| panic!("reference counts of {}: {e:#}", data.display()))
}

/// The number of entries the reference expects for a data set.
pub fn expected_entries(data: &Path) -> usize {
    expected_counts(data).entries as usize
}

/// The reference's comparison of entries read back from an output topic (one
/// record per entry, in any order) with the data set `data`, with `extra`
/// options `--strict` and/or `--at-least-once` (as the external oracle's);
/// its report. Panics when the reference finds a difference.
pub fn oracle_compare(data: &Path, records: &[Vec<u8>], extra: &[&str]) -> String {
    for flag in extra {
        assert!(
            ["--strict", "--at-least-once"].contains(flag),
            "unknown compare option {flag}"
        );
    }
    let opts = Options {
        strict: extra.contains(&"--strict"),
        at_least_once: extra.contains(&"--at-least-once"),
    };
    let report = compare_records(&open(data), records, opts)
        .unwrap_or_else(|e| panic!("reference compare with {}: {e:#}", data.display()));
    let text = report.render();
    assert!(report.ok(), "reference: {text}");
    text
}
