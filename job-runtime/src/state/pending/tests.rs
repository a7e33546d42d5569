//! The wheel against the binary heap it replaced: same pops, same spills (the
//! same RocksDB keys and values), and checkpoints that restore either way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use proptest::prelude::*;
use rocksdb::{IteratorMode, WriteBatch};

use super::wheel::Wheel;
use super::*;
use crate::model::record::{EventId, Input, Key};
use crate::state::store::StateEnv;

fn pending(time: i64, input: Input, id: u8, partition: u32, offset: i64) -> Pending {
    Pending {
        event: Event {
            input,
            time,
            key: Key {
                profile: i64::from(id) * 7,
                title: 3,
            },
            id: EventId::new(&format!("id-{id}")),
            row: 1,
            rank: 2,
            duration_ms: 0,
            device: 0,
        },
        partition,
        offset,
    }
}

/// The reorder buffer as it was before the wheel (a binary heap), kept as the
/// reference for the order, the spills and the checkpoint layout.
struct HeapBuffer {
    heap: BinaryHeap<Reverse<Pending>>,
    budget: usize,
    spill_floor: Option<i64>,
    spilled: u64,
    seq: u64,
}

impl HeapBuffer {
    fn new(budget: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            budget: budget.max(2),
            spill_floor: None,
            spilled: 0,
            seq: 0,
        }
    }

    fn snapshot(&self) -> (Vec<Pending>, PendingState) {
        let events: Vec<Pending> = self.heap.iter().map(|Reverse(p)| p.clone()).collect();
        let state = PendingState {
            in_memory: events.len() as u64,
            spilled: self.spilled,
            spill_floor: self.spill_floor,
            seq: self.seq,
        };
        (events, state)
    }

    fn restore(budget: usize, events: Vec<Pending>, state: PendingState) -> Self {
        let mut b = Self::new(budget);
        b.heap = events.into_iter().map(Reverse).collect();
        b.spilled = state.spilled;
        b.spill_floor = state.spill_floor;
        b.seq = state.seq;
        b
    }

    fn push_touches_db(&self, time: i64) -> bool {
        self.spill_floor.is_some_and(|floor| time >= floor) || self.heap.len() >= self.budget
    }

    fn push(&mut self, p: Pending, db: &ShardDb) {
        match self.spill_floor {
            Some(floor) if p.event.time >= floor => self.spill(&[p], db),
            _ => {
                self.heap.push(Reverse(p));
                if self.heap.len() > self.budget {
                    self.spill_upper_half(db);
                }
            }
        }
    }

    fn spill(&mut self, items: &[Pending], db: &ShardDb) {
        let cf = db.cf(CF_PENDING).expect("pending cf");
        let mut batch = WriteBatch::default();
        for p in items {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&order_bytes(p.event.time));
            key[8..].copy_from_slice(&self.seq.to_be_bytes());
            self.seq += 1;
            batch.put_cf(cf, key, postcard::to_stdvec(p).expect("encode"));
        }
        db.write(batch).expect("write");
        self.spilled += items.len() as u64;
    }

    fn spill_upper_half(&mut self, db: &ShardDb) {
        let mut items: Vec<Pending> = std::mem::take(&mut self.heap)
            .into_iter()
            .map(|Reverse(p)| p)
            .collect();
        items.sort_unstable();
        let cut_time = items[items.len() / 2].event.time;
        let cut = items.partition_point(|p| p.event.time < cut_time);
        if cut == 0 {
            self.heap = items.into_iter().map(Reverse).collect();
            return;
        }
        let upper = items.split_off(cut);
        self.spill(&upper, db);
        self.spill_floor = Some(cut_time);
        self.heap = items.into_iter().map(Reverse).collect();
    }

    fn reload(&mut self, db: &ShardDb) {
        let cf = db.cf(CF_PENDING).expect("pending cf");
        let mut batch = WriteBatch::default();
        let mut taken = 0usize;
        let mut last_time = None;
        let mut next_floor = None;
        for item in db.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item.expect("iterate");
            let time = from_order_bytes(&k[..8]).expect("key");
            if taken >= self.budget / 2 && last_time != Some(time) {
                next_floor = Some(time);
                break;
            }
            self.heap
                .push(Reverse(postcard::from_bytes(&v).expect("decode")));
            batch.delete_cf(cf, k);
            taken += 1;
            last_time = Some(time);
        }
        db.write(batch).expect("write");
        self.spilled -= taken as u64;
        self.spill_floor = next_floor;
    }

    fn pop_min(&mut self, db: &ShardDb) -> Option<Pending> {
        if self.heap.is_empty() && self.spilled > 0 {
            self.reload(db);
        }
        self.heap.pop().map(|Reverse(p)| p)
    }

    fn peek_time(&mut self, db: &ShardDb) -> Option<i64> {
        if self.heap.is_empty() && self.spilled > 0 {
            self.reload(db);
        }
        self.heap.peek().map(|Reverse(p)| p.event.time)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Push(Pending),
    Pop,
    Peek,
    Checkpoint,
}

