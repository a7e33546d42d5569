//! One shard: input partition `p` of both streams, its keyed state and its
//! reorder buffer. Records are classified on arrival (malformed, late, on
//! time); on-time events are applied in event-time order once the job
//! watermark passes them, interleaved with the entries' timers.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::EngineConfig;
use crate::control::metrics::ShardMetrics;
use crate::durability::checkpoint::{
    self, CheckpointError, CheckpointManifest, FORMAT_VERSION, InputState, PENDING,
};
use crate::engine::error::ShardError;
use crate::engine::snapshot::{InFlight, Snapshot, Written};
use crate::io::sink::{EntrySink, SideKind, SideRecord, SideSink, SinkError};
use crate::io::source::{Next, PartitionSource};
use crate::model::counters::ShardCounters;
use crate::model::entry::Entry;
use crate::model::output::{self, OutputNames};
use crate::model::record::{DEVICES, Event, Input, Key, Malformed, RecordParser};
use crate::state::pending::{Pending, PendingBuffer};
use crate::state::store::{Applied, ShardStore};
use crate::time::watermark::{MAX_WM, WatermarkBoard};

fn sink_error(shard: u32, output: &'static str) -> impl FnOnce(SinkError) -> ShardError {
    move |source| ShardError::Sink {
        shard,
        output,
        source,
    }
}

/// Per-title statistics of emitted entries (for the demo's take fractions).
pub type TitleStats = std::collections::HashMap<i64, (u64, u64)>;

/// One input of a shard.
pub struct ShardInput {
    pub source: Box<dyn PartitionSource>,
    parser: RecordParser,
    /// Index in the watermark board.
    pub slot: usize,
    pub ended: bool,
}

/// The sinks of one shard.
pub struct ShardSinks {
    pub entries: Box<dyn EntrySink>,
    pub late: Box<dyn SideSink>,
    pub dead_letter: Box<dyn SideSink>,
    /// Exactly-once: commits the output with each checkpoint.
    pub commit: Option<Box<dyn crate::io::sink::EpochCommit>>,
}

/// How many on-time events a read turn holds back while their entries load.
const ARRIVALS_AHEAD: usize = 8;

/// What one read turn reads: up to `max` records of input `which`, at `now`.
struct TurnInput {
    which: usize,
    max: usize,
    now: i64,
}

/// An on-time event read, with the lateness bound of its moment.
struct Arrived {
    event: Event,
    on_time_from: i64,
    offset: i64,
}

/// How a read turn on one input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Read this many records (at least one) and stopped for the batch limit or a pause.
    Read(usize),
    CaughtUp,
    Ended,
    Paused,
}

pub struct Shard {
    pub partition: u32,
    pub inputs: [ShardInput; 2],
    store: ShardStore,
    pending: PendingBuffer,
    sinks: ShardSinks,
    pub counters: ShardCounters,
    published: ShardCounters,
    metrics: Option<ShardMetrics>,
    pub title_stats: Option<TitleStats>,
    cfg: Arc<EngineConfig>,
    board: Arc<WatermarkBoard>,
    out: Vec<u8>,
    names: OutputNames,
    /// A checkpoint being written by its own thread.
    in_flight: Option<InFlight>,
    /// How the last one ended, until the worker takes it.
    written: Option<Result<(std::path::PathBuf, u64), ShardError>>,
    /// On-time events of the current read turn not applied yet.
    arrived: VecDeque<Arrived>,
}

