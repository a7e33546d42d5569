//! `streamjoin-runtime run`: one process of a Kafka job. It owns the shards the
//! static assignment gives its ordinal, reads their partitions of both input
//! topics, and writes entries, dead letters and late records to Kafka.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use streamjoin_api::{Delivery, OnMissingCheckpoint, StreamJoinJob};

use crate::config::{ConfigError, EngineConfig};
use crate::control::admin::{AdminServer, RuntimeHooks};
use crate::control::audit;
use crate::control::metrics::Metrics;
use crate::control::requests::Control;
use crate::control::status::{AuditStatus, Measured, StatusSources};
use crate::durability::checkpoint::CheckpointManifest;
use crate::durability::exactly_once::{Committed, parse_marker};
use crate::durability::restore::{self, Plan};
use crate::durability::savepoint::{self, SavepointStore};
use crate::engine::runner::{Engine, EngineError, EngineOptions, ShardIo};
use crate::engine::shard::ShardSinks;
use crate::engine::worker::CheckpointPlan;
use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::sink::{KafkaEntrySink, KafkaSideSink};
use crate::io::kafka::source::{PartitionPosition, SourceSpec};
use crate::io::kafka::txn::{ShardTransaction, transactional_id};
use crate::io::kafka::{
    self, KafkaSetupError, QuietEof, RuntimeConsumer, Topics, base_config, check_topics,
};
use crate::io::sink::{NullSink, SideSink};
use crate::io::source::PartitionSource;
use crate::job::assignment::{AssignmentError, ordinal_from_pod_name, owned_shards};
use crate::time::watermark::{Clock, SystemClock};

pub struct RunOptions {
    pub job: PathBuf,
    pub ordinal: Option<u32>,
    pub replicas: Option<u32>,
    pub data_dir: PathBuf,
    pub admin_addr: Option<String>,
    /// Where to write the admin endpoint's bound address once it listens, so
    /// that a supervisor or a test can ask for port 0 and learn the port.
    pub admin_addr_file: Option<PathBuf>,
    pub threads: Option<usize>,
    pub admin_token_file: Option<PathBuf>,
    pub restore_from: Option<String>,
    /// Local checkpoints created before this time (ms since the epoch) are not
    /// restored: a stateless start or a rollback must not resume from them.
    pub ignore_checkpoints_before_ms: Option<i64>,
    /// Recovery by timestamp without the broker's offsets-for-times lookup:
    /// read from the earliest offset and skip older records.
    pub timestamp_filter_only: bool,
}

/// Exit codes the operator maps to `Degraded` reasons.
pub mod exit_code {
    /// The manifest or the process layout is invalid.
    pub const INVALID_CONFIG: u8 = 2;
    /// An input or output topic is missing, or the inputs are not co-partitioned.
    pub const TOPICS: u8 = 3;
    /// No checkpoint to restore and `recovery.onMissingCheckpoint: fail`.
    pub const NO_CHECKPOINT: u8 = 4;
    /// The state or checkpoint volume cannot be used.
    pub const STATE: u8 = 5;
    /// Anything else (a broker error that outlived its retries, a sink failure).
    pub const OTHER: u8 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("job manifest {path}: {reason}")]
    Manifest { path: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot tell this process's ordinal: pass --ordinal or set POD_NAME to <statefulset>-<ordinal>"
    )]
    NoOrdinal,
    #[error("process layout: {0}")]
    Assignment(#[from] AssignmentError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error(
        "no checkpoint to restore and recovery.onMissingCheckpoint is fail; set it to earliest, latest or timestamp to start anyway"
    )]
    NoCheckpoint,
    #[error("recovery.fromTimestamp {value:?} is not an RFC 3339 time: {reason}")]
    Timestamp { value: String, reason: String },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("admin token file {path}: {reason}")]
    AdminToken { path: PathBuf, reason: String },
    #[error("{0}")]
    Savepoint(#[from] crate::durability::savepoint::SavepointError),
    #[error("savepoints.location: {0}")]
    SavepointLocation(crate::durability::savepoint::SavepointError),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Manifest { .. }
            | RunError::Config(_)
            | RunError::NoOrdinal
            | RunError::Assignment(_)
            | RunError::Timestamp { .. }
            | RunError::AdminToken { .. }
            | RunError::SavepointLocation(_) => exit_code::INVALID_CONFIG,
            RunError::Kafka(
                KafkaSetupError::MissingTopic { .. } | KafkaSetupError::PartitionMismatch { .. },
            ) => exit_code::TOPICS,
            RunError::Kafka(KafkaSetupError::MissingCredential { .. }) => exit_code::INVALID_CONFIG,
            RunError::NoCheckpoint => exit_code::NO_CHECKPOINT,
            RunError::StateDir { .. }
            | RunError::Savepoint(_)
            | RunError::Engine(EngineError::State(_)) => exit_code::STATE,
            _ => exit_code::OTHER,
        }
    }
}

