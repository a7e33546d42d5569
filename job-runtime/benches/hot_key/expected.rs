//! The contract's output for the benchmark's input, computed in one pass over
//! its schedule without holding the hot key's ids: each hot step's record is the
//! first of its id, so the entry sums the originals; an exact copy counts as a
//! duplicate, a copy with other content as a conflicting duplicate.

use std::collections::BTreeMap;

use crate::input::{
    self, DEVICES, HOT, background, conflicting_copy, exact_copy, hot_fields, play_copy,
    play_duration, time,
};

pub struct Expected {
    /// Canonical entry lines, sorted.
    pub entries: Vec<String>,
    /// Impressions, then plays.
    pub duplicates: [u64; 2],
    pub conflicts: u64,
    pub events: u64,
    /// Distinct ids of the hot key (what its entry counts).
    pub hot_ids: u64,
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "null".to_owned(), |v| v.to_string())
}

#[allow(clippy::too_many_arguments)]
fn line(
    key: (i64, i64),
    start: i64,
    imps: u64,
    plays: u64,
    imp_times: Option<(i64, i64)>,
    best: Option<(i64, i64)>,
    devices: &[&str],
    first_play: Option<i64>,
    duration: i128,
) -> String {
    let devices: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"profile_id":{},"title_id":{},"window_start":{start},"impressions":{imps},"plays":{plays},"first_impression_time":{},"last_impression_time":{},"best_row":{},"best_rank":{},"devices":[{}],"first_play_time":{},"play_duration_ms":{duration}}}"#,
        key.0,
        key.1,
        opt(imp_times.map(|t| t.0)),
        opt(imp_times.map(|t| t.1)),
        opt(best.map(|b| b.0)),
        opt(best.map(|b| b.1)),
        devices.join(","),
        opt(first_play),
    )
}

pub fn compute(steps: u64) -> Expected {
    let mut best = (i64::MAX, i64::MAX);
    let mut devices = [false; 5];
    let (mut plays, mut duration) = (0u64, 0i128);
    let mut dups = [0u64; 2];
    let mut conflicts = 0;
    let mut bg: BTreeMap<i64, (i64, i64, u64)> = BTreeMap::new();
    for i in 0..steps {
        let (row, rank, dev) = hot_fields(i);
        best = best.min((row, rank));
        devices[dev] = true;
        if i.is_multiple_of(50) {
            plays += 1;
            duration += i128::from(play_duration(i));
        }
        dups[0] += u64::from(exact_copy(i).is_some());
        dups[1] += u64::from(play_copy(i).is_some());
        conflicts += u64::from(conflicting_copy(i).is_some());
        if let Some(k) = background(i) {
            let e = bg.entry(k).or_insert((time(i), time(i), 0));
            e.1 = time(i);
            e.2 += 1;
        }
    }
    // Plays are on the web.
    devices[3] = true;
    let mut names: Vec<&str> = DEVICES
        .iter()
        .zip(devices)
        .filter_map(|(d, seen)| seen.then_some(*d))
        .collect();
    names.sort_unstable();
    let mut entries = vec![line(
        HOT,
        input::T0,
        steps,
        plays,
        Some((time(0), time(steps - 1))),
        Some(best),
        &names,
        Some(time(0)),
        duration,
    )];
    let bg_events: u64 = bg.values().map(|v| v.2).sum();
    for (k, (first, last, n)) in bg {
        let times = Some((first, last));
        entries.push(line(
            (k, 3),
            first,
            n,
            0,
            times,
            Some((2, 1)),
            &["web"],
            None,
            0,
        ));
    }
    entries.sort();
    Expected {
        entries,
        duplicates: dups,
        conflicts,
        events: steps + plays + bg_events,
        hot_ids: steps + plays,
    }
}