/// An operation of a mostly-sorted sequence: (kind, clock step, jitter, id, partition).
type SortedSeed = (u8, u16, u16, u8, u8);

/// Event times as a source delivers them: a clock moving forward, each event up
/// to `disorder` ms behind it, now and then one far ahead (past the ring) or
/// far behind.
fn mostly_sorted(raw: Vec<SortedSeed>, disorder: u16) -> Vec<Op> {
    let mut clock = 1_700_000_000_000i64;
    raw.into_iter()
        .enumerate()
        .map(|(n, (kind, step, jitter, id, partition))| {
            let offset = n as i64;
            match kind % 16 {
                0..=5 => Op::Pop,
                6 => Op::Peek,
                7 if kind == 7 => Op::Checkpoint,
                _ => {
                    clock += i64::from(step % 300);
                    let mut time = clock - i64::from(jitter % disorder.max(1));
                    if kind == 8 {
                        time += 10_000_000; // hours ahead: beyond the ring's reach
                    } else if kind == 9 {
                        time -= 600_000;
                    }
                    let input = Input::ALL[usize::from(id % 2)];
                    Op::Push(pending(
                        time,
                        input,
                        id % 4,
                        u32::from(partition % 3),
                        offset,
                    ))
                }
            }
        })
        .collect()
}

/// Times anywhere (before the epoch, ties, far apart).
fn random_times(raw: Vec<(u8, i64, u8, u8)>) -> Vec<Op> {
    raw.into_iter()
        .enumerate()
        .map(|(n, (kind, time, id, partition))| match kind % 8 {
            0..=2 => Op::Pop,
            3 if kind == 3 => Op::Checkpoint,
            3 => Op::Peek,
            _ => {
                let time = match kind % 3 {
                    0 => time % 4, // ties: the tie-break decides
                    1 => time % 100_000,
                    _ => time,
                };
                let input = Input::ALL[usize::from(id % 2)];
                Op::Push(pending(
                    time,
                    input,
                    id % 5,
                    u32::from(partition % 2),
                    n as i64,
                ))
            }
        })
        .collect()
}

/// RocksDB's pending rows, key and value.
type Row = (Box<[u8]>, Box<[u8]>);

fn pending_rows(db: &ShardDb) -> Vec<Row> {
    let cf = db.cf(CF_PENDING).expect("pending cf");
    db.db
        .iterator_cf(cf, IteratorMode::Start)
        .map(|r| r.expect("iterate"))
        .collect()
}

fn sorted(mut v: Vec<Pending>) -> Vec<Pending> {
    v.sort();
    v
}

/// Runs the same operations on both buffers (each with its own RocksDB) and
/// compares every answer; at a checkpoint each restores from the other's
/// snapshot, so a checkpoint of the heap buffer restores into the wheel.
fn same_as_heap_buffer(ops: Vec<Op>, budget: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tmp");
    let env = StateEnv::new(dir.path(), 1 << 20, 1 << 20);
    let (db_new, db_old) = (
        env.open_shard(0).expect("open"),
        env.open_shard(1).expect("open"),
    );
    let mut new = PendingBuffer::new(budget);
    let mut old = HeapBuffer::new(budget);
    for op in ops {
        match op {
            Op::Push(p) => {
                let time = p.event.time;
                prop_assert_eq!(new.push_touches_db(time), old.push_touches_db(time));
                old.push(p.clone(), &db_old);
                new.push(p, &db_new).expect("push");
            }
            Op::Pop => prop_assert_eq!(new.pop_min(&db_new).expect("pop"), old.pop_min(&db_old)),
            Op::Peek => {
                prop_assert_eq!(
                    new.peek_time(&db_new).expect("peek"),
                    old.peek_time(&db_old)
                )
            }
            Op::Checkpoint => {
                let (events_new, state_new) = new.snapshot();
                let (events_old, state_old) = old.snapshot();
                prop_assert_eq!(state_new, state_old);
                prop_assert_eq!(sorted(events_new.clone()), sorted(events_old.clone()));
                prop_assert_eq!(pending_rows(&db_new), pending_rows(&db_old));
                new = PendingBuffer::restore(budget, events_old, state_old);
                old = HeapBuffer::restore(budget, events_new, state_new);
            }
        }
        prop_assert_eq!(new.len(), old.heap.len() as u64 + old.spilled);
        prop_assert_eq!(new.spilled(), old.spilled);
    }
    loop {
        let next = new.pop_min(&db_new).expect("pop");
        prop_assert_eq!(&next, &old.pop_min(&db_old));
        if next.is_none() {
            break;
        }
    }
    prop_assert!(new.is_empty());
    prop_assert!(pending_rows(&db_new).is_empty());
    Ok(())
}

