//! The comparison on a hand-made data set (W = 1000 ms, D = 10 ms): key 1:2
//! has entries at 0 (two impressions) and 1500 (a play), key 3:4 one at 200;
//! key 9:9 has only a late record.

use super::*;
use crate::dataset::Overrides;
use crate::expected;

const IMPRESSIONS: &str = r#"{"type":"impression","event_id":"a","event_time":0,"profile_id":1,"title_id":2,"row":1,"rank":1,"device":"tv"}
{"type":"impression","event_id":"b","event_time":100,"profile_id":1,"title_id":2,"row":2,"rank":1,"device":"tv"}
{"type":"impression","event_id":"c","event_time":200,"profile_id":3,"title_id":4,"row":1,"rank":1,"device":"ios"}
{"type":"impression","event_id":"l","event_time":50,"profile_id":9,"title_id":9,"row":1,"rank":1,"device":"web"}
"#;
const PLAYS: &str = r#"{"type":"play","event_id":"p","event_time":1500,"profile_id":1,"title_id":2,"device":"tv","duration_ms":5}
"#;

fn dataset() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("impressions-0.jsonl"), IMPRESSIONS).unwrap();
    std::fs::write(dir.path().join("plays-0.jsonl"), PLAYS).unwrap();
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"params":{"window_ms":1000,"max_disorder_ms":10,"partitions":1}}"#,
    )
    .unwrap();
    let ds = Dataset::open(dir.path(), Overrides::default()).unwrap();
    (dir, ds)
}

/// The expected output as lines (sorted: 1:2@0, 1:2@1500, 3:4@200).
fn expected_lines(ds: &Dataset) -> Vec<Vec<u8>> {
    let (entries, _) = expected::entries(ds).unwrap();
    entries
        .iter()
        .map(|e| e.canonical_json().into_bytes())
        .collect()
}

fn run(records: &[Vec<u8>], strict: bool, at_least_once: bool) -> Report {
    let (_dir, ds) = dataset();
    compare_records(
        &ds,
        records,
        Options {
            strict,
            at_least_once,
        },
    )
    .unwrap()
}

fn counts(r: &Report) -> [u64; 8] {
    let n = &r.n;
    [
        n.expected,
        n.matched,
        n.missing,
        n.unexpected,
        n.differing,
        n.duplicates,
        n.tolerated,
        n.late_accepted,
    ]
}

#[test]
fn the_expected_output_matches_itself_in_any_order() {
    let (_dir, ds) = dataset();
    let mut lines = expected_lines(&ds);
    assert_eq!(lines.len(), 3);
    lines.reverse();
    let r = run(&lines, true, false);
    assert!(r.ok(), "{}", r.render());
    assert_eq!(counts(&r), [3, 3, 0, 0, 0, 0, 0, 0]);
    assert!(r.render().ends_with(
        "reference: 3 expected, 3 matched, 0 missing, 0 unexpected, 0 differing, 0 duplicates, 0 tolerated, 0 late-accepted\n"
    ));
}

#[test]
fn a_dropped_entry_is_missing() {
    let (_dir, ds) = dataset();
    let lines = expected_lines(&ds);
    let r = run(&lines[1..], false, false);
    assert!(!r.ok());
    assert_eq!(counts(&r), [3, 2, 1, 0, 0, 0, 0, 0]);
    assert!(r.render().contains("missing (first 1):"), "{}", r.render());
}

#[test]
fn a_changed_value_or_type_is_differing() {
    let (_dir, ds) = dataset();
    let mut lines = expected_lines(&ds);
    lines[2] = String::from_utf8(lines[2].clone())
        .unwrap()
        .replace(r#""best_row":1"#, r#""best_row":1.0"#)
        .into_bytes();
    let r = run(&lines, false, true);
    assert_eq!(counts(&r), [3, 2, 0, 0, 1, 0, 0, 0]);
    assert!(
        r.render().contains("best_row: expected 1, actual 1.0"),
        "{}",
        r.render()
    );
}

#[test]
fn identical_copies_are_errors_unless_at_least_once_and_differing_copies_always() {
    let (_dir, ds) = dataset();
    let mut lines = expected_lines(&ds);
    lines.push(lines[0].clone());
    assert!(!run(&lines, false, false).ok());
    let r = run(&lines, false, true);
    assert!(r.ok(), "{}", r.render());
    assert_eq!(counts(&r), [3, 3, 0, 0, 0, 1, 0, 0]);
    let changed = String::from_utf8(lines[0].clone())
        .unwrap()
        .replace(r#""best_rank":1"#, r#""best_rank":9"#);
    lines.push(changed.into_bytes());
    let r = run(&lines, false, true);
    assert!(!r.ok());
    assert_eq!((r.n.duplicates, r.n.identical_duplicates), (2, 0));
}

#[test]
fn an_entry_nobody_expected_and_a_line_that_is_no_entry_are_unexpected() {
    let (_dir, ds) = dataset();
    let mut lines = expected_lines(&ds);
    let extra = String::from_utf8(lines[2].clone())
        .unwrap()
        .replace(r#""window_start":200"#, r#""window_start":5000"#);
    lines.push(extra.into_bytes());
    lines.push(b"{\"hello\":1}".to_vec());
    lines.push(b"   ".to_vec()); // blank lines are skipped
    let r = run(&lines, false, false);
    assert_eq!(counts(&r), [3, 3, 0, 2, 0, 0, 0, 0], "{}", r.render());
    assert!(
        r.render().contains("not an output record: records:5"),
        "{}",
        r.render()
    );
}

#[test]
fn an_accepted_late_record_is_tolerated_by_default_and_unexpected_when_strict() {
    let (_dir, ds) = dataset();
    let mut lines = expected_lines(&ds);
    let late = r#"{"profile_id":9,"title_id":9,"window_start":50,"impressions":1,"plays":0,"first_impression_time":50,"last_impression_time":50,"best_row":1,"best_rank":1,"devices":["web"],"first_play_time":null,"play_duration_ms":0}"#;
    lines.push(late.as_bytes().to_vec());
    let r = run(&lines, false, false);
    assert!(r.ok(), "{}", r.render());
    assert_eq!(counts(&r), [3, 3, 0, 0, 0, 0, 0, 1]);
    let r = run(&lines, true, false);
    assert!(!r.ok());
    assert_eq!(counts(&r), [3, 3, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn a_later_entry_folded_into_the_first_is_tolerated_only_without_strict() {
    let (_dir, ds) = dataset();
    let lines = expected_lines(&ds);
    let folded = r#"{"profile_id":1,"title_id":2,"window_start":0,"impressions":2,"plays":1,"first_impression_time":0,"last_impression_time":100,"best_row":1,"best_rank":1,"devices":["tv"],"first_play_time":1500,"play_duration_ms":5}"#;
    let actual = vec![folded.as_bytes().to_vec(), lines[2].clone()];
    let r = run(&actual, false, false);
    assert!(r.ok(), "{}", r.render());
    assert_eq!(counts(&r), [3, 1, 0, 0, 0, 0, 2, 0]);
    let r = run(&actual, true, false);
    assert_eq!(counts(&r), [3, 1, 1, 0, 1, 0, 0, 0]);
    assert!(
        r.render().contains("note: 1 of the mismatching keys"),
        "{}",
        r.render()
    );
}
