//! Parsing of input records into typed events without building a JSON tree:
//! a serde visitor walks the object once, matching field names against the
//! configured ones and keeping only what the join needs.
//!
//! Validation follows the contract (and the oracle's order of checks), so a
//! malformed record is classified the same way the batch truth classifies it.

use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use smallvec::SmallVec;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::checked::CheckedAny;

mod fast;
mod slots;

/// Input field names. The key fields come from `spec.join.keyFields`; the others
/// are the contract's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldNames {
    pub record_type: String,
    pub event_id: String,
    pub event_time: String,
    pub profile: String,
    pub title: String,
    pub row: String,
    pub rank: String,
    pub device: String,
    pub duration: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self {
            record_type: "type".into(),
            event_id: "event_id".into(),
            event_time: "event_time".into(),
            profile: "profile_id".into(),
            title: "title_id".into(),
            row: "row".into(),
            rank: "rank".into(),
            device: "device".into(),
            duration: "duration_ms".into(),
        }
    }
}

/// Which input stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Input {
    Impressions = 0,
    Plays = 1,
}

impl Input {
    pub const ALL: [Input; 2] = [Input::Impressions, Input::Plays];

    pub fn name(self) -> &'static str {
        match self {
            Input::Impressions => "impressions",
            Input::Plays => "plays",
        }
    }

    /// The record `type` value of this stream.
    pub fn record_type(self) -> &'static str {
        match self {
            Input::Impressions => "impression",
            Input::Plays => "play",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Device names in byte order, so a bit set iterates them sorted.
pub const DEVICES: [&str; 5] = ["android", "ios", "other", "tv", "web"];

/// The join key `(profile_id, title_id)`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Key {
    pub profile: i64,
    pub title: i64,
}

impl Key {
    /// Big-endian bytes with the sign bit flipped, so byte order is numeric order.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&order_bytes(self.profile));
        out[8..].copy_from_slice(&order_bytes(self.title));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Key> {
        Some(Key {
            profile: from_order_bytes(b.get(..8)?)?,
            title: from_order_bytes(b.get(8..16)?)?,
        })
    }

    /// The Kafka message key of an output record.
    pub fn message_key(self) -> String {
        format!("{}:{}", self.profile, self.title)
    }
}

pub fn order_bytes(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn from_order_bytes(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// An event's idempotency key: its bytes (for the contract's tie-break order)
/// and a 128-bit hash (for deduplication in state).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub bytes: SmallVec<[u8; 32]>,
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.bytes)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = EventId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("event id bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<EventId, E> {
                Ok(EventId {
                    bytes: SmallVec::from_slice(v),
                })
            }
        }
        d.deserialize_bytes(BytesVisitor)
    }
}

impl EventId {
    pub fn new(s: &str) -> Self {
        Self {
            bytes: SmallVec::from_slice(s.as_bytes()),
        }
    }

    pub fn hash128(&self) -> u128 {
        xxh3_128(&self.bytes)
    }
}

/// A valid input record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub input: Input,
    pub time: i64,
    pub key: Key,
    pub id: EventId,
    /// Impressions only.
    pub row: i64,
    /// Impressions only.
    pub rank: i64,
    /// Plays only.
    pub duration_ms: i64,
    /// Index into [`DEVICES`].
    pub device: u8,
}

impl Event {
    /// A fingerprint of what the join uses, to tell a copy from a conflicting record
    /// that reuses an event_id.
    pub fn content_hash(&self) -> u64 {
        let mut buf = [0u8; 49];
        buf[0] = self.input as u8;
        buf[1..9].copy_from_slice(&self.time.to_le_bytes());
        buf[9..25].copy_from_slice(&self.key.to_bytes());
        buf[25..33].copy_from_slice(&self.row.to_le_bytes());
        buf[33..41].copy_from_slice(&self.rank.to_le_bytes());
        buf[41..49].copy_from_slice(&self.duration_ms.to_le_bytes());
        xxh3_64(&buf) ^ u64::from(self.device)
    }
}

// serde derive for `Input` as a small integer, for the spill encoding.
impl serde::Serialize for Input {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> serde::Deserialize<'de> for Input {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match <u8 as serde::Deserialize>::deserialize(d)? {
            0 => Ok(Input::Impressions),
            1 => Ok(Input::Plays),
            n => Err(de::Error::custom(format!("unknown input {n}"))),
        }
    }
}

