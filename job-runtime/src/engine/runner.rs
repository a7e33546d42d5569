//! Assembles shards, state and workers from sources and sinks, and runs them on
//! threads. Sources and sinks are given per shard, so files, the built-in
//! generator and Kafka plug in the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::control::metrics::Metrics;
use crate::control::requests::Control;
use crate::durability::checkpoint::{self, CheckpointManifest};
use crate::engine::error::ShardError;
use crate::engine::rate::InputRateLimit;
use crate::engine::shard::{Shard, ShardSinks, TitleStats};
use crate::engine::worker::{CheckpointPlan, Progress, Worker};
use crate::io::source::PartitionSource;
use crate::model::counters::ShardCounters;
use crate::state::store::{ShardStore, StateEnv, StateError};
use crate::time::watermark::{Clock, MAX_WM, MIN_WM, SystemClock, WatermarkBoard};

/// Sources and sinks of one shard (input partition `partition` of both streams).
pub struct ShardIo {
    pub partition: u32,
    /// Impressions, then plays.
    pub sources: [Box<dyn PartitionSource>; 2],
    pub sinks: ShardSinks,
    /// A checkpoint to restore the shard from.
    pub restore: Option<(PathBuf, CheckpointManifest)>,
}

pub struct EngineOptions {
    pub threads: usize,
    pub state_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub metrics: Option<Metrics>,
    /// Keep per-title statistics of emitted entries.
    pub title_stats: bool,
    /// Periodic checkpoints, and the id the last restored one had.
    pub checkpoints: Option<(CheckpointPlan, u64)>,
    /// Requests from the admin API; its worker count overrides `threads`.
    pub control: Option<Arc<Control>>,
    /// Records per second the workers read at most, together.
    pub input_rate: Option<Arc<InputRateLimit>>,
}

impl EngineOptions {
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            threads: 1,
            state_dir,
            clock: Arc::new(SystemClock),
            metrics: None,
            title_stats: false,
            checkpoints: None,
            control: None,
            input_rate: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no input partitions were given")]
    NoShards,
    #[error("worker thread panicked: {0}")]
    Panicked(String),
}

/// A snapshot for progress displays and status.
#[derive(Debug, Clone, Copy)]
pub struct EngineProgress {
    pub records_read: u64,
    pub job_watermark: i64,
    pub idle_partitions: usize,
    /// Open state entries. While running, as the shards last published them to
    /// the metrics (0 without metrics); exact in the final snapshot.
    pub live_entries: u64,
    /// State entries opened so far (cumulative, same source as `live_entries`).
    pub entries_inserted: u64,
    /// State entries emitted and removed so far (cumulative).
    pub entries_evicted: u64,
    /// Time the workers spent waiting for input so far (cumulative, all workers).
    pub idle_nanos: u64,
}

pub struct Engine {
    pub workers: Vec<Worker>,
    pub board: Arc<WatermarkBoard>,
    pub metrics: Option<Metrics>,
    clock: Arc<dyn Clock>,
    _env: StateEnv,
}

