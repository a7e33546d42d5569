//! The expected output of a whole data set: every partition computed in turn
//! (one in memory at a time), its sorted entries written to a run file, the
//! runs merged into one file sorted by `(profile_id, title_id, window_start)`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use crate::contract::{Counts, compute_partition};
use crate::dataset::Dataset;
use crate::entry::Entry;

/// The entries file `expected` writes into its output directory.
pub const ENTRIES_FILE: &str = "entries.jsonl";
/// The counters file beside it (a leading `_`, so `compare --actual DIR` skips it).
pub const COUNTS_FILE: &str = "_counts.json";

/// The input counters of a data set (computes every partition).
pub fn counts(ds: &Dataset) -> anyhow::Result<Counts> {
    let mut total = Counts::default();
    for p in 0..ds.partitions {
        total.add(&compute_partition(ds, p)?.counts);
    }
    Ok(total)
}

/// Every expected entry in memory, sorted, and the counters (for small sets).
pub fn entries(ds: &Dataset) -> anyhow::Result<(Vec<Entry>, Counts)> {
    let mut all = Vec::new();
    let mut total = Counts::default();
    for p in 0..ds.partitions {
        let truth = compute_partition(ds, p)?;
        total.add(&truth.counts);
        all.extend(truth.entries);
    }
    all.sort();
    Ok((all, total))
}

/// Writes `entries.jsonl` (canonical bytes, sorted) and `_counts.json` into
/// `out_dir`; returns the counters.
pub fn write(ds: &Dataset, out_dir: &Path) -> anyhow::Result<Counts> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let runs = tempfile::Builder::new()
        .prefix(".reference-runs-")
        .tempdir_in(out_dir)
        .with_context(|| format!("temporary directory in {}", out_dir.display()))?;
    let mut total = Counts::default();
    let mut run_paths = Vec::new();
    for p in 0..ds.partitions {
        let truth = compute_partition(ds, p)?;
        total.add(&truth.counts);
        let path = runs.path().join(format!("run-{p}"));
        write_run(&path, &truth.entries)?;
        run_paths.push(path);
    }
    let out = out_dir.join(ENTRIES_FILE);
    merge_runs(&run_paths, &out)?;
    let counts_path = out_dir.join(COUNTS_FILE);
    let text = serde_json::to_string_pretty(&total.to_json())? + "\n";
    std::fs::write(&counts_path, text)
        .with_context(|| format!("write {}", counts_path.display()))?;
    Ok(total)
}

/// One sorted run: `<profile_id> <title_id> <window_start>\t<canonical json>`.
fn write_run(path: &Path, entries: &[Entry]) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    for e in entries {
        writeln!(
            w,
            "{} {} {}\t{}",
            e.profile_id,
            e.title_id,
            e.window_start,
            e.canonical_json()
        )
        .with_context(|| format!("write {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("write {}", path.display()))
}

type SortKey = (i64, i64, i64);

/// The next line of a run and its sort key, if any.
fn next_line(
    reader: &mut BufReader<File>,
    path: &Path,
) -> anyhow::Result<Option<(SortKey, String)>> {
    let mut line = String::new();
    if reader
        .read_line(&mut line)
        .with_context(|| format!("read {}", path.display()))?
        == 0
    {
        return Ok(None);
    }
    let (head, json) = line
        .trim_end_matches('\n')
        .split_once('\t')
        .with_context(|| format!("run {} is damaged", path.display()))?;
    let nums: Vec<i64> = head.split(' ').map(str::parse).collect::<Result<_, _>>()?;
    let [a, b, c] = nums[..] else {
        anyhow::bail!("run {} is damaged", path.display());
    };
    Ok(Some(((a, b, c), json.to_owned())))
}

/// Merges sorted runs into one sorted file of canonical lines.
fn merge_runs(runs: &[std::path::PathBuf], out: &Path) -> anyhow::Result<()> {
    let mut readers = Vec::new();
    for path in runs {
        let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
        readers.push(BufReader::with_capacity(1 << 20, f));
    }
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some((k, json)) = next_line(r, &runs[i])? {
            heap.push(Reverse((k, i, json)));
        }
    }
    let file = File::create(out).with_context(|| format!("create {}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    while let Some(Reverse((_, i, json))) = heap.pop() {
        writeln!(w, "{json}").with_context(|| format!("write {}", out.display()))?;
        if let Some((k, json)) = next_line(&mut readers[i], &runs[i])? {
            heap.push(Reverse((k, i, json)));
        }
    }
    w.flush()
        .with_context(|| format!("write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Overrides, partition_of};

    #[test]
    fn the_expected_file_holds_every_partitions_entries_sorted_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = [String::new(), String::new(), String::new()];
        for profile in (1..40).rev() {
            let p = partition_of(profile, 5, 3) as usize;
            files[p] += &format!(
                "{{\"type\":\"impression\",\"event_id\":\"e{profile}\",\"event_time\":{},\"profile_id\":{profile},\"title_id\":5,\"row\":1,\"rank\":1,\"device\":\"ios\"}}\n",
                1000 + profile
            );
        }
        for (p, text) in files.iter().enumerate() {
            std::fs::write(dir.path().join(format!("impressions-{p}.jsonl")), text).unwrap();
        }
        let ds = Dataset::open(dir.path(), Overrides::default()).unwrap();
        let out = dir.path().join("out");
        let counts = write(&ds, &out).unwrap();
        let text = std::fs::read_to_string(out.join(ENTRIES_FILE)).unwrap();
        let profiles: Vec<i64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["profile_id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(profiles, (1..40).collect::<Vec<_>>());
        assert_eq!(counts.entries, 39);
        let (mem, _) = entries(&ds).unwrap();
        let canon: Vec<String> = mem.iter().map(Entry::canonical_json).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), canon);
        assert!(out.join(COUNTS_FILE).exists());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2, "runs removed");
    }
}
