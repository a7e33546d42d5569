//! A runtime's output against the expected output of its data set, one
//! partition at a time. Each expected entry is `matched`, `missing` (no actual
//! entry with its key and window_start), `differing` (one with other values)
//! or, outside `--strict`, `tolerated`; an actual entry nobody expected is
//! `unexpected`; a `(key, window_start)` seen more than once counts its copies
//! as `duplicates`. Examples:
//!
//! - missing: expected `1:2@1000` with 2 impressions, the output has no `1:2@1000`;
//! - unexpected: the output has `1:2@5000`, which no window starts at;
//! - differing: `1:2@1000` has `"plays":1` where the data gives 2;
//! - duplicates: `1:2@1000` appears twice (identical copies are allowed only
//!   with `--at-least-once`; copies that differ never).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;

use crate::actual::{self, Actual, fields_of};
use crate::contract::{Key, PartitionTruth, compute_partition};
use crate::dataset::{Dataset, partition_of};
use crate::entry::{Entry, FIELDS};
use crate::tolerance::allowed_outcome;

pub use crate::report::{Options, Report};

/// Compares the output in `actual` (a file, or a directory of files).
pub fn compare_path(ds: &Dataset, actual: &Path, opts: Options) -> anyhow::Result<Report> {
    let paths = actual::files(actual)?;
    if paths.is_empty() {
        anyhow::bail!("no output files in {}", actual.display());
    }
    let mut router = Router::new(ds, opts)?;
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
        for (i, line) in BufReader::new(file).split(b'\n').enumerate() {
            let line = line.with_context(|| format!("read {}", path.display()))?;
            router.route(&name, i + 1, &line)?;
        }
    }
    router.report.n.files = paths.len() as u64;
    router.finish(ds)
}

/// Compares output records held in memory (e.g. read back from a topic).
pub fn compare_records(ds: &Dataset, records: &[Vec<u8>], opts: Options) -> anyhow::Result<Report> {
    let mut router = Router::new(ds, opts)?;
    for (i, r) in records.iter().enumerate() {
        router.route("records", i + 1, r)?;
    }
    router.report.n.files = 1;
    router.finish(ds)
}

/// Splits the output lines into one temporary file per input partition (by
/// the key's hash), so one partition at a time is held in memory.
struct Router {
    tmp: tempfile::TempDir,
    outs: Vec<BufWriter<File>>,
    partitions: u32,
    report: Report,
}

impl Router {
    fn new(ds: &Dataset, opts: Options) -> anyhow::Result<Router> {
        let tmp = tempfile::Builder::new()
            .prefix("reference-compare-")
            .tempdir()?;
        let mut outs = Vec::new();
        for p in 0..ds.partitions {
            let path = tmp.path().join(format!("actual-{p}"));
            let f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
            outs.push(BufWriter::new(f));
        }
        Ok(Router {
            tmp,
            outs,
            partitions: ds.partitions,
            report: Report::new(opts),
        })
    }

    fn route(&mut self, origin: &str, lineno: usize, line: &[u8]) -> anyhow::Result<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.report.n.lines += 1;
        let Some(a) = Actual::from_line(line) else {
            let text = String::from_utf8_lossy(line);
            let text: String = text.trim().chars().take(200).collect();
            self.report.n.unexpected += 1;
            self.report.example(
                "unexpected",
                format!("not an output record: {origin}:{lineno}: {text}"),
            );
            return Ok(());
        };
        let (pid, tid, _) = a.id();
        let out = &mut self.outs[partition_of(pid, tid, self.partitions) as usize];
        out.write_all(line)?;
        out.write_all(b"\n")?;
        Ok(())
    }

    fn finish(mut self, ds: &Dataset) -> anyhow::Result<Report> {
        for out in &mut self.outs {
            out.flush().context("write a routed output file")?;
        }
        drop(std::mem::take(&mut self.outs));
        for p in 0..self.partitions {
            let truth = compute_partition(ds, p)?;
            self.report.counts.add(&truth.counts);
            let path = self.tmp.path().join(format!("actual-{p}"));
            let actual = load_bucket(&path)?;
            compare_partition(&truth, actual, ds.window_ms, &mut self.report);
        }
        Ok(self.report)
    }
}

type Id = (i64, i64, i64);

/// The routed entries of one partition: every copy of each (key, window_start), in read order.
fn load_bucket(path: &Path) -> anyhow::Result<HashMap<Id, Vec<Actual>>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut out: HashMap<Id, Vec<Actual>> = HashMap::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if let Some(a) = Actual::from_line(&line) {
            out.entry(a.id()).or_default().push(a);
        }
    }
    Ok(out)
}