impl Engine {
    pub fn new(
        cfg: EngineConfig,
        io: Vec<ShardIo>,
        opts: EngineOptions,
    ) -> Result<Self, EngineError> {
        if io.is_empty() {
            return Err(EngineError::NoShards);
        }
        let cfg = Arc::new(cfg);
        let partitions = io
            .iter()
            .map(|s| s.partition as usize + 1)
            .max()
            .unwrap_or(0);
        let board = Arc::new(WatermarkBoard::new(
            partitions * 2,
            cfg.max_out_of_orderness_ms,
            opts.clock.now_ms(),
        ));
        for s in &io {
            for (k, source) in s.sources.iter().enumerate() {
                if let Some(probe) = source.unread_probe() {
                    board.set_unread_probe(k * partitions + s.partition as usize, probe);
                }
            }
        }
        let env = StateEnv::new(
            &opts.state_dir,
            cfg.block_cache_bytes,
            cfg.write_buffer_bytes,
        );
        let per_shard_cache = cfg.cache_entries / io.len();
        // The process's byte budget, split like the entry count.
        let per_shard_bytes = cfg.cache_bytes / io.len();
        // Unused partitions (a process owns only some) must not hold the watermark back.
        let owned: Vec<u32> = io.iter().map(|s| s.partition).collect();
        for p in 0..partitions as u32 {
            if !owned.contains(&p) {
                board.set_ended(p as usize);
                board.set_ended(partitions + p as usize);
            }
        }
        // Shards of a process may restore checkpoints of different rounds, or none:
        // the job watermark starts at the oldest of theirs (−∞ for a shard starting
        // afresh), so no shard sees a watermark ahead of its own restored inputs.
        let restored_wm = io
            .iter()
            .map(|s| s.restore.as_ref().map_or(MIN_WM, |r| r.1.job_watermark))
            .min()
            .unwrap_or(MIN_WM);
        if restored_wm != MIN_WM {
            board.restore_job_watermark(restored_wm);
        }
        // Each shard opens its RocksDB instance and restores its checkpoint on a
        // thread of its own: start-up and recovery wait for the slowest shard,
        // not for the sum of them (each open syncs several new files).
        let build = ShardBuild {
            env: &env,
            cfg: &cfg,
            board: &board,
            opts: &opts,
            partitions,
            per_shard_cache,
            per_shard_bytes,
        };
        let shards = std::thread::scope(|scope| {
            let handles: Vec<_> = io
                .into_iter()
                .map(|s| scope.spawn(|| build.shard(s)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|panic| {
                        Err(EngineError::Panicked(panic_message(panic.as_ref())))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        let threads = opts
            .control
            .as_ref()
            .map_or(opts.threads, |c| c.workers())
            .clamp(1, shards.len());
        let mut groups: Vec<Vec<Shard>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, s) in shards.into_iter().enumerate() {
            groups[i % threads].push(s);
        }
        let workers = groups
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let mut w = Worker::new(g, board.clone(), opts.clock.clone(), cfg.clone());
                if let Some((plan, last_id)) = &opts.checkpoints {
                    w.set_checkpoints(plan.clone(), *last_id);
                }
                if let Some(c) = &opts.control {
                    w.set_control(c.clone(), i);
                }
                w.input_rate = opts.input_rate.clone();
                w
            })
            .collect();
        Ok(Self {
            workers,
            board,
            metrics: opts.metrics,
            clock: opts.clock,
            _env: env,
        })
    }

    pub fn progress(&self) -> EngineProgress {
        EngineProgress {
            records_read: self
                .workers
                .iter()
                .map(|w| w.records_read.load(Relaxed))
                .sum(),
            job_watermark: self.board.job_watermark(),
            idle_partitions: self.board.idle_partitions(),
            live_entries: self.live_entries(),
            entries_inserted: self.shards().map(|s| s.counters.entries_opened).sum(),
            entries_evicted: self.shards().map(|s| s.counters.entries_emitted).sum(),
            idle_nanos: self
                .workers
                .iter()
                .map(|w| w.idle_nanos.load(Relaxed))
                .sum(),
        }
    }

    /// Single-threaded stepping, for tests and embedding: steps every worker until
    /// none can make progress now.
    pub fn run_until_blocked(&mut self) -> Result<Progress, EngineError> {
        loop {
            let mut worked = false;
            let mut done = true;
            for w in &mut self.workers {
                match w.step()? {
                    Progress::Worked => {
                        worked = true;
                        done = false;
                    }
                    Progress::Blocked => done = false,
                    Progress::Done => {}
                }
            }
            if done {
                return Ok(Progress::Done);
            }
            if !worked {
                return Ok(Progress::Blocked);
            }
        }
    }

    /// Runs every worker on its own thread until all inputs ended (bounded input)
    /// or `stop` is set; `monitor` is called about every `tick` from this thread.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        tick: Duration,
        mut monitor: impl FnMut(EngineProgress),
    ) -> Result<Progress, EngineError> {
        let board = self.board.clone();
        let clock = self.clock.clone();
        let metrics = self.metrics.clone();
        let counters: Vec<_> = self
            .workers
            .iter()
            .map(|w| w.records_read.clone())
            .collect();
        let idle: Vec<_> = self.workers.iter().map(|w| w.idle_nanos.clone()).collect();
        // The state metrics of the owned shards, as the shards publish them.
        let state: Vec<_> = metrics
            .iter()
            .flat_map(|m| {
                self.shards().map(|s| {
                    let p = s.partition.to_string();
                    (
                        m.live_entries.with_label_values(&[&p]),
                        m.entries_inserted.with_label_values(&[&p]),
                        m.entries_evicted.with_label_values(&[&p]),
                    )
                })
            })
            .collect();
        let snapshot = |board: &WatermarkBoard| EngineProgress {
            records_read: counters.iter().map(|c| c.load(Relaxed)).sum(),
            job_watermark: board.job_watermark(),
            idle_partitions: board.idle_partitions(),
            live_entries: state.iter().map(|s| s.0.get().max(0) as u64).sum(),
            entries_inserted: state.iter().map(|s| s.1.get()).sum(),
            entries_evicted: state.iter().map(|s| s.2.get()).sum(),
            idle_nanos: idle.iter().map(|c| c.load(Relaxed)).sum(),
        };
        let results: Vec<Result<Progress, EngineError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .workers
                .iter_mut()
                .map(|w| scope.spawn(move || w.run(stop)))
                .collect();
            let mut last = Instant::now();
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(Duration::from_millis(5));
                if last.elapsed() >= tick {
                    last = Instant::now();
                    if let Some(m) = &metrics {
                        publish_board(m, &board, clock.now_ms());
                    }
                    monitor(snapshot(&board));
                }
            }
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r.map_err(EngineError::from),
                    Err(p) => Err(EngineError::Panicked(panic_message(p.as_ref()))),
                })
                .collect()
        });
        if let Some(m) = &self.metrics {
            publish_board(m, &self.board, self.clock.now_ms());
        }
        monitor(self.progress());
        let mut overall = Progress::Done;
        for r in results {
            if r? != Progress::Done {
                overall = Progress::Blocked;
            }
        }
        Ok(overall)
    }

    /// Summed counters of every shard.
    pub fn counters(&self) -> ShardCounters {
        let mut total = ShardCounters::default();
        for s in self.shards() {
            total.add(&s.counters);
        }
        total
    }

    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.workers.iter().flat_map(|w| w.shards.iter())
    }

    pub fn live_entries(&self) -> u64 {
        self.shards().map(|s| s.live_entries()).sum()
    }

    pub fn title_stats(&self) -> TitleStats {
        let mut all = TitleStats::default();
        for s in self.shards() {
            for (t, (a, b)) in s.title_stats.iter().flatten() {
                let e = all.entry(*t).or_default();
                e.0 += a;
                e.1 += b;
            }
        }
        all
    }
}

