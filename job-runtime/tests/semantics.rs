//! One test per rule of docs/join-semantics.md, with hand-written events.

mod common;

use common::*;
use streamjoin_runtime::engine::worker::Progress;

#[test]
fn late_event_goes_to_late_output() {
    let mut h = harness(1, config());
    h.imp(0, imp("a", T0, 1, 1, 1, 1, "tv"));
    h.play(0, play("b", T0, 2, 2, "tv", 10));
    h.imp(0, imp("c", T0 + 10 * MIN, 1, 1, 1, 1, "tv"));
    h.play(0, play("d", T0 + 10 * MIN, 2, 2, "tv", 10));
    h.run();
    // Watermark is now T0 + 8 min; this event is an hour behind it.
    h.imp(0, imp("late", T0 - HOUR, 9, 9, 1, 1, "tv"));
    let out = h.finish();
    let late = h.late.take();
    assert_eq!(late.len(), 1);
    let rec = json(&late[0]);
    assert_eq!(rec["record"]["event_id"], "late");
    assert_eq!(rec["watermark"], T0 + 8 * MIN);
    assert_eq!(h.counters().late, [1, 0]);
    assert!(
        out.iter().all(|l| json(l)["profile_id"] != 9),
        "late event changed no state"
    );
}

#[test]
fn event_at_most_d_behind_is_never_late() {
    let mut h = harness(1, config());
    h.imp(0, imp("a", T0 + 10 * MIN, 1, 1, 1, 1, "tv"));
    h.play(0, play("b", T0 + 10 * MIN, 1, 1, "tv", 10));
    h.imp(0, imp("c", T0 + 8 * MIN, 1, 1, 1, 1, "tv"));
    let out = h.finish();
    assert_eq!(h.counters().late, [0, 0]);
    assert_eq!(out.len(), 1);
    assert_eq!(json(&out[0])["impressions"], 2);
}

#[test]
fn duplicate_event_id_is_counted_once() {
    let mut h = harness(1, config());
    let line = imp("dup", T0, 1, 1, 3, 4, "tv");
    h.imp(0, line.clone());
    h.imp(0, line);
    h.play(0, play("p", T0 + MIN, 1, 1, "ios", 500));
    h.play(0, play("p", T0 + MIN, 1, 1, "ios", 500));
    let out = h.finish();
    assert_eq!(out.len(), 1);
    let e = json(&out[0]);
    assert_eq!(e["impressions"], 1);
    assert_eq!(e["plays"], 1);
    assert_eq!(e["play_duration_ms"], 500);
    assert_eq!(h.counters().duplicates, [1, 1]);
}

#[test]
fn conflicting_duplicate_goes_to_dead_letter() {
    let mut h = harness(1, config());
    h.imp(0, imp("x", T0, 1, 1, 3, 4, "tv"));
    h.imp(0, imp("x", T0, 1, 1, 1, 1, "tv"));
    let out = h.finish();
    assert_eq!(json(&out[0])["impressions"], 1);
    let dead = h.dead.take();
    assert_eq!(dead.len(), 1);
    assert_eq!(json(&dead[0])["reason"], "conflicting_duplicate");
    assert_eq!(h.counters().malformed_total(), 1);
}

#[test]
fn play_before_impression_opens_the_entry_at_the_play_time() {
    let mut h = harness(1, config());
    // The impression arrives first but the play happened 3 minutes earlier.
    h.imp(0, imp("i", T0 + 3 * MIN, 5, 6, 2, 9, "web"));
    h.play(0, play("p", T0, 5, 6, "tv", 1000));
    let out = h.finish();
    assert_eq!(
        out,
        vec![format!(
            r#"{{"profile_id":5,"title_id":6,"window_start":{T0},"impressions":1,"plays":1,"first_impression_time":{},"last_impression_time":{},"best_row":2,"best_rank":9,"devices":["tv","web"],"first_play_time":{T0},"play_duration_ms":1000}}"#,
            T0 + 3 * MIN,
            T0 + 3 * MIN
        )]
    );
}