impl Shard {
    /// `slots` are the two board indexes of (impressions p, plays p).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        partition: u32,
        sources: [Box<dyn PartitionSource>; 2],
        slots: [usize; 2],
        store: ShardStore,
        sinks: ShardSinks,
        cfg: Arc<EngineConfig>,
        board: Arc<WatermarkBoard>,
        metrics: Option<ShardMetrics>,
    ) -> Self {
        let [imp, play] = sources;
        let input = |source, input: Input, slot| ShardInput {
            source,
            parser: RecordParser::new(input, cfg.fields.clone()),
            slot,
            ended: false,
        };
        let names = OutputNames::new(&cfg.fields.profile, &cfg.fields.title);
        Self {
            partition,
            inputs: [
                input(imp, Input::Impressions, slots[0]),
                input(play, Input::Plays, slots[1]),
            ],
            store,
            pending: PendingBuffer::new(cfg.pending_in_memory),
            sinks,
            counters: ShardCounters::default(),
            published: ShardCounters::default(),
            metrics,
            title_stats: None,
            cfg,
            board,
            out: Vec::with_capacity(512),
            names,
            in_flight: None,
            written: None,
            arrived: VecDeque::with_capacity(ARRIVALS_AHEAD + 1),
        }
    }

    pub fn live_entries(&self) -> u64 {
        self.store.live_entries()
    }

    pub fn pending_events(&self) -> u64 {
        self.pending.len()
    }

    pub fn store(&self) -> &ShardStore {
        &self.store
    }

    /// Reads up to `max` records of input `which`, checking alignment before each;
    /// `job_wm` is the caller's view of the job watermark and may be refreshed.
    pub fn read_turn(
        &mut self,
        which: usize,
        max: usize,
        job_wm: &mut i64,
        now: i64,
    ) -> Result<Turn, ShardError> {
        // Changes of the turns before go to the next checkpoint ahead of it.
        self.store.hand_over()?;
        let turn = self.read_records(TurnInput { which, max, now }, job_wm);
        // Every record read is in the state or the reorder buffer when the
        // turn ends (a checkpoint may follow), also when reading failed.
        let settled = self.settle_arrivals(0);
        let turn = turn?;
        settled.map(|()| turn)
    }

    fn read_records(&mut self, turn: TurnInput, job_wm: &mut i64) -> Result<Turn, ShardError> {
        let TurnInput { which, max, now } = turn;
        let drift = self.cfg.alignment_max_drift_ms;
        let slot = self.inputs[which].slot;
        let mut n = 0;
        while n < max {
            if self.board.is_ahead(slot, *job_wm, drift) {
                *job_wm = self.board.recompute();
                if self.board.is_ahead(slot, *job_wm, drift) {
                    // A paused partition is not idle.
                    self.board.set_idle(slot, false);
                    self.board.set_paused(slot, true);
                    return Ok(if n > 0 { Turn::Read(n) } else { Turn::Paused });
                }
            }
            if n == 0 {
                self.board.set_paused(slot, false);
            }
            let input = &mut self.inputs[which];
            let rec = match input.source.next() {
                Ok(Next::Record(r)) => r,
                Ok(Next::CaughtUp) => {
                    return Ok(if n > 0 { Turn::Read(n) } else { Turn::CaughtUp });
                }
                Ok(Next::End) => {
                    input.ended = true;
                    self.board.set_ended(slot);
                    return Ok(if n > 0 { Turn::Read(n) } else { Turn::Ended });
                }
                Err(source) => {
                    return Err(ShardError::Source {
                        shard: self.partition,
                        input: input.parser.input().name(),
                        source,
                    });
                }
            };
            n += 1;
            let kind = input.parser.input();
            if self.board.touch(slot, now) {
                tracing::info!(
                    shard = self.partition,
                    input = kind.name(),
                    offset = rec.offset,
                    job_watermark = *job_wm,
                    "partition active again"
                );
            }
            self.counters.records[kind.index()] += 1;
            match input.parser.parse(rec.payload) {
                Err(rej) => {
                    self.counters.malformed[kind.index()][rej.kind as usize] += 1;
                    let side = SideRecord {
                        input: kind,
                        partition: self.partition,
                        offset: rec.offset,
                        payload: rec.payload,
                        kind: SideKind::DeadLetter {
                            reason: rej.kind.reason(),
                            detail: &rej.detail,
                        },
                    };
                    self.sinks
                        .dead_letter
                        .send(&side)
                        .map_err(sink_error(self.partition, "dead-letter"))?;
                }
                Ok(event) => {
                    let before = self.board.partition_watermark(slot);
                    self.board.observe(slot, event.time);
                    // This partition may hold the job watermark: take up its advance
                    // before judging lateness, so the judgement uses the watermark as it is.
                    if before <= *job_wm && self.board.partition_watermark(slot) > before {
                        *job_wm = self.board.recompute();
                    }
                    let threshold = job_wm.saturating_sub(self.cfg.allowed_lateness_ms);
                    if event.time < threshold {
                        self.counters.late[kind.index()] += 1;
                        let side = SideRecord {
                            input: kind,
                            partition: self.partition,
                            offset: rec.offset,
                            payload: rec.payload,
                            kind: SideKind::Late {
                                event_time: event.time,
                                watermark: *job_wm,
                            },
                        };
                        self.sinks
                            .late
                            .send(&side)
                            .map_err(sink_error(self.partition, "late"))?;
                    } else {
                        let arrived = Arrived {
                            event,
                            on_time_from: threshold,
                            offset: rec.offset,
                        };
                        self.arrive(arrived)?;
                    }
                }
            }
        }
        Ok(Turn::Read(n))
    }

    /// Takes an on-time event read in this turn. It is applied a few records
    /// later, in the order read: meanwhile its entry is loaded into the CPU
    /// caches, while the records after it are parsed (the probe of a cold entry
    /// took a fifth of a worker's time).
    fn arrive(&mut self, a: Arrived) -> Result<(), ShardError> {
        // Two steps: the table slot first, then (once the slot is in the
        // caches) the entry it points to.
        self.store.prefetch_slot(&a.event.key);
        self.arrived.push_back(a);
        if let Some(half) = self.arrived.len().checked_sub(ARRIVALS_AHEAD / 2 + 1) {
            self.store.prefetch_entry(&self.arrived[half].event.key);
        }
        self.settle_arrivals(ARRIVALS_AHEAD)
    }

    /// Applies the events taken by [`Self::arrive`] until `keep` are left.
    fn settle_arrivals(&mut self, keep: usize) -> Result<(), ShardError> {
        while self.arrived.len() > keep {
            let Some(a) = self.arrived.pop_front() else {
                break;
            };
            self.settle(a)?;
        }
        Ok(())
    }

    /// Folds an arrived event into its open entry when the contract allows it,
    /// or queues it for its turn in event-time order.
    fn settle(&mut self, a: Arrived) -> Result<(), ShardError> {
        let partition = self.partition;
        if let Some(outcome) = self.store.fold_if_open(&a.event, a.on_time_from)? {
            return self.count_applied(outcome, &a.event, partition, a.offset);
        }
        let pending = Pending {
            event: a.event,
            partition,
            offset: a.offset,
        };
        if self.pending.push_touches_db(pending.event.time) {
            self.await_checkpoint()?;
        }
        Ok(self.pending.push(pending, self.store.db())?)
    }

    /// Applies every pending event and fires every timer that the watermark has
    /// passed, in time order; at equal times the timer first.
    pub fn drain(&mut self, watermark: i64) -> Result<(), ShardError> {
        let all = watermark == MAX_WM;
        loop {
            if self.pending.read_touches_db() {
                self.await_checkpoint()?;
            }
            let next_event = self.pending.peek_time(self.store.db())?;
            let next_timer = self.store.next_timer()?;
            let event_due = next_event.filter(|&t| all || t < watermark);
            let timer_due = next_timer.filter(|&(t, _)| all || t < watermark);
            match (event_due, timer_due) {
                (None, None) => break,
                (Some(te), Some((tt, key))) if tt <= te => self.fire(tt, key)?,
                (None, Some((tt, key))) => self.fire(tt, key)?,
                (Some(_), _) => {
                    self.prefetch_pending();
                    if let Some(p) = self.pending.pop_min(self.store.db())? {
                        self.apply(p)?;
                    }
                }
            }
        }
        self.store.settle()?;
        self.store.hand_over()?;
        // Entries of this drain leave together (a Kafka sink batches them).
        self.sinks
            .entries
            .send_pending()
            .map_err(sink_error(self.partition, "entries"))
    }

    /// Starts loading the table slots, then the entries, of the pending
    /// events due next (as [`Self::arrive`] does for arriving ones).
    fn prefetch_pending(&self) {
        if let Some(key) = self.pending.key_ahead(ARRIVALS_AHEAD) {
            self.store.prefetch_slot(&key);
        }
        if let Some(key) = self.pending.key_ahead(ARRIVALS_AHEAD / 2) {
            self.store.prefetch_entry(&key);
        }
    }

    fn apply(&mut self, p: Pending) -> Result<(), ShardError> {
        let outcome = self.store.apply(&p.event)?;
        self.count_applied(outcome, &p.event, p.partition, p.offset)
    }

    fn count_applied(
        &mut self,
        outcome: Applied,
        event: &Event,
        partition: u32,
        offset: i64,
    ) -> Result<(), ShardError> {
        let kind = event.input.index();
        match outcome {
            Applied::Opened => {
                self.counters.events += 1;
                self.counters.entries_opened += 1;
            }
            Applied::Folded => self.counters.events += 1,
            Applied::Duplicate => self.counters.duplicates[kind] += 1,
            Applied::Conflict => {
                self.counters.malformed[kind][Malformed::ConflictingDuplicate as usize] += 1;
                let text = self.event_json(event);
                let side = SideRecord {
                    input: event.input,
                    partition,
                    offset,
                    payload: text.as_bytes(),
                    kind: SideKind::DeadLetter {
                        reason: Malformed::ConflictingDuplicate.reason(),
                        detail: "event_id already seen in this entry with different content",
                    },
                };
                self.sinks
                    .dead_letter
                    .send(&side)
                    .map_err(sink_error(self.partition, "dead-letter"))?;
            }
        }
        Ok(())
    }

    /// The record as the join read it, for a dead letter found after parsing.
    fn event_json(&self, e: &Event) -> String {
        let f = &self.cfg.fields;
        let mut m = serde_json::Map::new();
        m.insert(f.record_type.clone(), e.input.record_type().into());
        m.insert(
            f.event_id.clone(),
            String::from_utf8_lossy(&e.id.bytes).into(),
        );
        m.insert(f.event_time.clone(), e.time.into());
        m.insert(f.profile.clone(), e.key.profile.into());
        m.insert(f.title.clone(), e.key.title.into());
        if e.input == Input::Impressions {
            m.insert(f.row.clone(), e.row.into());
            m.insert(f.rank.clone(), e.rank.into());
        } else {
            m.insert(f.duration.clone(), e.duration_ms.into());
        }
        m.insert(f.device.clone(), DEVICES[usize::from(e.device)].into());
        serde_json::Value::Object(m).to_string()
    }

    fn fire(&mut self, fire: i64, key: Key) -> Result<(), ShardError> {
        let entry = self.store.fire(fire, key)?;
        self.emit(key, &entry)
    }

    fn emit(&mut self, key: Key, entry: &Entry) -> Result<(), ShardError> {
        let c = &mut self.counters;
        c.entries_emitted += 1;
        let has_imp = entry.impressions > 0;
        c.entries_with_impressions += u64::from(has_imp);
        c.entries_with_plays += u64::from(entry.has_plays());
        c.entries_joined += u64::from(has_imp && entry.has_plays());
        if let Some(stats) = &mut self.title_stats
            && has_imp
        {
            let s = stats.entry(key.title).or_default();
            s.0 += 1;
            s.1 += u64::from(entry.has_plays());
        }
        self.out.clear();
        output::write_json(entry, key, &self.names, &mut self.out);
        self.sinks
            .entries
            .emit(key, &self.out)
            .map_err(sink_error(self.partition, "entries"))
    }

    /// Opens or closes the lead-up to a checkpoint (see `ShardStore::hand_over`).
    pub fn set_handing_over(&mut self, open: bool) {
        self.store.set_handing_over(open);
    }

    pub fn flush(&mut self) -> Result<(), ShardError> {
        let shard = self.partition;
        let wrap = |output| {
            move |source| ShardError::Sink {
                shard,
                output,
                source,
            }
        };
        self.sinks.entries.flush().map_err(wrap("entries"))?;
        self.sinks.late.flush().map_err(wrap("late"))?;
        self.sinks
            .dead_letter
            .flush()
            .map_err(wrap("dead-letter"))?;
        Ok(())
    }

    /// Publishes counter deltas and gauges to Prometheus.
    pub fn publish(&mut self, with_state_size: bool) {
        let Some(m) = &self.metrics else { return };
        let (c, p) = (&self.counters, &self.published);
        for i in 0..2 {
            m.records_in[i].inc_by(c.records[i] - p.records[i]);
            m.late[i].inc_by(c.late[i] - p.late[i]);
            m.duplicates[i].inc_by(c.duplicates[i] - p.duplicates[i]);
            for r in 0..5 {
                m.malformed[i][r].inc_by(c.malformed[i][r] - p.malformed[i][r]);
            }
            let wm = self.board.partition_watermark(self.inputs[i].slot);
            if wm != crate::time::watermark::MIN_WM && wm != MAX_WM {
                m.watermark[i].set(wm as f64 / 1000.0);
            }
        }
        m.inserted.inc_by(c.entries_opened - p.entries_opened);
        m.evicted.inc_by(c.entries_emitted - p.entries_emitted);
        m.out_entries.inc_by(c.entries_emitted - p.entries_emitted);
        m.out_late
            .inc_by(c.late.iter().sum::<u64>() - p.late.iter().sum::<u64>());
        m.out_dead.inc_by(c.malformed_total() - p.malformed_total());
        m.with_plays
            .inc_by(c.entries_with_plays - p.entries_with_plays);
        let spilled = self.store.spilled_total();
        m.spilled.inc_by(spilled.saturating_sub(m.spilled.get()));
        let ids = self.store.ids_spilled_total();
        m.ids_spilled
            .inc_by(ids.saturating_sub(m.ids_spilled.get()));
        m.live
            .set(i64::try_from(self.store.live_entries()).unwrap_or(i64::MAX));
        m.pending
            .set(i64::try_from(self.pending.len()).unwrap_or(i64::MAX));
        if with_state_size {
            let rocks = self.store.db().estimated_bytes();
            m.rocks_bytes.set(i64::try_from(rocks).unwrap_or(i64::MAX));
            m.memory_bytes
                .set(i64::try_from(self.store.memory_bytes()).unwrap_or(i64::MAX));
        }
        self.published = self.counters.clone();
    }

    /// Writes a checkpoint of this shard as it is now (between two records) and
    /// waits for it: see [`Self::begin_checkpoint`]. With exactly-once delivery
    /// its transaction then commits. Returns the checkpoint's directory and size.
    pub fn checkpoint(
        &mut self,
        root: &std::path::Path,
        id: u64,
        now_ms: i64,
        job_wm: i64,
    ) -> Result<(std::path::PathBuf, u64), ShardError> {
        self.begin_checkpoint(root, id, now_ms, job_wm)?;
        let published = match self.take_written(true) {
            Some(r) => r?,
            None => unreachable!("a begun checkpoint ends when waited for"),
        };
        // Exactly-once: the checkpoint exists before its output becomes visible;
        // the committed offsets name it (see `exactly_once`).
        let inputs = [0, 1].map(|i| self.inputs[i].source.position());
        if let Some(c) = &mut self.sinks.commit {
            c.commit(id, inputs)
                .map_err(sink_error(self.partition, "transaction"))?;
        }
        Ok(published)
    }

    /// Whether a commit follows each checkpoint (exactly-once delivery): such a
    /// checkpoint must be complete before reading goes on.
    pub fn commits_with_checkpoints(&self) -> bool {
        self.sinks.commit.is_some()
    }

    /// Starts a checkpoint of this shard as it is now (between two records):
    /// outputs so far acknowledged, then a copy of the entries changed since
    /// the last handover (the others were copied as they changed: see
    /// `ShardStore::hand_over`), the reorder buffer, offsets, watermarks and
    /// counters; a thread of its own writes them (see `snapshot`). [`Self::take_written`] tells how it ended.
    pub fn begin_checkpoint(
        &mut self,
        root: &std::path::Path,
        id: u64,
        now_ms: i64,
        job_wm: i64,
    ) -> Result<(), ShardError> {
        self.await_checkpoint()?;
        self.flush()?;
        let changes = self.store.take_changes();
        let (pending_events, pending) = self.pending.snapshot();
        let input = |i: usize| InputState {
            next_offset: self.inputs[i].source.position(),
            max_event_time: self.board.max_event_time(self.inputs[i].slot),
        };
        let manifest = CheckpointManifest {
            format_version: FORMAT_VERSION,
            shard: self.partition,
            id,
            created_ms: now_ms,
            inputs: [input(0), input(1)],
            job_watermark: job_wm,
            live_entries: self.store.live_entries(),
            pending,
            counters: self.counters.clone(),
            transactional: self.sinks.commit.is_some(),
            process_started_ms: Some(checkpoint::process_started_ms()),
            files: Vec::new(),
        };
        let snapshot = Snapshot {
            changes,
            root: root.to_path_buf(),
            pending: pending_events,
            manifest,
        };
        match InFlight::start(self.store.shared_db(), snapshot) {
            Ok(f) => self.in_flight = Some(f),
            Err(written) => self.took(written)?,
        }
        Ok(())
    }

    /// Waits for the checkpoint in flight, if any; its outcome waits for
    /// [`Self::take_written`].
    pub fn await_checkpoint(&mut self) -> Result<(), ShardError> {
        match self.in_flight.take() {
            Some(f) => self.took(f.join()),
            None => Ok(()),
        }
    }

    fn took(&mut self, w: Written) -> Result<(), ShardError> {
        if let Some(changes) = w.unwritten {
            self.store.untake(changes);
        }
        self.store.give_back(w.spare);
        self.written = Some(w.result);
        self.store.thaw()?;
        Ok(())
    }

    /// How the last checkpoint ended, once it has (waiting for it with `wait`);
    /// `None` when none ended since the last call.
    pub fn take_written(
        &mut self,
        wait: bool,
    ) -> Option<Result<(std::path::PathBuf, u64), ShardError>> {
        if (wait || self.in_flight.as_ref().is_some_and(InFlight::is_finished))
            && let Err(e) = self.await_checkpoint()
        {
            return Some(Err(e));
        }
        self.written.take()
    }

    /// Keeps the outcome of a checkpoint written by [`Self::checkpoint`] for
    /// [`Self::take_written`].
    pub fn keep_written(&mut self, outcome: Result<(std::path::PathBuf, u64), ShardError>) {
        self.written = Some(outcome);
    }

    /// Takes up a checkpoint's reorder buffer, watermarks and counters (the
    /// state store was built from its RocksDB files).
    pub fn restore(
        &mut self,
        checkpoint_dir: &std::path::Path,
        manifest: &CheckpointManifest,
    ) -> Result<(), ShardError> {
        let path = checkpoint_dir.join(PENDING);
        let bytes = std::fs::read(&path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        let events: Vec<Pending> =
            postcard::from_bytes(&bytes).map_err(|e| CheckpointError::Invalid {
                path,
                reason: e.to_string(),
            })?;
        self.pending = PendingBuffer::restore(self.cfg.pending_in_memory, events, manifest.pending);
        for (i, state) in manifest.inputs.iter().enumerate() {
            if state.max_event_time != crate::time::watermark::MIN_WM {
                self.board
                    .observe(self.inputs[i].slot, state.max_event_time);
            }
        }
        self.counters = manifest.counters.clone();
        self.published = manifest.counters.clone();
        Ok(())
    }

    /// After the end of input: compacts the shard's RocksDB so tombstones of emitted
    /// entries do not linger.
    pub fn compact_state(&self) {
        self.store.db().compact();
    }
}

impl Drop for Shard {
    /// A checkpoint thread still writing holds the shard's RocksDB open: wait
    /// for it, so that the directory can be opened again at once.
    fn drop(&mut self) {
        if let Some(f) = self.in_flight.take() {
            drop(f.join());
        }
    }
}
