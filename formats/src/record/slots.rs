//! The configured field names of one stream, matched against a record's member
//! names with a length and two word compares each instead of a `memcmp` call
//! (eight or nine names, tried for every member of every record).

/// A number that differs for two different names of one length (up to 16
/// bytes): their first and last 8 (or 4) bytes, which between them cover the
/// name. Fixed-size reads only, no copy of a variable length.
fn key(name: &[u8]) -> Option<u128> {
    let split = |lo: u64, hi: u64| (u128::from(hi) << 64) | u128::from(lo);
    match name.len() {
        8..=16 => Some(split(
            u64::from_le_bytes(*name.first_chunk::<8>()?),
            u64::from_le_bytes(*name.last_chunk::<8>()?),
        )),
        4..=7 => Some(split(
            u64::from(u32::from_le_bytes(*name.first_chunk::<4>()?)),
            u64::from(u32::from_le_bytes(*name.last_chunk::<4>()?)),
        )),
        0..=3 => Some(name.iter().fold(0, |k, &b| (k << 8) | u128::from(b))),
        _ => None,
    }
}

const BUCKETS: usize = 64;

/// The bucket of a name: its length and first byte, which already tell the
/// contract's names apart.
fn bucket(name: &[u8]) -> usize {
    (name.len() * 31 + usize::from(name.first().copied().unwrap_or(0))) % BUCKETS
}

/// Names and what each stands for, matched by name. Given in order: of two
/// entries with one name the first keeps it (as in a chain of comparisons).
#[derive(Clone, Debug)]
pub(super) struct SlotTable<S> {
    /// Names up to 16 bytes: (length, key, slot) by bucket.
    short: Vec<Vec<(usize, u128, S)>>,
    long: Vec<(Box<[u8]>, S)>,
}

impl<S: Copy> SlotTable<S> {
    pub(super) fn new<'a>(names: impl IntoIterator<Item = (&'a str, S)>) -> Self {
        let mut table = Self {
            short: vec![Vec::new(); BUCKETS],
            long: Vec::new(),
        };
        for (name, slot) in names {
            let name = name.as_bytes();
            if table.slot(name).is_some() {
                continue;
            }
            match key(name) {
                Some(k) => table.short[bucket(name)].push((name.len(), k, slot)),
                None => table.long.push((name.into(), slot)),
            }
        }
        table
    }

    pub(super) fn slot(&self, name: &[u8]) -> Option<S> {
        match key(name) {
            Some(k) => self.short[bucket(name)]
                .iter()
                .find(|(len, key, _)| *len == name.len() && *key == k)
                .map(|e| e.2),
            None => self.long.iter().find(|(l, _)| **l == *name).map(|e| e.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SlotTable;

    #[test]
    fn a_name_finds_its_slot_and_the_first_of_two_entries_keeps_a_name() {
        let long = "a_name_longer_than_sixteen_bytes";
        let table = SlotTable::new([
            ("type", 1),
            ("rank", 2),
            ("type", 3),
            (long, 4),
            (long, 5),
            ("", 6),
        ]);
        for (name, want) in [
            ("type", Some(1)),
            ("rank", Some(2)),
            (long, Some(4)),
            ("", Some(6)),
            ("typ", None),
            ("Type", None),
            ("a_name_longer_than_sixteen_bytez", None),
        ] {
            assert_eq!(table.slot(name.as_bytes()), want, "{name:?}");
        }
    }
}