#[test]
fn event_at_exactly_window_end_opens_the_next_entry() {
    let mut h = harness(1, config());
    let w = 4 * HOUR;
    h.imp(0, imp("a", T0, 1, 1, 1, 1, "tv"));
    h.imp(0, imp("b", T0 + w - 1, 1, 1, 1, 1, "tv"));
    h.imp(0, imp("c", T0 + w, 1, 1, 1, 1, "tv"));
    h.play(0, play("p", T0 + w, 1, 1, "tv", 7));
    let out = h.finish();
    assert_eq!(out.len(), 2);
    let (a, b) = (json(&out[0]), json(&out[1]));
    assert_eq!(
        (a["window_start"].as_i64(), a["impressions"].as_i64()),
        (Some(T0), Some(2))
    );
    assert_eq!(
        (b["window_start"].as_i64(), b["impressions"].as_i64()),
        (Some(T0 + w), Some(1))
    );
    assert_eq!(b["plays"], 1);
}

/// Events of several keys with impressions and plays interleaved.
fn scenario() -> (Vec<String>, Vec<String>) {
    let mut imps = Vec::new();
    let mut plays = Vec::new();
    for k in 0..6i64 {
        let t = T0 + k * 7 * MIN;
        imps.push(imp(&format!("i{k}a"), t, k, 100 + k, 1 + k % 3, 5, "tv"));
        imps.push(imp(
            &format!("i{k}b"),
            t + 30_000,
            k,
            100 + k,
            2,
            1,
            "android",
        ));
        plays.push(play(
            &format!("p{k}"),
            t + 60_000 - (k % 2) * 120_000,
            k,
            100 + k,
            "ios",
            1000 * k,
        ));
        // A later entry of the same key, after the window.
        imps.push(imp(
            &format!("i{k}c"),
            t + 5 * HOUR,
            k,
            100 + k,
            4,
            4,
            "web",
        ));
    }
    // Each input arrives in event-time order, as a partition of a topic would.
    imps.sort_by_key(|l| json(l)["event_time"].as_i64());
    plays.sort_by_key(|l| json(l)["event_time"].as_i64());
    (imps, plays)
}

fn run_in_order(
    order: &[(usize, usize)],
    imps: &[String],
    plays: &[String],
    cfg_batch: usize,
) -> Vec<String> {
    let mut cfg = config();
    cfg.read_batch = cfg_batch;
    let mut h = harness(1, cfg);
    for &(input, i) in order {
        if input == 0 {
            h.imp(0, imps[i].clone());
        } else {
            h.play(0, plays[i].clone());
        }
    }
    h.finish()
}

#[test]
fn same_events_in_several_arrival_orders_give_identical_output_bytes() {
    let (imps, plays) = scenario();
    // Within a partition records stay in file order, so arrival orders differ in
    // how the two inputs interleave and which records are near each other.
    let mut imp_sorted: Vec<usize> = (0..imps.len()).collect();
    imp_sorted.sort_by_key(|&i| json(&imps[i])["event_time"].as_i64());
    let mut play_sorted: Vec<usize> = (0..plays.len()).collect();
    play_sorted.sort_by_key(|&i| json(&plays[i])["event_time"].as_i64());
    let plays_first: Vec<_> = play_sorted
        .iter()
        .map(|&i| (1, i))
        .chain(imp_sorted.iter().map(|&i| (0, i)))
        .collect();
    let imps_first: Vec<_> = imp_sorted
        .iter()
        .map(|&i| (0, i))
        .chain(play_sorted.iter().map(|&i| (1, i)))
        .collect();
    let mut alternating = Vec::new();
    for i in 0..imp_sorted.len().max(play_sorted.len()) {
        if let Some(&p) = play_sorted.get(i) {
            alternating.push((1, p));
        }
        if let Some(&m) = imp_sorted.get(i) {
            alternating.push((0, m));
        }
    }
    let reference = run_in_order(&imps_first, &imps, &plays, 1024);
    assert_eq!(reference.len(), 12);
    for (order, batch) in [
        (&plays_first, 1024),
        (&alternating, 1),
        (&imps_first, 1),
        (&alternating, 3),
    ] {
        assert_eq!(run_in_order(order, &imps, &plays, batch), reference);
    }
}