/// Why a record was rejected; the names are the dead-letter reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// Not JSON, or JSON that is not an object.
    InvalidJson,
    /// A field of the stream's record shape is absent.
    MissingField,
    /// A field has the wrong JSON type, or `type` is not the stream's.
    WrongType,
    /// `device` is not one of the five devices.
    BadValue,
    /// A record reuses an event_id of its key with different content.
    ConflictingDuplicate,
}

impl Malformed {
    pub const ALL: [Malformed; 5] = [
        Malformed::InvalidJson,
        Malformed::MissingField,
        Malformed::WrongType,
        Malformed::BadValue,
        Malformed::ConflictingDuplicate,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Malformed::InvalidJson => "invalid_json",
            Malformed::MissingField => "missing_field",
            Malformed::WrongType => "wrong_type",
            Malformed::BadValue => "bad_value",
            Malformed::ConflictingDuplicate => "conflicting_duplicate",
        }
    }
}

/// A rejected record's reason and a human-readable detail for the dead-letter output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub kind: Malformed,
    pub detail: String,
}

impl Rejection {
    fn new(kind: Malformed, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// Parses records of one stream with the configured field names.
#[derive(Clone, Debug)]
pub struct RecordParser {
    input: Input,
    names: FieldNames,
    slots: slots::SlotTable<Slot>,
}

/// Field slots, in the oracle's order of checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Type,
    EventId,
    EventTime,
    Profile,
    Title,
    Row,
    Rank,
    Device,
    Duration,
    Other,
}

/// A field value as seen, before validation.
#[derive(Clone, Debug, Default)]
enum Seen<T> {
    #[default]
    Absent,
    Ok(T),
    Wrong(&'static str),
}

#[derive(Default)]
struct Fields {
    record_type: Seen<bool>,
    event_id: Seen<EventId>,
    event_time: Seen<i64>,
    profile: Seen<i64>,
    title: Seen<i64>,
    row: Seen<i64>,
    rank: Seen<i64>,
    device: Seen<Option<u8>>,
    duration: Seen<i64>,
}

/// The stream's field names with their slots, in the order the serde path
/// checks them (of two fields configured with one name, the first keeps it).
fn slot_names(input: Input, n: &FieldNames) -> Vec<(&str, Slot)> {
    let mut names = vec![
        (n.record_type.as_str(), Slot::Type),
        (&n.event_id, Slot::EventId),
        (&n.event_time, Slot::EventTime),
        (&n.profile, Slot::Profile),
        (&n.title, Slot::Title),
        (&n.device, Slot::Device),
    ];
    if input == Input::Plays {
        names.push((&n.duration, Slot::Duration));
    } else {
        names.extend([(n.row.as_str(), Slot::Row), (&n.rank, Slot::Rank)]);
    }
    names
}

impl RecordParser {
    pub fn new(input: Input, names: FieldNames) -> Self {
        let slots = slots::SlotTable::new(slot_names(input, &names));
        Self {
            input,
            names,
            slots,
        }
    }

    pub fn input(&self) -> Input {
        self.input
    }

    /// Parses one record (one line or one message value).
    pub fn parse(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        match self.fast_fields(bytes) {
            Some(fields) => self.validate(fields),
            None => self.parse_with_serde(bytes),
        }
    }

    /// The fields through the fast path; `None` leaves the record to serde
    /// (also a value of the wrong type for its field: serde words the error).
    fn fast_fields(&self, bytes: &[u8]) -> Option<Fields> {
        use fast::Value::{Int, Str};
        let mut f = Fields::default();
        let expected_type = self.input.record_type();
        // Later duplicates of a field win, as in the serde path.
        fast::scan(bytes, |name, value| {
            match (self.slot(name), value) {
                (Slot::Type, Str(s)) => f.record_type = Seen::Ok(s == expected_type),
                (Slot::EventId, Str(s)) => f.event_id = Seen::Ok(EventId::new(s)),
                (Slot::Device, Str(s)) => f.device = Seen::Ok(device_index(s)),
                (Slot::EventTime, Int(n)) => f.event_time = Seen::Ok(n),
                (Slot::Profile, Int(n)) => f.profile = Seen::Ok(n),
                (Slot::Title, Int(n)) => f.title = Seen::Ok(n),
                (Slot::Row, Int(n)) => f.row = Seen::Ok(n),
                (Slot::Rank, Int(n)) => f.rank = Seen::Ok(n),
                (Slot::Duration, Int(n)) => f.duration = Seen::Ok(n),
                (Slot::Other, _) => {}
                _ => return None,
            }
            Some(())
        })?;
        Some(f)
    }

