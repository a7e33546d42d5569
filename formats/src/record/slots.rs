//! The configured field names of one stream, matched against a record's member
//! names with a length and two word compares each instead of a `memcmp` call
//! (eight or nine names, tried for every member of every record).

use super::{FieldNames, Input, Slot};

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

/// The stream's names. Two fields configured with one name: the first in the
/// serde path's order of checks keeps it, as there.
#[derive(Clone, Debug)]
pub(super) struct SlotTable {
    /// Names up to 16 bytes: (length, key, slot) by bucket.
    short: Vec<Vec<(usize, u128, Slot)>>,
    long: Vec<(Box<[u8]>, Slot)>,
}

impl SlotTable {
    pub(super) fn new(input: Input, n: &FieldNames) -> Self {
        let mut names = vec![
            (&n.record_type, Slot::Type),
            (&n.event_id, Slot::EventId),
            (&n.event_time, Slot::EventTime),
            (&n.profile, Slot::Profile),
            (&n.title, Slot::Title),
            (&n.device, Slot::Device),
        ];
        if input == Input::Plays {
            names.push((&n.duration, Slot::Duration));
        } else {
            names.extend([(&n.row, Slot::Row), (&n.rank, Slot::Rank)]);
        }
        let mut table = Self {
            short: vec![Vec::new(); BUCKETS],
            long: Vec::new(),
        };
        for (name, slot) in names {
            let name = name.as_bytes();
            if table.slot(name) != Slot::Other {
                continue;
            }
            match key(name) {
                Some(k) => table.short[bucket(name)].push((name.len(), k, slot)),
                None => table.long.push((name.into(), slot)),
            }
        }
        table
    }

    pub(super) fn slot(&self, name: &[u8]) -> Slot {
        let found = match key(name) {
            Some(k) => self.short[bucket(name)]
                .iter()
                .find(|(len, key, _)| *len == name.len() && *key == k)
                .map(|e| e.2),
            None => self.long.iter().find(|(l, _)| **l == *name).map(|e| e.1),
        };
        found.unwrap_or(Slot::Other)
    }
}

#[cfg(test)]
mod tests {
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
                let table = SlotTable::new(input, &fields);
                for name in names {
                    assert_eq!(
                        table.slot(name.as_bytes()),
                        by_comparisons(input, &fields, name),
                        "{input:?} {name:?}"
                    );
                }
            }
        }
    }
}
