//! One summarised state entry per open key: the contract's aggregates plus the
//! event ids needed for deduplication. Never the raw events.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::record::{DEVICES, Event, Input, Key};

/// Up to this many ids an entry scans a small inline list; beyond it, a hash map,
/// so a hot key with 100,000 events stays O(1) per event.
const INLINE_IDS: usize = 8;

type IdHasher = foldhash::fast::FixedState;

/// Event ids seen by one entry: id hash -> content fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DedupSet {
    Inline(SmallVec<[(u128, u64); 2]>),
    Map(HashMap<u128, u64, IdHasher>),
}

impl Default for DedupSet {
    fn default() -> Self {
        DedupSet::Inline(SmallVec::new())
    }
}

/// What an id tells about a newly applied event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Copy,
    Conflict,
}

impl DedupSet {
    /// Records `id` unless it was seen; tells whether it is new, a copy or a conflict.
    pub fn insert(&mut self, id: u128, content: u64) -> Seen {
        match self {
            DedupSet::Inline(list) => {
                if let Some(&(_, c)) = list.iter().find(|(i, _)| *i == id) {
                    return if c == content {
                        Seen::Copy
                    } else {
                        Seen::Conflict
                    };
                }
                if list.len() < INLINE_IDS {
                    list.push((id, content));
                } else {
                    let mut map: HashMap<u128, u64, IdHasher> =
                        HashMap::with_capacity_and_hasher(INLINE_IDS * 4, IdHasher::default());
                    map.extend(list.drain(..));
                    map.insert(id, content);
                    *self = DedupSet::Map(map);
                }
                Seen::New
            }
            DedupSet::Map(map) => match map.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => {
                    if *o.get() == content {
                        Seen::Copy
                    } else {
                        Seen::Conflict
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(content);
                    Seen::New
                }
            },
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DedupSet::Inline(l) => l.len(),
            DedupSet::Map(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn to_vec(&self) -> Vec<(u128, u64)> {
        match self {
            DedupSet::Inline(l) => l.to_vec(),
            DedupSet::Map(m) => m.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }

    fn from_vec(ids: Vec<(u128, u64)>) -> Self {
        if ids.len() <= INLINE_IDS {
            DedupSet::Inline(ids.into_iter().collect())
        } else {
            let mut map = HashMap::with_capacity_and_hasher(ids.len(), IdHasher::default());
            map.extend(ids);
            DedupSet::Map(map)
        }
    }
}

/// An open entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub window_start: i64,
    /// Fire time of the entry's timer: the first event's time + W. Fixed at open.
    pub timer: i64,
    pub impressions: u64,
    pub plays: u64,
    pub first_impression_time: Option<i64>,
    pub last_impression_time: Option<i64>,
    /// Smallest (row, rank).
    pub best: Option<(i64, i64)>,
    /// Bit i set: device DEVICES[i] seen.
    pub devices: u8,
    pub first_play_time: Option<i64>,
    pub play_duration_ms: i128,
    pub ids: DedupSet,
}

impl Entry {
    /// Opens an entry with its first event.
    pub fn open(event: &Event, window_ms: i64) -> Entry {
        let mut entry = Entry {
            window_start: event.time,
            timer: event.time.saturating_add(window_ms),
            impressions: 0,
            plays: 0,
            first_impression_time: None,
            last_impression_time: None,
            best: None,
            devices: 0,
            first_play_time: None,
            play_duration_ms: 0,
            ids: DedupSet::default(),
        };
        entry.ids.insert(event.id.hash128(), event.content_hash());
        entry.fold_new(event);
        entry
    }

    /// Folds an event in unless its id was seen.
    pub fn fold(&mut self, event: &Event) -> Seen {
        let seen = self.ids.insert(event.id.hash128(), event.content_hash());
        if seen == Seen::New {
            self.fold_new(event);
        }
        seen
    }

    fn fold_new(&mut self, e: &Event) {
        self.window_start = self.window_start.min(e.time);
        self.devices |= 1 << e.device;
        match e.input {
            Input::Impressions => {
                self.impressions += 1;
                self.first_impression_time =
                    Some(self.first_impression_time.map_or(e.time, |t| t.min(e.time)));
                self.last_impression_time =
                    Some(self.last_impression_time.map_or(e.time, |t| t.max(e.time)));
                let cand = (e.row, e.rank);
                self.best = Some(self.best.map_or(cand, |b| b.min(cand)));
            }
            Input::Plays => {
                self.plays += 1;
                self.first_play_time = Some(self.first_play_time.map_or(e.time, |t| t.min(e.time)));
                self.play_duration_ms += i128::from(e.duration_ms);
            }
        }
    }

    pub fn has_plays(&self) -> bool {
        self.plays > 0
    }

    /// The canonical output record (fields in the contract's order, no whitespace).
    pub fn write_json(&self, key: Key, names: (&str, &str), out: &mut Vec<u8>) {
        let rec = OutputRecord {
            key,
            names,
            entry: self,
        };
        // Writing into a Vec cannot fail and the record has no map keys that are not strings.
        if let Err(e) = serde_json::to_writer(&mut *out, &rec) {
            unreachable!("serialising an entry into memory failed: {e}");
        }
    }

    /// State encoding: a version tag first, so a later release can read it.
    pub fn encode(&self) -> Vec<u8> {
        let stored = StoredEntry::V1(EntryV1 {
            window_start: self.window_start,
            timer: self.timer,
            impressions: self.impressions,
            plays: self.plays,
            first_impression_time: self.first_impression_time,
            last_impression_time: self.last_impression_time,
            best: self.best,
            devices: self.devices,
            first_play_time: self.first_play_time,
            play_duration_ms: self.play_duration_ms,
            ids: self.ids.to_vec(),
        });
        postcard::to_stdvec(&stored).unwrap_or_else(|e| unreachable!("encoding to memory: {e}"))
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, postcard::Error> {
        Ok(match postcard::from_bytes::<StoredEntry>(bytes)? {
            StoredEntry::V1(v) => Entry {
                window_start: v.window_start,
                timer: v.timer,
                impressions: v.impressions,
                plays: v.plays,
                first_impression_time: v.first_impression_time,
                last_impression_time: v.last_impression_time,
                best: v.best,
                devices: v.devices,
                first_play_time: v.first_play_time,
                play_duration_ms: v.play_duration_ms,
                ids: DedupSet::from_vec(v.ids),
            },
        })
    }
}

/// Versioned state encoding. A new layout is a new variant; old variants stay
/// decodable and are upgraded on read.
#[derive(Serialize, Deserialize)]
enum StoredEntry {
    V1(EntryV1),
}

#[derive(Serialize, Deserialize)]
struct EntryV1 {
    window_start: i64,
    timer: i64,
    impressions: u64,
    plays: u64,
    first_impression_time: Option<i64>,
    last_impression_time: Option<i64>,
    best: Option<(i64, i64)>,
    devices: u8,
    first_play_time: Option<i64>,
    play_duration_ms: i128,
    ids: Vec<(u128, u64)>,
}

struct OutputRecord<'a> {
    key: Key,
    names: (&'a str, &'a str),
    entry: &'a Entry,
}

struct DeviceList(u8);

impl Serialize for DeviceList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            DEVICES
                .iter()
                .enumerate()
                .filter(|(i, _)| self.0 & (1 << i) != 0)
                .map(|(_, d)| d),
        )
    }
}