    /// The general path: any JSON, and the errors of malformed records.
    pub fn parse_with_serde(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let fields = de
            .deserialize_any(ObjectVisitor { parser: self })
            .and_then(|f| de.end().map(|()| f))
            .map_err(|e| Rejection::new(Malformed::InvalidJson, e.to_string()))?;
        let fields = fields
            .ok_or_else(|| Rejection::new(Malformed::InvalidJson, "record is not a JSON object"))?;
        self.validate(fields)
    }

    fn slot(&self, name: &str) -> Slot {
        self.slots.slot(name.as_bytes()).unwrap_or(Slot::Other)
    }

    fn validate(&self, f: Fields) -> Result<Event, Rejection> {
        let n = &self.names;
        match f.record_type {
            Seen::Absent => {
                return Err(Rejection::new(
                    Malformed::MissingField,
                    format!("missing field {:?}", n.record_type),
                ));
            }
            Seen::Ok(true) => {}
            Seen::Ok(false) | Seen::Wrong(_) => {
                return Err(Rejection::new(
                    Malformed::WrongType,
                    format!(
                        "field {:?} is not {:?}",
                        n.record_type,
                        self.input.record_type()
                    ),
                ));
            }
        }
        fn take<T>(v: Seen<T>, name: &str) -> Result<T, Rejection> {
            match v {
                Seen::Ok(v) => Ok(v),
                Seen::Absent => Err(Rejection::new(
                    Malformed::MissingField,
                    format!("missing field {name:?}"),
                )),
                Seen::Wrong(expected) => Err(Rejection::new(
                    Malformed::WrongType,
                    format!("field {name:?} is not {expected}"),
                )),
            }
        }
        let id = take(f.event_id, &n.event_id)?;
        let time = take(f.event_time, &n.event_time)?;
        let profile = take(f.profile, &n.profile)?;
        let title = take(f.title, &n.title)?;
        let (row, rank, duration_ms, device) = match self.input {
            Input::Impressions => {
                let row = take(f.row, &n.row)?;
                let rank = take(f.rank, &n.rank)?;
                (row, rank, 0, take(f.device, &n.device)?)
            }
            Input::Plays => {
                let device = take(f.device, &n.device)?;
                (0, 0, take(f.duration, &n.duration)?, device)
            }
        };
        let device = device.ok_or_else(|| {
            Rejection::new(
                Malformed::BadValue,
                format!("field {:?} is not one of {}", n.device, DEVICES.join(", ")),
            )
        })?;
        Ok(Event {
            input: self.input,
            time,
            key: Key { profile, title },
            id,
            row,
            rank,
            duration_ms,
            device,
        })
    }
}

/// Visits the top-level value: `Some(fields)` for an object, `None` otherwise.
struct ObjectVisitor<'p> {
    parser: &'p RecordParser,
}

macro_rules! not_an_object {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method<E: de::Error>(self, _: $ty) -> Result<Self::Value, E> { Ok(None) })*
    };
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Option<Fields>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    not_an_object!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str)
    );

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<CheckedAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = Fields::default();
        let expected_type = self.parser.input.record_type();
        // Later duplicates of a field win, as in Python's json module.
        while let Some(slot) = map.next_key_seed(SlotSeed(self.parser))? {
            match slot {
                Slot::Type => {
                    f.record_type = map
                        .next_value_seed(StrSeed(|s: &str| s == expected_type))?
                        .map_or(Seen::Wrong("a string"), Seen::Ok)
                }
                Slot::EventId => {
                    f.event_id = map
                        .next_value_seed(StrSeed(EventId::new))?
                        .map_or(Seen::Wrong("a string"), Seen::Ok)
                }
                Slot::Device => {
                    f.device = map
                        .next_value_seed(StrSeed(device_index))?
                        .map_or(Seen::Wrong("a string"), Seen::Ok)
                }
                Slot::EventTime => f.event_time = int(&mut map)?,
                Slot::Profile => f.profile = int(&mut map)?,
                Slot::Title => f.title = int(&mut map)?,
                Slot::Row => f.row = int(&mut map)?,
                Slot::Rank => f.rank = int(&mut map)?,
                Slot::Duration => f.duration = int(&mut map)?,
                Slot::Other => {
                    map.next_value::<CheckedAny>()?;
                }
            }
        }
        Ok(Some(f))
    }
}

