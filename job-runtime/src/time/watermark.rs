//! Event-time progress shared by all worker threads: per-partition watermarks,
//! idleness, the job watermark (never backwards), alignment and the inactivity
//! force-advance. Lock-free: each partition's slot is written by the one thread
//! that reads that partition, and read by everyone.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// −∞: a partition that has delivered no valid record yet.
pub const MIN_WM: i64 = i64::MIN;
/// +∞: a bounded partition that has ended.
pub const MAX_WM: i64 = i64::MAX;

/// Processing time, injectable so tests control idleness and inactivity.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(start_ms)))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Relaxed);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Whether a partition has records waiting to be read, asked from any thread
/// without reading them (for Kafka: fetched messages in its queue).
pub type UnreadProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// A slot's probe, set once when the engine is assembled.
#[derive(Default)]
struct Probe(OnceLock<UnreadProbe>);

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Probe"
        } else {
            "NoProbe"
        })
    }
}

/// One input partition's progress, alone in its cache lines: the worker that
/// reads a partition writes its slot on every record, and slots sharing a line
/// with another worker's made each of those writes a cache miss on the other
/// core.
#[derive(Debug)]
#[repr(align(128))]
pub struct PartitionSlot {
    max_time: AtomicI64,
    idle: AtomicBool,
    ended: AtomicBool,
    paused: AtomicBool,
    /// Processing time of the last record, or of contact regained with the
    /// partition's broker if later: quiet (idle, inactive) counts from it.
    quiet_since_ms: AtomicI64,
    unread: Probe,
}

impl PartitionSlot {
    fn new(now: i64) -> Self {
        Self {
            max_time: AtomicI64::new(MIN_WM),
            idle: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            quiet_since_ms: AtomicI64::new(now),
            unread: Probe::default(),
        }
    }
}

#[derive(Debug)]
#[repr(align(128))]
struct JobWatermark(AtomicI64);

/// Shared watermark state of one runtime process.
#[derive(Debug)]
pub struct WatermarkBoard {
    slots: Vec<PartitionSlot>,
    max_out_of_orderness_ms: i64,
    /// In a line of its own: written as the watermark moves, while the
    /// fields beside it are read on every record.
    job: JobWatermark,
    forced_advances: AtomicU64,
    last_forced_ms: AtomicI64,
    in_forced_episode: AtomicBool,
}

/// What [`WatermarkBoard::check_inactivity`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceAdvance {
    NotDue,
    /// A new inactivity episode started: counted and logged once.
    Started {
        to: i64,
    },
    /// The episode goes on: the watermark follows the wall clock.
    Continued {
        to: i64,
    },
}

impl WatermarkBoard {
    /// `partitions` slots, all starting at −∞; `now` starts the inactivity clock.
    pub fn new(partitions: usize, max_out_of_orderness_ms: i64, now: i64) -> Self {
        Self {
            slots: (0..partitions).map(|_| PartitionSlot::new(now)).collect(),
            max_out_of_orderness_ms,
            job: JobWatermark(AtomicI64::new(MIN_WM)),
            forced_advances: AtomicU64::new(0),
            last_forced_ms: AtomicI64::new(MIN_WM),
            in_forced_episode: AtomicBool::new(false),
        }
    }

    pub fn partitions(&self) -> usize {
        self.slots.len()
    }

    /// A valid record with `event_time` was read from slot `i` at processing time `now`.
    #[inline]
    pub fn observe(&self, i: usize, event_time: i64) {
        let slot = &self.slots[i];
        if event_time > slot.max_time.load(Relaxed) {
            slot.max_time.store(event_time, Relaxed);
        }
    }

    /// The largest event time read from slot `i` (−∞ before the first record).
    pub fn max_event_time(&self, i: usize) -> i64 {
        self.slots[i].max_time.load(Relaxed)
    }

    /// Takes up a job watermark restored from a checkpoint (it may have been
    /// force-advanced beyond the partitions').
    pub fn restore_job_watermark(&self, wm: i64) {
        self.job.0.fetch_max(wm, Relaxed);
    }

    /// Slot `i` received a record (valid or not) at `now`: it is not idle.
    /// Whether it was.
    #[inline]
    pub fn touch(&self, i: usize, now: i64) -> bool {
        let slot = &self.slots[i];
        // `now` is the same for a read turn: the line is written once a turn.
        if slot.quiet_since_ms.load(Relaxed) != now {
            slot.quiet_since_ms.store(now, Relaxed);
        }
        if self.in_forced_episode.load(Relaxed) {
            self.in_forced_episode.store(false, Relaxed);
        }
        if slot.idle.load(Relaxed) {
            slot.idle.store(false, Relaxed);
            self.wake_unread();
            return true;
        }
        false
    }

    pub fn quiet_since_ms(&self, i: usize) -> i64 {
        self.slots[i].quiet_since_ms.load(Relaxed)
    }

