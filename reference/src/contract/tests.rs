//! One test per rule of the contract, on hand-made records. W = 1000 ms and
//! D = 10 ms (from the manifest), one partition.

use super::*;
use crate::dataset::Overrides;

fn imp(id: &str, t: i64, key: Key, row: i64, rank: i64) -> String {
    format!(
        r#"{{"type":"impression","event_id":"{id}","event_time":{t},"profile_id":{},"title_id":{},"row":{row},"rank":{rank},"device":"tv"}}"#,
        key.0, key.1
    )
}

fn play(id: &str, t: i64, key: Key, duration: i64) -> String {
    format!(
        r#"{{"type":"play","event_id":"{id}","event_time":{t},"profile_id":{},"title_id":{},"device":"web","duration_ms":{duration}}}"#,
        key.0, key.1
    )
}

const K: Key = (1, 2);

/// Computes a one-partition data set with the given file contents.
fn run(impressions: &[String], plays: &[String]) -> PartitionTruth {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[String]| {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.path().join(name), text).unwrap();
    };
    write("impressions-0.jsonl", impressions);
    write("plays-0.jsonl", plays);
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"params":{"window_ms":1000,"max_disorder_ms":10,"partitions":1}}"#,
    )
    .unwrap();
    let ds = Dataset::open(dir.path(), Overrides::default()).unwrap();
    compute_partition(&ds, 0).unwrap()
}

fn starts(t: &PartitionTruth) -> Vec<(i64, i64, i64)> {
    t.entries
        .iter()
        .map(|e| (e.window_start, e.impressions, e.plays))
        .collect()
}

#[test]
fn copies_of_an_event_id_in_an_entry_count_once_and_as_duplicates() {
    let a = imp("a", 100, K, 1, 1);
    let t = run(&[a.clone(), imp("b", 105, K, 1, 1), a], &[]);
    assert_eq!(starts(&t), [(100, 2, 0)]);
    assert_eq!(
        (t.counts.duplicates, t.counts.events, t.counts.records),
        (1, 2, 3)
    );
}

#[test]
fn a_copy_with_different_content_is_malformed_and_the_first_applied_wins() {
    // Same id, same time, different row: the copy read second is the conflict.
    let t = run(&[imp("a", 100, K, 5, 1), imp("a", 100, K, 1, 1)], &[]);
    assert_eq!(t.entries[0].best_row, Some(5));
    assert_eq!(
        t.counts.malformed_by_reason.get("conflicting_duplicate"),
        Some(&1)
    );
    assert_eq!((t.counts.duplicates, t.counts.events), (0, 1));
}

#[test]
fn the_same_event_id_under_another_key_is_another_event() {
    let t = run(&[imp("a", 100, K, 1, 1), imp("a", 100, (1, 3), 1, 1)], &[]);
    assert_eq!(
        (t.counts.entries, t.counts.duplicates, t.counts.keys),
        (2, 0, 2)
    );
}

#[test]
fn a_record_exactly_d_behind_its_file_is_on_time_and_one_more_is_late() {
    let t = run(
        &[
            imp("a", 500, K, 1, 1),
            imp("b", 490, K, 1, 1),
            imp("c", 489, K, 1, 1),
        ],
        &[],
    );
    assert_eq!(starts(&t), [(490, 2, 0)]);
    assert_eq!(t.counts.late, 1);
    assert_eq!(t.late[&K][0].event_id, "c");
}

#[test]
fn lateness_is_judged_against_the_records_own_file() {
    // The impressions file is far ahead; the plays file is not.
    let t = run(&[imp("a", 5_000, K, 1, 1)], &[play("p", 100, K, 7)]);
    assert_eq!(t.counts.late, 0);
    assert_eq!(starts(&t), [(100, 0, 1), (5_000, 1, 0)]);
}

#[test]
fn late_and_malformed_records_move_no_watermark_and_change_no_entry() {
    let far = imp("x", 90_000, K, 1, 1).replace(r#""device":"tv""#, r#""device":"vcr""#);
    let t = run(
        &[
            imp("a", 500, K, 1, 1),
            imp("late", 100, (9, 9), 1, 1),
            far,
            imp("b", 495, K, 1, 1),
        ],
        &[],
    );
    // "b" is 5 behind "a" (on time); the bad_value record at 90 000 did not count.
    assert_eq!(starts(&t), [(495, 2, 0)]);
    assert_eq!(
        (t.counts.late, t.counts.malformed, t.counts.keys),
        (1, 1, 1)
    );
    assert_eq!(t.counts.malformed_by_reason.get("bad_value"), Some(&1));
}

#[test]
fn malformed_records_are_counted_by_reason() {
    let t = run(
        &[
            "{\"type\":\"impr".into(),
            imp("a", 1, K, 1, 1).replace(r#""rank":1,"#, ""),
            play("p", 1, K, 1),
        ],
        &[
            imp("i", 1, K, 1, 1),
            play("p", 1, K, 1).replace("\"duration_ms\":1", "\"duration_ms\":1.0"),
        ],
    );
    let reasons: Vec<_> = t
        .counts
        .malformed_by_reason
        .iter()
        .map(|(r, n)| (*r, *n))
        .collect();
    assert_eq!(
        reasons,
        [("invalid_json", 1), ("missing_field", 1), ("wrong_type", 3)]
    );
    assert_eq!(
        (t.counts.records, t.counts.malformed, t.counts.entries),
        (5, 5, 0)
    );
}

#[test]
fn an_event_at_window_start_plus_w_opens_the_next_entry() {
    let t = run(
        &[imp("a", 0, K, 1, 1), imp("b", 999, K, 1, 1)],
        &[play("p", 1_000, K, 1)],
    );
    assert_eq!(starts(&t), [(0, 2, 0), (1_000, 0, 1)]);
}

#[test]
fn the_next_window_starts_at_the_first_event_past_the_previous_one() {
    // Windows follow the events, not a grid: [0, 1000) and [1500, 2500).
    let t = run(
        &[
            imp("a", 0, K, 1, 1),
            imp("b", 1_500, K, 1, 1),
            imp("c", 2_400, K, 1, 1),
            imp("d", 2_500, K, 1, 1),
        ],
        &[],
    );
    assert_eq!(starts(&t), [(0, 1, 0), (1_500, 2, 0), (2_500, 1, 0)]);
}

#[test]
fn the_output_depends_on_event_time_not_arrival_order() {
    // A play 5 ms before the impression that arrives after it opens the entry.
    let t = run(&[imp("i", 200, K, 2, 3)], &[play("p", 195, K, 60)]);
    assert_eq!(starts(&t), [(195, 1, 1)]);
    assert_eq!(t.entries[0].first_play_time, Some(195));
    // Arrival order inside the files does not matter either.
    let u = run(&[imp("b", 205, K, 1, 1), imp("a", 200, K, 1, 1)], &[]);
    let v = run(&[imp("a", 200, K, 1, 1), imp("b", 205, K, 1, 1)], &[]);
    assert_eq!(u.entries, v.entries);
}

#[test]
fn a_record_whose_key_hashes_to_another_partition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let line = imp("a", 1, K, 1, 1) + "\n";
    let other = (0..100).find(|p| partition_of(*p, 2, 2) == 1).unwrap();
    std::fs::write(
        dir.path().join("impressions-0.jsonl"),
        imp("b", 1, (other, 2), 1, 1) + "\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("impressions-1.jsonl"), line).unwrap();
    let ds = Dataset::open(dir.path(), Overrides::default()).unwrap();
    let err = compute_partition(&ds, 0).unwrap_err().to_string();
    assert!(err.contains("hashes to 1"), "{err}");
}