/// The index of a device name in [`DEVICES`].
fn device_index(s: &str) -> Option<u8> {
    DEVICES.iter().position(|d| *d == s).map(|i| i as u8)
}

fn int<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Seen<i64>, A::Error> {
    Ok(map
        .next_value_seed(IntSeed)?
        .map_or(Seen::Wrong("an integer"), Seen::Ok))
}

/// Maps a field name to its slot without allocating.
struct SlotSeed<'p>(&'p RecordParser);

impl<'de> DeserializeSeed<'de> for SlotSeed<'_> {
    type Value = Slot;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SlotSeed<'_> {
    type Value = Slot;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Slot, E> {
        Ok(self.0.slot(v))
    }
}

/// The non-matching arms shared by the lenient value visitors: consume and report `None`.
macro_rules! not_a_match {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<CheckedAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<CheckedAny, CheckedAny>()?.is_some() {}
            Ok(None)
        }
    };
}

/// Reads any JSON value; `Some(f(s))` when it is a string, `None` otherwise.
struct StrSeed<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> DeserializeSeed<'de> for StrSeed<F> {
    type Value = Option<T>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for StrSeed<F> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some((self.0)(v)))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    not_a_match!();
}

/// Reads any JSON value; `Some(n)` for an integer without fraction or exponent.
struct IntSeed;

impl<'de> DeserializeSeed<'de> for IntSeed {
    type Value = Option<i64>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IntSeed {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        // Integers beyond i64 are valid JSON integers but cannot be event times or ids here.
        Ok(i64::try_from(v).ok())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    not_a_match!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp() -> RecordParser {
        RecordParser::new(Input::Impressions, FieldNames::default())
    }
    fn play() -> RecordParser {
        RecordParser::new(Input::Plays, FieldNames::default())
    }
    const IMP: &str = r#"{"type":"impression","event_id":"e1","event_time":1700000000123,"profile_id":123456,"title_id":8812,"row":3,"rank":7,"device":"tv"}"#;

    #[test]
    fn valid_impression_parses_into_typed_event() {
        let e = imp().parse(IMP.as_bytes()).expect("valid");
        assert_eq!(e.time, 1700000000123);
        assert_eq!(
            e.key,
            Key {
                profile: 123456,
                title: 8812
            }
        );
        assert_eq!((e.row, e.rank), (3, 7));
        assert_eq!(DEVICES[e.device as usize], "tv");
        assert_eq!(e.id, EventId::new("e1"));
    }

    #[test]
    fn valid_play_parses_and_ignores_unknown_fields() {
        let line = r#"{"type":"play","event_id":"p","event_time":5,"profile_id":1,"title_id":2,"device":"web","duration_ms":812000,"extra":{"a":[1,2.5]}}"#;
        let e = play().parse(line.as_bytes()).expect("valid");
        assert_eq!(e.duration_ms, 812000);
        assert_eq!(e.input, Input::Plays);
    }

    fn reason(p: &RecordParser, line: &str) -> &'static str {
        p.parse(line.as_bytes())
            .expect_err("malformed")
            .kind
            .reason()
    }

