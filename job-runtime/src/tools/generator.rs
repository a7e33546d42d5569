//! The built-in generator: the same record shapes as the reference data set
//! (sessions of impressions, some with plays; duplicates, late and malformed
//! records at configurable rates), partitioned by FNV-1a of the key as the
//! reference layout is, produced lazily in arrival order with an optional rate.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::io::source::{Next, PartitionSource, RecordRef, SourceError};
use crate::model::record::DEVICES;

/// FNV-1a 64 of `"<profile_id>:<title_id>"`, mod `partitions` (the reference layout).
pub fn partition_of(profile: i64, title: i64, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{profile}:{title}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// Records over all partitions (approximate: whole sessions are kept).
    pub events: u64,
    pub partitions: u32,
    pub seed: u64,
    pub start_ms: i64,
    pub hours: f64,
    pub max_disorder_ms: i64,
    pub window_ms: i64,
    pub titles: i64,
    pub profiles: i64,
    pub play_rate: f64,
    pub dup_rate: f64,
    pub late_rate: f64,
    pub malformed_rate: f64,
    /// Records per second over all partitions; unlimited when None.
    pub rate: Option<f64>,
}

impl GenSpec {
    pub fn new(events: u64, partitions: u32, start_ms: i64) -> Self {
        Self {
            events,
            partitions,
            seed: 1,
            start_ms,
            hours: 24.0,
            max_disorder_ms: 120_000,
            window_ms: 4 * 3_600_000,
            titles: 20_000,
            profiles: (events / 5).max(10) as i64,
            play_rate: 0.15,
            dup_rate: 0.01,
            late_rate: 0.001,
            malformed_rate: 0.0001,
            rate: None,
        }
    }
}

#[derive(Serialize)]
struct ImpressionRec<'a> {
    #[serde(rename = "type")]
    t: &'static str,
    event_id: &'a str,
    event_time: i64,
    profile_id: i64,
    title_id: i64,
    row: i64,
    rank: i64,
    device: &'static str,
}

#[derive(Serialize)]
struct PlayRec<'a> {
    #[serde(rename = "type")]
    t: &'static str,
    event_id: &'a str,
    event_time: i64,
    profile_id: i64,
    title_id: i64,
    device: &'static str,
    duration_ms: i64,
}

type Scheduled = Reverse<(i64, u64, usize, Vec<u8>)>;

/// Generator state of one partition, shared by its two sources.
struct PartGen {
    spec: GenSpec,
    p: u32,
    rng: SmallRng,
    budget: u64,
    produced: u64,
    clock_ms: f64,
    /// Event time per record of the budget.
    step_ms: f64,
    /// The span's end; no event happens after it, so every partition of both
    /// inputs ends at about the same event time (a data set whose inputs end
    /// hours apart would measure idleness timeouts, not the join).
    end_ms: i64,
    scheduled: BinaryHeap<Scheduled>,
    queues: [VecDeque<Vec<u8>>; 2],
    seq: u64,
    started: Instant,
    next_late_profile: i64,
    malformed_made: u64,
}

