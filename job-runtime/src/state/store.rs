//! Keyed state of one shard: a RocksDB instance (entries, timers, spilled
//! pending events, spilled event ids of hot entries) behind a write-back cache
//! of open entries bounded in entries and in heap bytes (least recently used
//! entries are written back in batches).
//!
//! Invariants:
//! - every open entry is in the cache, or in RocksDB, or both; the cache copy wins;
//! - an entry's timer is in `timers` while it is cached, and in the timers column
//!   family while it has a copy in RocksDB; timer times never change, so the two
//!   indexes agree on a key that is in both;
//! - firing is a merge of two ordered scans, never a scan of all entries;
//! - an entry's event ids are in its `ids` set, or (`spilled_ids` of them) in the
//!   ids column family ([`crate::state::ids`]), never both places for one id; the
//!   ids of an entry that is not open are deleted (or queued for deletion);
//! - `cached_bytes` is the sum of [`entry_bytes`] over the cached entries.
//!
//! A checkpoint takes the changed entries out as copies ([`ShardStore::take_changes`])
//! and another thread writes them and links RocksDB's files; until it is done
//! the store is *frozen*: it writes nothing to RocksDB (evictions wait, deletes
//! of fired entries are queued, id sets grow in memory instead of spilling),
//! so the files hold exactly the state at the moment the changes were taken.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteBufferManager, WriteOptions,
};

use crate::model::entry::{Entry, Seen};
use crate::model::record::{Event, Key, from_order_bytes, order_bytes};
pub use crate::state::handover::{Change, TakenChanges};
use crate::state::handover::{Handed, NOT_HANDED};
use crate::state::ids;
use crate::state::table::{EntryTable, prefetch};
use crate::state::timers::{Timer, TimerQueue};

pub const CF_ENTRIES: &str = "entries";
pub const CF_TIMERS: &str = "timers";
pub const CF_PENDING: &str = "pending";
/// Added later: state written before it has none, and opening creates it.
pub const CF_IDS: &str = "ids";
const CFS: [&str; 4] = [CF_ENTRIES, CF_TIMERS, CF_PENDING, CF_IDS];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("RocksDB error in shard {shard} state at {path}: {source}")]
    Rocks {
        shard: u32,
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("state of shard {shard} holds an undecodable {what}: {reason}")]
    Corrupt {
        shard: u32,
        what: &'static str,
        reason: String,
    },
    #[error("cannot prepare state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// RocksDB resources shared by all shards of a process: one block cache and one
/// write-buffer budget.
pub struct StateEnv {
    root: PathBuf,
    block_cache: Cache,
    write_buffers: WriteBufferManager,
}

