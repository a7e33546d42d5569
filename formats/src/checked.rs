//! A JSON value read only to be checked and dropped, as strictly as a parse
//! into a tree checks it: UTF-8 and escapes in strings, numbers within range,
//! the nesting limit. serde's `IgnoredAny` on serde_json skips those checks
//! (it scans past strings and numbers without decoding them), so a record with
//! invalid UTF-8 or a lone surrogate in an ignored field, or `1e400`, was a
//! valid event for the runtime and `invalid_json` for the reference.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any JSON value, checked and dropped.
pub struct CheckedAny;

impl<'de> Deserialize<'de> for CheckedAny {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedAny)
    }
}

impl<'de> Visitor<'de> for CheckedAny {
    type Value = CheckedAny;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(CheckedAny)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(CheckedAny)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(CheckedAny)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self, E> {
        Ok(CheckedAny)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(CheckedAny)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(CheckedAny)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<CheckedAny>()?.is_some() {}
        Ok(CheckedAny)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<CheckedAny, CheckedAny>()?.is_some() {}
        Ok(CheckedAny)
    }
}