#[test]
fn plays_read_hours_ahead_without_alignment_still_give_the_exact_output() {
    let (imps, plays) = scenario();
    let mut expected_cfg = config();
    expected_cfg.alignment_max_drift_ms = None;
    expected_cfg.read_batch = 1_000_000;
    let mut h = harness(1, expected_cfg);
    // Every play first: the plays partition runs hours ahead of impressions.
    for p in &plays {
        h.play(0, p.clone());
    }
    h.feeds[0][1].close();
    h.run();
    for i in &imps {
        h.imp(0, i.clone());
    }
    let unaligned = h.finish();
    assert_eq!(h.counters().late, [0, 0]);
    let order: Vec<_> = (0..imps.len())
        .map(|i| (0, i))
        .chain((0..plays.len()).map(|i| (1, i)))
        .collect();
    assert_eq!(unaligned, run_in_order(&order, &imps, &plays, 1024));
}

#[test]
fn alignment_pauses_the_partition_that_runs_ahead() {
    let mut h = harness(1, config());
    h.imp(0, imp("i0", T0, 1, 1, 1, 1, "tv"));
    for k in 0..10 {
        h.play(0, play(&format!("p{k}"), T0 + k * 10 * MIN, 2, 2, "tv", 1));
    }
    h.run();
    // The plays partition may run at most maxOutOfOrderness + drift ahead of the
    // impressions partition, so most plays are still unread.
    let read = h.counters().records[1];
    assert!(read <= 2, "plays read while impressions lag: {read}");
    h.imp(0, imp("i1", T0 + 2 * HOUR, 1, 1, 1, 1, "tv"));
    h.run();
    assert!(h.counters().records[1] > read);
}

#[test]
fn idle_partition_is_left_out_then_included_again() {
    let mut cfg = config();
    cfg.alignment_max_drift_ms = None;
    let mut h = harness(2, cfg);
    for p in 0..2 {
        h.imp(
            p,
            imp(
                &format!("a{p}"),
                T0 + p as i64,
                10 + p as i64,
                1,
                1,
                1,
                "tv",
            ),
        );
        h.play(p, play(&format!("b{p}"), T0, 10 + p as i64, 1, "tv", 1));
    }
    h.run();
    let wm0 = h.watermark();
    assert_eq!(wm0, T0 - 2 * MIN);
    // Only impressions of partition 0 keep coming.
    h.imp(0, imp("c", T0 + HOUR, 10, 1, 1, 1, "tv"));
    h.clock.advance(30_000);
    h.run();
    assert_eq!(
        h.watermark(),
        wm0,
        "the other partitions are caught up but not yet idle"
    );
    h.clock.advance(31_000);
    h.run();
    assert_eq!(h.engine.board.idle_partitions(), 3);
    assert_eq!(
        h.watermark(),
        T0 + HOUR - 2 * MIN,
        "idle partitions are left out"
    );
    // A record on an idle partition brings it back; the watermark never goes back.
    h.play(1, play("d", T0 + 10 * MIN, 11, 1, "tv", 1));
    h.run();
    assert_eq!(h.engine.board.idle_partitions(), 2);
    assert_eq!(h.watermark(), T0 + HOUR - 2 * MIN);
    assert_eq!(
        h.counters().late,
        [0, 1],
        "behind the watermark that moved on while it was idle"
    );
}

/// Two partitions without alignment, each stream's partition read once at T0.
fn two_partitions_read_once() -> Harness {
    let mut cfg = config();
    cfg.alignment_max_drift_ms = None;
    let mut h = harness(2, cfg);
    for p in 0..2 {
        h.imp(p, imp(&format!("a{p}"), T0, 10 + p as i64, 1, 1, 1, "tv"));
        h.play(p, play(&format!("b{p}"), T0, 10 + p as i64, 1, "tv", 1));
    }
    h.run();
    h
}