    /// Slot `i`'s source has been in contact with its broker since `since`:
    /// quiet counts from then at the earliest, as time without contact says
    /// nothing about traffic.
    pub fn quiet_from(&self, i: usize, since: i64) {
        let slot = &self.slots[i];
        if slot.quiet_since_ms.load(Relaxed) < since {
            slot.quiet_since_ms.store(since, Relaxed);
        }
    }

    pub fn set_idle(&self, i: usize, idle: bool) {
        self.slots[i].idle.store(idle, Relaxed);
    }

    pub fn is_idle(&self, i: usize) -> bool {
        self.slots[i].idle.load(Relaxed)
    }

    /// How slot `i` tells whether records wait to be read.
    pub fn set_unread_probe(&self, i: usize, probe: UnreadProbe) {
        let _ = self.slots[i].unread.0.set(probe);
    }

    /// Records wait to be read in slot `i` (false when it cannot tell).
    pub fn has_unread(&self, i: usize) -> bool {
        self.slots[i].unread.0.get().is_some_and(|p| p())
    }

    /// A partition with unread records is never idle (the contract): idle slots
    /// whose records are waiting count again now, at their old watermark. Called
    /// when a partition leaves idleness, so that the first one read after a quiet
    /// spell cannot move the job watermark past records waiting in the others
    /// (traffic returning after a region failover reaches them all at once).
    pub fn wake_unread(&self) -> usize {
        let mut woken = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.idle.load(Relaxed) && !slot.ended.load(Relaxed) && self.has_unread(i) {
                slot.idle.store(false, Relaxed);
                woken += 1;
            }
        }
        if woken > 0 {
            tracing::info!(
                partitions = woken,
                "idle partitions with records waiting count again"
            );
        }
        woken
    }

    /// A bounded partition has no more records: its watermark is +∞.
    pub fn set_ended(&self, i: usize) {
        self.slots[i].ended.store(true, Relaxed);
    }

    pub fn is_ended(&self, i: usize) -> bool {
        self.slots[i].ended.load(Relaxed)
    }

    /// `wm_p = max event_time − D`, −∞ before the first record, +∞ once ended.
    #[inline]
    pub fn partition_watermark(&self, i: usize) -> i64 {
        let slot = &self.slots[i];
        if slot.ended.load(Relaxed) {
            return MAX_WM;
        }
        let max = slot.max_time.load(Relaxed);
        if max == MIN_WM {
            MIN_WM
        } else {
            max.saturating_sub(self.max_out_of_orderness_ms)
        }
    }

    /// The job watermark as last computed.
    #[inline]
    pub fn job_watermark(&self) -> i64 {
        self.job.0.load(Relaxed)
    }

    /// Recomputes the job watermark: the minimum over non-idle partitions, never
    /// moving backwards. With every partition idle it holds (only the inactivity
    /// rule moves it then).
    pub fn recompute(&self) -> i64 {
        let mut min = MAX_WM;
        let mut any_active = false;
        let mut all_ended = true;
        for i in 0..self.slots.len() {
            // An ended partition (+∞) holds nothing back, but does not count as
            // active: idle partitions beside ended ones hold the watermark, they
            // do not flush the state as the end of input would.
            if self.slots[i].ended.load(Relaxed) {
                continue;
            }
            all_ended = false;
            if self.slots[i].idle.load(Relaxed) {
                continue;
            }
            any_active = true;
            min = min.min(self.partition_watermark(i));
        }
        if any_active || all_ended {
            // A read-modify-write only when the watermark moves.
            let job = self.job.0.load(Relaxed);
            if min > job {
                self.job.0.fetch_max(min, Relaxed).max(min)
            } else {
                job
            }
        } else {
            self.job.0.load(Relaxed)
        }
    }

    /// Alignment paused slot `i` (or let it go again).
    pub fn set_paused(&self, i: usize, paused: bool) {
        if self.slots[i].paused.load(Relaxed) != paused {
            self.slots[i].paused.store(paused, Relaxed);
        }
    }

    pub fn paused_partitions(&self) -> usize {
        self.slots.iter().filter(|s| s.paused.load(Relaxed)).count()
    }

    pub fn idle_partitions(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.idle.load(Relaxed) && !s.ended.load(Relaxed))
            .count()
    }

    /// The inactivity rule: when every partition has been idle for `timeout_ms`,
    /// the watermark is force-advanced to `now − D`.
    pub fn check_inactivity(&self, now: i64, timeout_ms: i64) -> ForceAdvance {
        let all_inactive = self.slots.iter().enumerate().all(|(i, s)| {
            s.ended.load(Relaxed)
                || (s.idle.load(Relaxed)
                    && now.saturating_sub(s.quiet_since_ms.load(Relaxed)) >= timeout_ms
                    && !self.has_unread(i))
        });
        if !all_inactive || self.slots.iter().all(|s| s.ended.load(Relaxed)) {
            return ForceAdvance::NotDue;
        }
        let to = now.saturating_sub(self.max_out_of_orderness_ms);
        if to <= self.job.0.load(Relaxed) {
            return ForceAdvance::NotDue;
        }
        self.job.0.fetch_max(to, Relaxed);
        if self
            .in_forced_episode
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
        {
            self.forced_advances.fetch_add(1, Relaxed);
            self.last_forced_ms.store(now, Relaxed);
            ForceAdvance::Started { to }
        } else {
            ForceAdvance::Continued { to }
        }
    }

    /// An operator-requested advance to `now − D`, counted as one forced advance.
    pub fn force_now(&self, now: i64) -> i64 {
        let to = now.saturating_sub(self.max_out_of_orderness_ms);
        self.job.0.fetch_max(to, Relaxed);
        self.forced_advances.fetch_add(1, Relaxed);
        self.last_forced_ms.store(now, Relaxed);
        self.job.0.load(Relaxed)
    }

    pub fn forced_advances(&self) -> u64 {
        self.forced_advances.load(Relaxed)
    }

    pub fn last_forced_ms(&self) -> Option<i64> {
        Some(self.last_forced_ms.load(Relaxed)).filter(|&t| t != MIN_WM)
    }

    /// Alignment: is slot `i` more than `drift` ahead of the job watermark `job`?
    #[inline]
    pub fn is_ahead(&self, i: usize, job: i64, drift: Option<i64>) -> bool {
        match drift {
            None => false,
            Some(d) => self.partition_watermark(i) > job.saturating_add(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_partitions_beside_ended_ones_hold_the_watermark() {
        // A process that owns partition 0 of 2: partition 1's slots are ended.
        let b = WatermarkBoard::new(2, 10, 0);
        b.set_ended(1);
        b.observe(0, 100);
        assert_eq!(b.recompute(), 90);
        b.set_idle(0, true);
        assert_eq!(b.recompute(), 90, "held, not flushed to +∞");
        b.set_ended(0);
        assert_eq!(b.recompute(), MAX_WM, "every partition ended: end of input");
    }

    #[test]
    fn job_watermark_is_min_over_active_partitions_and_never_goes_back() {
        let b = WatermarkBoard::new(2, 10, 0);
        assert_eq!(b.recompute(), MIN_WM, "−∞ until every partition delivered");
        b.observe(0, 100);
        assert_eq!(b.recompute(), MIN_WM);
        b.observe(1, 50);
        assert_eq!(b.recompute(), 40);
        b.set_idle(1, true);
        assert_eq!(b.recompute(), 90, "idle partition left out");
        b.set_idle(1, false);
        assert_eq!(
            b.recompute(),
            90,
            "re-included partition does not move it back"
        );
        b.observe(1, 200);
        assert_eq!(b.recompute(), 90);
        b.observe(0, 300);
        assert_eq!(b.recompute(), 190);
    }

    #[test]
    fn ended_partitions_count_as_plus_infinity() {
        let b = WatermarkBoard::new(2, 0, 0);
        b.observe(0, 5);
        b.set_ended(1);
        assert_eq!(b.recompute(), 5);
        b.set_ended(0);
        assert_eq!(b.recompute(), MAX_WM);
    }

    #[test]
    fn inactivity_advances_once_per_episode() {
        let b = WatermarkBoard::new(2, 100, 0);
        b.observe(0, 1_000);
        b.observe(1, 1_000);
        b.recompute();
        assert_eq!(
            b.check_inactivity(10_000, 5_000),
            ForceAdvance::NotDue,
            "not idle"
        );
        b.set_idle(0, true);
        b.set_idle(1, true);
        assert_eq!(
            b.check_inactivity(4_000, 5_000),
            ForceAdvance::NotDue,
            "too soon"
        );
        assert_eq!(
            b.check_inactivity(6_000, 5_000),
            ForceAdvance::Started { to: 5_900 }
        );
        assert_eq!(b.job_watermark(), 5_900);
        assert_eq!(
            b.check_inactivity(7_000, 5_000),
            ForceAdvance::Continued { to: 6_900 }
        );
        assert_eq!(b.forced_advances(), 1);
        b.touch(0, 7_500);
        b.set_idle(0, true);
        assert_eq!(
            b.check_inactivity(13_000, 5_000),
            ForceAdvance::Started { to: 12_900 }
        );
        assert_eq!(b.forced_advances(), 2);
    }

    #[test]
    fn alignment_pauses_only_partitions_too_far_ahead() {
        let b = WatermarkBoard::new(2, 0, 0);
        b.observe(0, 100);
        b.observe(1, 200);
        let job = b.recompute();
        assert!(!b.is_ahead(0, job, Some(50)));
        assert!(b.is_ahead(1, job, Some(50)));
        assert!(!b.is_ahead(1, job, None));
    }
}
