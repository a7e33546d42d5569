//! The reference generator and oracle (`../shared/bench`) and the data sets
//! they make, shared by the test binaries.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn bench_dir() -> PathBuf {
    // The runner's value: a test binary reused from a shared target directory
    // may have been compiled in another checkout.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = Path::new(&manifest_dir).join("../../shared/bench");
    assert!(
        dir.join("oracle.py").exists(),
        "the reference generator and oracle are expected at {} (the shared/ folder beside the repository)",
        dir.display()
    );
    dir
}

/// Generates (once per machine and parameters) a data set with the reference generator.
pub fn dataset(events: u64, partitions: u32, seed: u64) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("gen-{events}-{partitions}-{seed}"));
    if dir.join("manifest.json").exists() {
        return dir;
    }
    let tmp = tempfile::tempdir_in(root).expect("tempdir");
    let status = Command::new("python3")
        .arg(bench_dir().join("gen_events.py"))
        .args(["--out"])
        .arg(tmp.path())
        .args([
            "--events",
            &events.to_string(),
            "--partitions",
            &partitions.to_string(),
        ])
        .args(["--seed", &seed.to_string()])
        .status()
        .expect("python3 runs the generator");
    assert!(status.success(), "gen_events.py failed");
    // Another test process may have won the race; either copy is identical.
    let _ = std::fs::rename(tmp.keep(), &dir);
    dir
}

/// `oracle.py compare` of entries read back from an output topic (one record per
/// entry, in any order) against the data set `data`, with `extra` options such as
/// `--strict`; its report. Panics when the oracle finds a difference.
pub fn oracle_compare(data: &Path, records: &[Vec<u8>], extra: &[&str]) -> String {
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
        .expect("python3 runs the oracle");
    let report = String::from_utf8_lossy(&res.stdout).into_owned();
    assert!(res.status.success(), "oracle: {report}");
    report
}
