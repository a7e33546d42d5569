//! The benchmark's input, generated lazily by two sources (nothing of it is
//! held in memory): `N` impressions of the hot key, one every millisecond of
//! event time (so all in one 4 h window), with exact copies of earlier ones up
//! to 50 minutes back (most of them spilled to RocksDB by then), conflicting
//! copies, plays of the hot key with copies, and impressions of background keys.
//! [`Schedule`] says which record comes at each step; `expected` reads the same
//! schedule.

use std::io::Write;

use streamjoin_runtime::io::source::{Next, PartitionSource, RecordRef, SourceError};

pub const T0: i64 = 1_700_000_000_000;
pub const HOT: (i64, i64) = (7, 7);
pub const DEVICES: [&str; 5] = ["tv", "ios", "android", "web", "other"];
/// Background keys: one impression every `BG_EVERY` hot events, cycling.
pub const BG_EVERY: u64 = 1_000;
pub const BG_KEYS: u64 = 5_000;
/// How far back (in hot events, i.e. ms) copies reach: under the bench's
/// allowed lateness of 1 h.
const COPY_REACH: u64 = 3_000_000;

/// A cheap deterministic scramble of a step number.
pub fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 7
}

pub fn time(i: u64) -> i64 {
    T0 + i as i64
}

/// The fields of hot impression `i`: row, rank, device index.
pub fn hot_fields(i: u64) -> (i64, i64, usize) {
    (
        1 + (mix(i) % 40) as i64,
        1 + (mix(i + 1) % 30) as i64,
        (i % 5) as usize,
    )
}

/// The duration of hot play `i` (a play every 50 hot events).
pub fn play_duration(i: u64) -> i64 {
    (mix(i) % 3_600_000) as i64
}

/// An earlier step whose record is copied at step `i`, if any.
pub fn exact_copy(i: u64) -> Option<u64> {
    (i % 7 == 3 && i > 1).then(|| i - 1 - mix(i) % (i - 1).min(COPY_REACH))
}

/// An earlier step whose id is reused with other content at step `i`.
pub fn conflicting_copy(i: u64) -> Option<u64> {
    (i % 10_007 == 5_003).then(|| i - 1 - mix(i + 7) % (i - 1).min(COPY_REACH))
}

/// An earlier play step (a multiple of 50) copied on the plays stream at step `i`.
pub fn play_copy(i: u64) -> Option<u64> {
    (i.is_multiple_of(350) && i >= 350).then(|| {
        let back = 1 + mix(i) % (i / 50).min(COPY_REACH / 50);
        i - 50 * back
    })
}

/// The background key of step `i`, if one comes.
pub fn background(i: u64) -> Option<i64> {
    (i % BG_EVERY == 500).then(|| 1_000 + ((i / BG_EVERY) % BG_KEYS) as i64)
}

fn hot_impression(out: &mut Vec<u8>, i: u64, row_override: Option<i64>, t: i64) {
    let (row, rank, dev) = hot_fields(i);
    let row = row_override.unwrap_or(row);
    let _ = write!(
        out,
        r#"{{"type":"impression","event_id":"h{i}","event_time":{t},"profile_id":{},"title_id":{},"row":{row},"rank":{rank},"device":"{}"}}"#,
        HOT.0, HOT.1, DEVICES[dev]
    );
}

fn hot_play(out: &mut Vec<u8>, i: u64) {
    let _ = write!(
        out,
        r#"{{"type":"play","event_id":"p{i}","event_time":{},"profile_id":{},"title_id":{},"device":"web","duration_ms":{}}}"#,
        time(i),
        HOT.0,
        HOT.1,
        play_duration(i)
    );
}

/// The records of one stream at step `i`, each pushed as one line.
fn records_at(plays: bool, i: u64, lines: &mut Vec<Vec<u8>>) {
    let mut line = |f: &mut dyn FnMut(&mut Vec<u8>)| {
        let mut out = Vec::with_capacity(200);
        f(&mut out);
        lines.push(out);
    };
    if plays {
        if i.is_multiple_of(50) {
            line(&mut |o| hot_play(o, i));
        }
        if let Some(j) = play_copy(i) {
            line(&mut |o| hot_play(o, j));
        }
        return;
    }
    line(&mut |o| hot_impression(o, i, None, time(i)));
    if let Some(k) = background(i) {
        line(&mut |o| {
            let _ = write!(
                o,
                r#"{{"type":"impression","event_id":"b{i}","event_time":{},"profile_id":{k},"title_id":3,"row":2,"rank":1,"device":"web"}}"#,
                time(i)
            );
        });
    }
    if let Some(j) = exact_copy(i) {
        line(&mut |o| hot_impression(o, j, None, time(j)));
    }
    if let Some(j) = conflicting_copy(i) {
        // Same id, other row, a millisecond later: the first one stays the event.
        line(&mut |o| hot_impression(o, j, Some(99), time(j) + 1));
    }
}

/// One stream of the benchmark, generated step by step.
pub struct Generated {
    plays: bool,
    steps: u64,
    next_step: u64,
    queue: Vec<Vec<u8>>,
    current: Vec<u8>,
    offset: i64,
}

impl Generated {
    pub fn new(plays: bool, steps: u64) -> Self {
        Self {
            plays,
            steps,
            next_step: 0,
            queue: Vec::new(),
            current: Vec::new(),
            offset: 0,
        }
    }
}

impl PartitionSource for Generated {
    fn next(&mut self) -> Result<Next<'_>, SourceError> {
        while self.queue.is_empty() {
            if self.next_step == self.steps {
                return Ok(Next::End);
            }
            records_at(self.plays, self.next_step, &mut self.queue);
            self.queue.reverse();
            self.next_step += 1;
        }
        self.current = self.queue.pop().unwrap_or_default();
        self.offset += 1;
        Ok(Next::Record(RecordRef {
            payload: &self.current,
            offset: self.offset - 1,
        }))
    }

    fn describe(&self) -> String {
        format!(
            "generated {}",
            if self.plays { "plays" } else { "impressions" }
        )
    }
}