/// One partition: duplicates and extra fields first, then key by key.
fn compare_partition(
    truth: &PartitionTruth,
    bucket: HashMap<Id, Vec<Actual>>,
    w: i64,
    r: &mut Report,
) {
    let mut act: HashMap<Key, BTreeMap<i64, Actual>> = HashMap::new();
    for ((pid, tid, ws), mut copies) in bucket {
        let first = copies.swap_remove(0);
        if !first.extra.is_empty() {
            r.n.extra_fields += 1;
            r.example(
                "extra_fields",
                format!("{} has extra fields {:?}", first.show(), first.extra),
            );
        }
        if !copies.is_empty() {
            let same = copies.iter().all(|c| c.fields == first.fields);
            r.n.duplicates += copies.len() as u64;
            r.n.identical_duplicates += if same { copies.len() as u64 } else { 0 };
            let how = if same { "" } else { ", not identical" };
            r.example(
                "duplicates",
                format!("{} copies{how}: {}", copies.len() + 1, first.show()),
            );
        }
        act.entry((pid, tid)).or_default().insert(ws, first);
        r.n.actual += 1;
    }
    let mut exp: HashMap<Key, BTreeMap<i64, &Entry>> = HashMap::new();
    for e in &truth.entries {
        exp.entry((e.profile_id, e.title_id))
            .or_default()
            .insert(e.window_start, e);
    }
    let mut keys: Vec<Key> = exp.keys().chain(act.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let empty_e = BTreeMap::new();
    let empty_a = BTreeMap::new();
    for key in keys {
        let exp_k = exp.get(&key).unwrap_or(&empty_e);
        let act_k = act.get(&key).unwrap_or(&empty_a);
        r.n.expected += exp_k.len() as u64;
        let same = exp_k.len() == act_k.len()
            && exp_k
                .iter()
                .all(|(ws, e)| act_k.get(ws).is_some_and(|a| a.fields == fields_of(e)));
        if same {
            r.n.matched += exp_k.len() as u64;
        } else {
            compare_key(truth, key, exp_k, act_k, w, r);
        }
    }
}

/// A key whose actual entries differ from the expected ones.
fn compare_key(
    truth: &PartitionTruth,
    key: Key,
    exp_k: &BTreeMap<i64, &Entry>,
    act_k: &BTreeMap<i64, Actual>,
    w: i64,
    r: &mut Report,
) {
    let typed: Option<Vec<Entry>> = act_k.values().map(Actual::to_entry).collect();
    let on_time = truth.on_time.get(&key).map_or(&[][..], Vec::as_slice);
    let late = truth.late.get(&key).map_or(&[][..], Vec::as_slice);
    let allowed = match typed {
        Some(entries) => allowed_outcome(on_time, late, &entries, w).unwrap_or_else(|| {
            eprintln!(
                "reference: key {}:{}: tolerance search gave up; counted as a mismatch",
                key.0, key.1
            );
            false
        }),
        None => false,
    };
    let matches = |ws: &i64, e: &Entry| act_k.get(ws).is_some_and(|a| a.fields == fields_of(e));
    if allowed {
        r.n.would_tolerate += 1;
    }
    if allowed && !r.options.strict {
        let exact = exp_k.iter().filter(|(ws, e)| matches(ws, e)).count() as u64;
        r.n.matched += exact;
        r.n.tolerated += exp_k.len() as u64 - exact;
        if exp_k.is_empty() {
            r.n.late_accepted += act_k.len() as u64;
        }
        r.example(
            "tolerated",
            format!(
                "key {}:{}: expected {}, actual {}",
                key.0,
                key.1,
                brief_e(exp_k),
                brief_a(act_k)
            ),
        );
        return;
    }
    for (ws, e) in exp_k {
        match act_k.get(ws) {
            None => {
                r.n.missing += 1;
                r.example("missing", e.canonical_json());
            }
            Some(a) if a.fields == fields_of(e) => r.n.matched += 1,
            Some(a) => {
                r.n.differing += 1;
                r.example(
                    "differing",
                    format!(
                        "key {}:{} window_start {ws}: {}",
                        key.0,
                        key.1,
                        field_diff(e, a)
                    ),
                );
            }
        }
    }
    for (ws, a) in act_k {
        if !exp_k.contains_key(ws) {
            r.n.unexpected += 1;
            r.example("unexpected", a.show());
        }
    }
}

/// `name: expected X, actual Y` for every field that differs.
fn field_diff(e: &Entry, a: &Actual) -> String {
    let parts: Vec<String> = FIELDS
        .iter()
        .zip(fields_of(e).iter().zip(&a.fields))
        .filter(|(_, (x, y))| x != y)
        .map(|(name, (x, y))| format!("{name}: expected {x}, actual {y}"))
        .collect();
    parts.join("; ")
}

fn brief_e(m: &BTreeMap<i64, &Entry>) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(ws, e)| format!("{ws}:{}/{}", e.impressions, e.plays))
        .collect();
    format!("[{}]", parts.join(", "))
}

fn brief_a(m: &BTreeMap<i64, Actual>) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(ws, a)| format!("{ws}:{}/{}", a.fields[3], a.fields[4]))
        .collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests;