fn load_job(path: &Path) -> Result<StreamJoinJob, RunError> {
    let err = |reason: String| RunError::Manifest {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let job = StreamJoinJob::from_yaml(&text).map_err(|e| err(e.to_string()))?;
    if let Err(v) = job.spec.validate() {
        return Err(err(v.to_string()));
    }
    Ok(job)
}

/// Where to start reading when there is no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

pub fn start_at(job: &StreamJoinJob) -> Result<StartAt, RunError> {
    let r = &job.spec.recovery;
    Ok(match r.on_missing_checkpoint {
        OnMissingCheckpoint::Fail => return Err(RunError::NoCheckpoint),
        OnMissingCheckpoint::Earliest => StartAt::Earliest,
        OnMissingCheckpoint::Latest => StartAt::Latest,
        OnMissingCheckpoint::Timestamp => {
            let value = r.from_timestamp.clone().unwrap_or_default();
            let t = humantime::parse_rfc3339_weak(&value).map_err(|e| RunError::Timestamp {
                value: value.clone(),
                reason: e.to_string(),
            })?;
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| RunError::Timestamp {
                    value,
                    reason: e.to_string(),
                })?
                .as_millis();
            StartAt::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
        }
    })
}

/// Start offsets for the owned partitions, and the Kafka-timestamp filter to
/// apply when the broker cannot look offsets up by time.
fn start_offsets(
    consumer: &RuntimeConsumer,
    topics: [&str; 2],
    shards: &[u32],
    start: StartAt,
    timeout: Duration,
    lookup: bool,
) -> Result<(TopicPartitionList, Option<i64>), RunError> {
    let mut tpl = TopicPartitionList::new();
    let fixed = |tpl: &mut TopicPartitionList, offset: Offset| -> Result<(), RunError> {
        for topic in topics {
            for &p in shards {
                tpl.add_partition_offset(topic, p as i32, offset)
                    .map_err(KafkaSetupError::from)?;
            }
        }
        Ok(())
    };
    match start {
        StartAt::Earliest => fixed(&mut tpl, Offset::Beginning)?,
        StartAt::Latest => fixed(&mut tpl, Offset::End)?,
        StartAt::Timestamp(ms) if !lookup => {
            tracing::info!(
                timestamp_ms = ms,
                "recovery by timestamp without lookup (--timestamp-recovery filter): reading from the earliest offset and skipping older records"
            );
            fixed(&mut tpl, Offset::Beginning)?;
            return Ok((tpl, Some(ms)));
        }
        StartAt::Timestamp(ms) => {
            let mut query = TopicPartitionList::new();
            fixed(&mut query, Offset::Offset(ms))?;
            match consumer.offsets_for_times(query, timeout) {
                Ok(found) if found.elements().iter().all(|e| e.error().is_ok()) => {
                    tracing::info!(
                        timestamp_ms = ms,
                        "recovery by timestamp: the broker looked the offsets up"
                    );
                    // Records before the time may still follow in a partition whose
                    // timestamps are not monotonic: the filter drops those too.
                    return Ok((found, Some(ms)));
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(
                        timestamp_ms = ms,
                        "recovery by timestamp: the broker cannot look offsets up by time; reading from the earliest offset and skipping older records"
                    );
                    fixed(&mut tpl, Offset::Beginning)?;
                    return Ok((tpl, Some(ms)));
                }
            }
        }
    }
    Ok((tpl, None))
}