    #[test]
    fn each_malformed_kind_gets_its_reason() {
        let p = imp();
        assert_eq!(
            reason(&p, r#"{"type":"impression","event_id":"e1","profi"#),
            "invalid_json"
        );
        assert_eq!(reason(&p, "[1,2]"), "invalid_json");
        assert_eq!(reason(&p, ""), "invalid_json");
        assert_eq!(
            reason(&p, &IMP.replace("\"event_id\":\"e1\",", "")),
            "missing_field"
        );
        assert_eq!(
            reason(&p, &IMP.replace("123456", "\"123456\"")),
            "wrong_type"
        );
        assert_eq!(
            reason(&p, &IMP.replace("\"row\":3", "\"row\":3.0")),
            "wrong_type"
        );
        assert_eq!(
            reason(&p, &IMP.replace("\"rank\":7", "\"rank\":7e0")),
            "wrong_type"
        );
        assert_eq!(
            reason(&p, &IMP.replace("\"rank\":7", "\"rank\":true")),
            "wrong_type"
        );
        assert_eq!(
            reason(&p, &IMP.replace("\"tv\"", "\"fridge\"")),
            "bad_value"
        );
        assert_eq!(
            reason(&p, &IMP.replace("\"e1\"", "222807236634436")),
            "wrong_type"
        );
        assert_eq!(reason(&p, &IMP.replace("\"tv\"", "-3")), "wrong_type");
        assert_eq!(
            reason(&p, &IMP.replace("\"impression\"", "\"play\"")),
            "wrong_type"
        );
        assert_eq!(reason(&p, &format!("{IMP} x")), "invalid_json");
    }

    #[test]
    fn a_value_json_refuses_is_invalid_json_even_in_an_ignored_field() {
        // Found by fuzz/record: these were valid events here and invalid_json
        // for the reference, which parses the whole record into a tree.
        let with = |extra: &[u8]| {
            let mut line = IMP.as_bytes()[..IMP.len() - 1].to_vec();
            line.extend_from_slice(b",\"extra\":");
            line.extend_from_slice(extra);
            line.push(b'}');
            line
        };
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for extra in [
            &b"\"fd907\xadf4\""[..],
            b"\"\\ud800\"",
            b"1e400",
            b"{\"a\":[\"\xff\"]}",
            deep.as_bytes(),
        ] {
            let e = imp().parse(&with(extra)).expect_err("malformed");
            assert_eq!(
                e.kind,
                Malformed::InvalidJson,
                "{}",
                String::from_utf8_lossy(extra)
            );
        }
        let wrong = IMP.replace("\"row\":3", "\"row\":[1e400]");
        assert_eq!(reason(&imp(), &wrong), "invalid_json");
        assert!(
            imp()
                .parse(&with(b"{\"a\":[1,2.5,\"\\u00e9\",null]}"))
                .is_ok()
        );
    }

    #[test]
    fn checks_run_in_the_contract_order() {
        // Missing event_id is reported before the later wrong-typed profile_id.
        let line = IMP
            .replace("\"event_id\":\"e1\",", "")
            .replace("123456", "\"x\"");
        assert_eq!(reason(&imp(), &line), "missing_field");
        // A play does not need row or rank.
        let line = r#"{"type":"play","event_id":"p","event_time":5,"profile_id":1,"title_id":2,"device":"web"}"#;
        assert_eq!(reason(&play(), line), "missing_field");
    }

    #[test]
    fn escaped_strings_and_leading_whitespace_are_accepted() {
        let line = format!("  {}", IMP.replace("\"e1\"", "\"e\\u0031\""));
        let e = imp().parse(line.as_bytes()).expect("valid");
        assert_eq!(e.id, EventId::new("e1"));
    }

    #[test]
    fn configured_key_fields_are_used() {
        let names = FieldNames {
            profile: "member".into(),
            title: "show".into(),
            ..FieldNames::default()
        };
        let p = RecordParser::new(Input::Impressions, names);
        let line = IMP
            .replace("profile_id", "member")
            .replace("title_id", "show");
        assert_eq!(p.parse(line.as_bytes()).expect("valid").key.title, 8812);
        assert_eq!(reason(&p, IMP), "missing_field");
    }

    #[test]
    fn key_bytes_sort_numerically() {
        let a = Key {
            profile: -5,
            title: 1,
        };
        let b = Key {
            profile: 3,
            title: 0,
        };
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(Key::from_bytes(&a.to_bytes()), Some(a));
    }
}

#[cfg(test)]
/// The fast path against the serde path (`fuzz/` compares them on any input).
mod fast_path_tests {
    use super::*;

    fn parsers() -> [RecordParser; 2] {
        [
            RecordParser::new(Input::Impressions, FieldNames::default()),
            RecordParser::new(Input::Plays, FieldNames::default()),
        ]
    }

    const IMP: &str = r#"{"type":"impression","event_id":"9f1c-ü","event_time":1700000000123,"profile_id":123456,"title_id":8812,"row":3,"rank":7,"device":"tv"}"#;
    const PLAY: &str = r#" { "type" : "play", "event_id":"p1", "event_time":5,"profile_id":-1,"title_id":0,"device":"web","duration_ms":812000, "x":null,"y":true,"z":"s" }
"#;

