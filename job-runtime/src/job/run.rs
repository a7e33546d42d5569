//! `streamjoin-runtime run`: one process of a Kafka job. It owns the shards the
//! static assignment gives its ordinal, reads their partitions of both input
//! topics, and writes entries, dead letters and late records to Kafka. The
//! steps are in the files beside this one: `connect` (Kafka), `recovery`
//! (where each shard starts), `monitor` (what is measured while it runs).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use streamjoin_api::{Delivery, StreamJoinJob, StreamJoinJobSpec};

use crate::config::EngineConfig;
use crate::control::admin::{AdminServer, RuntimeHooks};
use crate::control::admin_token::AdminToken;
use crate::control::metrics::Metrics;
use crate::control::requests::Control;
use crate::control::status::{Measured, StatusSources};
use crate::durability::savepoint::{self, SavepointStore};
use crate::engine::runner::{Engine, EngineOptions, ShardIo};
use crate::engine::worker::CheckpointPlan;
use crate::io::kafka::RuntimeConsumer;
use crate::io::kafka::producer::KafkaProducer;
use crate::job::assignment::{ordinal_from_pod_name, owned_shards};
use crate::job::connect::{self, Position};
use crate::job::error::RunError;
use crate::job::monitor::Monitor;
use crate::job::recovery::{self, clear_dir};
use crate::job::startup::StartupPhases;
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
    /// Input records per second this process reads at most (all its partitions).
    pub max_input_rate: Option<u64>,
}

pub(crate) fn load_job(path: &Path) -> Result<StreamJoinJob, RunError> {
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
    let mut phases = StartupPhases::new();
    let Prepared {
        job,
        cfg,
        savepoint_location,
        restore_from,
        ordinal,
        replicas,
        admin,
    } = prepare(&opts, &metrics)?;
    let spec = &job.spec;
    phases.mark("prepare");

    let consumer = connect::consumer(&job)?;
    phases.mark("consumer");
    let topics = connect::topics(&job);
    if let Some(a) = &admin {
        a.waiting_for("connecting to the kafka brokers");
    }
    let waiting = |why: String| {
        if let Some(a) = &admin {
            a.waiting_for(why);
        }
    };
    let Some(partitions) = connect::check_topics_with_retry(&consumer, &topics, &stop, &waiting)?
    else {
        return Ok(());
    };
    phases.mark("topics");
    let shards = owned_shards(ordinal, replicas, partitions)?;
    tracing::info!(ordinal, replicas, partitions, ?shards, "static assignment");
    waiting("opening the shards' state (restoring it when there is a checkpoint)".to_owned());
    let input_topics = [topics.impressions, topics.plays];

    let exactly_once = spec.delivery == Delivery::ExactlyOnce;
    let producers = connect::producers(&job, &shards, exactly_once, &stop)?;
    phases.mark("producers");
    let Opened {
        io,
        positions,
        skip_before,
        last_id,
        restored,
        restore_started,
    } = restore_and_open(
        &opts,
        &job,
        &consumer,
        &shards,
        &producers,
        &restore_from,
        &metrics,
    )?;
    phases.mark("restore and sources");

    // The working state is rebuilt from the checkpoints at every start.
    let state_dir = opts.data_dir.join("state");
    clear_dir(&state_dir)?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, shards.len());
    let checkpoint_root = opts.data_dir.join("checkpoints");
    let plan = checkpoint_plan(spec, checkpoint_root, exactly_once, &metrics);
    let staging_root = opts.data_dir.join("savepoint-staging");
    let control = Control::new(threads, staging_root, savepoint_location.is_some());
    phases.mark("clear state");
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
            input_rate: opts
                .max_input_rate
                .map(|r| Arc::new(crate::engine::rate::InputRateLimit::new(r))),
            ..EngineOptions::new(state_dir)
        },
    )?;
    phases.mark("shards");
    report_restore(&monitor_metrics, restore_started, restored);

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
        install_hooks(a, sources, savepoint_location.clone());
    }

    let poller = connect::serve_main_queue(consumer.clone(), stop.clone());
    if let Some(a) = &admin {
        a.ready.store(true, Relaxed);
    }
    phases.mark("ready");
    tracing::info!(
        seconds = phases.total_seconds(),
        phases = %phases.summary(),
        "started"
    );
    let mut monitor = Monitor::new(
        consumer.clone(),
        positions,
        exactly_once,
        monitor_metrics,
        measured,
        audit_spec,
        threads,
    );
    let result = engine.run(&stop, Duration::from_secs(1), |progress| {
        monitor.tick(progress)
    });
    stop.store(true, Relaxed);
    shut_down(&mut monitor, skip_before.is_some(), poller);
    drop(admin);
    result?;
    tracing::info!("stopped");
    Ok(())
}

