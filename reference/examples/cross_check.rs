//! The project's reference implementation against the external oracle
//! (`../shared/bench/oracle.py`), when it is present: on the `small` set, on
//! sets with heavy duplicates, late and malformed records in one and seven
//! partitions, and on a set of the runtime's own generator, both compute the
//! same entries byte for byte and the same counters, and both report the same
//! counts for an output with entries dropped, copied, altered, merged and a
//! late record let in, in every mode.
//!
//! A program, not a test of the suite: it needs `../shared/bench` (or the
//! directory named by `STREAMJOIN_SHARED_BENCH`) and python3, which the suite
//! never does. `scripts/test.sh` runs it after the suite when that directory is
//! there; by hand: `$CARGO_TARGET_DIR/release/examples/cross_check` after a
//! workspace build. It exits non-zero when a check fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use streamjoin_reference::compare::{Options, compare_path};
use streamjoin_reference::contract::compute_partition;
use streamjoin_reference::dataset::{Dataset, Overrides};
use streamjoin_reference::entry::Entry;
use streamjoin_reference::expected::{self, ENTRIES_FILE};

/// Scratch space beside the build: `<target>/tmp`.
fn tmp_root() -> PathBuf {
    let exe = std::env::current_exe().expect("program path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target/<profile>/examples")
        .join("tmp");
    std::fs::create_dir_all(&dir).expect("target tmp dir");
    dir
}

/// The external oracle's directory; fails clearly when it is absent.
fn shared_bench() -> PathBuf {
    let dir = match std::env::var_os("STREAMJOIN_SHARED_BENCH") {
        Some(d) => PathBuf::from(d),
        None => {
            // The runner's value: a binary reused from a shared target directory
            // may have been compiled in another checkout.
            let manifest = std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
            Path::new(&manifest).join("../../shared/bench")
        }
    };
    assert!(
        dir.join("oracle.py").exists() && dir.join("gen_events.py").exists(),
        "the external generator and oracle are expected at {} (set STREAMJOIN_SHARED_BENCH \
         to their directory); this cross-check cannot run without them",
        dir.display()
    );
    dir
}

fn run(cmd: &mut Command, what: &str) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        eprintln!("{what}: {stderr}");
    }
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A data set made once per machine under the target's temporary directory.
fn cached(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let root = tmp_root();
    let dir = root.join(format!("xcheck-{name}"));
    if !dir.join("manifest.json").exists() {
        let tmp = tempfile::tempdir_in(&root).expect("tempdir");
        make(tmp.path());
        let _ = std::fs::rename(tmp.keep(), &dir);
    }
    dir
}

fn gen_events(name: &str, args: &[&str]) -> PathBuf {
    let bench = shared_bench();
    cached(name, |out| {
        let (ok, _) = run(
            Command::new("python3")
                .arg(bench.join("gen_events.py"))
                .arg("--out")
                .arg(out)
                .args(args),
            "gen_events.py",
        );
        assert!(ok, "gen_events.py {args:?} failed");
    })
}

