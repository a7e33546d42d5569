//! Copies of changed entries on their way into a checkpoint.
//!
//! Between checkpoints the store hands entries that changed over to the next
//! checkpoint in slices ([`Handed`]), so the checkpoint moment only copies the
//! entries changed since the last slice. An entry changed again after its
//! handover is copied again over its earlier copy (the later copy wins); one
//! fired or written back to RocksDB since has its copy dropped (`gone`), so a
//! checkpoint writes exactly the state at its moment.

use crate::model::entry::Entry;
use crate::model::record::Key;

/// What a cache slot remembers when its entry has no copy handed over.
pub const NOT_HANDED: u32 = u32::MAX;

/// A changed entry copied out for a checkpoint.
pub struct Change {
    pub(crate) key: Key,
    pub(crate) entry: Entry,
    /// RocksDB has no copy yet: its timer is written too.
    pub(crate) new_in_db: bool,
    /// Fired or written back since it was handed over: not written.
    gone: bool,
}

/// Approximate heap bytes of one copy in a list of changes.
fn copy_bytes(entry: &Entry) -> usize {
    size_of::<Change>() + entry.ids.heap_bytes()
}

/// Changed entries, as a checkpoint writes them.
pub struct TakenChanges(pub(crate) Vec<Change>);

impl TakenChanges {
    /// The entries to write.
    pub fn live(&self) -> impl Iterator<Item = &Change> {
        self.0.iter().filter(|c| !c.gone)
    }

    pub fn len(&self) -> usize {
        self.live().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The emptied list, to take the next changes into: its memory is already
    /// touched, which on a fresh allocation costs more than the copying.
    pub fn recycle(mut self) -> Vec<Change> {
        self.0.clear();
        self.0
    }

    /// The live copies with their places in the list (a later place is a
    /// later copy).
    pub(crate) fn live_indexed(&self) -> impl Iterator<Item = (usize, &Change)> {
        self.0.iter().enumerate().filter(|(_, c)| !c.gone)
    }
}

/// Copies handed over to the next checkpoint before its moment.
#[derive(Default)]
pub struct Handed {
    list: Vec<Change>,
    /// Heap bytes of the live copies: the store counts them in its byte budget.
    bytes: usize,
}

impl Handed {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Copies held, dropped ones included.
    pub fn copies(&self) -> usize {
        self.list.len()
    }

    /// Makes room for `more` copies, starting from `spare` (a written
    /// checkpoint's emptied list) when nothing is held yet.
    pub fn reserve(&mut self, spare: &mut Vec<Change>, more: usize) {
        if self.list.capacity() == 0 {
            self.list = std::mem::take(spare);
        }
        self.list.reserve(more);
    }

    /// The index of `key`'s live copy, given the index its cache slot
    /// remembers (`at` may be from an earlier list: the key tells).
    fn slot(&self, key: Key, at: u32) -> Option<usize> {
        let i = at as usize;
        match self.list.get(i) {
            Some(c) if at != NOT_HANDED && c.key == key && !c.gone => Some(i),
            _ => None,
        }
    }

    /// Copies `entry` in, over `key`'s live copy if there is one (the later copy
    /// wins), and returns the index its cache slot remembers.
    pub fn put(&mut self, key: Key, entry: &Entry, new_in_db: bool, at: u32) -> u32 {
        let new_bytes = copy_bytes(entry);
        if let Some(i) = self.slot(key, at) {
            let c = &mut self.list[i];
            self.bytes = self.bytes + new_bytes - copy_bytes(&c.entry);
            c.entry.clone_from(entry);
            // An earlier copy new in RocksDB still carries the timer.
            c.new_in_db |= new_in_db;
            return at;
        }
        self.bytes += new_bytes;
        self.list.push(Change {
            key,
            entry: entry.clone(),
            new_in_db,
            gone: false,
        });
        u32::try_from(self.list.len() - 1).unwrap_or(NOT_HANDED)
    }

    /// Bytes `key`'s live copy holds (0 without one).
    pub fn bytes_of(&self, key: Key, at: u32) -> usize {
        self.slot(key, at)
            .map_or(0, |i| copy_bytes(&self.list[i].entry))
    }

    /// Drops `key`'s live copy (its entry fired, or is written to RocksDB
    /// directly); tells whether that copy was to be new in RocksDB.
    pub fn drop_copy(&mut self, key: Key, at: u32) -> Option<bool> {
        let i = self.slot(key, at)?;
        let c = &mut self.list[i];
        self.bytes -= copy_bytes(&c.entry);
        c.gone = true;
        // Its id set is freed now rather than with the list.
        c.entry.ids = Default::default();
        Some(c.new_in_db)
    }

    /// Everything handed over, for the checkpoint being taken; the next
    /// handover starts a new list.
    pub fn take(&mut self) -> TakenChanges {
        self.bytes = 0;
        TakenChanges(std::mem::take(&mut self.list))
    }
}