impl PartGen {
    fn new(spec: &GenSpec, p: u32) -> Self {
        let budget = spec.events / u64::from(spec.partitions.max(1));
        let span_ms = spec.hours * 3_600_000.0;
        Self {
            rng: SmallRng::seed_from_u64(
                spec.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(p)),
            ),
            p,
            budget,
            produced: 0,
            clock_ms: spec.start_ms as f64,
            step_ms: span_ms / (budget.max(1) as f64),
            end_ms: spec.start_ms + span_ms as i64,
            scheduled: BinaryHeap::new(),
            queues: [VecDeque::new(), VecDeque::new()],
            seq: 0,
            started: Instant::now(),
            next_late_profile: spec.profiles + 1 + i64::from(p) * 1_000_000_000,
            malformed_made: 0,
            spec: spec.clone(),
        }
    }

    fn exp(&mut self, mean: f64) -> f64 {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        -mean * u.ln()
    }

    fn event_id(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    fn schedule(&mut self, arrival: i64, input: usize, bytes: Vec<u8>) {
        self.seq += 1;
        self.scheduled
            .push(Reverse((arrival, self.seq, input, bytes)));
    }

    fn key(&mut self) -> (i64, i64) {
        loop {
            let profile = self.rng.random_range(1..=self.spec.profiles);
            // Log-uniform titles: a Zipf-like head of popular titles.
            let u: f64 = self.rng.random();
            let title = ((self.spec.titles as f64).powf(u) as i64).clamp(1, self.spec.titles);
            if partition_of(profile, title, self.spec.partitions) == self.p {
                return (profile, title);
            }
        }
    }

    /// A key no session uses (profile beyond `profiles`) that hashes to this partition.
    fn late_key(&mut self) -> (i64, i64) {
        loop {
            self.next_late_profile += 1;
            let key = (self.next_late_profile, 1);
            if partition_of(key.0, key.1, self.spec.partitions) == self.p {
                return key;
            }
        }
    }

    fn impression(&mut self, time: i64, key: (i64, i64), device: &'static str) -> Vec<u8> {
        let id = self.event_id();
        let row = self
            .rng
            .random_range(1..=40)
            .min(self.rng.random_range(1..=40));
        let rank = self.rng.random_range(1..=40);
        serde_json::to_vec(&ImpressionRec {
            t: "impression",
            event_id: &id,
            event_time: time,
            profile_id: key.0,
            title_id: key.1,
            row,
            rank,
            device,
        })
        .unwrap_or_default()
    }

    fn play(&mut self, time: i64, key: (i64, i64), device: &'static str) -> Vec<u8> {
        let id = self.event_id();
        let duration_ms = 1_000 + self.exp(25.0 * 60_000.0) as i64;
        serde_json::to_vec(&PlayRec {
            t: "play",
            event_id: &id,
            event_time: time,
            profile_id: key.0,
            title_id: key.1,
            device,
            duration_ms,
        })
        .unwrap_or_default()
    }

    fn device(&mut self, session: &'static str) -> &'static str {
        if self.rng.random_bool(0.85) {
            session
        } else {
            DEVICES[self.rng.random_range(0..DEVICES.len())]
        }
    }

    fn new_session(&mut self) {
        let t0 = self.clock_ms as i64;
        let key = self.key();
        let session_device = match self.rng.random_range(0..100) {
            0..45 => "tv",
            45..65 => "android",
            65..80 => "ios",
            80..95 => "web",
            _ => "other",
        };
        let disorder = (self.spec.max_disorder_ms / 2).max(1);
        // Every event of a session happens at or after the generator's clock, so that
        // each partition's records leave in arrival order, at most D/2 after they happened.
        let has_plays = self.rng.random_bool(self.spec.play_rate);
        let lead = if has_plays && self.rng.random_bool(0.05) {
            // The first play happens 1 s - 5 min before the first impression.
            self.rng.random_range(1_000..300_000)
        } else {
            0
        };
        let mut t = t0 + lead;
        let impressions = self.rng.random_range(1..=3);
        for _ in 0..impressions {
            let d = self.device(session_device);
            let rec = self.impression(t.min(self.end_ms), key, d);
            let arrival = t + self.rng.random_range(0..disorder);
            self.schedule(arrival, 0, rec);
            t += self.rng.random_range(30_000..600_000);
        }
        let plays = if has_plays {
            self.rng.random_range(1..=3)
        } else {
            0
        };
        if has_plays {
            for i in 0..plays {
                let at = if i == 0 && lead > 0 {
                    t0
                } else {
                    // Plays stay well inside the entry's window.
                    t0 + lead + (self.exp(20.0 * 60_000.0) as i64).min(self.spec.window_ms / 2)
                };
                let at = at.min(self.end_ms);
                let d = self.device(session_device);
                let rec = self.play(at, key, d);
                let arrival = at + self.rng.random_range(0..disorder);
                self.schedule(arrival, 1, rec);
            }
        }
        // The clock follows the share of the budget spent (sessions, copies and
        // extras alike), with a little jitter: every partition's budget then runs
        // out at the span's end, not minutes apart.
        let spent = self.produced + self.scheduled.len() as u64;
        let target = self.spec.start_ms as f64 + self.step_ms * spent as f64;
        let jitter = self.exp(self.step_ms * f64::from(impressions + plays));
        self.clock_ms = self.clock_ms.max(target + jitter);
    }

    /// Moves records into the queues until `input` has one or the budget is spent.
    fn fill(&mut self, input: usize) {
        while self.queues[input].is_empty() && self.produced < self.budget {
            let due = self
                .scheduled
                .peek()
                .is_some_and(|Reverse((arrival, ..))| (*arrival as f64) <= self.clock_ms);
            if !due {
                if self.produced + (self.scheduled.len() as u64) < self.budget {
                    self.new_session();
                    continue;
                }
                if self.scheduled.is_empty() {
                    self.budget = self.produced;
                    break;
                }
            }
            let Some(Reverse((arrival, _, which, bytes))) = self.scheduled.pop() else {
                break;
            };
            self.clock_ms = self.clock_ms.max(arrival as f64);
            let r: f64 = self.rng.random();
            if r < self.spec.dup_rate {
                let copy_at = arrival
                    + self
                        .rng
                        .random_range(0..(self.spec.max_disorder_ms / 4).max(1));
                self.schedule(copy_at, which, bytes.clone());
            } else if r < self.spec.dup_rate + self.spec.malformed_rate {
                self.malformed_made += 1;
                self.queues[which].push_back(malformed(&bytes, self.malformed_made));
                self.produced += 1;
            } else if r < self.spec.dup_rate + self.spec.malformed_rate + self.spec.late_rate {
                // Far behind the watermark, with a key of its own on this partition.
                let late_t = arrival - self.spec.window_ms - self.rng.random_range(0..3_600_000);
                let key = self.late_key();
                let rec = self.impression(late_t, key, "web");
                self.queues[0].push_back(rec);
                self.produced += 1;
            }
            self.queues[which].push_back(bytes);
            self.produced += 1;
        }
    }

    fn next(&mut self, input: usize) -> Option<Option<Vec<u8>>> {
        if let Some(rate) = self.spec.rate {
            let per_partition = rate / f64::from(self.spec.partitions.max(1));
            let allowed = self.started.elapsed().as_secs_f64() * per_partition;
            if (self.produced as f64) > allowed + 1_000.0 && self.queues[input].is_empty() {
                return Some(None);
            }
        }
        self.fill(input);
        match self.queues[input].pop_front() {
            Some(r) => Some(Some(r)),
            None if self.produced >= self.budget => None,
            None => Some(None),
        }
    }
}

/// The `n`-th malformed copy of a valid record; the kinds take turns so each
/// appears: a truncated line (`invalid_json`), no `event_id`
/// (`missing_field`), `profile_id` as a string (`wrong_type`), an unknown
/// device (`bad_value`).
fn malformed(record: &[u8], n: u64) -> Vec<u8> {
    let text = String::from_utf8_lossy(record);
    let broken = match n % 4 {
        1 => remove_field(&text, "\"event_id\":\""),
        2 => quote_number(&text, "\"profile_id\":"),
        3 => Some(text.replace("\"device\":\"", "\"device\":\"x-")),
        _ => None,
    };
    broken.map_or_else(
        || record[..record.len() * 2 / 3].to_vec(),
        String::into_bytes,
    )
}

/// The record without the string field that starts with `prefix`.
fn remove_field(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let end = start + prefix.len() + text[start + prefix.len()..].find("\",")? + 2;
    Some(format!("{}{}", &text[..start], &text[end..]))
}

/// The record with the number after `prefix` written as a string.
fn quote_number(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)? + prefix.len();
    let len = text[start..].find([',', '}'])?;
    Some(format!(
        "{}\"{}\"{}",
        &text[..start],
        &text[start..start + len],
        &text[start + len..]
    ))
}