/// A data set of this build's runtime generator, made afresh (it takes well
/// under a second, and a cached one could come from an older generator).
fn runtime_generate(args: &[&str]) -> tempfile::TempDir {
    let exe = std::env::current_exe().expect("program path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/examples")
        .join("streamjoin-runtime");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first",
        bin.display()
    );
    let out = tempfile::tempdir_in(tmp_root()).expect("tempdir");
    let (ok, _) = run(
        Command::new(&bin)
            .arg("generate")
            .arg("--out")
            .arg(out.path())
            .args(args),
        "generate",
    );
    assert!(ok, "streamjoin-runtime generate {args:?} failed");
    out
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Both tools' expected entries and counters for `data`; returns the oracle's
/// expected file (for its `compare --expected`).
fn same_expected_output_and_counters(data: &Path, work: &Path) -> PathBuf {
    let bench = shared_bench();
    let oracle_out = work.join("oracle-expected.jsonl");
    let (ok, _) = run(
        Command::new("python3")
            .arg(bench.join("oracle.py"))
            .arg("expected")
            .arg("--in")
            .arg(data)
            .arg("--out")
            .arg(&oracle_out),
        "oracle.py expected",
    );
    assert!(ok, "oracle.py expected failed");
    let ds = Dataset::open(data, Overrides::default()).expect("data set");
    let started = std::time::Instant::now();
    let counts = expected::write(&ds, &work.join("reference")).expect("reference expected");
    eprintln!(
        "reference expected: {:.1} s, {counts:?}",
        started.elapsed().as_secs_f64()
    );
    let (theirs, ours) = (
        sorted_lines(&oracle_out),
        sorted_lines(&work.join("reference").join(ENTRIES_FILE)),
    );
    assert_eq!(theirs.len(), ours.len(), "entry counts differ");
    if let Some(i) = (0..ours.len()).find(|i| theirs[*i] != ours[*i]) {
        panic!(
            "first difference:\n oracle    {}\n reference {}",
            theirs[i], ours[i]
        );
    }
    let (ok, text) = run(
        Command::new("python3")
            .arg(bench.join("oracle.py"))
            .arg("counts")
            .arg("--in")
            .arg(data),
        "oracle.py counts",
    );
    assert!(ok, "oracle.py counts failed");
    let theirs: serde_json::Value = serde_json::from_str(&text).expect("oracle counts JSON");
    assert_eq!(theirs, counts.to_json(), "counters differ");
    oracle_out
}

/// An actual output made from the expected one with every kind of error and
/// tolerated difference.
fn perturbed(data: &Path, path: &Path) {
    let ds = Dataset::open(data, Overrides::default()).expect("data set");
    let (entries, _) = expected::entries(&ds).expect("entries");
    assert!(entries.len() > 100, "a set this small proves little");
    let mut lines: Vec<String> = entries.iter().map(Entry::canonical_json).collect();
    let mut extra = Vec::new();
    // Copies: identical twice, one altered (a copy that differs).
    extra.push(lines[5].clone());
    extra.push(lines[15].clone());
    extra.push(
        lines[25]
            .replace("\"impressions\":", "\"impressions\":1")
            .clone(),
    );
    // Values: one changed, one of the wrong JSON type, one field missing.
    lines[30] = lines[30].replace("\"plays\":", "\"plays\":9");
    lines[31] = lines[31].replace("\"impressions\":", "\"impressions\":1.0,\"x_impressions\":");
    lines[32] = lines[32].replace("\"best_row\":", "\"zz\":");
    // An entry nobody expects, and a line that is no entry.
    extra.push(lines[40].replace("\"window_start\":", "\"window_start\":1"));
    extra.push("{\"not\":\"an entry\"}".to_owned());
    // A later entry of a key folded into its first (tolerated outside --strict),
    // and a late record let in as an entry of its own (likewise).
    let mut late_added = false;
    for p in 0..ds.partitions {
        let truth = compute_partition(&ds, p).expect("partition");
        if !late_added && let Some(late) = truth.late.values().next() {
            extra.push(
                Entry::aggregate(&late[..1])
                    .expect("entry")
                    .canonical_json(),
            );
            late_added = true;
        }
    }
    assert!(late_added, "the set has a late record");
    let first = entries
        .windows(2)
        .position(|w| (w[0].profile_id, w[0].title_id) == (w[1].profile_id, w[1].title_id));
    if let Some(i) = first {
        let e = &entries[i];
        let p =
            streamjoin_reference::dataset::partition_of(e.profile_id, e.title_id, ds.partitions);
        let truth = compute_partition(&ds, p).expect("partition");
        let events = &truth.on_time[&(e.profile_id, e.title_id)];
        let n = entries[i..]
            .iter()
            .take_while(|x| (x.profile_id, x.title_id) == (e.profile_id, e.title_id))
            .count();
        lines.splice(
            i..i + n,
            [Entry::aggregate(events).expect("entry").canonical_json()],
        );
    }
    // Missing: three dropped (after the fold, so indexes above stay valid).
    for i in [50, 20, 10] {
        lines.remove(i);
    }
    lines.extend(extra);
    std::fs::write(path, lines.join("\n") + "\n").expect("write actual");
}