/// Partition `p`'s broker (both streams) unreachable (`None`) or reached since.
fn set_contact(h: &Harness, p: usize, since: Option<i64>) {
    for f in &h.feeds[p] {
        f.set_contact(since);
    }
}

#[test]
fn a_partition_behind_an_unreachable_broker_is_not_idle_and_its_records_are_not_late() {
    let mut h = two_partitions_read_once();
    let wm0 = h.watermark();
    // Partition 1's broker goes away; partition 0's impressions keep coming.
    set_contact(&h, 1, None);
    h.imp(0, imp("c", T0 + HOUR, 10, 1, 1, 1, "tv"));
    h.clock.advance(61_000);
    h.run();
    assert_eq!(
        h.engine.board.idle_partitions(),
        1,
        "only partition 0's plays: the unreachable ones cannot be caught up"
    );
    assert_eq!(h.watermark(), wm0, "held by the unreachable partition");
    // The broker is back with what was produced meanwhile: on time.
    h.clock.advance(5 * MIN);
    let back = h.clock_now();
    set_contact(&h, 1, Some(back));
    h.play(1, play("d", T0 + 10 * MIN, 11, 1, "tv", 1));
    h.run();
    assert_eq!(h.counters().late, [0, 0]);
    // Quiet is counted from the contact, not from the last record.
    // (Slot 1: impressions of partition 1.)
    h.clock.advance(59_000);
    h.run();
    assert!(!h.engine.board.is_idle(1));
    h.clock.advance(2_000);
    h.run();
    assert!(h.engine.board.is_idle(1));
}

#[test]
fn a_partition_that_loses_its_broker_while_idle_counts_again_at_its_watermark() {
    let mut h = two_partitions_read_once();
    h.clock.advance(61_000);
    h.run();
    assert_eq!(h.engine.board.idle_partitions(), 4);
    set_contact(&h, 1, None);
    h.run();
    assert_eq!(h.engine.board.idle_partitions(), 2);
    // Partition 0 moves on; partition 1 holds the watermark where it was.
    h.imp(0, imp("c", T0 + HOUR, 10, 1, 1, 1, "tv"));
    h.play(0, play("e", T0 + HOUR, 10, 1, "tv", 1));
    h.run();
    assert_eq!(h.watermark(), T0 - 2 * MIN);
}

/// One partition, one entry opened a minute before the (manual) wall clock:
/// event time follows the wall clock.
fn one_entry_a_minute_old() -> Harness {
    let mut h = harness(1, config());
    h.imp(0, imp("a", T0 - MIN, 1, 1, 1, 1, "tv"));
    h.play(0, play("b", T0 - MIN, 1, 1, "tv", 1));
    h.run();
    h
}

#[test]
fn the_inactivity_rule_waits_while_the_broker_is_unreachable() {
    let mut h = one_entry_a_minute_old();
    set_contact(&h, 0, None);
    // A broker outage of 5 hours: quiet, but not known to be caught up.
    for _ in 0..(5 * 60) {
        h.clock.advance(MIN);
        assert_eq!(h.run(), Progress::Blocked);
    }
    assert_eq!(h.engine.board.forced_advances(), 0);
    assert!(h.entries.take().is_empty());
    let back = h.clock_now();
    set_contact(&h, 0, Some(back));
    // The inactivity timeout (15 minutes) counts from the contact.
    while h.engine.board.forced_advances() == 0 {
        h.clock.advance(MIN);
        h.run();
    }
    assert_eq!(h.clock_now() - back, 15 * MIN);
    // The next step fires what the advance passed.
    h.run();
    assert_eq!(h.entries.take().len(), 1);
}

