//! Worker threads own shards. Each step reads one batch from the owned input
//! partition that is furthest behind in event time and is not paused by
//! alignment, then applies whatever the job watermark has made due.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::EngineConfig;
use crate::shard::{Shard, ShardError, Turn};
use crate::watermark::{Clock, ForceAdvance, MAX_WM, MIN_WM, WatermarkBoard};

/// What one step achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Records were read.
    Worked,
    /// Nothing could be read now (caught up, paused, or waiting for other workers).
    Blocked,
    /// Every owned input ended and all state was emitted.
    Done,
}

/// When and where a worker checkpoints its shards.
#[derive(Clone)]
pub struct CheckpointPlan {
    pub root: std::path::PathBuf,
    pub interval_ms: i64,
    pub retained: usize,
    pub metrics: Option<crate::metrics::CheckpointMetrics>,
}

pub struct Worker {
    pub shards: Vec<Shard>,
    checkpoints: Option<CheckpointPlan>,
    last_checkpoint_ms: i64,
    last_checkpoint_id: u64,
    board: Arc<WatermarkBoard>,
    clock: Arc<dyn Clock>,
    cfg: Arc<EngineConfig>,
    job_wm: i64,
    drained_at: i64,
    steps: u64,
    finished: bool,
    /// Records read by this worker, for progress reporting.
    pub records_read: Arc<AtomicU64>,
}

