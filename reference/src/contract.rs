//! The batch computation of the contract (`docs/join-semantics.md`), one
//! partition at a time, step by step:
//!
//! 1. read every record of the partition's two files in file order and
//!    classify it: malformed, late, or on time ("Records", "Lateness");
//! 2. group the on-time records by key ("Key and deduplication");
//! 3. order each key's records as the engine applies them ("Entries and when
//!    they are emitted", rule 1);
//! 4. cut them into windows, dropping copies within a window ("Entries",
//!    rules 2-4; "Key and deduplication");
//! 5. summarise each window into its entry ("The emitted entry").
//!
//! Lateness in batch terms: the engine's job watermark is never above a
//! partition's own watermark (`largest event_time read from it − D`), so a
//! record more than D behind the largest event_time before it in its own file
//! is late in every run; the data sets put late records far further behind
//! (hours), so no reading order can make one of them on time. A record at most
//! D behind is never late. This is the reading of an aligned replay, the one
//! `compare --strict` checks.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use anyhow::bail;

use crate::dataset::{Dataset, partition_of};
use crate::entry::Entry;
use crate::record::{Event, Malformed, Stream, parse};

pub type Key = (i64, i64);

/// The input counters, named as the runtime's `_summary.json` names them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every line read.
    pub records: u64,
    pub malformed: u64,
    pub malformed_by_reason: BTreeMap<&'static str, u64>,
    pub late: u64,
    /// Copies of an event dropped within its entry.
    pub duplicates: u64,
    /// Distinct on-time events applied.
    pub events: u64,
    pub entries: u64,
    /// Keys with at least one on-time event.
    pub keys: u64,
}

impl Counts {
    fn malformed(&mut self, why: Malformed) {
        self.malformed += 1;
        *self.malformed_by_reason.entry(why.reason()).or_default() += 1;
    }

    pub fn add(&mut self, o: &Counts) {
        self.records += o.records;
        self.malformed += o.malformed;
        for (reason, n) in &o.malformed_by_reason {
            *self.malformed_by_reason.entry(reason).or_default() += n;
        }
        self.late += o.late;
        self.duplicates += o.duplicates;
        self.events += o.events;
        self.entries += o.entries;
        self.keys += o.keys;
    }

    /// The counters as a JSON object (the names `compare --counters` checks).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "records": self.records,
            "malformed": self.malformed,
            "late": self.late,
            "duplicates": self.duplicates,
            "events": self.events,
            "entries": self.entries,
            "keys": self.keys,
            "malformed_by_reason": self.malformed_by_reason,
        })
    }
}

/// The truth about one partition.
#[derive(Debug, Default)]
pub struct PartitionTruth {
    /// The expected entries, sorted by `(profile_id, title_id, window_start)`.
    pub entries: Vec<Entry>,
    /// Each key's distinct on-time events, in the order they were applied.
    pub on_time: HashMap<Key, Vec<Event>>,
    /// Each key's late records, in file order.
    pub late: HashMap<Key, Vec<Event>>,
    pub counts: Counts,
}

/// Computes partition `p` of a data set.
pub fn compute_partition(ds: &Dataset, p: u32) -> anyhow::Result<PartitionTruth> {
    let mut truth = PartitionTruth::default();
    let mut records: HashMap<Key, Vec<Event>> = HashMap::new();
    for stream in Stream::BOTH {
        // Step 1, per file.
        for on_time in classify_file(ds, p, stream, &mut truth)? {
            check_partition(&on_time, ds, p)?;
            // Step 2.
            records.entry(on_time.key()).or_default().push(on_time);
        }
    }
    for events in truth.late.values() {
        for e in events {
            check_partition(e, ds, p)?;
        }
    }
    for (key, mut recs) in records {
        order_as_applied(&mut recs); // step 3
        let windows = windows(recs, ds.window_ms, &mut truth.counts); // step 4
        for w in &windows {
            truth.entries.extend(Entry::aggregate(w)); // step 5
        }
        truth.counts.events += windows.iter().map(|w| w.len() as u64).sum::<u64>();
        truth.counts.keys += 1;
        truth
            .on_time
            .insert(key, windows.into_iter().flatten().collect());
    }
    truth.entries.sort();
    truth.counts.entries = truth.entries.len() as u64;
    Ok(truth)
}

/// Step 1: every line of one file, in file order, is a record (`records`);
/// malformed ones are counted by reason and dropped; a valid one more than D
/// behind the largest event_time of the on-time records before it in the file
/// is late (kept aside for `compare`); the on-time ones are returned.
fn classify_file(
    ds: &Dataset,
    p: u32,
    stream: Stream,
    truth: &mut PartitionTruth,
) -> anyhow::Result<Vec<Event>> {
    let mut on_time = Vec::new();
    let mut largest: Option<i64> = None;
    ds.each_line(stream, p, |line| {
        truth.counts.records += 1;
        let event = match parse(line, stream) {
            Ok(e) => e,
            Err(why) => {
                truth.counts.malformed(why);
                return Ok(());
            }
        };
        if largest.is_some_and(|top| event.time < top.saturating_sub(ds.max_disorder_ms)) {
            truth.counts.late += 1;
            truth.late.entry(event.key()).or_default().push(event);
            return Ok(());
        }
        largest = Some(largest.map_or(event.time, |top| top.max(event.time)));
        on_time.push(event);
        Ok(())
    })?;
    Ok(on_time)
}

/// The data-set layout puts every record of a key into the partition its
/// FNV-1a hash names; a set that does not would make shards disagree.
fn check_partition(e: &Event, ds: &Dataset, p: u32) -> anyhow::Result<()> {
    let q = partition_of(e.profile_id, e.title_id, ds.partitions);
    if q != p {
        bail!(
            "key {}:{} is in partition {p} of {} but hashes to {q}: the data set is not \
             partitioned by key",
            e.profile_id,
            e.title_id,
            ds.dir.display()
        );
    }
    Ok(())
}

/// The contract's application order: by event time, then input (impressions
/// first), then event_id. The sort is stable, so exact ties keep file order.
fn application_order(a: &Event, b: &Event) -> Ordering {
    (a.time, a.stream, &a.event_id).cmp(&(b.time, b.stream, &b.event_id))
}

/// Step 3.
fn order_as_applied(records: &mut [Event]) {
    records.sort_by(application_order);
}

/// Step 4, over one key's records in application order: an event with no open
/// window opens one at its time (rule 2); an event before `start + W` folds
/// into it (rule 3), unless the window already holds its event_id: then an
/// identical copy is a duplicate and a differing one malformed
/// (`conflicting_duplicate`); the first event at or after `start + W` closes
/// the window, it is emitted, and opens the next (rule 4: the timer at
/// `start + W` fires before an event at that time).
fn windows(records: Vec<Event>, window_ms: i64, counts: &mut Counts) -> Vec<Vec<Event>> {
    let mut done: Vec<Vec<Event>> = Vec::new();
    let mut open: Vec<Event> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for e in records {
        let inside = open
            .first()
            .is_some_and(|first| e.time < first.time.saturating_add(window_ms));
        if !inside && !open.is_empty() {
            done.push(std::mem::take(&mut open));
            ids.clear();
        }
        match ids.get(&e.event_id) {
            Some(&i) if open[i] == e => counts.duplicates += 1,
            Some(_) => counts.malformed(Malformed::ConflictingDuplicate),
            None => {
                ids.insert(e.event_id.clone(), open.len());
                open.push(e);
            }
        }
    }
    if !open.is_empty() {
        done.push(open);
    }
    done
}

#[cfg(test)]
mod tests;
