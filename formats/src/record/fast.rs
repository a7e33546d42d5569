//! A fast path for the common record shape: one flat JSON object whose strings
//! hold no escapes or control characters and whose numbers are plain integers.
//! It gives up (`None`) on anything else — nested values, escapes, fractions,
//! exponents, any syntax error — and the serde path then decides (as it does
//! when the caller refuses a value, say one of the wrong type for its field).
//! So whatever it accepts, it reads exactly as the serde path does (the
//! `record_paths` fuzz target compares the two); it only saves serde's generic
//! visitor machinery on the records that are all but every record.

/// A member's value, as far as the fast path reads it.
pub(super) enum Value<'a> {
    Str(&'a str),
    Int(i64),
    /// `true`, `false` or `null`.
    Literal,
}

/// Calls `member` with each member of the object `bytes` holds, in order;
/// `None` when the serde path must decide (or `member` said so).
pub(super) fn scan<'a>(
    bytes: &'a [u8],
    mut member: impl FnMut(&'a str, Value<'a>) -> Option<()>,
) -> Option<()> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut c = Cursor { text, pos: 0 };
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
            member(name, c.value()?)?;
            c.skip_ws();
            match c.next()? {
                b',' => c.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.skip_ws();
    (c.pos == text.len()).then_some(())
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

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        // A backslash is legal only in a string, as an escape: the serde path reads those.
        let len = bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
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

    /// A string, an integer or a literal (anything else: `None`).
    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::Str),
            b'-' | b'0'..=b'9' => self.integer().map(Value::Int),
            _ => {
                let lit = ["true", "false", "null"]
                    .into_iter()
                    .find(|lit| self.text[self.pos..].starts_with(lit))?;
                self.pos += lit.len();
                Some(Value::Literal)
            }
        }
    }
}