impl Serialize for OutputRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.entry;
        let mut m = s.serialize_map(Some(12))?;
        m.serialize_entry(self.names.0, &self.key.profile)?;
        m.serialize_entry(self.names.1, &self.key.title)?;
        m.serialize_entry("window_start", &e.window_start)?;
        m.serialize_entry("impressions", &e.impressions)?;
        m.serialize_entry("plays", &e.plays)?;
        m.serialize_entry("first_impression_time", &e.first_impression_time)?;
        m.serialize_entry("last_impression_time", &e.last_impression_time)?;
        m.serialize_entry("best_row", &e.best.map(|b| b.0))?;
        m.serialize_entry("best_rank", &e.best.map(|b| b.1))?;
        m.serialize_entry("devices", &DeviceList(e.devices))?;
        m.serialize_entry("first_play_time", &e.first_play_time)?;
        m.serialize_entry("play_duration_ms", &e.play_duration_ms)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EventId;

    fn ev(input: Input, time: i64, id: &str, device: u8) -> Event {
        Event {
            input,
            time,
            key: Key {
                profile: 7,
                title: 9,
            },
            id: EventId::new(id),
            row: 3,
            rank: 2,
            duration_ms: if input == Input::Plays { 1000 } else { 0 },
            device,
        }
    }

    #[test]
    fn canonical_json_has_contract_order_and_nulls() {
        let e = Entry::open(&ev(Input::Plays, 100, "p", 3), 1000);
        let mut out = Vec::new();
        e.write_json(
            Key {
                profile: 7,
                title: 9,
            },
            ("profile_id", "title_id"),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"{"profile_id":7,"title_id":9,"window_start":100,"impressions":0,"plays":1,"first_impression_time":null,"last_impression_time":null,"best_row":null,"best_rank":null,"devices":["tv"],"first_play_time":100,"play_duration_ms":1000}"#
        );
    }

    #[test]
    fn devices_are_sorted_by_byte_value() {
        let mut e = Entry::open(&ev(Input::Impressions, 1, "a", 4), 1000);
        e.fold(&ev(Input::Impressions, 2, "b", 0));
        e.fold(&ev(Input::Impressions, 3, "c", 3));
        let mut out = Vec::new();
        e.write_json(Key::default(), ("profile_id", "title_id"), &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains(r#""devices":["android","tv","web"]"#),
            "{text}"
        );
    }

    #[test]
    fn duplicate_ids_fold_once_and_conflicts_are_told_apart() {
        let first = ev(Input::Impressions, 1, "a", 0);
        let mut e = Entry::open(&first, 1000);
        assert_eq!(e.fold(&first), Seen::Copy);
        let mut changed = first.clone();
        changed.row = 1;
        assert_eq!(e.fold(&changed), Seen::Conflict);
        assert_eq!(e.impressions, 1);
        assert_eq!(e.best, Some((3, 2)));
    }

    #[test]
    fn hot_key_dedup_switches_to_a_map_and_stays_exact() {
        let mut e = Entry::open(&ev(Input::Impressions, 0, "0", 0), i64::MAX / 2);
        for i in 1..100_000 {
            assert_eq!(
                e.fold(&ev(Input::Impressions, i, &i.to_string(), 0)),
                Seen::New
            );
        }
        for i in (0..100_000).step_by(997) {
            assert_eq!(
                e.fold(&ev(Input::Impressions, i, &i.to_string(), 0)),
                Seen::Copy
            );
        }
        assert_eq!(e.impressions, 100_000);
        assert!(matches!(e.ids, DedupSet::Map(_)));
    }

    #[test]
    fn encoding_round_trips_and_starts_with_the_version() {
        let mut e = Entry::open(&ev(Input::Impressions, 5, "a", 1), 1000);
        for i in 0..20 {
            e.fold(&ev(Input::Plays, 6 + i, &format!("p{i}"), 2));
        }
        let bytes = e.encode();
        assert_eq!(bytes[0], 0, "variant V1 is tagged 0");
        assert_eq!(Entry::decode(&bytes).expect("decodes"), e);
        assert!(Entry::decode(&[9, 1, 2]).is_err());
    }
}
