//! One summarised state entry per open key: the contract's aggregates plus the
//! event ids needed for deduplication. Never the raw events.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::model::record::{Event, Input};

/// Up to this many ids an entry scans a small inline list; beyond it, a hash map,
/// so a hot key with 100,000 events stays O(1) per event.
const INLINE_IDS: usize = 8;

type IdHasher = foldhash::fast::FixedState;

/// A 128-bit id hash stored as two words, so an id pair is 24 bytes aligned to 8
/// (a `u128` would pad every entry to 16-byte alignment).
type IdHash = [u64; 2];

fn split(id: u128) -> IdHash {
    [id as u64, (id >> 64) as u64]
}

fn join(id: IdHash) -> u128 {
    u128::from(id[0]) | (u128::from(id[1]) << 64)
}

/// Event ids seen by one entry: id hash -> content fingerprint. Four ids fit
/// in the entry itself: with two, every entry with a third event allocated a
/// list (and freed it when emitted), and each later event read it from
/// another cache line; `replay` of `medium` took ~10% less CPU with four.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DedupSet {
    Inline(SmallVec<[(IdHash, u64); 4]>),
    Map(Box<HashMap<IdHash, u64, IdHasher>>),
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

fn seen_again(stored: u64, content: u64) -> Seen {
    if stored == content {
        Seen::Copy
    } else {
        Seen::Conflict
    }
}