fn report_restore(metrics: &Metrics, started: Instant, restored: usize) {
    let seconds = started.elapsed().as_secs_f64();
    metrics.checkpoints.restore_seconds.set(seconds);
    tracing::info!(seconds, restored, "shards restored");
}

/// After the engine stopped: the last offsets committed, what a recovery by
/// timestamp skipped, the consumer's event thread joined.
fn shut_down(monitor: &mut Monitor, by_timestamp: bool, poller: std::thread::JoinHandle<()>) {
    monitor.commit();
    if by_timestamp {
        let skipped = monitor.skipped();
        tracing::info!(
            skipped,
            "recovery by timestamp: {skipped} records older than the recovery time were skipped"
        );
    }
    if poller.join().is_err() {
        tracing::error!("the consumer event thread panicked");
    }
}

/// What the options and the manifest give before Kafka is touched.
struct Prepared {
    job: StreamJoinJob,
    cfg: EngineConfig,
    savepoint_location: Option<SavepointStore>,
    restore_from: Vec<SavepointStore>,
    ordinal: u32,
    replicas: u32,
    admin: Option<AdminServer>,
}

/// Reads the manifest, the admin token and the savepoint locations, finds this
/// process's place in the job and starts the admin API.
fn prepare(opts: &RunOptions, metrics: &Metrics) -> Result<Prepared, RunError> {
    let job = load_job(&opts.job)?;
    let cfg = EngineConfig::from_spec(&job.spec)?;
    let token = opts
        .admin_token_file
        .as_deref()
        .map(|path| Ok::<_, RunError>(AdminToken::file(path.to_path_buf(), &read_token(path)?)))
        .transpose()?;
    let store_settings = savepoint::StoreSettings::from_spec(&job.spec.savepoints);
    let savepoint_location = job
        .spec
        .savepoints
        .location
        .as_deref()
        .map(|l| SavepointStore::open(l, &store_settings))
        .transpose()
        .map_err(RunError::SavepointLocation)?;
    let restore_from = opts
        .restore_from
        .as_deref()
        .map(|v| savepoint::parse_restore_from(v, &store_settings))
        .transpose()?
        .unwrap_or_default();
    let ordinal = ordinal(opts)?;
    let replicas = opts
        .replicas
        .or_else(|| std::env::var("STREAMJOIN_REPLICAS").ok()?.parse().ok())
        .unwrap_or(u32::try_from(job.spec.parallelism).unwrap_or(1));
    let admin = start_admin(opts, metrics, token)?;
    Ok(Prepared {
        job,
        cfg,
        savepoint_location,
        restore_from,
        ordinal,
        replicas,
        admin,
    })
}

/// The owned shards restored and opened on Kafka, ready for the engine.
struct Opened {
    io: Vec<ShardIo>,
    positions: Vec<Position>,
    /// Recovery by timestamp: records before this time are skipped.
    skip_before: Option<i64>,
    /// The newest checkpoint id restored (checkpoint ids go on from it).
    last_id: u64,
    /// How many shards were restored from a checkpoint or savepoint.
    restored: usize,
    restore_started: Instant,
}