#[test]
fn idle_partitions_with_records_waiting_count_again_before_the_first_one_read_moves_the_watermark()
{
    let mut cfg = config();
    cfg.alignment_max_drift_ms = None;
    let mut h = harness(2, cfg);
    h.imp(0, imp("a0", T0, 10, 1, 1, 1, "tv"));
    h.play(0, play("b0", T0 - 10 * MIN, 11, 1, "tv", 1));
    h.imp(1, imp("a1", T0, 12, 1, 1, 1, "tv"));
    h.play(1, play("b1", T0, 13, 1, "tv", 1));
    h.run();
    h.clock.advance(61_000);
    h.run();
    assert_eq!(
        h.engine.board.idle_partitions(),
        4,
        "all quiet for a minute"
    );
    // Traffic comes back to two partitions at once. Plays of partition 0 are
    // read first (their partition is furthest behind); the impression waiting
    // in partition 1 is on time for its own partition and must stay on time.
    h.play(0, play("c0", T0 + HOUR, 20, 1, "tv", 1));
    h.imp(1, imp("c1", T0 + HOUR - 3 * MIN, 21, 1, 1, 1, "tv"));
    h.run();
    assert_eq!(h.counters().late, [0, 0], "nothing waiting was late");
    assert_eq!(h.watermark(), T0 + HOUR - 5 * MIN);
    assert_eq!(h.engine.board.idle_partitions(), 2);
}

#[test]
fn inactivity_force_advances_the_watermark_with_a_controlled_clock() {
    let mut h = one_entry_a_minute_old();
    assert!(h.entries.take().is_empty());
    // Traffic moves to another region: nothing arrives for 5 hours.
    for _ in 0..(5 * 60) {
        h.clock.advance(MIN);
        assert_eq!(h.run(), Progress::Blocked);
    }
    assert_eq!(
        h.engine.board.forced_advances(),
        1,
        "one inactivity episode"
    );
    assert_eq!(h.watermark(), h.clock_now() - 2 * MIN);
    let out = h.entries.take();
    assert_eq!(out.len(), 1, "state drained without new events");
    assert_eq!(h.engine.live_entries(), 0);
}

#[test]
fn inactivity_force_advance_can_be_disabled() {
    let mut cfg = config();
    cfg.inactivity_timeout_ms = None;
    let mut h = harness(1, cfg);
    h.imp(0, imp("a", T0 - MIN, 1, 1, 1, 1, "tv"));
    h.play(0, play("b", T0 - MIN, 1, 1, "tv", 1));
    h.run();
    for _ in 0..(5 * 60) {
        h.clock.advance(MIN);
        h.run();
    }
    assert_eq!(h.engine.board.forced_advances(), 0);
    assert!(h.entries.take().is_empty());
    let waiting: u64 = h.engine.shards().map(|s| s.pending_events()).sum();
    assert_eq!(
        waiting + h.engine.live_entries(),
        2,
        "both events still held"
    );
}

trait ClockNow {
    fn clock_now(&self) -> i64;
}
impl ClockNow for Harness {
    fn clock_now(&self) -> i64 {
        use streamjoin_runtime::time::watermark::Clock;
        self.clock.now_ms()
    }
}

#[test]
fn end_of_input_flushes_every_entry() {
    let mut h = harness(2, config());
    for k in 0..50i64 {
        h.imp(
            (k % 2) as usize,
            imp(&format!("i{k}"), T0 + k * 1000, k, 1, 1, 1, "tv"),
        );
    }
    h.run();
    assert!(
        h.entries.take().is_empty(),
        "no timer is due before the end"
    );
    let out = h.finish();
    assert_eq!(out.len(), 50);
    assert_eq!(h.engine.live_entries(), 0);
    assert!(h.engine.shards().all(|s| s.pending_events() == 0));
}

