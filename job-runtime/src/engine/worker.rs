//! Worker threads own shards. Each step reads one batch from the owned input
//! partition that is furthest behind in event time and is not paused by
//! alignment, then applies whatever the job watermark has made due.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::control::requests::{Control, LastCheckpoint, SavepointRun};
use crate::durability::savepoint::StagedShard;
use crate::engine::error::ShardError;
use crate::engine::rate::InputRateLimit;
use crate::engine::shard::{Shard, Turn};
use crate::io::source::InputWaker;
use crate::time::watermark::{Clock, ForceAdvance, MAX_WM, MIN_WM, WatermarkBoard};

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
    pub metrics: Option<crate::control::metrics::CheckpointMetrics>,
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
    /// Time spent waiting for input, for the busy ratio.
    pub idle_nanos: Arc<AtomicU64>,
    control: Option<(Arc<Control>, usize)>,
    seen_generation: u64,
    /// Stopped with a savepoint: reads, drains and checkpoints nothing more.
    halted: bool,
    /// A checkpoint begun whose shard parts are not all written yet.
    in_flight: Option<CheckpointRun>,
    /// The process's input rate limit, shared with the other workers.
    pub input_rate: Option<Arc<InputRateLimit>>,
    /// The last step read nothing because the rate limit held it back.
    throttled: bool,
    /// The last blocked step had an input held back by watermark alignment:
    /// what it waits for is another worker's progress, which no source signals.
    held_by_alignment: bool,
}