impl Worker {
    pub fn new(
        shards: Vec<Shard>,
        board: Arc<WatermarkBoard>,
        clock: Arc<dyn Clock>,
        cfg: Arc<EngineConfig>,
    ) -> Self {
        let now = clock.now_ms();
        Self {
            shards,
            checkpoints: None,
            last_checkpoint_ms: now,
            last_checkpoint_id: 0,
            board,
            clock,
            cfg,
            job_wm: MIN_WM,
            drained_at: MIN_WM,
            steps: 0,
            finished: false,
            records_read: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn job_watermark(&self) -> i64 {
        self.job_wm
    }

    /// Checkpoints every shard each `plan.interval_ms`; ids continue after `last_id`.
    pub fn set_checkpoints(&mut self, plan: CheckpointPlan, last_id: u64) {
        self.checkpoints = Some(plan);
        self.last_checkpoint_id = last_id;
    }

    /// Checkpoints every owned shard now. A failed shard checkpoint is logged and
    /// counted; the previous one stays the one a restart uses.
    pub fn checkpoint_now(&mut self) -> Result<(), ShardError> {
        let Some(plan) = self.checkpoints.clone() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let started = std::time::Instant::now();
        // Ids are increasing and readable as the time they were taken.
        let id = u64::try_from(now)
            .unwrap_or(0)
            .max(self.last_checkpoint_id + 1);
        for s in &mut self.shards {
            let t = std::time::Instant::now();
            match s.checkpoint(&plan.root, id, now, self.job_wm) {
                Ok((dir, size)) => {
                    if let Err(e) =
                        crate::checkpoint::retain(&plan.root, s.partition, plan.retained)
                    {
                        tracing::warn!(shard = s.partition, "checkpoint retention: {e}");
                    }
                    tracing::debug!(shard = s.partition, id, size, dir = %dir.display(), "checkpoint");
                    if let Some(m) = &plan.metrics {
                        m.duration.observe(t.elapsed().as_secs_f64());
                        m.size_bytes
                            .with_label_values(&[&s.partition.to_string()])
                            .set(i64::try_from(size).unwrap_or(i64::MAX));
                        m.completed.inc();
                        m.last_completed.set(now as f64 / 1000.0);
                    }
                }
                // Output that could not be delivered must not be skipped: fail the process.
                Err(e @ ShardError::Sink { .. }) => return Err(e),
                Err(e) => {
                    tracing::error!(shard = s.partition, id, "checkpoint failed: {e}");
                    if let Some(m) = &plan.metrics {
                        m.failures.inc();
                    }
                }
            }
        }
        if let Some(m) = &plan.metrics {
            m.stall.observe(started.elapsed().as_secs_f64());
        }
        self.last_checkpoint_id = id;
        self.last_checkpoint_ms = now;
        Ok(())
    }

    /// Takes up a newer job watermark and drains every shard up to it.
    fn refresh(&mut self) -> Result<(), ShardError> {
        self.job_wm = self.job_wm.max(self.board.recompute());
        if self.job_wm > self.drained_at {
            for s in &mut self.shards {
                s.drain(self.job_wm)?;
            }
            self.drained_at = self.job_wm;
        }
        Ok(())
    }

    pub fn step(&mut self) -> Result<Progress, ShardError> {
        if self.finished {
            return Ok(Progress::Done);
        }
        self.steps += 1;
        let now = self.clock.now_ms();
        self.refresh()?;
        if let Some(plan) = &self.checkpoints
            && now - self.last_checkpoint_ms >= plan.interval_ms
        {
            self.checkpoint_now()?;
        }
        let mut candidates: Vec<(i64, usize, usize)> = Vec::with_capacity(self.shards.len() * 2);
        for (si, s) in self.shards.iter().enumerate() {
            for (ii, input) in s.inputs.iter().enumerate() {
                if !input.ended {
                    candidates.push((self.board.partition_watermark(input.slot), si, ii));
                }
            }
        }
        if candidates.is_empty() {
            if self.job_wm == MAX_WM {
                self.finish()?;
                return Ok(Progress::Done);
            }
            return Ok(self.blocked(now));
        }
        // The partition furthest behind in event time goes first.
        candidates.sort_unstable();
        let batch = self.cfg.read_batch.max(1);
        let mut changed = false;
        for &(_, si, ii) in &candidates {
            let turn = self.shards[si].read_turn(ii, batch, &mut self.job_wm, now)?;
            match turn {
                Turn::Read(n) => {
                    self.records_read.fetch_add(n as u64, Relaxed);
                    self.shards[si].drain(self.job_wm)?;
                    if self.steps.is_multiple_of(16) {
                        let sizes = self.steps.is_multiple_of(4096);
                        for s in &mut self.shards {
                            s.publish(sizes);
                        }
                    }
                    return Ok(Progress::Worked);
                }
                Turn::CaughtUp => {
                    let slot = self.shards[si].inputs[ii].slot;
                    let quiet = now.saturating_sub(self.board.last_record_ms(slot));
                    if quiet >= self.cfg.idle_timeout_ms && !self.board.is_idle(slot) {
                        tracing::info!(shard = si, input = ii, quiet_ms = quiet, "partition idle");
                        self.board.set_idle(slot, true);
                        changed = true;
                    }
                }
                // The watermark may move now: the next step takes it up.
                Turn::Ended => changed = true,
                Turn::Paused => {}
            }
        }
        if changed {
            return Ok(Progress::Worked);
        }
        Ok(self.blocked(now))
    }

    fn blocked(&mut self, now: i64) -> Progress {
        if let Some(timeout) = self.cfg.inactivity_timeout_ms {
            match self.board.check_inactivity(now, timeout) {
                ForceAdvance::Started { to } => tracing::warn!(
                    watermark = to,
                    forced_advances = self.board.forced_advances(),
                    "all inputs inactive for {timeout} ms: watermark force-advanced to wall clock - maxOutOfOrderness"
                ),
                ForceAdvance::Continued { .. } | ForceAdvance::NotDue => {}
            }
        }
        Progress::Blocked
    }

    fn finish(&mut self) -> Result<(), ShardError> {
        for s in &mut self.shards {
            s.drain(MAX_WM)?;
            s.flush()?;
            s.publish(true);
            s.compact_state();
        }
        self.finished = true;
        Ok(())
    }

    /// Steps until nothing more can be read right now (or everything ended).
    pub fn run_until_blocked(&mut self) -> Result<Progress, ShardError> {
        loop {
            match self.step()? {
                Progress::Worked => continue,
                other => return Ok(other),
            }
        }
    }

    /// Steps until done or `stop` is set, backing off while blocked.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Progress, ShardError> {
        let mut idle_rounds = 0u32;
        while !stop.load(Relaxed) {
            match self.step()? {
                Progress::Done => return Ok(Progress::Done),
                Progress::Worked => idle_rounds = 0,
                Progress::Blocked => {
                    idle_rounds = idle_rounds.saturating_add(1);
                    // Waiting on another worker's partitions is short: yield first;
                    // caught-up sources get a sleep that grows to 1 ms.
                    if idle_rounds < 2_000 {
                        std::thread::yield_now();
                    } else {
                        let micros = u64::from(idle_rounds - 2_000).clamp(20, 1_000);
                        std::thread::sleep(Duration::from_micros(micros));
                    }
                }
            }
        }
        for s in &mut self.shards {
            s.flush()?;
        }
        Ok(Progress::Blocked)
    }
}