    #[test]
    fn the_common_shapes_take_the_fast_path_and_read_as_serde_reads_them() {
        for p in parsers() {
            for rec in [IMP, PLAY] {
                assert!(p.fast_fields(rec.as_bytes()).is_some(), "{rec}");
                assert_eq!(p.parse(rec.as_bytes()), p.parse_with_serde(rec.as_bytes()));
            }
        }
    }

    #[test]
    fn whatever_the_fast_path_does_not_take_serde_decides_the_same_way() {
        let odd = [
            r#"{"type":"play","event_id":"a","event_time":-0,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":007,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":1234567890123456789,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":99999999999999999999,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":1.0,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":1e3,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a\"b","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"\u0074ype":"play","event_id":"a","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":1,"event_time":2,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":"1","profile_id":1,"title_id":2,"device":"tv","duration_ms":1}"#,
            r#"{"type":"play","event_id":7,"event_time":1,"profile_id":1,"title_id":2,"device":"phone","duration_ms":1}"#,
            r#"{"type":"play","event_id":"a","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1,"n":{"a":[1,2.5]}}"#,
            r#"{"type":"play","event_id":"a","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1} x"#,
            r#"{"type":"play","event_id":"a","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1,}"#,
            r#"{"type":"play","event_id":"a","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1"#,
            r#"{"type":"play","event_id":"a","event_time":1,"profile_id":1,"title_id":2,"device":"tv","duration_ms":1,"t":tru}"#,
            "{\"type\":\"play\",\"event_id\":\"a\tb\",\"event_time\":1,\"profile_id\":1,\"title_id\":2,\"device\":\"tv\",\"duration_ms\":1}",
            r#"{"type":"impression"}"#,
            r#"{}"#,
            r#"[]"#,
            r#""play""#,
            "",
            "   ",
        ];
        for p in parsers() {
            for rec in odd {
                assert_eq!(
                    p.parse(rec.as_bytes()),
                    p.parse_with_serde(rec.as_bytes()),
                    "{rec}"
                );
            }
            let bad_utf8 = b"{\"type\":\"play\",\"event_id\":\"\xff\"}";
            assert_eq!(p.parse(bad_utf8), p.parse_with_serde(bad_utf8));
        }
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    /// The chain of comparisons the table replaces.
    fn by_comparisons(input: Input, n: &FieldNames, name: &str) -> Slot {
        let is_play = input == Input::Plays;
        if name == n.record_type {
            Slot::Type
        } else if name == n.event_id {
            Slot::EventId
        } else if name == n.event_time {
            Slot::EventTime
        } else if name == n.profile {
            Slot::Profile
        } else if name == n.title {
            Slot::Title
        } else if name == n.device {
            Slot::Device
        } else if !is_play && name == n.row {
            Slot::Row
        } else if !is_play && name == n.rank {
            Slot::Rank
        } else if is_play && name == n.duration {
            Slot::Duration
        } else {
            Slot::Other
        }
    }

    #[test]
    fn the_table_finds_the_slot_the_chain_of_comparisons_finds() {
        // Two fields under one name: the first in the order of checks wins.
        let clash = FieldNames {
            row: "event_time".into(),
            device: "a_name_longer_than_sixteen_bytes".into(),
            rank: "a_name_longer_than_sixteen_bytes".into(),
            duration: "a_name_longer_than_sixteen_bytez".into(),
            ..FieldNames::default()
        };
        let names = [
            "type",
            "event_id",
            "event_time",
            "profile_id",
            "title_id",
            "row",
            "rank",
            "device",
            "duration_ms",
            "",
            "typ",
            "types",
            "event_i",
            "event_idx",
            "Type",
            "a_name_longer_than_sixteen_bytes",
            "a_name_longer_than_sixteen_bytez",
            "a_name_longer_than_sixteen_byte",
            "sixteen_bytes_xx",
            "\u{0}",
            "é",
            "devixe",
            "event-time",
            "profileXid",
            "ro",
            "rox",
        ];
        for fields in [FieldNames::default(), clash] {
            for input in [Input::Impressions, Input::Plays] {
                let parser = RecordParser::new(input, fields.clone());
                for name in names {
                    assert_eq!(
                        parser.slot(name),
                        by_comparisons(input, &fields, name),
                        "{input:?} {name:?}"
                    );
                }
            }
        }
    }
}
