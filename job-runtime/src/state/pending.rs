//! The reorder buffer: on-time events wait here until the watermark passes them,
//! and leave in the contract's order `(event_time, input, event_id)`. Alignment
//! keeps it small; when it still grows past its budget (alignment off, a skewed
//! source) the latest events spill to RocksDB and come back in order. In memory
//! the events wait in a wheel of event-time buckets (`pending/wheel.rs`).

use std::cmp::Ordering;

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::model::record::{Event, Key, from_order_bytes, order_bytes};
use crate::state::store::{CF_PENDING, ShardDb, StateError};

#[cfg(test)]
mod tests;
mod wheel;

use wheel::{Timed, Wheel};

/// Reorder-buffer bookkeeping (in the checkpoint manifest).
pub use streamjoin_formats::checkpoint::PendingState;

/// An on-time event waiting for the watermark, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub event: Event,
    pub partition: u32,
    pub offset: i64,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.event.time, self.event.input, &self.event.id)
            .cmp(&(other.event.time, other.event.input, &other.event.id))
            .then_with(|| (self.partition, self.offset).cmp(&(other.partition, other.offset)))
    }
}

impl Timed for Pending {
    fn time(&self) -> i64 {
        self.event.time
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// In memory: every pending event with time < `spill_floor`; in RocksDB: the rest.
pub struct PendingBuffer {
    wheel: Wheel<Pending>,
    budget: usize,
    spill_floor: Option<i64>,
    spilled: u64,
    seq: u64,
}

impl PendingBuffer {
    pub fn new(budget: usize) -> Self {
        Self {
            wheel: Wheel::default(),
            budget: budget.max(2),
            spill_floor: None,
            spilled: 0,
            seq: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.wheel.len() as u64 + self.spilled
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn spilled(&self) -> u64 {
        self.spilled
    }

    /// The in-memory events (in no particular order) and the spill bookkeeping,
    /// for a checkpoint; spilled events are in the shard's RocksDB already.
    pub fn snapshot(&self) -> (Vec<Pending>, PendingState) {
        let events: Vec<Pending> = self.wheel.iter().cloned().collect();
        let state = PendingState {
            in_memory: events.len() as u64,
            spilled: self.spilled,
            spill_floor: self.spill_floor,
            seq: self.seq,
        };
        (events, state)
    }

    /// The buffer as a checkpoint left it.
    pub fn restore(budget: usize, events: Vec<Pending>, state: PendingState) -> Self {
        let mut b = Self::new(budget);
        b.refill(events);
        b.spilled = state.spilled;
        b.spill_floor = state.spill_floor;
        b.seq = state.seq;
        b
    }

    /// Whether pushing an event of this time writes to RocksDB (a spill).
    pub fn push_touches_db(&self, time: i64) -> bool {
        self.spill_floor.is_some_and(|floor| time >= floor) || self.wheel.len() >= self.budget
    }

    /// Whether the next read takes events back from RocksDB.
    pub fn read_touches_db(&self) -> bool {
        self.wheel.is_empty() && self.spilled > 0
    }

    pub fn push(&mut self, p: Pending, db: &ShardDb) -> Result<(), StateError> {
        match self.spill_floor {
            Some(floor) if p.event.time >= floor => self.spill(&[p], db),
            _ => {
                self.wheel.push(p);
                if self.wheel.len() > self.budget {
                    self.spill_upper_half(db)?;
                }
                Ok(())
            }
        }
    }

    fn spill(&mut self, items: &[Pending], db: &ShardDb) -> Result<(), StateError> {
        let cf = db.cf(CF_PENDING)?;
        let mut batch = WriteBatch::default();
        for p in items {
            // Key order is time order; the wheel restores the full order on reload.
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&order_bytes(p.event.time));
            key[8..].copy_from_slice(&self.seq.to_be_bytes());
            self.seq += 1;
            let value = postcard::to_stdvec(p)
                .unwrap_or_else(|e| unreachable!("encoding a pending event to memory: {e}"));
            batch.put_cf(cf, key, value);
        }
        db.write(batch)?;
        self.spilled += items.len() as u64;
        Ok(())
    }

    /// Moves the later half of the in-memory events (whole event-time groups) to RocksDB.
    fn spill_upper_half(&mut self, db: &ShardDb) -> Result<(), StateError> {
        let mut items = self.wheel.take_all();
        items.sort_unstable();
        let cut_time = items[items.len() / 2].event.time;
        let cut = items.partition_point(|p| p.event.time < cut_time);
        if cut == 0 {
            // One event time holds more than half the budget: it cannot be split.
            self.refill(items);
            return Ok(());
        }
        let upper = items.split_off(cut);
        self.spill(&upper, db)?;
        self.spill_floor = Some(cut_time);
        self.refill(items);
        Ok(())
    }

    /// Puts events back (in order after a spill: each push appends to its bucket).
    fn refill(&mut self, items: Vec<Pending>) {
        for p in items {
            self.wheel.push(p);
        }
    }

    /// Brings back from RocksDB at least one whole event-time group, and at most
    /// about half the budget beyond it.
    fn reload(&mut self, db: &ShardDb) -> Result<(), StateError> {
        let cf = db.cf(CF_PENDING)?;
        let mut batch = WriteBatch::default();
        let mut taken = 0usize;
        let mut last_time = None;
        let mut next_floor = None;
        for item in db.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.map_err(|e| db.err(e))?;
            let time = from_order_bytes(&k[..8.min(k.len())]).ok_or_else(|| corrupt(db, "key"))?;
            if taken >= self.budget / 2 && last_time != Some(time) {
                next_floor = Some(time);
                break;
            }
            let p: Pending = postcard::from_bytes(&v).map_err(|_| corrupt(db, "value"))?;
            self.wheel.push(p);
            batch.delete_cf(cf, k);
            taken += 1;
            last_time = Some(time);
        }
        db.write(batch)?;
        self.spilled -= taken as u64;
        self.spill_floor = next_floor;
        Ok(())
    }

    /// Removes and returns the earliest pending event.
    pub fn pop_min(&mut self, db: &ShardDb) -> Result<Option<Pending>, StateError> {
        if self.wheel.is_empty() && self.spilled > 0 {
            self.reload(db)?;
        }
        Ok(self.wheel.pop())
    }

    /// The key of the event about `n` places behind the next one, if known
    /// without reading RocksDB (to load its entry ahead of time).
    pub fn key_ahead(&self, n: usize) -> Option<Key> {
        self.wheel.ahead(n).map(|p| p.event.key)
    }

    /// Time of the earliest pending event.
    pub fn peek_time(&mut self, db: &ShardDb) -> Result<Option<i64>, StateError> {
        if self.wheel.is_empty() && self.spilled > 0 {
            self.reload(db)?;
        }
        Ok(self.wheel.peek_time())
    }
}

fn corrupt(db: &ShardDb, what: &str) -> StateError {
    StateError::Corrupt {
        shard: db.shard(),
        what: "pending event",
        reason: format!("undecodable {what}"),
    }
}