fn consumer_config(job: &StreamJoinJob) -> Result<rdkafka::ClientConfig, KafkaSetupError> {
    let mut c = base_config(&job.spec.kafka)?;
    let group = format!(
        "streamjoin-{}",
        job.metadata.name.as_deref().unwrap_or("job")
    );
    for (k, v) in [
        ("group.id", group.as_str()),
        // Offsets live in checkpoints; commits to the group only feed lag monitoring.
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
    ]
    .into_iter()
    .chain(crate::io::kafka::CONSUMER_FETCH_SETTINGS)
    {
        c.set(k, v);
    }
    for (k, v) in &job.spec.kafka.consumer_properties {
        c.set(k, v);
    }
    Ok(c)
}

/// Fetches metadata until the brokers answer (a broker may start after us);
/// topic problems are final, connection problems are retried.
fn check_topics_with_retry(
    consumer: &RuntimeConsumer,
    topics: &Topics<'_>,
    stop: &AtomicBool,
) -> Result<Option<u32>, RunError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match check_topics(consumer, topics, Duration::from_secs(10)) {
            Ok(n) => return Ok(Some(n)),
            Err(KafkaSetupError::Client(e)) => {
                tracing::warn!("kafka brokers not reachable yet ({e}); retrying in {backoff:?}");
            }
            Err(e) => return Err(e.into()),
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Relaxed) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// How often the output is audited against `spec.audit`.
const AUDIT_INTERVAL: Duration = Duration::from_secs(60);

fn metric_sum(m: &Metrics, name: &str, filter: impl Fn(&prometheus::proto::Metric) -> bool) -> f64 {
    m.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|x| filter(x))
        .map(|x| x.get_counter().get_value())
        .sum()
}

fn audit_totals(m: &Metrics) -> audit::AuditTotals {
    let all = |_: &prometheus::proto::Metric| true;
    audit::AuditTotals {
        records: metric_sum(m, "streamjoin_records_in_total", all),
        malformed: metric_sum(m, "streamjoin_malformed_records_total", all),
        late: metric_sum(m, "streamjoin_late_records_total", all),
        entries: metric_sum(m, "streamjoin_output_records_total", |x| {
            x.get_label()
                .iter()
                .any(|l| l.name() == "output" && l.value() == "entries")
        }),
        entries_with_plays: metric_sum(m, "streamjoin_entries_with_plays_total", all),
    }
}