/// One input of one generated partition.
pub struct GenSource {
    gen_state: Arc<Mutex<PartGen>>,
    input: usize,
    current: Vec<u8>,
    offset: i64,
}

/// The two sources (impressions, plays) of partition `p`.
pub fn partition_sources(spec: &GenSpec, p: u32) -> [GenSource; 2] {
    let g = Arc::new(Mutex::new(PartGen::new(spec, p)));
    [0, 1].map(|input| GenSource {
        gen_state: g.clone(),
        input,
        current: Vec::new(),
        offset: 0,
    })
}

impl PartitionSource for GenSource {
    fn next(&mut self) -> Result<Next<'_>, SourceError> {
        let mut g = self.gen_state.lock().map_err(|_| SourceError::Other {
            name: self.describe(),
            reason: "generator lock poisoned".into(),
        })?;
        match g.next(self.input) {
            None => Ok(Next::End),
            Some(None) => Ok(Next::CaughtUp),
            Some(Some(rec)) => {
                drop(g);
                self.current = rec;
                let offset = self.offset;
                self.offset += 1;
                Ok(Next::Record(RecordRef {
                    payload: &self.current,
                    offset,
                }))
            }
        }
    }

    fn describe(&self) -> String {
        format!("generator input {}", self.input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldNames;
    use crate::model::record::{Input, RecordParser};

    #[test]
    fn fnv_partitioning_matches_the_reference_layout() {
        // Values computed with the reference generator's FNV-1a 64 definition.
        let h = |s: &str| {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in s.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
            h
        };
        assert_eq!(u64::from(partition_of(123, 456, 7)), h("123:456") % 7);
        assert_eq!(h(""), 0xcbf29ce484222325);
    }

    #[test]
    fn generated_records_are_valid_and_on_their_partition() {
        let spec = GenSpec::new(20_000, 2, 1_700_000_000_000);
        let parsers = [
            RecordParser::new(Input::Impressions, FieldNames::default()),
            RecordParser::new(Input::Plays, FieldNames::default()),
        ];
        let mut total = 0;
        let mut malformed = 0;
        for p in 0..2 {
            let mut srcs = partition_sources(&spec, p);
            for (i, src) in srcs.iter_mut().enumerate() {
                while let Ok(Next::Record(r)) = src.next() {
                    total += 1;
                    match parsers[i].parse(r.payload) {
                        Ok(e) => assert_eq!(partition_of(e.key.profile, e.key.title, 2), p),
                        Err(_) => malformed += 1,
                    }
                }
            }
        }
        assert!((19_000..=21_000).contains(&total), "{total}");
        let rec = br#"{"type":"play","event_id":"ab","event_time":5,"profile_id":12,"title_id":3,"device":"tv","duration_ms":9}"#;
        let kinds: Vec<String> = (0..4)
            .map(|n| String::from_utf8(super::malformed(rec, n)).expect("utf8"))
            .collect();
        assert_eq!(kinds[0], String::from_utf8_lossy(&rec[..rec.len() * 2 / 3]));
        assert!(
            !kinds[1].contains("event_id")
                && kinds[1].contains(r#"{"type":"play","event_time":5,"#),
            "{}",
            kinds[1]
        );
        assert!(kinds[2].contains(r#""profile_id":"12","#), "{}", kinds[2]);
        assert!(kinds[3].contains(r#""device":"x-tv""#), "{}", kinds[3]);
        assert!(malformed < 50, "{malformed}");
    }
}
