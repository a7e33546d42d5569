//! The table of cached entries: open addressing with linear probing, a key
//! and its value side by side in one slot.
//!
//! A standard hash map serves every lookup but one: it cannot say where a
//! key's slot is without reading it. This table can, so a worker starts
//! loading the slots of the records after the current one while it parses
//! them ([`EntryTable::prefetch_slot`]); at ~200,000 open entries a shard the
//! table is far larger than the CPU caches and each cold probe waits on memory.

use std::hash::BuildHasher;

use crate::model::record::Key;

type FastState = foldhash::fast::FixedState;

/// Slots filled at most 5/8: with linear probing a miss reads ~4 slots then
/// (two cache lines at most), against ~32 at 7/8.
const MAX_LOAD: (usize, usize) = (5, 8);
const MIN_SLOTS: usize = 16;

pub struct EntryTable<V> {
    slots: Vec<Option<(Key, V)>>,
    len: usize,
    hasher: FastState,
}

impl<V> EntryTable<V> {
    /// A table that holds `entries` before it grows.
    pub fn with_capacity(entries: usize) -> Self {
        let slots = (entries * MAX_LOAD.1)
            .div_ceil(MAX_LOAD.0)
            .next_power_of_two()
            .max(MIN_SLOTS);
        Self {
            slots: std::iter::repeat_with(|| None).take(slots).collect(),
            len: 0,
            hasher: FastState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many entries the table holds before it grows.
    pub fn capacity(&self) -> usize {
        self.slots.len() / MAX_LOAD.1 * MAX_LOAD.0
    }

    /// Bytes of the slot array.
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * size_of::<Option<(Key, V)>>()
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, key: &Key) -> usize {
        self.hasher.hash_one(key) as usize & self.mask()
    }

    /// The key's slot (`Ok`) or the empty slot where it would go (`Err`).
    fn find(&self, key: &Key) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some((k, _)) if k == key => return Ok(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub fn get(&self, key: &Key) -> Option<&V> {
        let i = self.find(key).ok()?;
        self.slots[i].as_ref().map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.find(key).is_ok()
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        let i = self.find(key).ok()?;
        self.slots[i].as_mut().map(|(_, v)| v)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: Key, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => self.slots[i].replace((key, value)).map(|(_, v)| v),
            Err(_) if self.len + 1 > self.capacity() => {
                self.grow();
                self.insert(key, value)
            }
            Err(i) => {
                self.slots[i] = Some((key, value));
                self.len += 1;
                None
            }
        }
    }

    /// Removes a key; the slots after it that probed past it move back, so
    /// no lookup ever needs a tombstone.
    pub fn remove(&mut self, key: &Key) -> Option<V> {
        let mut hole = self.find(key).ok()?;
        let (_, value) = self.slots[hole].take()?;
        self.len -= 1;
        let mask = self.mask();
        let mut i = (hole + 1) & mask;
        while let Some((k, _)) = &self.slots[i] {
            let home = self.home(k);
            // The slot moves into the hole unless its home lies cyclically
            // in (hole, i]: then the hole is not on its probe path.
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[i].take();
                hole = i;
            }
            i = (i + 1) & mask;
        }
        Some(value)
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        self.slots = std::iter::repeat_with(|| None)
            .take(old.len() * 2)
            .collect();
        for (key, value) in old.into_iter().flatten() {
            if let Err(i) = self.find(&key) {
                self.slots[i] = Some((key, value));
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut V)> {
        self.slots.iter_mut().flatten().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.iter().map(|(k, _)| k)
    }

    /// The key's home slot in 1,024 groups of the table, in table order: keys
    /// sorted by it are looked up walking the table in one direction.
    pub fn slot_group(&self, key: &Key) -> u16 {
        let shift = self.slots.len().trailing_zeros().saturating_sub(10);
        (self.home(key) >> shift) as u16
    }

    /// Starts loading the key's home slot and the next into the CPU caches
    /// (no effect on the table; a hint the CPU may drop).
    #[inline]
    pub fn prefetch_slot(&self, key: &Key) {
        let i = self.home(key);
        let p = self.slots.as_ptr().wrapping_add(i);
        prefetch(p);
        prefetch(p.cast::<u8>().wrapping_add(64));
    }
}

/// Starts loading the cache line at `p` (never faults, reads nothing the
/// program sees: any address will do).
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint: it does not dereference `p` in the
        // language's sense and cannot fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(profile: i64, title: i64) -> Key {
        Key { profile, title }
    }

    proptest! {
        /// Any mix of inserts, replacements and removals (keys from a small
        /// range, so that probe runs collide and wrap) leaves the table
        /// holding what a standard map holds.
        #[test]
        fn behaves_like_a_hash_map(
            ops in proptest::collection::vec((0u8..3, 0i64..200, 0u32..1000), 1..2000),
        ) {
            let mut table = EntryTable::with_capacity(0);
            let mut model = HashMap::new();
            for (op, k, v) in ops {
                let k = key(k % 40, k / 40);
                match op {
                    0 | 1 => prop_assert_eq!(table.insert(k, v), model.insert(k, v)),
                    _ => prop_assert_eq!(table.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for (k, v) in &model {
                prop_assert_eq!(table.get(k), Some(v));
            }
            let mut listed: Vec<(Key, u32)> = table.iter().map(|(k, v)| (*k, *v)).collect();
            let mut expected: Vec<(Key, u32)> = model.into_iter().collect();
            listed.sort();
            expected.sort();
            prop_assert_eq!(listed, expected);
        }
    }

    #[test]
    fn grows_past_its_capacity_and_keeps_every_entry() {
        let mut table = EntryTable::with_capacity(20);
        let first = table.capacity();
        assert!(first >= 20);
        for i in 0..10_000 {
            table.insert(key(i, -i), i);
        }
        assert!(table.capacity() >= 10_000 && table.capacity() > first);
        assert!((0..10_000).all(|i| table.get(&key(i, -i)) == Some(&i)));
        for i in (0..10_000).step_by(2) {
            assert_eq!(table.remove(&key(i, -i)), Some(i));
        }
        assert_eq!(table.len(), 5_000);
        assert!((0..10_000).all(|i| table.get(&key(i, -i)) == (i % 2 == 1).then_some(&i)));
    }

    #[test]
    fn slot_groups_follow_the_table_order() {
        let mut table = EntryTable::with_capacity(5_000);
        for i in 0..5_000 {
            table.insert(key(i, 7), ());
        }
        let groups: Vec<u16> = table.keys().map(|k| table.slot_group(k)).collect();
        // Linear probing moves a key a few slots past its home (across a group
        // boundary at most by a few groups), and the last run may wrap around
        // to the table's start: one big step back at most.
        let back = groups.windows(2).filter(|w| w[1] + 2 < w[0]).count();
        assert!(back <= 1, "{back} steps back");
        assert!(groups.iter().all(|&g| g < 1024));
    }
}
