//! A runtime's output as `compare` reads it: JSON lines in any order, from one
//! file or every file of a directory except names starting with `.` or `_`
//! (side outputs). Fields are compared by value, not by bytes: field order and
//! spacing do not matter, JSON types do (`2.0` is not `2`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::entry::{Entry, FIELDS};

/// One field of an actual entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Int(i64),
    Null,
    Devices(Vec<String>),
    /// Absent from the object.
    Missing,
    /// A value of the wrong JSON type, as JSON text.
    Wrong(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Int(v) => write!(f, "{v}"),
            Field::Null => f.write_str("null"),
            Field::Devices(d) => write!(f, "{}", Value::from(d.clone())),
            Field::Missing => f.write_str("<missing>"),
            Field::Wrong(text) => f.write_str(text),
        }
    }
}

/// The fields that may be `null`.
const NULLABLE: [&str; 5] = [
    "first_impression_time",
    "last_impression_time",
    "best_row",
    "best_rank",
    "first_play_time",
];

/// An entry of the actual output: its fields in the contract's order, and the
/// names of any fields beyond the contract's (reported, then ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actual {
    pub fields: Vec<Field>,
    pub extra: Vec<String>,
}

/// The fields of an expected entry in the same form.
pub fn fields_of(e: &Entry) -> Vec<Field> {
    let opt = |v: Option<i64>| v.map_or(Field::Null, Field::Int);
    vec![
        Field::Int(e.profile_id),
        Field::Int(e.title_id),
        Field::Int(e.window_start),
        Field::Int(e.impressions),
        Field::Int(e.plays),
        opt(e.first_impression_time),
        opt(e.last_impression_time),
        opt(e.best_row),
        opt(e.best_rank),
        Field::Devices(e.devices.clone()),
        opt(e.first_play_time),
        Field::Int(e.play_duration_ms),
    ]
}

impl Actual {
    /// Normalises one output object; `None` when it is not an object with
    /// integer `profile_id`, `title_id` and `window_start` (not an output record).
    pub fn from_line(line: &[u8]) -> Option<Actual> {
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line) else {
            return None;
        };
        let mut fields = Vec::with_capacity(FIELDS.len());
        for name in FIELDS {
            fields.push(match obj.get(name) {
                None => Field::Missing,
                Some(v) => field(name, v),
            });
        }
        if !fields[..3].iter().all(|f| matches!(f, Field::Int(_))) {
            return None;
        }
        let mut extra: Vec<String> = obj
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        extra.sort();
        Some(Actual { fields, extra })
    }

    /// `(profile_id, title_id, window_start)`.
    pub fn id(&self) -> (i64, i64, i64) {
        let int = |i: usize| match self.fields[i] {
            Field::Int(v) => v,
            _ => 0, // from_line admits only integers here
        };
        (int(0), int(1), int(2))
    }

    /// The entry it states, when every field has its type.
    pub fn to_entry(&self) -> Option<Entry> {
        let int = |i: usize| match self.fields[i] {
            Field::Int(v) => Some(v),
            _ => None,
        };
        let opt = |i: usize| match self.fields[i] {
            Field::Int(v) => Some(Some(v)),
            Field::Null => Some(None),
            _ => None,
        };
        let Field::Devices(devices) = &self.fields[9] else {
            return None;
        };
        Some(Entry {
            profile_id: int(0)?,
            title_id: int(1)?,
            window_start: int(2)?,
            impressions: int(3)?,
            plays: int(4)?,
            first_impression_time: opt(5)?,
            last_impression_time: opt(6)?,
            best_row: opt(7)?,
            best_rank: opt(8)?,
            devices: devices.clone(),
            first_play_time: opt(10)?,
            play_duration_ms: int(11)?,
        })
    }

    /// The object, fields in the contract's order, for examples in reports.
    pub fn show(&self) -> String {
        let parts: Vec<String> = FIELDS
            .iter()
            .zip(&self.fields)
            .map(|(n, f)| format!("\"{n}\":{f}"))
            .collect();
        format!("{{{}}}", parts.join(","))
    }
}

/// One field, checked against the type the contract gives it.
fn field(name: &str, v: &Value) -> Field {
    match v {
        Value::Array(items) if name == "devices" => {
            let names: Option<Vec<String>> = items
                .iter()
                .map(|d| d.as_str().map(str::to_owned))
                .collect();
            names.map_or_else(|| Field::Wrong(v.to_string()), Field::Devices)
        }
        Value::Number(n) if name != "devices" => n
            .as_i64()
            .map_or_else(|| Field::Wrong(v.to_string()), Field::Int),
        Value::Null if NULLABLE.contains(&name) => Field::Null,
        _ => Field::Wrong(v.to_string()),
    }
}

/// The files `compare --actual PATH` reads.
pub fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for item in std::fs::read_dir(path).with_context(|| format!("list {}", path.display()))? {
        let item = item.with_context(|| format!("list {}", path.display()))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if !name.starts_with(['.', '_']) && item.path().is_file() {
            out.push(item.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"profile_id":7,"title_id":9,"window_start":5,"impressions":1,"plays":0,"first_impression_time":5,"last_impression_time":5,"best_row":1,"best_rank":2,"devices":["ios"],"first_play_time":null,"play_duration_ms":0}"#;

    #[test]
    fn a_canonical_line_reads_back_as_its_entry_whatever_the_field_order() {
        let a = Actual::from_line(LINE.as_bytes()).unwrap();
        let e = a.to_entry().unwrap();
        assert_eq!(e.canonical_json(), LINE);
        assert_eq!(fields_of(&e), a.fields);
        let reordered = r#"{ "title_id":9, "profile_id":7, "window_start":5,"impressions":1,"plays":0,"first_impression_time":5,"last_impression_time":5,"best_row":1,"best_rank":2,"devices":["ios"],"first_play_time":null,"play_duration_ms":0 }"#;
        assert_eq!(Actual::from_line(reordered.as_bytes()).unwrap(), a);
        assert_eq!(a.show(), LINE);
    }

    #[test]
    fn wrong_types_missing_fields_and_extra_fields_are_kept_apart() {
        let a = Actual::from_line(
            LINE.replace(r#""plays":0"#, r#""plays":0.0"#)
                .replace(r#","play_duration_ms":0"#, r#","zz":1"#)
                .replace(r#""best_row":1"#, r#""best_row":null"#)
                .replace(r#""impressions":1"#, r#""impressions":null"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(a.fields[4], Field::Wrong("0.0".into()));
        assert_eq!(a.fields[3], Field::Wrong("null".into()));
        assert_eq!(a.fields[7], Field::Null);
        assert_eq!(a.fields[11], Field::Missing);
        assert_eq!(a.extra, ["zz"]);
        assert!(a.to_entry().is_none());
    }

    #[test]
    fn a_line_without_an_integer_key_and_window_start_is_not_an_output_record() {
        assert!(Actual::from_line(b"not json").is_none());
        assert!(
            Actual::from_line(
                LINE.replace(r#""window_start":5"#, r#""window_start":"5""#)
                    .as_bytes()
            )
            .is_none()
        );
        assert!(Actual::from_line(b"[]").is_none());
    }
}