#[test]
fn each_malformed_kind_goes_to_dead_letter_with_its_reason() {
    let mut h = harness(1, config());
    let good = imp("g", T0, 1, 1, 1, 1, "tv");
    h.imp(0, good.clone());
    h.imp(0, good[..good.len() / 2].to_string());
    h.imp(0, good.replace(r#""event_id":"g","#, ""));
    h.imp(0, good.replace(r#""profile_id":1"#, r#""profile_id":"1""#));
    h.imp(0, good.replace("\"tv\"", "\"toaster\""));
    h.imp(0, "42".to_string());
    h.play(0, good.clone());
    let out = h.finish();
    assert_eq!(out.len(), 1);
    let mut reasons: Vec<String> = h
        .dead
        .take()
        .iter()
        .map(|l| json(l)["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "bad_value",
            "invalid_json",
            "invalid_json",
            "missing_field",
            "wrong_type",
            "wrong_type"
        ]
    );
    let c = h.counters();
    assert_eq!(c.records, [6, 1]);
    assert_eq!(c.malformed_total(), 6);
    assert_eq!(h.watermark(), i64::MAX);
}

#[test]
fn malformed_records_touch_no_watermark() {
    let mut h = harness(1, config());
    h.imp(0, imp("a", T0, 1, 1, 1, 1, "tv"));
    h.play(0, play("b", T0, 1, 1, "tv", 1));
    h.imp(0, imp("c", T0 + HOUR, 1, 1, 1, 1, "toaster"));
    h.run();
    assert_eq!(h.watermark(), T0 - 2 * MIN);
}

#[test]
fn hot_key_with_100000_events_is_exact() {
    let mut cfg = config();
    cfg.read_batch = 4096;
    let mut h = harness(1, cfg);
    for i in 0..100_000i64 {
        h.imp(
            0,
            imp(&format!("e{i}"), T0 + i, 7, 7, 1 + i % 40, 1 + i % 13, "tv"),
        );
        if i % 10 == 0 {
            // A copy of an earlier event, still on time.
            h.imp(
                0,
                imp(
                    &format!("e{}", i / 2),
                    T0 + i / 2,
                    7,
                    7,
                    1 + (i / 2) % 40,
                    1 + (i / 2) % 13,
                    "tv",
                ),
            );
        }
    }
    h.play(0, play("p", T0, 7, 7, "web", 5));
    let out = h.finish();
    assert_eq!(out.len(), 1);
    let e = json(&out[0]);
    assert_eq!(e["impressions"], 100_000);
    assert_eq!(e["best_row"], 1);
    assert_eq!(e["best_rank"], 1);
    assert_eq!(h.counters().duplicates, [10_000, 0]);
}

#[test]
fn allowed_lateness_accepts_events_behind_the_watermark() {
    let mut cfg = config();
    cfg.allowed_lateness_ms = 10 * MIN;
    let mut h = harness(1, cfg);
    h.imp(0, imp("a", T0 + 20 * MIN, 1, 1, 1, 1, "tv"));
    h.play(0, play("b", T0 + 20 * MIN, 1, 1, "tv", 1));
    h.run();
    h.imp(0, imp("c", T0 + 15 * MIN, 1, 1, 1, 1, "tv"));
    h.imp(0, imp("d", T0, 1, 1, 1, 1, "tv"));
    let out = h.finish();
    assert_eq!(h.counters().late, [1, 0]);
    assert_eq!(json(&out[0])["impressions"], 2);
    assert_eq!(json(&out[0])["window_start"], T0 + 15 * MIN);
}

#[test]
fn state_does_not_grow_with_entries_already_emitted() {
    let mut h = harness(1, config());
    let keys_per_window = 500i64;
    let mut peak = 0;
    for window in 0..20i64 {
        let base = T0 + window * 5 * HOUR;
        for k in 0..keys_per_window {
            let t = base + k;
            let id = format!("w{window}k{k}");
            h.imp(0, imp(&id, t, k, window, 1, 1, "tv"));
            h.play(0, play(&id, t, k, window, "tv", 1));
        }
        h.run();
        let held =
            h.engine.live_entries() + h.engine.shards().map(|s| s.pending_events()).sum::<u64>();
        peak = peak.max(held);
        assert!(
            held <= 2 * keys_per_window as u64,
            "window {window}: {held} entries held; only the open window's belong in state"
        );
    }
    let out = h.finish();
    assert_eq!(out.len(), 20 * keys_per_window as usize);
    assert_eq!(h.engine.live_entries(), 0);
    assert!(peak >= keys_per_window as u64);
    let rocks: u64 = h
        .engine
        .shards()
        .map(|s| s.store().db_entry_count().unwrap_or(u64::MAX))
        .sum();
    assert_eq!(rocks, 0, "emitted entries are deleted from RocksDB too");
}