/// The wheel alone against a min-heap, without a budget.
fn same_as_heap(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut wheel = Wheel::default();
    let mut heap = BinaryHeap::new();
    for op in ops {
        match op {
            Op::Push(p) => {
                heap.push(Reverse(p.clone()));
                wheel.push(p);
            }
            Op::Pop | Op::Checkpoint => prop_assert_eq!(wheel.pop(), heap.pop().map(|r| r.0)),
            Op::Peek => {
                prop_assert_eq!(wheel.peek_time(), heap.peek().map(|r| r.0.event.time))
            }
        }
        prop_assert_eq!(wheel.len(), heap.len());
    }
    let rest: Vec<Pending> = std::iter::from_fn(|| wheel.pop()).collect();
    prop_assert_eq!(
        rest,
        heap.into_sorted_vec()
            .into_iter()
            .rev()
            .map(|r| r.0)
            .collect::<Vec<_>>()
    );
    Ok(())
}

fn mostly_sorted_ops(len: usize) -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::collection::vec(any::<SortedSeed>(), 1..len),
        prop_oneof![Just(1u16), Just(2_000), Just(60_000)],
    )
        .prop_map(|(raw, disorder)| mostly_sorted(raw, disorder))
}

fn random_ops(len: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(any::<(u8, i64, u8, u8)>(), 1..len).prop_map(random_times)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pending_wheel_pops_like_a_heap_on_mostly_sorted_times(ops in mostly_sorted_ops(2_000)) {
        same_as_heap(ops)?;
    }

    #[test]
    fn pending_wheel_pops_like_a_heap_on_random_times(ops in random_ops(2_000)) {
        same_as_heap(ops)?;
    }
}

proptest! {
    // Each case opens two RocksDB instances.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pending_spills_reloads_and_checkpoints_like_the_heap_buffer_on_mostly_sorted_times(
        ops in mostly_sorted_ops(600),
        budget in 2usize..40,
    ) {
        same_as_heap_buffer(ops, budget)?;
    }

    #[test]
    fn pending_spills_reloads_and_checkpoints_like_the_heap_buffer_on_random_times(
        ops in random_ops(600),
        budget in 2usize..40,
    ) {
        same_as_heap_buffer(ops, budget)?;
    }
}

#[test]
fn pending_checkpoint_with_spilled_events_restores_into_a_fresh_buffer() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = StateEnv::new(dir.path(), 1 << 20, 1 << 20);
    let db = env.open_shard(0).expect("open");
    let mut b = PendingBuffer::new(8);
    // Arrival order: later times first within each group of ten.
    let times: Vec<i64> = (0..40)
        .map(|n| (n / 10) * 10_000 + (9 - n % 10) * 100)
        .collect();
    for (n, &t) in times.iter().enumerate() {
        b.push(pending(t, Input::Impressions, 1, 0, n as i64), &db)
            .expect("push");
    }
    assert!(b.spilled() > 0, "a budget of 8 spills 40 events");
    let (events, state) = b.snapshot();
    assert_eq!(state.in_memory, events.len() as u64);
    assert_eq!(state.in_memory + state.spilled, 40);
    // Through the checkpoint file's encoding, as engine/snapshot.rs writes it.
    let bytes = postcard::to_stdvec(&events).expect("encode");
    let events: Vec<Pending> = postcard::from_bytes(&bytes).expect("decode");
    let mut restored = PendingBuffer::restore(8, events, state);
    drop(b);
    let popped: Vec<i64> = std::iter::from_fn(|| restored.pop_min(&db).expect("pop"))
        .map(|p| p.event.time)
        .collect();
    let mut expected = times;
    expected.sort();
    assert_eq!(popped, expected);
    assert!(
        pending_rows(&db).is_empty(),
        "reloaded events leave RocksDB"
    );
}

#[test]
fn pending_wheel_keeps_events_far_apart_out_of_its_ring() {
    let mut wheel = Wheel::default();
    let times = [0, i64::MAX, i64::MIN, 10_000_000_000, -1, 4_000_000, 1];
    for (n, &t) in times.iter().enumerate() {
        wheel.push(pending(t, Input::Plays, 0, 0, n as i64));
        assert!(wheel.buckets() <= 4096, "{} buckets", wheel.buckets());
    }
    let popped: Vec<i64> = std::iter::from_fn(|| wheel.pop())
        .map(|p| p.event.time)
        .collect();
    let mut expected = times.to_vec();
    expected.sort();
    assert_eq!(popped, expected);
}
