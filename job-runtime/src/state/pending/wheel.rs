//! The in-memory part of the reorder buffer: a wheel of event-time buckets.
//!
//! Input is mostly in order (at most about `D` behind the newest event), so a
//! push appends to the bucket of its event time (O(1)), and a bucket is sorted
//! once, when it becomes the earliest one. A binary heap paid `O(log n)` sifts
//! through a cold array on every push and pop instead.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// What waits in the wheel: ordered, and filed by its event time.
pub(super) trait Timed: Ord {
    fn time(&self) -> i64;
}

/// A bucket spans 2^10 ms of event time (about a second).
const BUCKET_SHIFT: u32 = 10;
/// The ring reaches about 70 minutes past its first bucket; an event later
/// than that waits in `far` (a source hours ahead of the others, alignment off).
const MAX_BUCKETS: usize = 4096;
/// Emptied buckets kept for reuse, and the largest capacity worth keeping.
const SPARE_BUCKETS: usize = 64;
const SPARE_CAPACITY: usize = 4096;

fn bucket_of(time: i64) -> i64 {
    // Arithmetic shift: floor division, also for times before the epoch.
    time >> BUCKET_SHIFT
}

/// Pops in `T`'s order, like a min-heap would.
///
/// Invariant: every event in `ready` is before every event in `ring` (their
/// buckets are below `base`); `far` holds events of any time, so the minimum
/// is the lesser of `ready`'s last and `far`'s top.
pub(super) struct Wheel<T> {
    /// The earliest bucket, sorted latest first so the next event pops off the
    /// end; events arriving for a bucket at or before it are inserted in place.
    ready: Vec<T>,
    /// Bucket `base + i` at `ring[i]`, unsorted.
    ring: VecDeque<Vec<T>>,
    base: i64,
    /// Events past the ring's reach.
    far: BinaryHeap<Reverse<T>>,
    len: usize,
    spare: Vec<Vec<T>>,
}

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self {
            ready: Vec::new(),
            ring: VecDeque::new(),
            base: 0,
            far: BinaryHeap::new(),
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl<T: Timed> Wheel<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Buckets in the ring (for tests of its bound).
    #[cfg(test)]
    pub(super) fn buckets(&self) -> usize {
        self.ring.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn push(&mut self, p: T) {
        self.len += 1;
        let bucket = bucket_of(p.time());
        if self.ready.is_empty() && self.ring.is_empty() {
            self.base = bucket;
        }
        if bucket < self.base {
            // Behind the sorted bucket's end (it arrived after that bucket was
            // sorted), usually before all of it: then the insert is a push.
            let at = self.ready.partition_point(|q| *q > p);
            self.ready.insert(at, p);
            return;
        }
        // Both are within about ±2^53, so the difference cannot overflow.
        match usize::try_from(bucket - self.base) {
            Ok(i) if i < MAX_BUCKETS => {
                if self.ring.len() <= i {
                    // Unallocated: with sparse event times most stay empty.
                    self.ring.resize_with(i + 1, Vec::new);
                }
                let bucket = &mut self.ring[i];
                if bucket.capacity() == 0
                    && let Some(spare) = self.spare.pop()
                {
                    *bucket = spare;
                }
                bucket.push(p);
            }
            _ => self.far.push(Reverse(p)),
        }
    }

    /// Time of the earliest event.
    pub(super) fn peek_time(&mut self) -> Option<i64> {
        self.fill();
        match (self.ready.last(), self.far.peek()) {
            (Some(r), Some(Reverse(f))) => Some(r.time().min(f.time())),
            (Some(r), None) => Some(r.time()),
            (None, f) => f.map(|Reverse(f)| f.time()),
        }
    }

    /// The event `n` places behind the next one in the earliest bucket, if
    /// that bucket holds it (a hint: an event in `far` may come first).
    pub(super) fn ahead(&self, n: usize) -> Option<&T> {
        self.ready.get(self.ready.len().checked_sub(n + 1)?)
    }

    /// Removes and returns the earliest event.
    pub(super) fn pop(&mut self) -> Option<T> {
        self.fill();
        let from_far = match (self.ready.last(), self.far.peek()) {
            (Some(r), Some(Reverse(f))) => f < r,
            (None, Some(_)) => true,
            _ => false,
        };
        let p = if from_far {
            self.far.pop().map(|Reverse(p)| p)
        } else {
            self.ready.pop()
        };
        if p.is_some() {
            self.len -= 1;
        }
        p
    }

    /// Makes `ready` the earliest non-empty bucket when it has run out.
    #[inline(always)]
    fn fill(&mut self) {
        if self.ready.is_empty() {
            self.next_bucket();
        }
    }

    #[inline(never)]
    fn next_bucket(&mut self) {
        if self.ring.is_empty() {
            self.bring_in_far();
        }
        while let Some(mut bucket) = self.ring.pop_front() {
            self.base += 1;
            if bucket.is_empty() {
                continue;
            }
            bucket.sort_unstable_by(|a, b| b.cmp(a));
            let used = std::mem::replace(&mut self.ready, bucket);
            self.recycle(used);
            return;
        }
    }

    /// With the ring empty, moves the far events within its reach of the
    /// earliest one into it (they are in order, so each push appends).
    fn bring_in_far(&mut self) {
        let Some(Reverse(first)) = self.far.peek() else {
            return;
        };
        self.base = bucket_of(first.time());
        let reach = self.base.saturating_add(MAX_BUCKETS as i64);
        while self
            .far
            .peek()
            .is_some_and(|Reverse(p)| bucket_of(p.time()) < reach)
        {
            if let Some(Reverse(p)) = self.far.pop() {
                self.len -= 1;
                self.push(p);
            }
        }
    }

    fn recycle(&mut self, mut bucket: Vec<T>) {
        let cap = bucket.capacity();
        if cap > 0 && cap <= SPARE_CAPACITY && self.spare.len() < SPARE_BUCKETS {
            bucket.clear();
            self.spare.push(bucket);
        }
    }

    /// Every event, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.ready
            .iter()
            .chain(self.ring.iter().flatten())
            .chain(self.far.iter().map(|Reverse(p)| p))
    }

    /// Takes every event out, in no particular order.
    pub(super) fn take_all(&mut self) -> Vec<T> {
        let mut all = Vec::with_capacity(self.len);
        all.append(&mut self.ready);
        for mut bucket in std::mem::take(&mut self.ring) {
            all.append(&mut bucket);
            self.recycle(bucket);
        }
        all.extend(
            std::mem::take(&mut self.far)
                .into_iter()
                .map(|Reverse(p)| p),
        );
        self.len = 0;
        all
    }
}