/// One checkpoint of a worker's shards, while their parts are written.
struct CheckpointRun {
    id: u64,
    now: i64,
    started: Instant,
    all_ok: bool,
    /// Per shard: its part was begun and is not taken up yet.
    outstanding: Vec<bool>,
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
            idle_nanos: Arc::new(AtomicU64::new(0)),
            control: None,
            seen_generation: 0,
            halted: false,
            in_flight: None,
            input_rate: None,
            throttled: false,
            held_by_alignment: false,
        }
    }

    /// Takes requests (savepoints) from `control` as worker number `index`.
    pub fn set_control(&mut self, control: Arc<Control>, index: usize) {
        self.seen_generation = control.generation();
        self.control = Some((control, index));
    }

    fn next_checkpoint_id(&self, now: i64) -> u64 {
        // Ids are increasing and readable as the time they were taken.
        u64::try_from(now)
            .unwrap_or(0)
            .max(self.last_checkpoint_id + 1)
    }

    /// This worker's part of a savepoint: a checkpoint of each owned shard into
    /// the savepoint's staging directory; for a stop-with-savepoint, then halts.
    fn take_savepoint_part(&mut self, run: &SavepointRun) -> Result<(), ShardError> {
        self.collect_checkpoints(true)?;
        let now = self.clock.now_ms();
        let id = self.next_checkpoint_id(now);
        let mut staged = Vec::with_capacity(self.shards.len());
        let mut failed = None;
        let plan = self.checkpoints.clone();
        for s in &mut self.shards {
            // The part is also a regular local checkpoint (a restart without the
            // savepoint resumes from it; with exactly-once its commit names it),
            // linked into the staging directory for the upload.
            let outcome = match &plan {
                Some(plan) => {
                    s.checkpoint(&plan.root, id, now, self.job_wm)
                        .and_then(|(dir, _)| {
                            if let Err(e) = crate::durability::checkpoint::retain(
                                &plan.root,
                                s.partition,
                                plan.retained,
                            ) {
                                tracing::warn!(shard = s.partition, "checkpoint retention: {e}");
                            }
                            let staged =
                                crate::durability::checkpoint::shard_dir(&run.staging, s.partition);
                            crate::durability::checkpoint::link_tree(&dir, &staged)?;
                            Ok(staged)
                        })
                }
                None => s
                    .checkpoint(&run.staging, id, now, self.job_wm)
                    .map(|(dir, _)| dir),
            }
            .and_then(|dir| {
                let manifest = crate::durability::checkpoint::validate(&dir)?;
                Ok(StagedShard { dir, manifest })
            });
            match outcome {
                Ok(part) => staged.push(part),
                Err(e) => {
                    let fatal = matches!(e, ShardError::Sink { .. });
                    let msg = format!("shard {}: {e}", s.partition);
                    tracing::error!(savepoint = %run.id, "{msg}");
                    if fatal {
                        run.worker_done(Vec::new(), Some(msg));
                        return Err(e);
                    }
                    failed = Some(msg);
                    break;
                }
            }
        }
        self.last_checkpoint_id = id;
        self.last_checkpoint_ms = now;
        if run.stop {
            self.halted = true;
            if let Some((c, _)) = &self.control {
                c.set_halted();
            }
            tracing::info!(savepoint = %run.id, "stopped with a savepoint: no more input is read");
        }
        run.worker_done(staged, failed);
        Ok(())
    }

    pub fn job_watermark(&self) -> i64 {
        self.job_wm
    }

    /// Checkpoints every shard each `plan.interval_ms`; ids continue after `last_id`.
    pub fn set_checkpoints(&mut self, plan: CheckpointPlan, last_id: u64) {
        self.checkpoints = Some(plan);
        self.last_checkpoint_id = last_id;
    }

    /// Checkpoints every owned shard now and waits until they are written. A
    /// failed shard checkpoint is logged and counted; the previous one stays the
    /// one a restart uses.
    pub fn checkpoint_now(&mut self) -> Result<(), ShardError> {
        self.collect_checkpoints(true)?;
        self.begin_checkpoint()?;
        self.collect_checkpoints(true)
    }

    /// Starts a checkpoint of every owned shard (after the one in flight, if
    /// any, is written). The worker spends only the copying in it; each shard's
    /// files are written by a thread of its own and taken up by later steps
    /// ([`Self::collect_checkpoints`]). With exactly-once delivery every shard
    /// checkpoint is written and committed before this returns.
    pub fn begin_checkpoint(&mut self) -> Result<(), ShardError> {
        let Some(plan) = self.checkpoints.clone() else {
            return Ok(());
        };
        self.collect_checkpoints(true)?;
        let now = self.clock.now_ms();
        let started = Instant::now();
        let id = self.next_checkpoint_id(now);
        let mut run = CheckpointRun {
            id,
            now,
            started,
            all_ok: true,
            outstanding: vec![false; self.shards.len()],
        };
        for (i, s) in self.shards.iter_mut().enumerate() {
            let begun = if s.commits_with_checkpoints() {
                // The commit must follow the written checkpoint before more output.
                s.checkpoint(&plan.root, id, now, self.job_wm).map(|done| {
                    s.keep_written(Ok(done));
                })
            } else {
                s.begin_checkpoint(&plan.root, id, now, self.job_wm)
            };
            match begun {
                Ok(()) => run.outstanding[i] = true,
                // Output that could not be delivered must not be skipped: fail the process.
                Err(e @ ShardError::Sink { .. }) => return Err(e),
                Err(e) => {
                    run.all_ok = false;
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
        self.in_flight = Some(run);
        Ok(())
    }

    /// Whether a checkpoint was begun and not all of it is written yet.
    pub fn checkpoint_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Takes up the shard checkpoints of the run in flight that are written
    /// (all of them, waiting, with `wait`): retention, metrics, and once every
    /// shard's is, the checkpoint the status reports.
    pub fn collect_checkpoints(&mut self, wait: bool) -> Result<(), ShardError> {
        // Called on every step: borrowed, not cloned (the plan holds the metrics).
        let (Some(plan), Some(run)) = (self.checkpoints.as_ref(), self.in_flight.as_mut()) else {
            return Ok(());
        };
        for (i, s) in self.shards.iter_mut().enumerate() {
            if !run.outstanding[i] {
                continue;
            }
            let Some(outcome) = s.take_written(wait) else {
                continue;
            };
            run.outstanding[i] = false;
            match outcome {
                Ok((dir, size)) => {
                    if let Err(e) = crate::durability::checkpoint::retain(
                        &plan.root,
                        s.partition,
                        plan.retained,
                    ) {
                        tracing::warn!(shard = s.partition, "checkpoint retention: {e}");
                    }
                    tracing::debug!(shard = s.partition, id = run.id, size, dir = %dir.display(), "checkpoint");
                    if let Some(m) = &plan.metrics {
                        m.duration.observe(run.started.elapsed().as_secs_f64());
                        m.size_bytes
                            .with_label_values(&[&s.partition.to_string()])
                            .set(i64::try_from(size).unwrap_or(i64::MAX));
                        m.completed.inc();
                        m.last_completed.set(run.now as f64 / 1000.0);
                    }
                }
                Err(e @ ShardError::Sink { .. }) => return Err(e),
                Err(e) => {
                    run.all_ok = false;
                    tracing::error!(shard = s.partition, id = run.id, "checkpoint failed: {e}");
                    if let Some(m) = &plan.metrics {
                        m.failures.inc();
                    }
                }
            }
        }
        if run.outstanding.iter().any(|&o| o) {
            return Ok(());
        }
        if run.all_ok
            && let Some((c, index)) = &self.control
        {
            c.record_checkpoint(
                *index,
                LastCheckpoint {
                    id: run.id,
                    completed_at_ms: run.now,
                    duration_ms: i64::try_from(run.started.elapsed().as_millis())
                        .unwrap_or(i64::MAX),
                },
            );
        }
        self.in_flight = None;
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
        if let Some((c, _)) = &self.control
            && c.generation() != self.seen_generation
        {
            self.seen_generation = c.generation();
            if let Some(run) = c.active() {
                self.take_savepoint_part(&run)?;
            }
        }
        if self.halted {
            return Ok(Progress::Blocked);
        }
        self.steps += 1;
        let now = self.clock.now_ms();
        self.refresh()?;
        self.collect_checkpoints(false)?;
        if let Some(plan) = &self.checkpoints
            && now - self.last_checkpoint_ms >= plan.interval_ms
            && self.in_flight.is_none()
        {
            self.begin_checkpoint()?;
        }
        if let Some(plan) = &self.checkpoints {
            // Changed entries are handed over to the next checkpoint in its
            // last quarter (200 ms to 5 s): enough turns to copy a backlog a
            // chunk at a time, few copies of entries that change again.
            let lead = (plan.interval_ms / 4).clamp(200, 5_000);
            let open = now - self.last_checkpoint_ms >= plan.interval_ms - lead;
            for s in &mut self.shards {
                s.set_handing_over(open);
            }
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
        let mut throttled = false;
        self.held_by_alignment = false;
        for &(_, si, ii) in &candidates {
            let grant = self.input_rate.as_ref().map_or(batch, |r| r.take(batch));
            if grant == 0 {
                throttled = true;
                continue;
            }
            let turn = self.shards[si].read_turn(ii, grant, &mut self.job_wm, now)?;
            if let Some(r) = &self.input_rate {
                r.give_back(grant - if let Turn::Read(n) = turn { n } else { 0 });
            }
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
                Turn::CaughtUp => changed |= self.judge_idleness(si, ii, now),
                // The watermark may move now: the next step takes it up.
                Turn::Ended => changed = true,
                Turn::Paused => self.held_by_alignment = true,
            }
        }
        if changed {
            return Ok(Progress::Worked);
        }
        if throttled {
            // Held back, not quiet: no inactivity is judged from it.
            self.throttled = true;
            return Ok(Progress::Blocked);
        }
        Ok(self.blocked(now))
    }

    /// A caught-up partition is idle after `idleTimeout` without records,
    /// counted from when its source could last tell that it is caught up. One
    /// that cannot tell now (its broker is unreachable) is not idle: records
    /// may wait behind the broker. Whether idleness changed.
    fn judge_idleness(&mut self, si: usize, ii: usize, now: i64) -> bool {
        let input = &self.shards[si].inputs[ii];
        let (slot, idle) = (input.slot, self.board.is_idle(input.slot));
        let Some(since) = input.source.in_contact_since() else {
            if idle {
                tracing::info!(
                    shard = si,
                    input = ii,
                    "partition unreachable: no longer idle"
                );
                self.board.set_idle(slot, false);
            }
            return idle;
        };
        self.board.quiet_from(slot, since);
        let quiet = now.saturating_sub(self.board.quiet_since_ms(slot));
        if quiet >= self.cfg.idle_timeout_ms && !idle {
            tracing::info!(shard = si, input = ii, quiet_ms = quiet, "partition idle");
            self.board.set_idle(slot, true);
            return true;
        }
        false
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
        self.collect_checkpoints(true)?;
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

    /// Asks every source of this worker to wake its thread when records
    /// arrive; `true` when all of them can.
    fn wake_on_arrival(&mut self) -> bool {
        let waker = InputWaker::for_current_thread();
        let mut all = true;
        for s in &mut self.shards {
            for input in &mut s.inputs {
                all &= input.source.wake_on_arrival(&waker);
            }
        }
        all
    }

    /// Waits a little after a step that found nothing to do.
    fn back_off(&self, idle_rounds: u32, parkable: bool) {
        if parkable {
            // Arriving records unpark this thread; the timeout serves what no
            // source signals (other workers' watermarks, control requests,
            // idleness), as the sleep below does. Held back by alignment, it
            // waits for another worker's partitions: a short wait, checked
            // often, without taking the CPU from the threads that fetch.
            let cap = if self.held_by_alignment { 50 } else { 1_000 };
            let micros = u64::from(idle_rounds).saturating_mul(50).min(cap);
            std::thread::park_timeout(Duration::from_micros(micros));
        } else if idle_rounds < 2_000 {
            // Waiting on another worker's partitions is short: yield first.
            std::thread::yield_now();
        } else {
            // Caught-up sources get a sleep that grows to 1 ms.
            let micros = u64::from(idle_rounds - 2_000).clamp(20, 1_000);
            std::thread::sleep(Duration::from_micros(micros));
        }
    }

    /// Steps until done or `stop` is set, backing off while blocked.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Progress, ShardError> {
        let parkable = self.wake_on_arrival();
        let mut idle_rounds = 0u32;
        while !stop.load(Relaxed) {
            match self.step()? {
                Progress::Done => return Ok(Progress::Done),
                Progress::Worked => idle_rounds = 0,
                Progress::Blocked if self.throttled => {
                    // Waiting for the rate limit is work held back, not idleness:
                    // it does not count in the busy ratio's idle time.
                    self.throttled = false;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Progress::Blocked => {
                    idle_rounds = idle_rounds.saturating_add(1);
                    let waited = Instant::now();
                    self.back_off(idle_rounds, parkable);
                    let nanos = u64::try_from(waited.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    self.idle_nanos.fetch_add(nanos, Relaxed);
                }
            }
        }
        self.collect_checkpoints(true)?;
        for s in &mut self.shards {
            s.flush()?;
        }
        Ok(Progress::Blocked)
    }
}
