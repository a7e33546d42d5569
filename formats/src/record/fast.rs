//! A fast path for the common record shape: one flat JSON object whose strings
//! hold no escapes or control characters and whose numbers are plain integers.
//! It gives up (`None`) on anything else — nested values, escapes, fractions,
//! exponents, a value of the wrong type for its field, any syntax error — and
//! the serde path then decides. So whatever it accepts, it reads exactly as the
//! serde path does (the `record_paths` fuzz target compares the two); it only
//! saves serde's generic visitor machinery on the records that are all but
//! every record.

use super::{DEVICES, EventId, Fields, RecordParser, Seen, Slot};

/// The fields of `bytes`, or `None` when the serde path must decide.
pub(super) fn fields(parser: &RecordParser, bytes: &[u8]) -> Option<Fields> {
    if bytes.contains(&b'\\') {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let mut c = Cursor { text, pos: 0 };
    let mut f = Fields::default();
    let expected_type = parser.input.record_type();
    c.skip_ws();
    c.eat(b'{')?;
    c.skip_ws();
    if c.peek() == Some(b'}') {
        c.pos += 1;
    } else {
        loop {
            let name = c.string()?;
            c.skip_ws();
            c.eat(b':')?;
            c.skip_ws();
            // Later duplicates of a field win, as in the serde path.
            match parser.slot(name) {
                Slot::Type => f.record_type = Seen::Ok(c.string()? == expected_type),
                Slot::EventId => f.event_id = Seen::Ok(EventId::new(c.string()?)),
                Slot::Device => {
                    let s = c.string()?;
                    f.device = Seen::Ok(DEVICES.iter().position(|d| *d == s).map(|i| i as u8));
                }
                Slot::EventTime => f.event_time = Seen::Ok(c.integer()?),
                Slot::Profile => f.profile = Seen::Ok(c.integer()?),
                Slot::Title => f.title = Seen::Ok(c.integer()?),
                Slot::Row => f.row = Seen::Ok(c.integer()?),
                Slot::Rank => f.rank = Seen::Ok(c.integer()?),
                Slot::Duration => f.duration = Seen::Ok(c.integer()?),
                Slot::Other => c.scalar()?,
            }
            c.skip_ws();
            match c.next()? {
                b',' => c.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.skip_ws();
    (c.pos == text.len()).then_some(f)
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's whitespace, as serde_json skips it.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A string without escapes (none are in the record) or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let len = bytes[start..].iter().position(|&b| b == b'"' || b < 0x20)?;
        if bytes[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        self.text.get(start..start + len)
    }

    /// An integer that serde_json reads as one that fits an i64: no fraction,
    /// no exponent, no leading zero, not `-0` (a float there), at most 18 digits.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let digits = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 18 || (bytes[start] == b'0' && (digits > 1 || negative)) {
            return None;
        }
        self.pos = start + digits;
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude = bytes[start..self.pos]
            .iter()
            .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
        Some(if negative { -magnitude } else { magnitude })
    }

    /// A field the join does not read: a string, an integer or a literal.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.integer().map(drop),
            _ => ["true", "false", "null"].into_iter().find_map(|lit| {
                self.text[self.pos..]
                    .starts_with(lit)
                    .then(|| self.pos += lit.len())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FieldNames, Input};

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
                assert!(fields(&p, rec.as_bytes()).is_some(), "{rec}");
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