/// Job-level gauges: the watermark, its lag, idle partitions, forced advances.
pub fn publish_board(m: &Metrics, board: &WatermarkBoard, now: i64) {
    let wm = board.job_watermark();
    if wm != MIN_WM && wm != MAX_WM {
        m.watermark.set(wm as f64 / 1000.0);
        m.watermark_lag.set((now - wm) as f64 / 1000.0);
    }
    m.idle_partitions
        .set(i64::try_from(board.idle_partitions()).unwrap_or(i64::MAX));
    m.paused_partitions
        .set(i64::try_from(board.paused_partitions()).unwrap_or(i64::MAX));
    let forced = board.forced_advances();
    m.forced_advances
        .inc_by(forced.saturating_sub(m.forced_advances.get()));
}

/// What every shard's construction reads, shared by the threads that open them.
struct ShardBuild<'a> {
    env: &'a StateEnv,
    cfg: &'a Arc<EngineConfig>,
    board: &'a Arc<WatermarkBoard>,
    opts: &'a EngineOptions,
    partitions: usize,
    per_shard_cache: usize,
    per_shard_bytes: usize,
}

impl ShardBuild<'_> {
    /// Opens (or materialises and restores) the state of one shard.
    fn shard(&self, s: ShardIo) -> Result<Shard, EngineError> {
        let (env, cfg) = (self.env, self.cfg);
        let mut store = match &s.restore {
            Some((dir, manifest)) => {
                checkpoint::materialise(dir, &env.root().join(format!("shard-{}", s.partition)))
                    .map_err(ShardError::from)?;
                let db = env.open_shard(s.partition)?;
                ShardStore::restored(
                    db,
                    self.per_shard_cache,
                    cfg.window_ms,
                    manifest.live_entries,
                )
            }
            None => {
                let db = env.open_shard(s.partition)?;
                ShardStore::new(db, self.per_shard_cache, cfg.window_ms)
            }
        }
        .with_byte_budget(self.per_shard_bytes);
        if self.opts.checkpoints.is_some() {
            store.track_changes();
        }
        let p = s.partition as usize;
        let mut shard = Shard::new(
            s.partition,
            s.sources,
            [p, self.partitions + p],
            store,
            s.sinks,
            cfg.clone(),
            self.board.clone(),
            self.opts.metrics.as_ref().map(|m| m.shard(s.partition)),
        );
        if self.opts.title_stats {
            shard.title_stats = Some(TitleStats::default());
        }
        if let Some((dir, manifest)) = &s.restore {
            shard.restore(dir, manifest)?;
        }
        Ok(shard)
    }
}

/// The message a panicking thread left, if it left text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
