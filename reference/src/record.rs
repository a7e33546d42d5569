//! Input records: parsing one line of an input file and classifying what is
//! wrong with it (contract, "Records" and "Malformed records").

use serde_json::{Map, Value};

/// The five devices a record may name (contract, "Records").
pub const DEVICES: [&str; 5] = ["tv", "ios", "android", "web", "other"];

/// The input a record was read from. The order is the contract's `input`
/// tie-break: impressions before plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    Impressions,
    Plays,
}

impl Stream {
    pub const BOTH: [Stream; 2] = [Stream::Impressions, Stream::Plays];

    /// The value of `type` a record of this stream carries.
    pub fn record_type(self) -> &'static str {
        match self {
            Stream::Impressions => "impression",
            Stream::Plays => "play",
        }
    }

    /// The file name prefix of the data-set layout (`impressions-<p>.jsonl`).
    pub fn file_prefix(self) -> &'static str {
        match self {
            Stream::Impressions => "impressions",
            Stream::Plays => "plays",
        }
    }
}

/// Why a record is malformed; the names are the contract's reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Malformed {
    InvalidJson,
    MissingField,
    WrongType,
    BadValue,
    ConflictingDuplicate,
}

impl Malformed {
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

/// A valid record: what the join uses of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub stream: Stream,
    pub event_id: String,
    pub time: i64,
    pub profile_id: i64,
    pub title_id: i64,
    /// Impressions only.
    pub row: Option<i64>,
    /// Impressions only.
    pub rank: Option<i64>,
    /// Plays only (0 for impressions).
    pub duration_ms: i64,
    pub device: &'static str,
}

impl Event {
    pub fn key(&self) -> (i64, i64) {
        (self.profile_id, self.title_id)
    }
}

/// The JSON type a field must have.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
}

/// The fields each stream requires, in the order of the contract's examples
/// (the first problem found names the reason).
fn required(stream: Stream) -> &'static [(&'static str, Kind)] {
    match stream {
        Stream::Impressions => &[
            ("event_id", Kind::Str),
            ("event_time", Kind::Int),
            ("profile_id", Kind::Int),
            ("title_id", Kind::Int),
            ("row", Kind::Int),
            ("rank", Kind::Int),
            ("device", Kind::Str),
        ],
        Stream::Plays => &[
            ("event_id", Kind::Str),
            ("event_time", Kind::Int),
            ("profile_id", Kind::Int),
            ("title_id", Kind::Int),
            ("device", Kind::Str),
            ("duration_ms", Kind::Int),
        ],
    }
}

/// An integer in the contract's sense: a JSON number written without fraction
/// or exponent (serde_json reads `1.0` and `1e3` as floats), within i64.
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Parses one line of the file of `stream`.
pub fn parse(line: &[u8], stream: Stream) -> Result<Event, Malformed> {
    let value: Value = serde_json::from_slice(line).map_err(|_| Malformed::InvalidJson)?;
    let Value::Object(obj) = value else {
        return Err(Malformed::InvalidJson);
    };
    match obj.get("type") {
        None => return Err(Malformed::MissingField),
        Some(Value::String(t)) if t == stream.record_type() => {}
        Some(_) => return Err(Malformed::WrongType),
    }
    check_fields(&obj, stream)?;
    let int = |name: &str| obj.get(name).and_then(as_int);
    let text = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or_default();
    let device = DEVICES
        .iter()
        .find(|d| **d == text("device"))
        .ok_or(Malformed::BadValue)?;
    let impression = stream == Stream::Impressions;
    Ok(Event {
        stream,
        event_id: text("event_id").to_owned(),
        time: int("event_time").unwrap_or_default(),
        profile_id: int("profile_id").unwrap_or_default(),
        title_id: int("title_id").unwrap_or_default(),
        row: if impression { int("row") } else { None },
        rank: if impression { int("rank") } else { None },
        duration_ms: if impression {
            0
        } else {
            int("duration_ms").unwrap_or_default()
        },
        device,
    })
}