impl StateEnv {
    pub fn new(root: &Path, block_cache_bytes: usize, write_buffer_bytes: usize) -> Self {
        let block_cache = Cache::new_lru_cache(block_cache_bytes);
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes,
            false,
            block_cache.clone(),
        );
        Self {
            root: root.to_path_buf(),
            block_cache,
            write_buffers,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn options(&self) -> (Options, Vec<ColumnFamilyDescriptor>) {
        let mut db = Options::default();
        db.create_if_missing(true);
        db.create_missing_column_families(true);
        db.set_write_buffer_manager(&self.write_buffers);
        db.set_max_background_jobs(2);
        // The working state is rebuilt at every start: at Info, each open wrote
        // its thousands of option lines to LOG (a third of a shard's open).
        // Warnings and errors still reach it.
        db.set_log_level(rocksdb::LogLevel::Warn);
        db.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = CFS
            .iter()
            .map(|name| {
                let mut table = BlockBasedOptions::default();
                table.set_block_cache(&self.block_cache);
                let mut cf = Options::default();
                if *name == CF_ENTRIES || *name == CF_IDS {
                    // Point lookups of absent keys are the common case when an entry
                    // opens, and for a hot entry's new event ids.
                    table.set_bloom_filter(10.0, false);
                }
                if *name == CF_IDS {
                    // Millions of ids of one entry: their filters and indexes are
                    // charged to the block cache instead of growing outside it, in
                    // 4 KiB partitions, so a lookup reads one small filter block
                    // (a whole file's filter, megabytes, would be read from disk
                    // whenever the cache had evicted it).
                    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
                    table.set_partition_filters(true);
                    table.set_metadata_block_size(4096);
                    table.set_cache_index_and_filter_blocks(true);
                    table.set_pin_top_level_index_and_filter(true);
                    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
                    cf.set_memtable_whole_key_filtering(true);
                    cf.set_memtable_prefix_bloom_ratio(0.05);
                }
                cf.set_block_based_table_factory(&table);
                cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
                ColumnFamilyDescriptor::new(*name, cf)
            })
            .collect();
        (db, cfs)
    }

    /// Opens (creating if needed) the RocksDB instance of `shard`.
    pub fn open_shard(&self, shard: u32) -> Result<ShardDb, StateError> {
        let path = self.root.join(format!("shard-{shard}"));
        std::fs::create_dir_all(&path).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        let (opts, cfs) = self.options();
        let db =
            DB::open_cf_descriptors(&opts, &path, cfs).map_err(|source| StateError::Rocks {
                shard,
                path: path.clone(),
                source,
            })?;
        let mut write = WriteOptions::default();
        // Durability comes from checkpoints, not from a write-ahead log.
        write.disable_wal(true);
        Ok(ShardDb {
            shard,
            path,
            db,
            write,
        })
    }
}

/// One shard's RocksDB instance.
pub struct ShardDb {
    shard: u32,
    path: PathBuf,
    pub(crate) db: DB,
    write: WriteOptions,
}

impl ShardDb {
    pub(crate) fn err(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks {
            shard: self.shard,
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db.cf_handle(name).ok_or_else(|| StateError::Corrupt {
            shard: self.shard,
            what: "column family list",
            reason: format!("column family {name} is missing"),
        })
    }

    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        self.db
            .write_opt(batch, &self.write)
            .map_err(|e| self.err(e))
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Writes `ids` of `key`'s entry to the ids column family.
    fn put_ids(
        &self,
        key: Key,
        pairs: impl Iterator<Item = (u128, u64)>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        ids::put_all(&mut batch, self.cf(CF_IDS)?, key, pairs);
        self.write(batch)
    }

    /// The fingerprint stored for a spilled id of `key`'s entry.
    fn lookup_id(&self, key: Key, id: u128) -> Result<Option<u64>, StateError> {
        ids::lookup(&self.db, self.cf(CF_IDS)?, key, id).map_err(|e| match e {
            ids::LookupError::Rocks(e) => self.err(e),
            ids::LookupError::BadValue { len } => StateError::Corrupt {
                shard: self.shard,
                what: "spilled event id",
                reason: format!("{len} value bytes for key {}", key.message_key()),
            },
        })
    }

    /// Spilled ids held for `key`'s entry.
    pub fn id_count(&self, key: Key) -> Result<u64, StateError> {
        ids::count(&self.db, self.cf(CF_IDS)?, key).map_err(|e| self.err(e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// RocksDB's own estimate of the bytes this shard holds (SST live data + memtables).
    pub fn estimated_bytes(&self) -> u64 {
        let mut total = 0;
        for name in CFS {
            if let Ok(cf) = self.cf(name) {
                for prop in [
                    "rocksdb.estimate-live-data-size",
                    "rocksdb.cur-size-all-mem-tables",
                ] {
                    total += self
                        .db
                        .property_int_value_cf(cf, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
        }
        total
    }

    /// Compacts every column family, dropping tombstones of emitted entries.
    pub fn compact(&self) {
        for name in CFS {
            if let Ok(cf) = self.cf(name) {
                self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
        }
    }
}

pub(crate) fn timer_key(fire: i64, key: Key) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&order_bytes(fire));
    out[8..].copy_from_slice(&key.to_bytes());
    out
}

fn parse_timer_key(b: &[u8]) -> Option<(i64, Key)> {
    Some((
        from_order_bytes(b.get(..8)?)?,
        Key::from_bytes(b.get(8..24)?)?,
    ))
}

/// Boxed in the table: a table of entries inline (~208-byte buckets) mostly
/// holds empty buckets, and touching them cost more than the pointer chase
/// (first-touch page faults: a 4-shard process reserved 440 MB for 72k entries).
struct Cached {
    entry: Entry,
    /// Operation count at the last use, for least-recently-used eviction.
    used: u64,
    /// A copy of the entry (and its timer) is in RocksDB.
    in_db: bool,
    /// The cached copy differs from the RocksDB copy.
    dirty: bool,
    /// Where its copy is in the store's [`Handed`] list ([`NOT_HANDED`] if none).
    handed: u32,
}

type FastState = foldhash::fast::FixedState;

/// The most entries a cache table of 2^n slots holds before it grows (5/8 load).
const fn table_entries(log2_slots: u32) -> usize {
    (1 << log2_slots) / 8 * 5
}

/// How many entries a shard's cache table is sized for up front: 2^14 slots
/// (under 400 KB), never more than the shard may cache. A table grows with its
/// live entries, which keeps its buckets dense and in the CPU caches: tables
/// presized for a few hundred thousand entries spread the open entries over
/// megabytes, and a lookup missing the caches three times (control bytes,
/// bucket, entry) took a quarter of a worker's time. Growth is amortised and
/// cheaper than that on every data set measured (bench/RESULTS.md).
fn presized_entries(cache_capacity: usize) -> usize {
    table_entries(14).min(cache_capacity)
}

/// Approximate heap bytes of one cached entry: its table slot (at 5/8
/// load), the boxed entry, its timer index slot, and its in-memory id set.
pub fn entry_bytes(entry: &Entry) -> usize {
    const FIXED: usize = size_of::<Option<(Key, Box<Cached>)>>() * 8 / 5 + size_of::<Cached>() + 32;
    FIXED + entry.ids.heap_bytes()
}

/// Bytes per event id a spill threshold counts (a pair of 24 bytes in a table
/// kept between 7/16 and 7/8 full).
const ID_BYTES: usize = 40;

/// How a store bounds its memory besides the entry count.
#[derive(Clone, Copy, Debug)]
struct ByteLimits {
    /// Heap bytes of cached entries before the least recently used are written back.
    budget: usize,
    /// In-memory ids of one entry from which they are written to RocksDB.
    spill_ids: usize,
    /// Bytes of id table an entry keeps after a spill.
    keep_bytes: usize,
}

impl ByteLimits {
    /// No byte budget: every id stays in memory (the count bound alone).
    const UNBOUNDED: ByteLimits = ByteLimits {
        budget: usize::MAX,
        spill_ids: usize::MAX,
        keep_bytes: usize::MAX,
    };

    /// A hot entry's id set may take a sixteenth of the budget (between 16 KiB
    /// and 8 MiB) before it spills: small enough that a few hot keys fit, large
    /// enough that a spill is one big sorted batch.
    fn for_budget(budget: usize) -> Self {
        let spill_bytes = (budget / 16).clamp(16 << 10, 8 << 20);
        ByteLimits {
            budget,
            spill_ids: spill_bytes / ID_BYTES,
            keep_bytes: spill_bytes * 2,
        }
    }
}

/// What a store's fold needs besides the entry: disjoint parts of the store.
struct FoldCtx<'a> {
    db: &'a ShardDb,
    ops: u64,
    changes: &'a mut Changes,
    cached_bytes: &'a mut usize,
}

fn fold_cached(c: &mut Cached, event: &Event, ctx: FoldCtx<'_>) -> Result<Applied, StateError> {
    c.used = ctx.ops;
    let before = c.entry.ids.heap_bytes();
    let seen = c
        .entry
        .fold_with(event, |id| ctx.db.lookup_id(event.key, id))?;
    *ctx.cached_bytes = *ctx.cached_bytes + c.entry.ids.heap_bytes() - before;
    Ok(match seen {
        Seen::New => {
            if !c.dirty {
                ctx.changes.note(event.key);
            }
            c.dirty = true;
            Applied::Folded
        }
        Seen::Copy => Applied::Duplicate,
        Seen::Conflict => Applied::Conflict,
    })
}

/// Keys whose cached entry may differ from RocksDB since the last checkpoint,
/// so a checkpoint writes those through without scanning the whole cache.
/// Tracked only for jobs that checkpoint; a list longer than the cache is
/// dropped for one full scan.
#[derive(Default)]
struct Changes {
    tracking: bool,
    keys: Vec<Key>,
    overflowed: bool,
    /// The first `held` keys were left for the checkpoint by a handover.
    held: usize,
    /// Keys before this (after `held`) were handed over already.
    cursor: usize,
    /// Keys noted (beyond `cursor`) before a handover.
    slice: usize,
    /// Handovers happen while this is set: in the lead-up to a checkpoint
    /// (see `Worker`), not all the time. An entry that changes again after
    /// its handover is copied again, and one that opens and fires between
    /// two checkpoints need never be copied: handing over continuously cost
    /// ~15% of the Kafka path's CPU in copies no checkpoint needed.
    open: bool,
}

impl TakenChanges {
    /// Writes the entries (and timers of new ones) into RocksDB in one batch, in
    /// key order: RocksDB inserts keys in order several times faster.
    pub fn write(&self, db: &ShardDb) -> Result<(), StateError> {
        let entries_cf = db.cf(CF_ENTRIES)?;
        let timers_cf = db.cf(CF_TIMERS)?;
        let mut batch = WriteBatch::default();
        // A key holds one live copy; were there two, the later (higher index)
        // would be put last and win.
        let mut order: Vec<([u8; 16], u32)> = self
            .live_indexed()
            .map(|(i, c)| (c.key.to_bytes(), i as u32))
            .collect();
        order.sort_unstable();
        for &(key, i) in &order {
            batch.put_cf(entries_cf, key, self.0[i as usize].entry.encode());
        }
        let mut timers: Vec<[u8; 24]> = self
            .live()
            .filter(|c| c.new_in_db)
            .map(|c| timer_key(c.entry.timer, c.key))
            .collect();
        timers.sort_unstable();
        for t in &timers {
            batch.put_cf(timers_cf, t, []);
        }
        db.write(batch)
    }
}

/// Changed entries that gather before they are handed over to the next checkpoint.
const HANDOVER_SLICE: usize = 4096;

/// At most this many noted keys are handed over by one call: a backlog noted
/// before the lead-up goes over a few turns instead of in one pause.
const HANDOVER_CHUNK: usize = 16_384;

/// An entry with an id set larger than this is copied at the checkpoint only.
const HANDOVER_MAX_IDS_BYTES: usize = 16 << 10;

/// Copies changed cached entries into the handed-over list and counts them
/// as in RocksDB (where the checkpoint that writes the list puts them).
struct Copier<'a> {
    handed: &'a mut Handed,
    /// The store's RocksDB timer floor, lowered to the timers of new copies.
    floor: i64,
    /// Entries new in RocksDB.
    added: u64,
}

impl Copier<'_> {
    fn copy(&mut self, key: Key, c: &mut Cached) {
        if c.dirty || !c.in_db {
            c.handed = self.handed.put(key, &c.entry, !c.in_db, c.handed);
        }
        if !c.in_db {
            self.floor = self.floor.min(c.entry.timer);
            self.added += 1;
            c.in_db = true;
        }
        c.dirty = false;
    }
}

/// Orders keys about as their cache table slots (grouped by the top ten bits):
/// the lookups then walk the table in one direction instead of missing the
/// CPU caches at random. Keys of entries evicted since are skipped by the
/// caller; a key noted twice is copied once (the first visit leaves it clean).
fn sort_by_slot(cache: &EntryTable<Box<Cached>>, keys: &mut [Key]) {
    radsort::sort_by_key(keys, |key| cache.slot_group(key));
}

/// An entry written back with this many ids in memory puts them in the ids
/// column family.
const SPILL_ON_WRITE_BACK: usize = 1024;

/// Past this many noted keys a checkpoint scans the cache instead.
const MAX_NOTED_CHANGES: usize = 1 << 20;

impl Changes {
    #[inline]
    fn note(&mut self, key: Key) {
        if self.tracking && !self.overflowed {
            if self.keys.len() >= MAX_NOTED_CHANGES {
                self.overflowed = true;
                self.keys = Vec::new();
            } else {
                self.keys.push(key);
            }
        }
    }
}

/// What applying one event did to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Opened,
    Folded,
    Duplicate,
    Conflict,
}

/// What waits while a checkpoint is being written from taken changes.
#[derive(Default)]
struct Frozen {
    /// Timers (and entries) fired since, to delete from RocksDB afterwards.
    deletes: Vec<Timer>,
    /// Keys of the entries among them with ids in RocksDB.
    id_deletes: Vec<Key>,
    deleted: HashSet<Key, FastState>,
    /// The last timer fired since: RocksDB timer scans start after it.
    fired_up_to: Option<Timer>,
}

/// The keyed state of one shard.
pub struct ShardStore {
    db: Arc<ShardDb>,
    cache: EntryTable<Box<Cached>>,
    ops: u64,
    capacity: usize,
    limits: ByteLimits,
    /// Sum of [`entry_bytes`] over the cache.
    cached_bytes: usize,
    /// Event ids written to RocksDB by hot entries, since start.
    ids_spilled_total: u64,
    timers: TimerQueue,
    /// Entries with a copy in RocksDB (each also has a timer there).
    db_entries: u64,
    /// Entries that are in RocksDB only.
    db_only: u64,
    /// Every RocksDB timer below this was fired and deleted: scans start here.
    db_timer_floor: i64,
    window_ms: i64,
    spilled_total: u64,
    changes: Changes,
    frozen: Option<Frozen>,
    /// The list the last checkpoint's changes were taken into, emptied.
    spare: Vec<Change>,
    /// Copies of changed entries handed over to the next checkpoint ahead of it.
    handed: Handed,
}

impl ShardStore {
    /// A store caching up to `capacity` entries (its table sized as
    /// [`presized_entries`] says).
    pub fn new(db: ShardDb, capacity: usize, window_ms: i64) -> Self {
        Self {
            db: Arc::new(db),
            cache: EntryTable::with_capacity(presized_entries(capacity)),
            ops: 0,
            capacity,
            limits: ByteLimits::UNBOUNDED,
            cached_bytes: 0,
            ids_spilled_total: 0,
            timers: TimerQueue::default(),
            db_entries: 0,
            db_only: 0,
            db_timer_floor: i64::MIN,
            window_ms,
            spilled_total: 0,
            changes: Changes::default(),
            frozen: None,
            spare: Vec::new(),
            handed: Handed::default(),
        }
    }

    /// Bounds the cache to `budget` heap bytes as well (entries with their id
    /// sets), and spills the ids of an entry whose set outgrows its share.
    pub fn with_byte_budget(mut self, budget: usize) -> Self {
        self.limits = ByteLimits::for_budget(budget);
        self
    }

    /// Remembers which entries change between checkpoints (see [`Self::persist_all`]).
    pub fn track_changes(&mut self) {
        self.changes.tracking = true;
        self.changes.slice = HANDOVER_SLICE;
    }

    /// A store over a RocksDB instance restored from a checkpoint: every entry is
    /// in RocksDB only (the checkpoint wrote the cache through).
    pub fn restored(db: ShardDb, capacity: usize, window_ms: i64, entries: u64) -> Self {
        let mut s = Self::new(db, capacity, window_ms);
        s.db_entries = entries;
        s.db_only = entries;
        s
    }

    pub fn db(&self) -> &ShardDb {
        &self.db
    }

    /// The RocksDB instance, for a thread that writes a checkpoint of it.
    pub fn shared_db(&self) -> Arc<ShardDb> {
        Arc::clone(&self.db)
    }

    /// Writes every cached entry RocksDB lacks or holds an older copy of, so that
    /// RocksDB alone holds the state (the consistent point of a checkpoint). The
    /// entries stay cached.
    pub fn persist_all(&mut self) -> Result<(), StateError> {
        let changes = self.take_changes();
        let written = changes.write(&self.db);
        if written.is_err() {
            self.untake(changes);
        } else {
            self.give_back(changes.recycle());
        }
        self.thaw()?;
        written
    }

    /// Taken changes that could not be written: their entries are changed again
    /// (for the next checkpoint or an eviction) and count as not in RocksDB.
    /// Keeps a written list of changes for the next checkpoint to take into.
    pub fn give_back(&mut self, list: Vec<Change>) {
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }

    pub fn untake(&mut self, changes: TakenChanges) {
        for c in changes.live() {
            // An entry fired since was counted out of RocksDB when it fired.
            if let Some(cached) = self.cache.get_mut(&c.key) {
                // (A newer entry of the same key, opened since, is not in RocksDB.)
                if c.new_in_db && cached.in_db {
                    cached.in_db = false;
                    self.db_entries -= 1;
                }
                cached.dirty = true;
                self.changes.note(c.key);
            }
        }
    }

    /// Copies out every cached entry RocksDB lacks or holds an older copy of and
    /// counts them as written, together with the copies handed over since the
    /// last checkpoint (see [`Self::hand_over`]); the store is frozen until
    /// [`Self::thaw`], which the caller calls once the copies are written (and
    /// linked into a checkpoint). The entries stay cached.
    pub fn take_changes(&mut self) -> TakenChanges {
        let scan = !self.changes.tracking || self.changes.overflowed;
        let expected = if scan {
            self.cache.len()
        } else {
            self.changes.keys.len()
        };
        self.handed.reserve(&mut self.spare, expected);
        let mut copier = Copier {
            handed: &mut self.handed,
            floor: self.db_timer_floor,
            added: 0,
        };
        if scan {
            for (key, c) in self.cache.iter_mut() {
                copier.copy(*key, c);
            }
        } else {
            // Keys handed over already need no second look (one changed again
            // since was noted again).
            let c = &mut self.changes;
            c.keys.drain(c.held..c.cursor.max(c.held));
            sort_by_slot(&self.cache, &mut self.changes.keys);
            for key in self.changes.keys.iter() {
                if let Some(c) = self.cache.get_mut(key) {
                    copier.copy(*key, c);
                }
            }
        }
        let (floor, added) = (copier.floor, copier.added);
        self.changes.keys.clear();
        self.changes.held = 0;
        self.changes.cursor = 0;
        self.changes.overflowed = false;
        self.db_timer_floor = floor;
        self.db_entries += added;
        self.frozen = Some(Frozen::default());
        self.handed.take()
    }

    /// Opens or closes the lead-up to a checkpoint, in which [`Self::hand_over`]
    /// works.
    pub fn set_handing_over(&mut self, open: bool) {
        self.changes.open = open;
    }

    /// In the lead-up to a checkpoint, hands the entries changed since the
    /// last handover over to it as copies, once a slice of them has gathered
    /// (so the checkpoint moment copies at most about a slice), a chunk a call.
    /// Frozen or not: the copies stay in memory until the next checkpoint
    /// writes them. Entries with large id sets wait for the checkpoint (copied
    /// once, not once per slice they change in); so does everything once the
    /// copies hold a quarter of the byte budget (they count in it), or when
    /// changes are not tracked.
    pub fn hand_over(&mut self) -> Result<(), StateError> {
        let noted = self.changes.keys.len();
        let cap = self.limits.budget / 4;
        if !self.changes.tracking
            || !self.changes.open
            || self.changes.overflowed
            || noted < self.changes.cursor + self.changes.slice.max(1)
            || self.handed.bytes() >= cap
            || self.handed.copies() >= MAX_NOTED_CHANGES
        {
            return Ok(());
        }
        // Room for the next slices too: growing the list at the checkpoint
        // moment would copy all of it there.
        self.handed
            .reserve(&mut self.spare, noted + 2 * self.changes.slice);
        let mut copier = Copier {
            handed: &mut self.handed,
            floor: self.db_timer_floor,
            added: 0,
        };
        let Changes {
            keys, held, cursor, ..
        } = &mut self.changes;
        let end = noted.min(*cursor + HANDOVER_CHUNK);
        sort_by_slot(&self.cache, &mut keys[*cursor..end]);
        for i in *cursor..end {
            let key = keys[i];
            if let Some(c) = self.cache.get_mut(&key) {
                let full =
                    copier.handed.bytes() >= cap || copier.handed.copies() >= MAX_NOTED_CHANGES;
                if full || c.entry.ids.heap_bytes() > HANDOVER_MAX_IDS_BYTES {
                    // Left for the checkpoint: moved in front of those handed over.
                    keys.swap(*held, i);
                    *held += 1;
                } else {
                    copier.copy(key, c);
                }
            }
        }
        *cursor = end;
        // Keys handed over are dropped once they are most of the list (the
        // move costs no more than the keys behind them).
        if *cursor - *held > keys.len() / 2 {
            keys.drain(*held..*cursor);
            *cursor = *held;
        }
        let (floor, added) = (copier.floor, copier.added);
        self.db_timer_floor = floor;
        self.db_entries += added;
        if self.over_budget() {
            self.evict_over_capacity()?;
        }
        Ok(())
    }

    /// Whether the cache and the handed-over copies together exceed the byte budget.
    fn over_budget(&self) -> bool {
        self.cached_bytes.saturating_add(self.handed.bytes()) > self.limits.budget
    }

    /// Whether taken changes are still being written (see [`Self::take_changes`]).
    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Ends a freeze: deletes what fired meanwhile and evicts what waited.
    pub fn thaw(&mut self) -> Result<(), StateError> {
        let Some(frozen) = self.frozen.take() else {
            return Ok(());
        };
        if !frozen.deletes.is_empty() {
            let entries_cf = self.db.cf(CF_ENTRIES)?;
            let timers_cf = self.db.cf(CF_TIMERS)?;
            let mut batch = WriteBatch::default();
            for (fire, key) in frozen.deletes {
                batch.delete_cf(entries_cf, key.to_bytes());
                batch.delete_cf(timers_cf, timer_key(fire, key));
            }
            let ids_cf = self.db.cf(CF_IDS)?;
            for key in frozen.id_deletes {
                ids::delete_all(&mut batch, ids_cf, key);
            }
            self.db.write(batch)?;
        }
        self.evict_over_capacity()?;
        self.settle()
    }

    /// Open entries, wherever they are held.
    pub fn live_entries(&self) -> u64 {
        self.cache.len() as u64 + self.db_only
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// Entries written to RocksDB because the cache was full, since start.
    pub fn spilled_total(&self) -> u64 {
        self.spilled_total
    }

    /// Event ids hot entries wrote to RocksDB instead of keeping them, since start.
    pub fn ids_spilled_total(&self) -> u64 {
        self.ids_spilled_total
    }

    /// Heap bytes of the cached entries, as the byte budget counts them.
    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes
    }

    /// Starts loading the table slot of `key` into the CPU caches.
    pub fn prefetch_slot(&self, key: &Key) {
        self.cache.prefetch_slot(key);
    }

    /// Starts loading `key`'s cached entry (every cache line of it: a fold
    /// reads the aggregates and the event ids, which lie lines apart) into the
    /// CPU caches, if there is one. Reads the key's slot: best once
    /// [`Self::prefetch_slot`] had time to load it.
    pub fn prefetch_entry(&self, key: &Key) {
        if let Some(c) = self.cache.get(key) {
            let start = (&**c as *const Cached).cast::<u8>();
            let end = start as usize + size_of::<Cached>();
            // From the line the entry starts in, whatever its alignment.
            let mut line = start.wrapping_sub(start as usize % 64);
            while (line as usize) < end {
                prefetch(line);
                line = line.wrapping_add(64);
            }
        }
    }

    /// Folds an event on arrival when the contract allows it: its key's entry is
    /// cached and open, the entry's start is behind every event that can still be
    /// on time (`on_time_from`), and the event falls inside the window. The result
    /// is the one in-order application would give.
    pub fn fold_if_open(
        &mut self,
        event: &Event,
        on_time_from: i64,
    ) -> Result<Option<Applied>, StateError> {
        self.ops += 1;
        self.fold_into_cached(event, |e| {
            e.window_start < on_time_from && event.time < e.timer
        })
    }

    /// Folds `event` into its key's cached entry when there is one and `admit`
    /// lets it (one lookup of the cache table per event).
    fn fold_into_cached(
        &mut self,
        event: &Event,
        admit: impl FnOnce(&Entry) -> bool,
    ) -> Result<Option<Applied>, StateError> {
        let Some(c) = self.cache.get_mut(&event.key) else {
            return Ok(None);
        };
        if !admit(&c.entry) {
            return Ok(None);
        }
        let ctx = FoldCtx {
            db: &self.db,
            ops: self.ops,
            changes: &mut self.changes,
            cached_bytes: &mut self.cached_bytes,
        };
        let applied = fold_cached(c, event, ctx)?;
        let spill = c.entry.ids.len() >= self.limits.spill_ids;
        self.after_fold(event.key, applied, spill)?;
        Ok(Some(applied))
    }

    /// Applies an on-time event whose turn has come (event-time order).
    pub fn apply(&mut self, event: &Event) -> Result<Applied, StateError> {
        self.ops += 1;
        if let Some(applied) = self.fold_into_cached(event, |_| true)? {
            return Ok(applied);
        }
        if self.db_only > 0
            && let Some(entry) = self.load(event.key)?
        {
            self.db_only -= 1;
            self.cache_put(event.key, entry, true)?;
            return self.apply(event);
        }
        self.cache_put(event.key, Entry::open(event, self.window_ms), false)?;
        Ok(Applied::Opened)
    }

    /// After an event folded into a cached entry: spills the entry's ids when
    /// its set outgrew its share (never while frozen: the checkpoint's files
    /// must not see ids its entry copies do not count), and keeps the cache
    /// within its byte budget.
    fn after_fold(&mut self, key: Key, applied: Applied, spill: bool) -> Result<(), StateError> {
        if applied != Applied::Folded || self.frozen.is_some() {
            return Ok(());
        }
        if spill {
            self.spill_ids(key)?;
        }
        if self.over_budget() {
            self.evict_over_capacity()?;
        }
        Ok(())
    }

    /// Writes a cached entry's in-memory ids to RocksDB and forgets them there.
    fn spill_ids(&mut self, key: Key) -> Result<(), StateError> {
        let Some(c) = self.cache.get_mut(&key) else {
            return Ok(());
        };
        self.db.put_ids(key, c.entry.ids.pairs())?;
        let before = c.entry.ids.heap_bytes();
        self.ids_spilled_total += c.entry.mark_ids_spilled(self.limits.keep_bytes);
        self.cached_bytes = self.cached_bytes + c.entry.ids.heap_bytes() - before;
        // The RocksDB copy of the entry (if any) still holds the ids just spilled.
        if !c.dirty {
            self.changes.note(key);
        }
        c.dirty = true;
        Ok(())
    }

    /// Caches an open entry (fresh, or loaded from RocksDB) with its timer.
    fn cache_put(&mut self, key: Key, entry: Entry, in_db: bool) -> Result<(), StateError> {
        if !in_db {
            self.changes.note(key);
        }
        self.cached_bytes += entry_bytes(&entry);
        self.timers.insert((entry.timer, key));
        self.cache.insert(
            key,
            Box::new(Cached {
                entry,
                used: self.ops,
                in_db,
                dirty: !in_db,
                handed: NOT_HANDED,
            }),
        );
        self.evict_over_capacity()
    }

    fn load(&self, key: Key) -> Result<Option<Entry>, StateError> {
        if let Some(f) = &self.frozen
            && f.deleted.contains(&key)
        {
            return Ok(None);
        }
        let cf = self.db.cf(CF_ENTRIES)?;
        match self.db.db.get_pinned_cf(cf, key.to_bytes()) {
            Ok(Some(bytes)) => Entry::decode(&bytes)
                .map(Some)
                .map_err(|e| StateError::Corrupt {
                    shard: self.db.shard,
                    what: "entry",
                    reason: e.to_string(),
                }),
            Ok(None) => Ok(None),
            Err(e) => Err(self.db.err(e)),
        }
    }

    /// Writes the least recently used entries to RocksDB when the cache is over
    /// capacity (a tenth of the capacity at a time, so the selection is
    /// amortised) or over its byte budget (down to nine tenths of it). The
    /// entry used last always stays.
    fn evict_over_capacity(&mut self) -> Result<(), StateError> {
        // With capacity zero the entry just used stays until `settle` writes it through;
        // while frozen nothing is written (the cache holds more for a moment).
        let over_count = self.cache.len() > self.capacity;
        let over_bytes = self.over_budget();
        if !(over_count || over_bytes) || self.capacity == 0 || self.frozen.is_some() {
            return Ok(());
        }
        let mut by_age: Vec<(u64, Key)> = self.cache.iter().map(|(k, c)| (c.used, *k)).collect();
        let mut count = if over_count {
            let excess = self.cache.len() - self.capacity;
            excess.max(self.capacity / 10).min(self.cache.len() - 1)
        } else {
            0
        };
        if over_bytes {
            by_age.sort_unstable();
            let target = self.limits.budget / 10 * 9;
            let mut bytes = self.cached_bytes + self.handed.bytes();
            for (i, (_, key)) in by_age
                .iter()
                .enumerate()
                .take(by_age.len().saturating_sub(1))
            {
                if i >= count && bytes <= target {
                    break;
                }
                // Writing an entry back drops its handed-over copy too.
                bytes -= self.cache.get(key).map_or(0, |c| {
                    entry_bytes(&c.entry) + self.handed.bytes_of(*key, c.handed)
                });
                count = count.max(i + 1);
            }
        } else if count > 0 {
            by_age.select_nth_unstable(count - 1);
        }
        by_age.truncate(count);
        self.write_back_all(by_age.into_iter().map(|(_, key)| key))
    }

    /// Moves these cached entries to RocksDB and drops their in-memory timers.
    fn write_back_all(&mut self, keys: impl Iterator<Item = Key>) -> Result<(), StateError> {
        let mut timers: Vec<Timer> = Vec::new();
        for key in keys {
            if let Some(c) = self.cache.remove(&key) {
                self.cached_bytes -= entry_bytes(&c.entry);
                timers.push((c.entry.timer, key));
                self.write_back(key, *c)?;
            }
        }
        self.timers.remove_all(timers);
        Ok(())
    }

    fn write_back(&mut self, key: Key, mut c: Cached) -> Result<(), StateError> {
        // A copy handed over to the next checkpoint is written here instead
        // (the checkpoint would write it after, and over, later writes of the key).
        if let Some(new_in_db) = self.handed.drop_copy(key, c.handed) {
            c.dirty = true;
            if new_in_db {
                c.in_db = false;
                self.db_entries -= 1;
            }
        }
        // An entry that spilled ids, or holds many, leaves them in the ids column
        // family rather than in its own value (read back whole on every load).
        if c.entry.spilled_ids > 0 || c.entry.ids.len() >= SPILL_ON_WRITE_BACK {
            self.db.put_ids(key, c.entry.ids.pairs())?;
            self.ids_spilled_total += c.entry.mark_ids_spilled(0);
            c.dirty = true;
        }
        if c.dirty || !c.in_db {
            let mut batch = WriteBatch::default();
            batch.put_cf(self.db.cf(CF_ENTRIES)?, key.to_bytes(), c.entry.encode());
            if !c.in_db {
                batch.put_cf(self.db.cf(CF_TIMERS)?, timer_key(c.entry.timer, key), []);
                self.db_timer_floor = self.db_timer_floor.min(c.entry.timer);
            }
            self.db.write(batch)?;
        }
        if !c.in_db {
            self.db_entries += 1;
        }
        self.db_only += 1;
        self.spilled_total += 1;
        Ok(())
    }

    /// With capacity zero the last touched entry is written through after use.
    pub fn settle(&mut self) -> Result<(), StateError> {
        if self.capacity == 0 && self.frozen.is_none() {
            let all: Vec<Key> = self.cache.keys().copied().collect();
            self.write_back_all(all.into_iter())?;
        }
        Ok(())
    }

    fn first_db_timer(&self) -> Result<Option<(i64, Key)>, StateError> {
        if self.db_only == 0 {
            return Ok(None);
        }
        let mut ro = ReadOptions::default();
        match self.frozen.as_ref().and_then(|f| f.fired_up_to) {
            // Timers up to the last one fired are deleted, or queued for deletion:
            // start just after it (the key with a zero byte appended).
            Some((fire, key)) => {
                let mut after = timer_key(fire, key).to_vec();
                after.push(0);
                ro.set_iterate_lower_bound(after);
            }
            None => ro.set_iterate_lower_bound(order_bytes(self.db_timer_floor).to_vec()),
        }
        let cf = self.db.cf(CF_TIMERS)?;
        let mut iter = self.db.db.iterator_cf_opt(cf, ro, IteratorMode::Start);
        match iter.next() {
            None => Ok(None),
            Some(Err(e)) => Err(self.db.err(e)),
            Some(Ok((k, _))) => parse_timer_key(&k)
                .map(Some)
                .ok_or_else(|| StateError::Corrupt {
                    shard: self.db.shard,
                    what: "timer key",
                    reason: format!("{} bytes", k.len()),
                }),
        }
    }

    /// The earliest timer, from either index.
    pub fn next_timer(&self) -> Result<Option<(i64, Key)>, StateError> {
        let mem = self.timers.first();
        let db = self.first_db_timer()?;
        Ok(match (mem, db) {
            (Some(m), Some(d)) => Some(m.min(d)),
            (m, d) => m.or(d),
        })
    }

    /// Removes and returns the entry whose timer `(fire, key)` is due.
    pub fn fire(&mut self, fire: i64, key: Key) -> Result<Entry, StateError> {
        self.prefetch_timer_entry();
        let entry = if let Some(c) = self.cache.remove(&key) {
            self.cached_bytes -= entry_bytes(&c.entry);
            // A copy handed over must not reach RocksDB after its entry fired.
            // When that copy was to be the entry's first in RocksDB, RocksDB has
            // none: no delete (two tombstones for every entry that fired between
            // its handover and the checkpoint cost ~20% of the Kafka path's CPU).
            let first_copy_dropped = self.handed.drop_copy(key, c.handed) == Some(true);
            self.timers.remove((fire, key));
            if first_copy_dropped {
                self.db_entries -= 1;
            } else if c.in_db {
                self.delete_from_db(fire, key)?;
            }
            c.entry
        } else {
            let entry = self.load(key)?.ok_or_else(|| StateError::Corrupt {
                shard: self.db.shard,
                what: "timer",
                reason: format!("timer {fire} of key {} has no entry", key.message_key()),
            })?;
            self.delete_from_db(fire, key)?;
            self.db_only -= 1;
            entry
        };
        if entry.spilled_ids > 0 {
            self.delete_ids(key)?;
        }
        Ok(entry)
    }

    /// Starts loading the entry of a timer a few places ahead into the CPU
    /// caches, so that its fire finds it there.
    fn prefetch_timer_entry(&self) {
        if let Some((_, key)) = self.timers.ahead(8) {
            self.prefetch_slot(&key);
        }
        if let Some((_, key)) = self.timers.ahead(4) {
            self.prefetch_entry(&key);
        }
    }

    /// Deletes the spilled ids of `key`'s fired entry (queued while frozen: a
    /// checkpoint being written still counts them).
    fn delete_ids(&mut self, key: Key) -> Result<(), StateError> {
        if let Some(f) = &mut self.frozen {
            f.id_deletes.push(key);
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        ids::delete_all(&mut batch, self.db.cf(CF_IDS)?, key);
        self.db.write(batch)
    }

    fn delete_from_db(&mut self, fire: i64, key: Key) -> Result<(), StateError> {
        if let Some(f) = &mut self.frozen {
            f.deletes.push((fire, key));
            f.deleted.insert(key);
            // Timers fire in order: the latest is the largest.
            f.fired_up_to = Some((fire, key));
        } else {
            let mut batch = WriteBatch::default();
            batch.delete_cf(self.db.cf(CF_ENTRIES)?, key.to_bytes());
            batch.delete_cf(self.db.cf(CF_TIMERS)?, timer_key(fire, key));
            self.db.write(batch)?;
        }
        self.db_entries -= 1;
        if self.db_entries == 0 {
            self.db_timer_floor = i64::MIN;
        } else {
            self.db_timer_floor = self.db_timer_floor.max(fire);
        }
        Ok(())
    }

    /// Iterates the entries held in RocksDB only (for checks and snapshots).
    pub fn db_entry_count(&self) -> Result<u64, StateError> {
        let cf = self.db.cf(CF_ENTRIES)?;
        let mut n = 0;
        for item in self
            .db
            .db
            .iterator_cf(cf, IteratorMode::From(&[], Direction::Forward))
        {
            item.map_err(|e| self.db.err(e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Event ids held in the ids column family, of every entry (for checks).
    pub fn db_id_count(&self) -> Result<u64, StateError> {
        let cf = self.db.cf(CF_IDS)?;
        let mut n = 0;
        for item in self.db.db.iterator_cf(cf, IteratorMode::Start) {
            item.map_err(|e| self.db.err(e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Approximate bytes held in memory by the cache and timer index, id sets
    /// included, and by the copies handed over to the next checkpoint.
    pub fn memory_bytes(&self) -> u64 {
        (self.cached_bytes + self.handed.bytes()) as u64
    }

    /// Heap bytes of the copies handed over to the next checkpoint.
    pub fn handed_bytes(&self) -> usize {
        self.handed.bytes()
    }
}

#[cfg(test)]
#[path = "handover_tests.rs"]
mod handover_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldNames;
    use crate::model::record::{Input, RecordParser};

    pub(super) const W: i64 = 4 * 3_600_000;

    #[test]
    fn cache_tables_start_small_and_never_beyond_the_cache_capacity() {
        assert_eq!(presized_entries(1_000_000), 10_240);
        assert_eq!(presized_entries(1_000), 1_000);
        assert_eq!(presized_entries(0), 0);
        let dir = tempfile::tempdir().expect("tmp");
        let env = StateEnv::new(dir.path(), 8 << 20, 8 << 20);
        let db = env.open_shard(0).expect("open");
        let s = ShardStore::new(db, 1_000_000, W);
        assert_eq!(s.cache.capacity(), 10_240);
        assert_eq!(s.cache.heap_bytes(), (1 << 14) * 24);
    }

    pub(super) fn event(input: Input, id: &str, t: i64, profile: i64) -> Event {
        let line = match input {
            Input::Impressions => format!(
                r#"{{"type":"impression","event_id":"{id}","event_time":{t},"profile_id":{profile},"title_id":7,"row":1,"rank":2,"device":"tv"}}"#
            ),
            Input::Plays => format!(
                r#"{{"type":"play","event_id":"{id}","event_time":{t},"profile_id":{profile},"title_id":7,"device":"tv","duration_ms":5}}"#
            ),
        };
        RecordParser::new(input, FieldNames::default())
            .parse(line.as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    pub(super) fn store(dir: &Path, tracking: bool) -> (StateEnv, ShardStore) {
        let env = StateEnv::new(dir, 8 << 20, 8 << 20);
        let db = env.open_shard(0).expect("open");
        let mut s = ShardStore::new(db, 1_000, W);
        if tracking {
            s.track_changes();
        }
        (env, s)
    }

    pub(super) fn db_copy(s: &ShardStore, key: Key) -> Vec<u8> {
        s.load(key)
            .expect("load")
            .map(|e| e.encode())
            .unwrap_or_default()
    }

    #[test]
    fn a_checkpoint_writes_through_exactly_the_changes_with_or_without_tracking() {
        for tracking in [false, true] {
            let dir = tempfile::tempdir().expect("tmp");
            let (_env, mut s) = store(dir.path(), tracking);
            for p in 0..3 {
                s.apply(&event(Input::Impressions, &format!("i{p}"), 1_000, p))
                    .expect("apply");
            }
            s.persist_all().expect("persist");
            assert_eq!(s.db_entry_count().expect("count"), 3);
            let first = event(Input::Impressions, "i1", 1_000, 1).key;
            let before = db_copy(&s, first);
            // Only key 1 changes; the next checkpoint must carry the change.
            s.apply(&event(Input::Plays, "p1", 2_000, 1)).expect("fold");
            assert_eq!(db_copy(&s, first), before, "not yet written");
            s.persist_all().expect("persist");
            let cached = s.cache.get(&first).expect("cached").entry.encode();
            assert_eq!(db_copy(&s, first), cached, "tracking {tracking}");
            assert_ne!(cached, before);
            // A change after a checkpoint is noted again for the next one.
            s.apply(&event(Input::Plays, "p2", 2_500, 1)).expect("fold");
            s.persist_all().expect("persist");
            assert_eq!(
                db_copy(&s, first),
                s.cache.get(&first).expect("cached").entry.encode()
            );
        }
    }

    #[test]
    fn too_many_changes_fall_back_to_a_full_scan() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_env, mut s) = store(dir.path(), true);
        s.changes.overflowed = true;
        s.apply(&event(Input::Impressions, "i0", 1_000, 0))
            .expect("apply");
        assert!(s.changes.keys.is_empty());
        s.persist_all().expect("persist");
        assert_eq!(s.db_entry_count().expect("count"), 1);
        assert!(!s.changes.overflowed);
    }

    /// A copy of the shard's RocksDB as a checkpoint would link it now, opened
    /// as a restored store.
    pub(super) fn linked_copy(s: &ShardStore, dir: &Path, entries: u64) -> (StateEnv, ShardStore) {
        rocksdb::checkpoint::Checkpoint::new(&s.db().db)
            .and_then(|c| c.create_checkpoint(dir.join("shard-0")))
            .expect("checkpoint");
        let env = StateEnv::new(dir, 8 << 20, 8 << 20);
        let db = env.open_shard(0).expect("open copy");
        let restored = ShardStore::restored(db, 1_000, W, entries);
        (env, restored)
    }

    #[test]
    fn changes_made_while_frozen_stay_out_of_the_checkpoint_and_reach_rocksdb_after_thaw() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_env, mut s) = store(&dir.path().join("live"), true);
        let ev = |input, id: &str, t, p| event(input, id, t, p);
        // Entry 0 fires while frozen; entry 1 changes while frozen; entry 2 is
        // only in RocksDB and fires while frozen.
        s.apply(&ev(Input::Impressions, "i0", 1_000, 0))
            .expect("apply");
        s.apply(&ev(Input::Impressions, "i2", 1_500, 2))
            .expect("apply");
        s.persist_all().expect("persist");
        s.write_back_all([ev(Input::Impressions, "i2", 1_500, 2).key].into_iter())
            .expect("evict");
        s.apply(&ev(Input::Impressions, "i1", 2_000, 1))
            .expect("apply");
        let taken = s.take_changes();
        assert_eq!(
            taken.len(),
            1,
            "only entry 1 changed since the last checkpoint"
        );
        let k1 = ev(Input::Impressions, "i1", 2_000, 1).key;
        let at_take = s.cache.get(&k1).expect("cached").entry.encode();

        // While frozen: entry 1 changes, entries 0 and 2 fire, key 0 opens again.
        s.apply(&ev(Input::Plays, "p1", 2_500, 1)).expect("fold");
        let (fire0, key0) = s.next_timer().expect("timer").expect("due");
        assert_eq!(key0.profile, 0);
        s.fire(fire0, key0).expect("fire 0");
        let (fire2, key2) = s.next_timer().expect("timer").expect("due");
        assert_eq!(key2.profile, 2, "the RocksDB-only entry is next");
        s.fire(fire2, key2).expect("fire 2");
        assert_eq!(
            s.next_timer().expect("timer").map(|(_, k)| k.profile),
            Some(1),
            "fired timers waiting for deletion are not found again"
        );
        s.apply(&ev(Input::Impressions, "i0b", fire0 + 10, 0))
            .expect("reopen");
        assert_eq!(
            s.cache.get(&key0).expect("reopened").entry.window_start,
            fire0 + 10,
            "a fired entry waiting for deletion is never loaded again"
        );

        // What the checkpoint thread does: write the taken changes, link the files.
        taken.write(s.db()).expect("write");
        let copy_dir = tempfile::tempdir().expect("tmp");
        let (_copy_env, copy) = linked_copy(&s, copy_dir.path(), 3);
        assert_eq!(
            copy.db_entry_count().expect("count"),
            3,
            "entries 0, 1 and 2"
        );
        assert_eq!(db_copy(&copy, k1), at_take, "entry 1 as it was when taken");
        assert!(!db_copy(&copy, key2).is_empty(), "entry 2 not yet deleted");
        drop(copy);

        s.thaw().expect("thaw");
        assert_eq!(
            s.db_entry_count().expect("count"),
            1,
            "fired entries deleted"
        );
        s.persist_all().expect("persist");
        assert_eq!(
            db_copy(&s, k1),
            s.cache.get(&k1).expect("cached").entry.encode(),
            "the change made while frozen is in the next checkpoint"
        );
        assert_eq!(
            s.db_entry_count().expect("count"),
            2,
            "entry 1 and the reopened 0"
        );
    }

    #[test]
    fn changes_that_could_not_be_written_are_taken_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_env, mut s) = store(dir.path(), true);
        s.apply(&event(Input::Impressions, "i0", 1_000, 0))
            .expect("apply");
        let taken = s.take_changes();
        assert_eq!(taken.len(), 1);
        // The write failed: nothing reached RocksDB.
        s.untake(taken);
        s.thaw().expect("thaw");
        assert_eq!(s.db_entry_count().expect("count"), 0);
        let again = s.take_changes();
        assert_eq!(again.len(), 1, "the entry is taken again");
        again.write(s.db()).expect("write");
        s.thaw().expect("thaw");
        assert_eq!(s.db_entry_count().expect("count"), 1);
        assert_eq!(s.db_entries, 1, "counted once");
    }

    fn hot(id: usize, t: i64) -> Event {
        event(Input::Impressions, &format!("h{id}"), t, 7)
    }

    /// A store with a 256 KiB budget: an entry spills its ids from 409 on.
    pub(super) fn budgeted(dir: &Path) -> (StateEnv, ShardStore) {
        let env = StateEnv::new(dir, 8 << 20, 8 << 20);
        let db = env.open_shard(0).expect("open");
        let mut s = ShardStore::new(db, 1_000, W).with_byte_budget(256 << 10);
        s.track_changes();
        (env, s)
    }

    #[test]
    fn a_hot_entry_spills_its_ids_and_still_tells_copies_and_conflicts_apart() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_env, mut s) = budgeted(dir.path());
        for i in 0..5_000 {
            let applied = s.apply(&hot(i, 1_000 + i as i64)).expect("apply");
            assert_ne!(applied, Applied::Duplicate);
        }
        let key = hot(0, 0).key;
        let entry = &s.cache.get(&key).expect("cached").entry;
        assert!(entry.spilled_ids >= 4_000, "{}", entry.spilled_ids);
        assert!(entry.ids.len() < s.limits.spill_ids);
        assert_eq!(s.db().id_count(key).expect("count"), entry.spilled_ids);
        assert_eq!(entry.impressions, 5_000);
        assert_eq!(s.ids_spilled_total(), entry.spilled_ids);
        // The first id is in RocksDB only; the last in memory.
        assert_eq!(s.apply(&hot(0, 1_000)).expect("copy"), Applied::Duplicate);
        assert_eq!(
            s.apply(&hot(4_999, 5_999)).expect("copy"),
            Applied::Duplicate
        );
        assert_eq!(
            s.apply(&hot(1, 1_002)).expect("conflict"),
            Applied::Conflict
        );
        assert!(s.cached_bytes() <= 256 << 10);
        // Firing deletes the entry's ids.
        let (fire, k) = s.next_timer().expect("timer").expect("due");
        let fired = s.fire(fire, k).expect("fire");
        assert_eq!(fired.impressions, 5_000);
        assert_eq!(s.db_id_count().expect("ids"), 0);
        assert_eq!(s.cached_bytes(), 0);
    }

    #[test]
    fn the_byte_budget_evicts_the_least_recently_used_entries() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_env, mut s) = budgeted(dir.path());
        for p in 0..10_000 {
            s.apply(&event(Input::Impressions, "i", 1_000, p))
                .expect("apply");
            assert!(s.cached_bytes() <= 256 << 10);
        }
        assert!(s.cached_entries() < 10_000);
        assert_eq!(s.live_entries(), 10_000);
        assert!(
            s.cache
                .contains_key(&event(Input::Impressions, "i", 1_000, 9_999).key)
        );
        assert!(
            !s.cache
                .contains_key(&event(Input::Impressions, "i", 1_000, 0).key)
        );
    }

    #[test]
    fn ids_wait_in_memory_while_frozen_so_a_checkpoint_holds_exactly_its_entrys_ids() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_env, mut s) = budgeted(&dir.path().join("live"));
        for i in 0..2_000 {
            s.apply(&hot(i, 1_000 + i as i64)).expect("apply");
        }
        let key = hot(0, 0).key;
        let taken = s.take_changes();
        let spilled_at_take = s.cache.get(&key).expect("cached").entry.spilled_ids;
        assert!(spilled_at_take > 0);
        // While frozen the set grows past the spill threshold: nothing is written.
        for i in 2_000..4_000 {
            s.apply(&hot(i, 1_000 + i as i64)).expect("apply");
        }
        assert_eq!(
            s.cache.get(&key).expect("cached").entry.spilled_ids,
            spilled_at_take
        );
        taken.write(s.db()).expect("write");
        let copy_dir = tempfile::tempdir().expect("tmp");
        let (_copy_env, mut copy) = linked_copy(&s, copy_dir.path(), 1);
        assert_eq!(copy.db_id_count().expect("ids"), spilled_at_take);
        // In the restored copy, ids seen before the checkpoint are copies and
        // the ones seen after it are new.
        assert_eq!(
            copy.apply(&hot(3, 1_003)).expect("copy"),
            Applied::Duplicate
        );
        assert_eq!(
            copy.apply(&hot(1_999, 2_999)).expect("copy"),
            Applied::Duplicate
        );
        assert_eq!(
            copy.apply(&hot(2_000, 3_000)).expect("new"),
            Applied::Folded
        );
        drop(copy);
        s.thaw().expect("thaw");
        s.apply(&hot(4_000, 5_000)).expect("apply");
        let entry = &s.cache.get(&key).expect("cached").entry;
        assert!(entry.spilled_ids > spilled_at_take, "spills after the thaw");
        assert_eq!(entry.impressions, 4_001);
    }

    #[test]
    fn state_written_before_the_ids_column_family_existed_opens_and_reads() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("shard-0");
        let entry = Entry::open(&hot(1, 1_000), W);
        let key = hot(1, 1_000).key;
        {
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.create_missing_column_families(true);
            let db =
                DB::open_cf(&opts, &path, [CF_ENTRIES, CF_TIMERS, CF_PENDING]).expect("old layout");
            let cf = db.cf_handle(CF_ENTRIES).expect("entries");
            db.put_cf(cf, key.to_bytes(), entry.encode()).expect("put");
            let timers = db.cf_handle(CF_TIMERS).expect("timers");
            db.put_cf(timers, timer_key(entry.timer, key), [])
                .expect("put");
        }
        let env = StateEnv::new(dir.path(), 8 << 20, 8 << 20);
        let db = env.open_shard(0).expect("opens with the new column family");
        let mut s = ShardStore::restored(db, 1_000, W, 1).with_byte_budget(256 << 10);
        assert_eq!(s.apply(&hot(1, 1_000)).expect("copy"), Applied::Duplicate);
        assert_eq!(s.apply(&hot(2, 1_001)).expect("new"), Applied::Folded);
        assert_eq!(s.db_id_count().expect("ids"), 0);
    }
}