/// The counts of a report: its head (the lines up to the examples) and its
/// last line, without the tool's name.
fn counts_of(report: &str) -> Vec<String> {
    let mut out: Vec<String> = report
        .lines()
        .take_while(|l| l.starts_with("compare:") || l.starts_with("  "))
        .map(str::to_owned)
        .collect();
    let last = report.lines().last().unwrap_or_default();
    out.push(last.split_once(": ").map_or(last, |(_, t)| t).to_owned());
    out
}

fn same_comparisons(data: &Path, oracle_expected: &Path, work: &Path) {
    let actual = work.join("actual.jsonl");
    perturbed(data, &actual);
    let ds = Dataset::open(data, Overrides::default()).expect("data set");
    let bench = shared_bench();
    for (strict, at_least_once) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut cmd = Command::new("python3");
        cmd.arg(bench.join("oracle.py"))
            .arg("compare")
            .arg("--in")
            .arg(data)
            .arg("--actual")
            .arg(&actual);
        cmd.arg("--expected").arg(oracle_expected);
        if strict {
            cmd.arg("--strict");
        }
        if at_least_once {
            cmd.arg("--at-least-once");
        }
        let (oracle_ok, oracle_report) = run(&mut cmd, "oracle.py compare");
        let ours = compare_path(
            &ds,
            &actual,
            Options {
                strict,
                at_least_once,
            },
        )
        .expect("reference compare");
        eprintln!(
            "strict {strict}, at-least-once {at_least_once}:\n{oracle_report}\n{}",
            ours.render()
        );
        assert_eq!(
            counts_of(&ours.render()),
            counts_of(&oracle_report),
            "strict {strict}, at-least-once {at_least_once}"
        );
        assert_eq!(ours.ok(), oracle_ok);
        assert!(!ours.ok(), "the perturbed output is wrong in every mode");
    }
}

fn cross_check(data: &Path) {
    let work = tempfile::tempdir_in(tmp_root()).expect("work dir");
    let oracle_expected = same_expected_output_and_counters(data, work.path());
    same_comparisons(data, &oracle_expected, work.path());
}

fn the_small_set_gives_the_oracles_entries_counters_and_comparisons() {
    cross_check(&gen_events(
        "small",
        &["--events", "1000000", "--partitions", "4", "--seed", "1"],
    ));
}

const HEAVY: [&str; 6] = [
    "--dup-rate",
    "0.3",
    "--late-rate",
    "0.05",
    "--malformed-rate",
    "0.01",
];

fn heavy_duplicates_late_and_malformed_records_in_one_partition_agree_with_the_oracle() {
    let mut args = vec!["--events", "200000", "--partitions", "1", "--seed", "3"];
    args.extend(HEAVY);
    cross_check(&gen_events("heavy-1", &args));
}

fn heavy_duplicates_late_and_malformed_records_in_seven_partitions_agree_with_the_oracle() {
    let mut args = vec!["--events", "200000", "--partitions", "7", "--seed", "4"];
    args.extend(HEAVY);
    cross_check(&gen_events("heavy-7", &args));
}

fn a_set_of_the_runtimes_generator_agrees_with_the_oracle() {
    let mut args = vec!["--events", "300000", "--partitions", "4", "--seed", "5"];
    args.extend(HEAVY);
    cross_check(runtime_generate(&args).path());
}

fn main() {
    shared_bench();
    let checks: [(&str, fn()); 4] = [
        (
            "the small set gives the oracle's entries, counters and comparisons",
            the_small_set_gives_the_oracles_entries_counters_and_comparisons,
        ),
        (
            "heavy duplicates, late and malformed records in one partition agree with the oracle",
            heavy_duplicates_late_and_malformed_records_in_one_partition_agree_with_the_oracle,
        ),
        (
            "heavy duplicates, late and malformed records in seven partitions agree with the oracle",
            heavy_duplicates_late_and_malformed_records_in_seven_partitions_agree_with_the_oracle,
        ),
        (
            "a set of the runtime's generator agrees with the oracle",
            a_set_of_the_runtimes_generator_agrees_with_the_oracle,
        ),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        let started = std::time::Instant::now();
        let ok = std::panic::catch_unwind(check).is_ok();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "cross-check: {name}: {} ({secs:.1} s)",
            if ok { "ok" } else { "FAILED" }
        );
        failed += usize::from(!ok);
    }
    println!("cross-check: {} of 4 passed", 4 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