/// Restores each owned shard (see [`recovery`]): from its newest valid
/// checkpoint, or from the savepoint when that is newer, or fresh; then opens
/// its sources at the offsets that gives and its sinks on `producers`.
fn restore_and_open(
    opts: &RunOptions,
    job: &StreamJoinJob,
    consumer: &Arc<RuntimeConsumer>,
    shards: &[u32],
    producers: &[(u32, Arc<KafkaProducer>)],
    restore_from: &[SavepointStore],
    metrics: &Metrics,
) -> Result<Opened, RunError> {
    let spec = &job.spec;
    let input_topics = [
        spec.inputs.impressions.topic.as_str(),
        spec.inputs.plays.topic.as_str(),
    ];
    let exactly_once = spec.delivery == Delivery::ExactlyOnce;
    let committed = if exactly_once {
        Some(recovery::committed_markers(consumer, input_topics, shards)?)
    } else {
        None
    };

    let restore_started = Instant::now();
    let checkpoint_root = opts.data_dir.join("checkpoints");
    let download_root = opts.data_dir.join("restore");
    let staging_root = opts.data_dir.join("savepoint-staging");
    clear_dir(&download_root)?;
    clear_dir(&staging_root)?;
    let (restored, fresh) = recovery::plan_restore(
        shards,
        &checkpoint_root,
        restore_from,
        opts.ignore_checkpoints_before_ms,
        &download_root,
        committed.as_ref(),
        metrics,
    )?;
    let (assignment, skip_before) = recovery::assignment(
        consumer,
        job,
        input_topics,
        &restored,
        &fresh,
        !opts.timestamp_filter_only,
    )?;
    let last_id = restored.iter().map(|r| r.2.id).max().unwrap_or(0);
    let (positions, by_shard) = connect::open_sources(
        consumer,
        input_topics,
        shards,
        &restored,
        skip_before,
        &assignment,
    )?;
    let mut io = connect::shard_io(job, producers, &restored, by_shard, input_topics)?;
    if exactly_once {
        connect::add_transactions(
            &mut io,
            producers,
            committed.as_ref(),
            consumer,
            input_topics,
        );
    }
    Ok(Opened {
        io,
        positions,
        skip_before,
        last_id,
        restored: restored.len(),
        restore_started,
    })
}

/// This process's ordinal: `--ordinal`, else the StatefulSet pod name's suffix.
fn ordinal(opts: &RunOptions) -> Result<u32, RunError> {
    Ok(match opts.ordinal {
        Some(o) => o,
        None => std::env::var("POD_NAME")
            .ok()
            .as_deref()
            .and_then(ordinal_from_pod_name)
            .ok_or(RunError::NoOrdinal)?,
    })
}

/// The admin API, listening before the (possibly long) restore so that probes
/// and `/metrics` answer; its address written to `--admin-addr-file`.
fn start_admin(
    opts: &RunOptions,
    metrics: &Metrics,
    token: Option<AdminToken>,
) -> Result<Option<AdminServer>, RunError> {
    let admin = match &opts.admin_addr {
        Some(addr) => Some(
            AdminServer::start_with_token_source(addr, metrics.clone(), token).map_err(|e| {
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
    Ok(admin)
}

fn checkpoint_plan(
    spec: &StreamJoinJobSpec,
    root: PathBuf,
    exactly_once: bool,
    metrics: &Metrics,
) -> CheckpointPlan {
    CheckpointPlan {
        root,
        interval_ms: spec.checkpoints.interval.as_millis_i64().max(1),
        // Exactly-once may have to pass over the newest checkpoint (its
        // transaction not committed): the one before must still be there.
        retained: if exactly_once {
            (spec.checkpoints.retained as usize).max(2)
        } else {
            spec.checkpoints.retained as usize
        },
        metrics: Some(metrics.checkpoints.clone()),
    }
}

/// The admin API's view of this process: its status document and what its
/// savepoint endpoints act on.
fn install_hooks(admin: &AdminServer, sources: StatusSources, savepoints: Option<SavepointStore>) {
    let control = sources.control.clone();
    let board = sources.board.clone();
    let clock = sources.clock.clone();
    let (ordinal, replicas, partitions) = (sources.ordinal, sources.replicas, sources.partitions);
    admin.install(RuntimeHooks {
        status: Box::new(move || {
            serde_json::to_value(sources.snapshot()).unwrap_or(serde_json::Value::Null)
        }),
        control,
        savepoints,
        ordinal,
        replicas,
        partitions,
        board,
        clock,
    });
}