/// Reads the admin token; checked at start so a missing Secret is reported,
/// not discovered at the first mutating call.
fn read_token(path: &Path) -> Result<String, RunError> {
    let token = std::fs::read_to_string(path).map_err(|e| RunError::AdminToken {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(RunError::AdminToken {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    Ok(token)
}

fn clear_dir(path: &Path) -> Result<(), RunError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|source| RunError::StateDir {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::create_dir_all(path).map_err(|source| RunError::StateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// The consumer group's committed offsets of each shard's two input partitions,
/// with the checkpoint their metadata names (exactly-once).
fn committed_markers(
    consumer: &RuntimeConsumer,
    topics: [&str; 2],
    shards: &[u32],
) -> Result<std::collections::BTreeMap<u32, Committed>, RunError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for &p in shards {
            tpl.add_partition(topic, p as i32);
        }
    }
    let found = consumer
        .committed_offsets(tpl, Duration::from_secs(60))
        .map_err(KafkaSetupError::from)?;
    let mut out = std::collections::BTreeMap::new();
    for &p in shards {
        let mut c = Committed::default();
        for (i, topic) in topics.iter().enumerate() {
            if let Some(e) = found.find_partition(topic, p as i32) {
                if let Offset::Offset(o) = e.offset() {
                    c.offsets[i] = Some(o);
                }
                if let Some(id) = parse_marker(e.metadata()) {
                    c.marker = Some(c.marker.map_or(id, |m: u64| m.min(id)));
                }
            }
        }
        tracing::info!(shard = p, marker = ?c.marker, offsets = ?c.offsets, "committed offsets");
        out.insert(p, c);
    }
    Ok(out)
}

/// Written aside and renamed, so a reader never sees a partial address.
fn write_admin_addr(path: &Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    std::fs::write(&aside, format!("{addr}\n"))?;
    std::fs::rename(&aside, path)
}

/// Runs until `stop` is set (SIGTERM) or a fatal error.
pub fn run(opts: RunOptions, metrics: Metrics, stop: Arc<AtomicBool>) -> Result<(), RunError> {
    // Pinned now: checkpoints record when their process started.
    crate::durability::checkpoint::process_started_ms();
    let job = load_job(&opts.job)?;
    let cfg = EngineConfig::from_spec(&job.spec)?;
    let token = opts
        .admin_token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    let savepoint_location = job
        .spec
        .savepoints
        .location
        .as_deref()
        .map(SavepointStore::open)
        .transpose()
        .map_err(RunError::SavepointLocation)?;
    let restore_from = opts
        .restore_from
        .as_deref()
        .map(savepoint::parse_restore_from)
        .transpose()?
        .unwrap_or_default();
    let ordinal = match opts.ordinal {
        Some(o) => o,
        None => std::env::var("POD_NAME")
            .ok()
            .as_deref()
            .and_then(ordinal_from_pod_name)
            .ok_or(RunError::NoOrdinal)?,
    };
    let replicas = opts
        .replicas
        .or_else(|| std::env::var("STREAMJOIN_REPLICAS").ok()?.parse().ok())
        .unwrap_or(u32::try_from(job.spec.parallelism).unwrap_or(1));
    let spec = &job.spec;
    let admin = match &opts.admin_addr {
        Some(addr) => Some(
            AdminServer::start_with_token(addr, metrics.clone(), token).map_err(|e| {
                RunError::Manifest {
                    path: "--admin-addr".into(),
                    reason: e.to_string(),
                }
            })?,
        ),
        None => None,
    };
    if let (Some(admin), Some(path)) = (&admin, &opts.admin_addr_file) {
        write_admin_addr(path, admin.addr).map_err(|e| RunError::Manifest {
            path: "--admin-addr-file".into(),
            reason: format!("{}: {e}", path.display()),
        })?;
    }

    let consumer: Arc<RuntimeConsumer> = Arc::new(
        consumer_config(&job)?
            .create_with_context(QuietEof)
            .map_err(KafkaSetupError::from)?,
    );
    let late_topic = spec.late_output.as_ref().map(|t| t.topic.as_str());
    let mut outputs = vec![
        (spec.output.topic.as_str(), "output.topic"),
        (spec.dead_letter.topic.as_str(), "deadLetter.topic"),
    ];
    if let Some(t) = late_topic {
        outputs.push((t, "lateOutput.topic"));
    }
    let topics = Topics {
        impressions: &spec.inputs.impressions.topic,
        plays: &spec.inputs.plays.topic,
        outputs,
    };
    let Some(partitions) = check_topics_with_retry(&consumer, &topics, &stop)? else {
        return Ok(());
    };
    let shards = owned_shards(ordinal, replicas, partitions)?;
    tracing::info!(ordinal, replicas, partitions, ?shards, "static assignment");
    let input_topics = [topics.impressions, topics.plays];

    // Output producers: one idempotent producer for the process, or for
    // exactly-once one transactional producer per shard, created before the
    // restore so that their init aborts what a previous owner left open.
    let exactly_once = spec.delivery == Delivery::ExactlyOnce;
    let overrides: Vec<(String, String)> = spec
        .kafka
        .producer_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let interval = Duration::from_millis(
        u64::try_from(spec.checkpoints.interval.as_millis_i64()).unwrap_or(60_000),
    );
    let mut producers: Vec<(u32, Arc<KafkaProducer>)> = Vec::with_capacity(shards.len());
    if exactly_once {
        let job_name = job.metadata.name.as_deref().unwrap_or("job");
        let timeout = (interval * 3 + Duration::from_secs(30))
            .clamp(Duration::from_secs(60), Duration::from_secs(900));
        for &p in &shards {
            let id = transactional_id(job_name, p);
            let producer = KafkaProducer::transactional(
                base_config(&spec.kafka)?,
                &overrides,
                stop.clone(),
                &id,
                timeout,
            )
            .map_err(KafkaSetupError::from)?;
            tracing::info!(shard = p, transactional_id = %id, "transactions initialised");
            producers.push((p, producer));
        }
    } else {
        let producer = KafkaProducer::new(base_config(&spec.kafka)?, &overrides, stop.clone())
            .map_err(KafkaSetupError::from)?;
        producers.extend(shards.iter().map(|&p| (p, producer.clone())));
    }
    let committed = if exactly_once {
        Some(committed_markers(&consumer, input_topics, &shards)?)
    } else {
        None
    };

    // Each owned shard restores from its newest valid checkpoint, or from the
    // savepoint when that is newer; shards with neither start as
    // recovery.onMissingCheckpoint says.
    let restore_started = Instant::now();
    let checkpoint_root = opts.data_dir.join("checkpoints");
    let download_root = opts.data_dir.join("restore");
    let staging_root = opts.data_dir.join("savepoint-staging");
    clear_dir(&download_root)?;
    clear_dir(&staging_root)?;
    let (plans, skipped) = restore::plan(
        &shards,
        &checkpoint_root,
        &restore_from,
        opts.ignore_checkpoints_before_ms,
        &download_root,
        committed.as_ref(),
    )
    .map_err(|e| match e {
        restore::RestoreError::Savepoint(e) => RunError::Savepoint(e),
        other => RunError::StateDir {
            path: checkpoint_root.clone(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    metrics
        .checkpoints
        .restore_fallbacks
        .inc_by(u64::from(skipped));
    let mut restored: Vec<(u32, PathBuf, CheckpointManifest)> = Vec::new();
    let mut fresh: Vec<u32> = Vec::new();
    for (p, plan) in plans {
        match plan {
            Plan::Restore {
                dir,
                manifest,
                from_savepoint,
            } => {
                tracing::info!(
                    shard = p,
                    id = manifest.id,
                    from_savepoint,
                    "restoring from {}",
                    dir.display()
                );
                restored.push((p, dir, *manifest));
            }
            Plan::Fresh => fresh.push(p),
        }
    }
    let (mut assignment, skip_before) = if fresh.is_empty() {
        (TopicPartitionList::new(), None)
    } else {
        let start = start_at(&job)?;
        tracing::info!(shards = ?fresh, ?start, "no checkpoint to restore");
        start_offsets(
            &consumer,
            input_topics,
            &fresh,
            start,
            Duration::from_secs(30),
            !opts.timestamp_filter_only,
        )?
    };
    for (p, _, manifest) in &restored {
        for (topic, input) in input_topics.iter().zip(manifest.inputs.iter()) {
            let offset = match input.next_offset {
                Some(n) => Offset::Offset(n),
                None => Offset::Beginning,
            };
            assignment
                .add_partition_offset(topic, *p as i32, offset)
                .map_err(KafkaSetupError::from)?;
        }
    }
    let last_id = restored.iter().map(|r| r.2.id).max().unwrap_or(0);

    // Every owned partition's source, made before the assignment (see
    // `open_then_assign`), in shard order: impressions, then plays.
    let mut specs = Vec::with_capacity(shards.len() * 2);
    for &p in &shards {
        let restore = restored.iter().find(|r| r.0 == p);
        let skip = if restore.is_some() { None } else { skip_before };
        let starts = restore.map_or([None, None], |r| r.2.inputs.map(|i| i.next_offset));
        for (topic, start) in input_topics.into_iter().zip(starts) {
            specs.push(SourceSpec {
                topic,
                partition: p as i32,
                skip_before_ms: skip,
                start,
            });
        }
    }
    let opened = kafka::source::open_then_assign(&consumer, &specs, &assignment).map_err(|e| {
        KafkaSetupError::Metadata {
            topic: format!("{} and {}", input_topics[0], input_topics[1]),
            reason: e.to_string(),
        }
    })?;
    let mut positions: Vec<(String, i32, Arc<PartitionPosition>)> = Vec::new();
    let mut by_shard: std::collections::BTreeMap<u32, Vec<Box<dyn PartitionSource>>> =
        std::collections::BTreeMap::new();
    for (spec, (source, position)) in specs.iter().zip(opened) {
        positions.push((spec.topic.to_owned(), spec.partition, position));
        by_shard
            .entry(spec.partition as u32)
            .or_default()
            .push(Box::new(source));
    }

    let mut io = Vec::with_capacity(shards.len());
    for &(p, ref producer) in &producers {
        let restore = restored
            .iter()
            .find(|r| r.0 == p)
            .map(|r| (r.1.clone(), r.2.clone()));
        let Some([imp, play]) = by_shard
            .remove(&p)
            .and_then(|sources| <[_; 2]>::try_from(sources).ok())
        else {
            return Err(KafkaSetupError::Metadata {
                topic: input_topics[0].to_owned(),
                reason: format!("no sources were opened for shard {p}"),
            }
            .into());
        };
        let late: Box<dyn SideSink> = match late_topic {
            Some(t) => Box::new(KafkaSideSink::new(producer.clone(), t)),
            None => Box::new(NullSink),
        };
        io.push(ShardIo {
            partition: p,
            sources: [imp, play],
            sinks: ShardSinks {
                entries: Box::new(
                    KafkaEntrySink::new(producer.clone(), &spec.output.topic)
                        .map_err(KafkaSetupError::from)?,
                ),
                late,
                dead_letter: Box::new(KafkaSideSink::new(
                    producer.clone(),
                    &spec.dead_letter.topic,
                )),
                commit: None,
            },
            restore,
        });
    }
    if exactly_once {
        for (io, (p, producer)) in io.iter_mut().zip(&producers) {
            let found = committed
                .as_ref()
                .and_then(|c| c.get(p))
                .map_or([None, None], |c| c.offsets);
            io.sinks.commit = Some(Box::new(ShardTransaction::new(
                producer.clone(),
                consumer.clone(),
                [input_topics[0].to_owned(), input_topics[1].to_owned()],
                *p as i32,
                found.map(|o| o.unwrap_or(0)),
            )));
        }
    }

    // The working state is rebuilt from the checkpoints at every start.
    let state_dir = opts.data_dir.join("state");
    clear_dir(&state_dir)?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, shards.len());
    let plan = CheckpointPlan {
        root: checkpoint_root,
        interval_ms: spec.checkpoints.interval.as_millis_i64().max(1),
        // Exactly-once may have to pass over the newest checkpoint (its
        // transaction not committed): the one before must still be there.
        retained: if exactly_once {
            (spec.checkpoints.retained as usize).max(2)
        } else {
            spec.checkpoints.retained as usize
        },
        metrics: Some(metrics.checkpoints.clone()),
    };
    let control = Control::new(threads, staging_root, savepoint_location.is_some());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let monitor_metrics = metrics.clone();
    let audit_spec = spec.audit.clone();
    let mut engine = Engine::new(
        cfg,
        io,
        EngineOptions {
            threads,
            metrics: Some(metrics),
            checkpoints: Some((plan, last_id)),
            control: Some(control.clone()),
            clock: clock.clone(),
            ..EngineOptions::new(state_dir)
        },
    )?;
    monitor_metrics
        .checkpoints
        .restore_seconds
        .set(restore_started.elapsed().as_secs_f64());
    tracing::info!(
        seconds = restore_started.elapsed().as_secs_f64(),
        restored = restored.len(),
        "shards restored"
    );

    let measured = Arc::new(Mutex::new(Measured::default()));
    if let Some(a) = &admin {
        let sources = StatusSources {
            ordinal,
            replicas,
            partitions,
            shards: shards.clone(),
            topics: [input_topics[0].to_owned(), input_topics[1].to_owned()],
            positions: positions.clone(),
            board: engine.board.clone(),
            clock: clock.clone(),
            metrics: monitor_metrics.clone(),
            control: control.clone(),
            data_dir: opts.data_dir.clone(),
            measured: measured.clone(),
        };
        a.install(RuntimeHooks {
            status: Box::new(move || {
                serde_json::to_value(sources.snapshot()).unwrap_or(serde_json::Value::Null)
            }),
            control: control.clone(),
            savepoints: savepoint_location.clone(),
            ordinal,
            replicas,
            partitions,
            board: engine.board.clone(),
            clock: clock.clone(),
        });
    }

    // The main queue still carries client events (errors, statistics): serve it.
    let poller = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Err(e)) => tracing::warn!("consumer: {e}"),
                    Some(Ok(m)) => {
                        use rdkafka::Message;
                        // No shard will see this record. Stopping normally would
                        // checkpoint past it; ending now restarts from the last
                        // checkpoint, which reads it again.
                        tracing::error!(
                            topic = m.topic(),
                            partition = m.partition(),
                            offset = m.offset(),
                            "a record reached the consumer's main queue instead of its partition's; exiting without a checkpoint"
                        );
                        std::process::exit(i32::from(exit_code::OTHER));
                    }
                    None => {}
                }
            }
        })
    };
    if let Some(a) = &admin {
        a.ready.store(true, Relaxed);
    }
    let mut last_commit = Instant::now();
    // Lag monitoring only; with exactly-once the transactions commit the offsets
    // (with the checkpoint marker, which a plain commit would overwrite).
    let commit = |positions: &[(String, i32, Arc<PartitionPosition>)]| {
        if exactly_once {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, p, pos) in positions {
            let next = pos.next_offset.load(Relaxed);
            if next >= 0 {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(next));
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!("offset commit for lag monitoring failed: {e}");
        }
    };
    let lag = |positions: &[(String, i32, Arc<PartitionPosition>)]| {
        let mut out = std::collections::BTreeMap::new();
        for (topic, p, pos) in positions {
            if let Some((low, high)) = kafka::batch::cached_watermarks(&consumer, topic, *p) {
                let next = pos.next_offset.load(Relaxed).max(low.unwrap_or(0));
                let lag = (high - next).max(0);
                monitor_metrics
                    .checkpoints
                    .consumer_lag
                    .with_label_values(&[topic.as_str(), &p.to_string()])
                    .set(lag);
                out.insert((topic.clone(), *p), lag);
            }
        }
        out
    };
    let mut last_audit = Instant::now();
    let mut audit_base = audit_totals(&monitor_metrics);
    let mut rate_base: Option<(Instant, u64, u64)> = None;
    let workers = threads as f64;
    let result = engine.run(&stop, Duration::from_secs(1), |progress| {
        // Input rate and busy ratio over the last tick.
        let now = Instant::now();
        if let Some((at, records, idle)) = rate_base {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let mut m = measured.lock().unwrap_or_else(|p| p.into_inner());
                m.records_in_per_second =
                    Some(progress.records_read.saturating_sub(records) as f64 / secs);
                let idle_secs = progress.idle_nanos.saturating_sub(idle) as f64 / 1e9;
                m.busy_ratio = Some((1.0 - idle_secs / (secs * workers)).clamp(0.0, 1.0));
            }
        }
        rate_base = Some((now, progress.records_read, progress.idle_nanos));
        if last_commit.elapsed() >= Duration::from_secs(5) {
            last_commit = Instant::now();
            commit(&positions);
            let l = lag(&positions);
            measured.lock().unwrap_or_else(|p| p.into_inner()).lag = l;
        }
        if last_audit.elapsed() >= AUDIT_INTERVAL {
            last_audit = Instant::now();
            let now = audit_totals(&monitor_metrics);
            let checks = audit::audit(&audit_base, &now, &audit_spec);
            for c in &checks {
                let m = &monitor_metrics.checkpoints;
                if let Some(r) = c.ratio {
                    m.audit_ratio.with_label_values(&[c.name]).set(r);
                }
                m.audit_breached
                    .with_label_values(&[c.name])
                    .set(i64::from(c.breached));
                if c.breached {
                    tracing::warn!(check = c.name, ratio = c.ratio, "audit bound breached");
                }
            }
            measured.lock().unwrap_or_else(|p| p.into_inner()).audit =
                checks.iter().map(AuditStatus::from).collect();
            audit_base = now;
        }
    });
    stop.store(true, Relaxed);
    commit(&positions);
    if skip_before.is_some() {
        let skipped: u64 = positions.iter().map(|p| p.2.skipped.load(Relaxed)).sum();
        tracing::info!(
            skipped,
            "recovery by timestamp: {skipped} records older than the recovery time were skipped"
        );
    }
    if poller.join().is_err() {
        tracing::error!("the consumer event thread panicked");
    }
    drop(admin);
    result?;
    tracing::info!("stopped");
    Ok(())
}