impl DedupSet {
    /// Records `id` unless it was seen; tells whether it is new, a copy or a conflict.
    pub fn insert(&mut self, id: u128, content: u64) -> Seen {
        let id = split(id);
        match self {
            DedupSet::Inline(list) => {
                if let Some(&(_, c)) = list.iter().find(|(i, _)| *i == id) {
                    return seen_again(c, content);
                }
                if list.len() < INLINE_IDS {
                    list.push((id, content));
                } else {
                    let mut map: HashMap<IdHash, u64, IdHasher> =
                        HashMap::with_capacity_and_hasher(INLINE_IDS * 4, IdHasher::default());
                    map.extend(list.drain(..));
                    map.insert(id, content);
                    *self = DedupSet::Map(Box::new(map));
                }
                Seen::New
            }
            DedupSet::Map(map) => match map.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => seen_again(*o.get(), content),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(content);
                    Seen::New
                }
            },
        }
    }

    /// The content fingerprint stored for `id`, if it is held here.
    pub fn get(&self, id: u128) -> Option<u64> {
        let id = split(id);
        match self {
            DedupSet::Inline(list) => list.iter().find(|(i, _)| *i == id).map(|&(_, c)| c),
            DedupSet::Map(map) => map.get(&id).copied(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DedupSet::Inline(l) => l.len(),
            DedupSet::Map(m) => m.len(),
        }
    }

    /// Approximate heap bytes held (beyond the entry itself): the table's
    /// buckets and control bytes, or a spilled-over inline list.
    pub fn heap_bytes(&self) -> usize {
        const PAIR: usize = size_of::<(IdHash, u64)>();
        match self {
            DedupSet::Inline(l) if l.spilled() => l.capacity() * PAIR,
            DedupSet::Inline(_) => 0,
            DedupSet::Map(m) if m.capacity() == 0 => size_of::<HashMap<IdHash, u64, IdHasher>>(),
            DedupSet::Map(m) => {
                // hashbrown keeps at most 7/8 of a power-of-two bucket count full.
                let buckets = (m.capacity() * 8 / 7).next_power_of_two();
                size_of::<HashMap<IdHash, u64, IdHasher>>() + buckets * (PAIR + 1) + 16
            }
        }
    }

    /// Every id with its fingerprint, in no particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (u128, u64)> + '_ {
        let (inline, map) = match self {
            DedupSet::Inline(l) => (Some(l.iter()), None),
            DedupSet::Map(m) => (None, Some(m.iter())),
        };
        let inline = inline.into_iter().flatten().map(|(k, v)| (join(*k), *v));
        inline.chain(map.into_iter().flatten().map(|(k, v)| (join(*k), *v)))
    }

    /// Forgets every id; a table keeps its buckets for the next ids unless it
    /// holds more than `keep_bytes`.
    fn clear(&mut self, keep_bytes: usize) {
        match self {
            DedupSet::Inline(l) => l.clear(),
            DedupSet::Map(m) => {
                m.clear();
                if self.heap_bytes() > keep_bytes {
                    *self = DedupSet::default();
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn to_vec(&self) -> Vec<(u128, u64)> {
        match self {
            DedupSet::Inline(l) => l.iter().map(|(k, v)| (join(*k), *v)).collect(),
            DedupSet::Map(m) => m.iter().map(|(k, v)| (join(*k), *v)).collect(),
        }
    }

    fn from_vec(ids: Vec<(u128, u64)>) -> Self {
        let pairs = ids.into_iter().map(|(k, v)| (split(k), v));
        if pairs.len() <= INLINE_IDS {
            DedupSet::Inline(pairs.collect())
        } else {
            let mut map = HashMap::with_capacity_and_hasher(pairs.len(), IdHasher::default());
            map.extend(pairs);
            DedupSet::Map(Box::new(map))
        }
    }
}

/// An exact sum of play durations kept as two words (an `i128` field would force
/// 16-byte alignment on every cached entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct WideSum {
    lo: u64,
    hi: i64,
}

impl WideSum {
    fn get(self) -> i128 {
        (i128::from(self.hi) << 64) | i128::from(self.lo)
    }

    fn set(v: i128) -> Self {
        WideSum {
            lo: v as u64,
            hi: (v >> 64) as i64,
        }
    }
}

/// An open entry. Optional aggregates are kept as plain words (presence follows
/// from the impression and play counts) so a cached entry stays small: the cache
/// holds hundreds of thousands of them and every probe is a cache miss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub window_start: i64,
    /// Fire time of the entry's timer: the first event's time + W. Fixed at open.
    pub timer: i64,
    pub impressions: u64,
    pub plays: u64,
    first_impression_time: i64,
    last_impression_time: i64,
    /// Smallest (row, rank).
    best: (i64, i64),
    first_play_time: i64,
    play_duration_ms: WideSum,
    /// Bit i set: device DEVICES[i] seen.
    pub devices: u8,
    /// The entry's event ids held in memory: all of them, or those seen since
    /// the older ones were spilled to RocksDB (`crate::state::ids`).
    pub ids: DedupSet,
    /// How many of the entry's event ids are in RocksDB instead of `ids`.
    pub spilled_ids: u64,
}

impl Entry {
    /// Opens an entry with its first event.
    pub fn open(event: &Event, window_ms: i64) -> Entry {
        let mut entry = Entry {
            window_start: event.time,
            timer: event.time.saturating_add(window_ms),
            impressions: 0,
            plays: 0,
            first_impression_time: i64::MAX,
            last_impression_time: i64::MIN,
            best: (i64::MAX, i64::MAX),
            first_play_time: i64::MAX,
            play_duration_ms: WideSum::default(),
            devices: 0,
            ids: DedupSet::default(),
            spilled_ids: 0,
        };
        entry.ids.insert(event.id.hash128(), event.content_hash());
        entry.fold_new(event);
        entry
    }

    /// Folds an event in unless its id was seen, for an entry that holds all
    /// its ids in memory.
    pub fn fold(&mut self, event: &Event) -> Seen {
        debug_assert_eq!(self.spilled_ids, 0, "ids in RocksDB need fold_with");
        let seen = self.ids.insert(event.id.hash128(), event.content_hash());
        if seen == Seen::New {
            self.fold_new(event);
        }
        seen
    }

    /// Folds an event in unless its id was seen, in memory or (when the entry
    /// spilled ids) by `spilled`, which looks an id up in RocksDB.
    pub fn fold_with<E>(
        &mut self,
        event: &Event,
        spilled: impl FnOnce(u128) -> Result<Option<u64>, E>,
    ) -> Result<Seen, E> {
        if self.spilled_ids == 0 {
            return Ok(self.fold(event));
        }
        let (id, content) = (event.id.hash128(), event.content_hash());
        let seen = match self.ids.get(id) {
            Some(stored) => seen_again(stored, content),
            None => match spilled(id)? {
                Some(stored) => seen_again(stored, content),
                None => self.ids.insert(id, content),
            },
        };
        if seen == Seen::New {
            self.fold_new(event);
        }
        Ok(seen)
    }

    /// Counts the ids held in memory as written to RocksDB and forgets them
    /// (keeping a table of at most `keep_bytes` for the next ones). Returns how
    /// many there were.
    pub fn mark_ids_spilled(&mut self, keep_bytes: usize) -> u64 {
        let n = self.ids.len() as u64;
        self.spilled_ids += n;
        self.ids.clear(keep_bytes);
        n
    }

    fn fold_new(&mut self, e: &Event) {
        self.window_start = self.window_start.min(e.time);
        self.devices |= 1 << e.device;
        match e.input {
            Input::Impressions => {
                self.impressions += 1;
                self.first_impression_time = self.first_impression_time.min(e.time);
                self.last_impression_time = self.last_impression_time.max(e.time);
                self.best = self.best.min((e.row, e.rank));
            }
            Input::Plays => {
                self.plays += 1;
                self.first_play_time = self.first_play_time.min(e.time);
                self.play_duration_ms =
                    WideSum::set(self.play_duration_ms.get() + i128::from(e.duration_ms));
            }
        }
    }

    pub fn has_plays(&self) -> bool {
        self.plays > 0
    }

    fn if_impressions<T>(&self, v: T) -> Option<T> {
        (self.impressions > 0).then_some(v)
    }

    pub fn first_impression_time(&self) -> Option<i64> {
        self.if_impressions(self.first_impression_time)
    }

    pub fn last_impression_time(&self) -> Option<i64> {
        self.if_impressions(self.last_impression_time)
    }

    /// Smallest (row, rank) among the impressions.
    pub fn best(&self) -> Option<(i64, i64)> {
        self.if_impressions(self.best)
    }

    pub fn first_play_time(&self) -> Option<i64> {
        self.has_plays().then_some(self.first_play_time)
    }

    pub fn play_duration_ms(&self) -> i128 {
        self.play_duration_ms.get()
    }

    /// State encoding: a version tag first, so a later release can read it.
    /// An entry with no ids in RocksDB keeps the first layout, which every
    /// release reads.
    pub fn encode(&self) -> Vec<u8> {
        let v1 = EntryV1 {
            window_start: self.window_start,
            timer: self.timer,
            impressions: self.impressions,
            plays: self.plays,
            first_impression_time: self.first_impression_time(),
            last_impression_time: self.last_impression_time(),
            best: self.best(),
            devices: self.devices,
            first_play_time: self.first_play_time(),
            play_duration_ms: self.play_duration_ms(),
            ids: self.ids.to_vec(),
        };
        let stored = if self.spilled_ids == 0 {
            StoredEntry::V1(v1)
        } else {
            StoredEntry::V2(EntryV2 {
                v1,
                spilled_ids: self.spilled_ids,
            })
        };
        postcard::to_stdvec(&stored).unwrap_or_else(|e| unreachable!("encoding to memory: {e}"))
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, postcard::Error> {
        Ok(match postcard::from_bytes::<StoredEntry>(bytes)? {
            StoredEntry::V1(v) => Entry::from_v1(v, 0),
            StoredEntry::V2(v) => Entry::from_v1(v.v1, v.spilled_ids),
        })
    }

    fn from_v1(v: EntryV1, spilled_ids: u64) -> Entry {
        Entry {
            window_start: v.window_start,
            timer: v.timer,
            impressions: v.impressions,
            plays: v.plays,
            first_impression_time: v.first_impression_time.unwrap_or(i64::MAX),
            last_impression_time: v.last_impression_time.unwrap_or(i64::MIN),
            best: v.best.unwrap_or((i64::MAX, i64::MAX)),
            devices: v.devices,
            first_play_time: v.first_play_time.unwrap_or(i64::MAX),
            play_duration_ms: WideSum::set(v.play_duration_ms),
            ids: DedupSet::from_vec(v.ids),
            spilled_ids,
        }
    }
}

/// Versioned state encoding. A new layout is a new variant; old variants stay
/// decodable and are upgraded on read.
#[derive(Serialize, Deserialize)]
enum StoredEntry {
    V1(EntryV1),
    V2(EntryV2),
}

/// V1 plus the count of the entry's ids kept in RocksDB's `ids` column family.
#[derive(Serialize, Deserialize)]
struct EntryV2 {
    v1: EntryV1,
    spilled_ids: u64,
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

/// An event of key (7, 9) for the tests of the entry and of its output.
#[cfg(test)]
pub(crate) fn test_event(input: Input, time: i64, id: &str, device: u8) -> Event {
    use crate::model::record::{EventId, Key};
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

#[cfg(test)]
mod tests {
    use super::test_event as ev;
    use super::*;

    #[test]
    fn duplicate_ids_fold_once_and_conflicts_are_told_apart() {
        let first = ev(Input::Impressions, 1, "a", 0);
        let mut e = Entry::open(&first, 1000);
        assert_eq!(e.fold(&first), Seen::Copy);
        let mut changed = first.clone();
        changed.row = 1;
        assert_eq!(e.fold(&changed), Seen::Conflict);
        assert_eq!(e.impressions, 1);
        assert_eq!(e.best(), Some((3, 2)));
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

    #[test]
    fn an_entry_with_spilled_ids_round_trips_in_the_second_layout() {
        let mut e = Entry::open(&ev(Input::Impressions, 5, "a", 1), 1000);
        for i in 0..20 {
            e.fold(&ev(Input::Plays, 6 + i, &format!("p{i}"), 2));
        }
        assert_eq!(e.mark_ids_spilled(1 << 20), 21);
        e.fold_with(&ev(Input::Plays, 30, "q", 2), |_| Ok::<_, ()>(None))
            .expect("lookup");
        assert_eq!((e.spilled_ids, e.ids.len(), e.plays), (21, 1, 21));
        let bytes = e.encode();
        assert_eq!(bytes[0], 1, "variant V2 is tagged 1");
        // (A table emptied by the spill decodes as the inline list: same ids.)
        let back = Entry::decode(&bytes).expect("decodes");
        assert_eq!(back.encode(), bytes);
        assert_eq!((back.spilled_ids, back.ids.len()), (21, 1));
    }

    #[test]
    fn a_spilled_id_found_by_the_lookup_is_a_copy_or_a_conflict() {
        let first = ev(Input::Impressions, 1, "a", 0);
        let mut e = Entry::open(&first, 1000);
        e.mark_ids_spilled(0);
        let stored = first.content_hash();
        let lookup = |_| Ok::<_, ()>(Some(stored));
        assert_eq!(e.fold_with(&first, lookup), Ok(Seen::Copy));
        let mut changed = first.clone();
        changed.row = 1;
        assert_eq!(e.fold_with(&changed, lookup), Ok(Seen::Conflict));
        assert_eq!(e.impressions, 1);
        assert!(e.ids.is_empty());
    }
}
