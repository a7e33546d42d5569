//! The timer index of cached entries, ordered by (fire time, key).
//!
//! Entries open in event-time order and a timer is its entry's first event time
//! plus W, so nearly every new timer is at or after the latest one: those go to a
//! FIFO (constant-time push and pop, sequential memory). The rest — entries
//! reloaded from RocksDB with an older timer — go to a B-tree.

use std::collections::{BTreeSet, VecDeque};

use crate::model::record::Key;

pub type Timer = (i64, Key);

#[derive(Default)]
pub struct TimerQueue {
    in_order: VecDeque<Timer>,
    out_of_order: BTreeSet<Timer>,
}

impl TimerQueue {
    pub fn insert(&mut self, t: Timer) {
        match self.in_order.back() {
            Some(last) if *last > t => {
                self.out_of_order.insert(t);
            }
            _ => self.in_order.push_back(t),
        }
    }

    pub fn first(&self) -> Option<Timer> {
        match (self.in_order.front(), self.out_of_order.first()) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    /// Removes one timer; the earliest is the common case and costs O(1).
    pub fn remove(&mut self, t: Timer) -> bool {
        if self.in_order.front() == Some(&t) {
            self.in_order.pop_front();
            return true;
        }
        if self.out_of_order.remove(&t) {
            return true;
        }
        match self.in_order.binary_search(&t) {
            Ok(i) => self.in_order.remove(i).is_some(),
            Err(_) => false,
        }
    }

    /// Removes many timers in one pass (eviction of a batch of entries).
    pub fn remove_all(&mut self, mut ts: Vec<Timer>) {
        ts.retain(|t| !self.out_of_order.remove(t));
        if ts.is_empty() {
            return;
        }
        ts.sort_unstable();
        self.in_order.retain(|t| ts.binary_search(t).is_err());
    }

    /// The in-order timer `n` places behind the first, if any.
    pub fn ahead(&self, n: usize) -> Option<Timer> {
        self.in_order.get(n).copied()
    }

    pub fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: i64) -> Key {
        Key {
            profile: n,
            title: 0,
        }
    }

    proptest! {
        /// Any mix of inserts and removals gives the order a sorted set gives.
        #[test]
        fn behaves_like_a_sorted_set(ops in proptest::collection::vec((0u8..4, 0i64..50, 0i64..5), 1..300)) {
            let mut q = TimerQueue::default();
            let mut model = BTreeSet::new();
            for (op, t, k) in ops {
                let timer = (t, key(k));
                match op {
                    0 | 1 => {
                        if model.insert(timer) {
                            q.insert(timer);
                        }
                    }
                    2 => prop_assert_eq!(q.remove(timer), model.remove(&timer)),
                    _ => {
                        let batch: Vec<Timer> = model.iter().copied().filter(|x| x.0 % 3 == t % 3).collect();
                        for x in &batch {
                            model.remove(x);
                        }
                        q.remove_all(batch);
                    }
                }
                prop_assert_eq!(q.first(), model.first().copied());
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }

    #[test]
    fn timers_in_order_never_touch_the_tree() {
        let mut q = TimerQueue::default();
        for t in 0..100 {
            q.insert((t, key(t)));
        }
        assert!(q.out_of_order.is_empty());
        assert_eq!(q.first(), Some((0, key(0))));
        assert!(q.remove((0, key(0))));
        assert_eq!(q.first(), Some((1, key(1))));
    }
}
