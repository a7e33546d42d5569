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
    // UTF-8 is checked where it can occur: in strings (`Cursor::string`).
    // Anywhere else the fast path accepts ASCII bytes only.
    let mut c = Cursor { bytes, pos: 0 };
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
    (c.pos == bytes.len()).then_some(())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
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
        let bytes = self.bytes;
        // A backslash is legal only in a string, as an escape: the serde path reads those.
        let (len, ascii) = special(&bytes[start..])?;
        if bytes[start + len] != b'"' {
            return None;
        }
        self.pos = start + len + 1;
        let slice = &bytes[start..start + len];
        if ascii {
            // SAFETY: every byte of `slice` is below 0x80 (`special` saw no
            // high bit before the closing quote), so it is valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(slice) })
        } else {
            std::str::from_utf8(slice).ok()
        }
    }

    /// An integer that serde_json reads as one that fits an i64: no fraction,
    /// no exponent, no leading zero, not `-0` (a float there), at most 18 digits.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let bytes = self.bytes;
        let start = self.pos;
        // One pass: digits are summed as they are counted.
        let mut magnitude = 0i64;
        let mut end = start;
        while let Some(&d) = bytes.get(end).filter(|b| b.is_ascii_digit()) {
            if end - start == 18 {
                return None;
            }
            magnitude = magnitude * 10 + i64::from(d - b'0');
            end += 1;
        }
        let digits = end - start;
        if digits == 0 || (bytes[start] == b'0' && (digits > 1 || negative)) {
            return None;
        }
        self.pos = end;
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
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
                    .find(|lit| self.bytes[self.pos..].starts_with(lit.as_bytes()))?;
                self.pos += lit.len();
                Some(Value::Literal)
            }
        }
    }
}

/// Index of the first `"`, `\\` or control character (below 0x20) in `bytes`,
/// and whether every byte before it is ASCII: strings are most of a record's
/// bytes, so they are searched 16 bytes at a time (SSE2, which every x86-64
/// has), then 8 at a time in a word.
fn special(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut at = 0;
    let mut high = false;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<16>) {
        let (hits, highs) = sse2::special_mask(chunk);
        if hits != 0 {
            let before = (1u32 << hits.trailing_zeros()) - 1;
            return Some((
                at + hits.trailing_zeros() as usize,
                !high && highs & before == 0,
            ));
        }
        high |= highs != 0;
        at += 16;
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `w` below `n` (n <= 0x80) sets its high bit here. Bytes after the
    // first such byte may be flagged wrongly (borrows), the first never is.
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH;
    while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let w = u64::from_le_bytes(*chunk);
        let hits = below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20);
        if hits != 0 {
            let first = hits.trailing_zeros();
            // The high bits of the bytes before the first hit.
            let before = (1u64 << (first - 7)) - 1;
            return Some((at + (first / 8) as usize, !high && w & HIGH & before == 0));
        }
        high |= w & HIGH != 0;
        at += 8;
    }
    let rest = bytes.get(at..)?;
    let i = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some((at + i, !high && rest[..i].is_ascii()))
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// Bit i set: byte i of `chunk` is `"`, `\\` or below 0x20; and bit i
    /// set: byte i is 0x80 or above.
    pub(super) fn special_mask(chunk: &[u8; 16]) -> (u32, u32) {
        // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are
        // always available; the load reads exactly the 16 bytes of `chunk`
        // (unaligned loads are allowed).
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // v <= 0x1f (unsigned) exactly when min(v, 0x1f) == v.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
            let any = _mm_or_si128(_mm_or_si128(quote, backslash), control);
            (_mm_movemask_epi8(any) as u32, _mm_movemask_epi8(v) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::special;

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_byte_and_any_non_ascii_before_it() {
        // Bytes that sit next to the marks' values, with a multi-byte character
        // (0xc3 0xa9) in one alphabet, ASCII only in the other.
        let alphabets = [
            [b'!', b'#', b'[', b']', b' ', 0xc3, 0xa9, b'a'],
            [b'!', b'#', b'[', b']', b' ', 0x7f, b'~', b'a'],
        ];
        let cases = alphabets.iter().flat_map(|a| {
            (0..70).flat_map(move |len| {
                (0..=len).flat_map(move |at| [b'"', b'\\', 0x00, 0x1f].map(|m| (a, len, at, m)))
            })
        });
        for (alphabet, len, at, mark) in cases {
            let mut bytes: Vec<u8> = (0..len).map(|i| alphabet[i % 8]).collect();
            if at < len {
                bytes[at] = mark;
                // A second mark after the first must not hide it.
                if at + 1 < len {
                    bytes[at + 1] = b'"';
                }
            }
            let want = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .map(|p| (p, bytes[..p].is_ascii()));
            assert_eq!(special(&bytes), want, "len {len} at {at} mark {mark:#x}");
        }
    }
}