/// Every required field present and of its type (checked before any is read).
fn check_fields(obj: &Map<String, Value>, stream: Stream) -> Result<(), Malformed> {
    for (name, kind) in required(stream) {
        let v = obj.get(*name).ok_or(Malformed::MissingField)?;
        let ok = match kind {
            Kind::Str => v.is_string(),
            Kind::Int => as_int(v).is_some(),
        };
        if !ok {
            return Err(Malformed::WrongType);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMP: &str = r#"{"type":"impression","event_id":"a1","event_time":1700000000123,"profile_id":12,"title_id":88,"row":3,"rank":7,"device":"tv"}"#;
    const PLAY: &str = r#"{"type":"play","event_id":"b2","event_time":1700000300456,"profile_id":12,"title_id":88,"device":"web","duration_ms":812000}"#;

    fn imp_with(from: &str, to: &str) -> Result<Event, Malformed> {
        parse(IMP.replace(from, to).as_bytes(), Stream::Impressions)
    }

    #[test]
    fn valid_records_of_both_streams_parse_with_their_fields() {
        let i = parse(IMP.as_bytes(), Stream::Impressions).unwrap();
        assert_eq!(
            (i.time, i.key(), i.row, i.rank),
            (1700000000123, (12, 88), Some(3), Some(7))
        );
        assert_eq!(
            (i.device, i.event_id.as_str(), i.duration_ms),
            ("tv", "a1", 0)
        );
        let p = parse(PLAY.as_bytes(), Stream::Plays).unwrap();
        assert_eq!(
            (p.row, p.rank, p.duration_ms, p.device),
            (None, None, 812000, "web")
        );
    }

    #[test]
    fn other_fields_are_ignored() {
        let e = imp_with(
            r#""device":"tv""#,
            r#""device":"tv","extra":[1,{"x":null}]"#,
        );
        assert!(e.is_ok());
    }

    #[test]
    fn not_json_or_not_an_object_is_invalid_json() {
        assert_eq!(
            parse(&IMP.as_bytes()[..40], Stream::Impressions),
            Err(Malformed::InvalidJson)
        );
        assert_eq!(
            parse(b"[1,2]", Stream::Impressions),
            Err(Malformed::InvalidJson)
        );
        assert_eq!(parse(b"", Stream::Impressions), Err(Malformed::InvalidJson));
        assert_eq!(parse(b"\"x\"", Stream::Plays), Err(Malformed::InvalidJson));
    }

    #[test]
    fn a_record_of_the_other_stream_is_wrong_type() {
        assert_eq!(
            parse(IMP.as_bytes(), Stream::Plays),
            Err(Malformed::WrongType)
        );
        assert_eq!(
            imp_with(r#""type":"impression""#, r#""type":1"#),
            Err(Malformed::WrongType)
        );
    }

    #[test]
    fn a_missing_field_or_type_is_missing_field() {
        assert_eq!(
            imp_with(r#""type":"impression","#, ""),
            Err(Malformed::MissingField)
        );
        assert_eq!(
            imp_with(r#""event_id":"a1","#, ""),
            Err(Malformed::MissingField)
        );
        assert_eq!(imp_with(r#","row":3"#, ""), Err(Malformed::MissingField));
        let no_duration = PLAY.replace(r#","duration_ms":812000"#, "");
        assert_eq!(
            parse(no_duration.as_bytes(), Stream::Plays),
            Err(Malformed::MissingField)
        );
    }

    #[test]
    fn integers_with_fraction_or_exponent_booleans_and_strings_are_wrong_type() {
        for (from, to) in [
            (r#""profile_id":12"#, r#""profile_id":"12""#),
            (r#""profile_id":12"#, r#""profile_id":12.0"#),
            (r#""profile_id":12"#, r#""profile_id":1e3"#),
            (r#""row":3"#, r#""row":true"#),
            (r#""event_id":"a1""#, r#""event_id":5"#),
            (r#""device":"tv""#, r#""device":null"#),
        ] {
            assert_eq!(imp_with(from, to), Err(Malformed::WrongType), "{to}");
        }
    }

    #[test]
    fn an_unknown_device_is_bad_value() {
        assert_eq!(
            imp_with(r#""device":"tv""#, r#""device":"fridge""#),
            Err(Malformed::BadValue)
        );
        assert_eq!(
            imp_with(r#""device":"tv""#, r#""device":"TV""#),
            Err(Malformed::BadValue)
        );
    }
}
