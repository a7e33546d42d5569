//! `streamjoin-runtime`: the join runtime's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand, ValueEnum};
use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::control::admin::AdminServer;
use streamjoin_runtime::control::metrics::Metrics;
use streamjoin_runtime::tools::{dataset, demo, replay};

// The join allocates small, short-lived objects at a high rate on every worker thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "streamjoin-runtime",
    version,
    about = "The streamjoin impression-play join runtime"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true, env = "STREAMJOIN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs this process's shards of a Kafka job until SIGTERM.
    Run {
        /// The StreamJoinJob manifest.
        #[arg(long)]
        job: PathBuf,
        /// This process's ordinal (default: the suffix of POD_NAME).
        #[arg(long)]
        ordinal: Option<u32>,
        /// Number of processes (default: STREAMJOIN_REPLICAS, else spec.parallelism).
        #[arg(long)]
        replicas: Option<u32>,
        /// Local state and checkpoints.
        #[arg(long)]
        data_dir: PathBuf,
        /// Serve the admin API (/metrics, /healthz, /readyz, /v1/...) on this address.
        #[arg(long)]
        admin_addr: Option<String>,
        /// Write the admin endpoint's bound address to this file once it
        /// listens (useful with port 0).
        #[arg(long, requires = "admin_addr")]
        admin_addr_file: Option<PathBuf>,
        /// Worker threads (default: the number of cores, at most the owned shards).
        #[arg(long)]
        threads: Option<usize>,
        /// File holding the bearer token that mutating admin calls must carry.
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// A savepoint to restore the owned shards from (a path or file:// URL;
        /// several comma-separated when processes wrote to different places).
        /// A local checkpoint written after the savepoint takes precedence.
        #[arg(long)]
        restore_from: Option<String>,
        /// Do not restore local checkpoints created before this RFC 3339 time
        /// (a stateless start or a rollback must not resume from them).
        #[arg(long, value_parser = parse_rfc3339_ms)]
        ignore_checkpoints_before: Option<i64>,
        /// How `recovery.onMissingCheckpoint: timestamp` finds its start: `lookup`
        /// asks the broker (offsets-for-times) and falls back to `filter` when it
        /// cannot answer; `filter` reads from the earliest offset and skips records
        /// whose Kafka timestamp is older (for brokers whose lookup is unreliable).
        #[arg(long, value_enum, default_value = "lookup")]
        timestamp_recovery: TimestampRecovery,
        /// Input records per second this process reads at most, all its
        /// partitions together (a pod's share of a shared broker, or a bound on
        /// its load); time held back by it counts as busy in the busy ratio.
        /// In a pod: `spec.podTemplate.env` STREAMJOIN_MAX_INPUT_RATE.
        #[arg(long, env = "STREAMJOIN_MAX_INPUT_RATE")]
        max_input_rate: Option<u64>,
    },
    /// Bounded replay of a generator-layout directory (impressions-<p>.jsonl, plays-<p>.jsonl).
    Replay {
        /// Input directory.
        #[arg(long)]
        input: PathBuf,
        /// Output directory: entries-<p>.jsonl, _late.jsonl, _dead-letter.jsonl, _summary.json, _report.html.
        #[arg(long)]
        output: PathBuf,
        /// StreamJoinJob manifest whose join and watermark settings apply.
        #[arg(long)]
        job: Option<PathBuf>,
        /// Worker threads (default: the number of cores, at most the partitions).
        #[arg(long)]
        threads: Option<usize>,
        /// Records read from one partition per scheduling turn.
        #[arg(long, default_value_t = 1024)]
        batch_size: usize,
        /// RocksDB state directory (default: OUTPUT/.state, removed at the end).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Keep the state directory after the run.
        #[arg(long)]
        keep_state: bool,
        /// Serve /metrics, /healthz and /readyz on this address while running.
        #[arg(long)]
        admin_addr: Option<String>,
    },
    /// Savepoints in the job's savepoint store.
    #[command(subcommand)]
    Savepoints(SavepointsCommand),
    /// Writes a data set directory (manifest.json, impressions-<p>.jsonl, plays-<p>.jsonl)
    /// with the built-in generator, for `replay` and `streamjoin-reference`.
    Generate(dataset::GenerateArgs),
    /// Generates data with the built-in generator, joins it and prints a summary.
    Demo {
        /// Records to generate.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Input partitions.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Worker threads (default: the number of cores, at most the partitions).
        #[arg(long)]
        threads: Option<usize>,
        /// Target records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long, default_value = "streamjoin-demo-output")]
        output: PathBuf,
        /// StreamJoinJob manifest whose join and watermark settings apply.
        #[arg(long)]
        job: Option<PathBuf>,
        /// Serve /metrics, /healthz and /readyz on this address while running.
        #[arg(long, default_value = "127.0.0.1:9249")]
        admin_addr: String,
    },
}

#[derive(Subcommand)]
enum SavepointsCommand {
    /// Deletes whole savepoints (their manifests first), with the store settings
    /// of the job's `spec.savepoints` and the credentials in the environment.
    Delete {
        /// The StreamJoinJob manifest.
        #[arg(long)]
        job: PathBuf,
        /// Savepoint locations, as status lists them (`<savepoints.location>/<id>`).
        #[arg(required = true)]
        locations: Vec<String>,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: pod logs and files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn default_threads(partitions: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(partitions.max(1))
}

fn engine_config(job: Option<&PathBuf>) -> anyhow::Result<EngineConfig> {
    Ok(match job {
        Some(path) => EngineConfig::from_manifest_file(path)?,
        None => EngineConfig::default(),
    })
}

fn start_admin(addr: Option<&str>, metrics: &Metrics) -> Option<AdminServer> {
    let addr = addr?;
    match AdminServer::start(addr, metrics.clone()) {
        Ok(server) => {
            server
                .ready
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Some(server)
        }
        Err(e) => {
            tracing::warn!("{e}; continuing without the admin endpoint");
            None
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    match cli.command {
        Command::Run { .. } => unreachable!("handled in main"),
        Command::Replay {
            input,
            output,
            job,
            threads,
            batch_size,
            state_dir,
            keep_state,
            admin_addr,
        } => {
            let mut cfg = engine_config(job.as_ref())?;
            cfg.read_batch = batch_size.max(1);
            let partitions = replay::count_partitions(&input)? as usize;
            let _admin = start_admin(admin_addr.as_deref(), &metrics);
            let summary = replay::replay(
                cfg,
                replay::ReplayOptions {
                    input,
                    output: output.clone(),
                    threads: threads.unwrap_or_else(|| default_threads(partitions)),
                    state_dir,
                    keep_state,
                    metrics: Some(metrics),
                },
            )?;
            tracing::info!(
                records = summary.records,
                entries = summary.entries,
                late = summary.late,
                malformed = summary.malformed,
                duplicates = summary.duplicates,
                seconds = summary.elapsed_seconds,
                records_per_second = summary.records_per_second as u64,
                "replay finished; summary in {}, report with plots in {}",
                output.join(replay::SUMMARY_FILE).display(),
                output
                    .join(streamjoin_runtime::tools::report::REPORT_FILE)
                    .display()
            );
        }
        Command::Generate(args) => dataset::generate(&args)?,
        Command::Savepoints(SavepointsCommand::Delete { job, locations }) => {
            delete_savepoints(&job, &locations)?;
        }
        Command::Demo {
            events,
            partitions,
            threads,
            rate,
            seed,
            output,
            job,
            admin_addr,
        } => {
            let cfg = engine_config(job.as_ref())?;
            let _admin = start_admin(Some(&admin_addr), &metrics);
            let result = demo::run(
                cfg,
                demo::DemoOptions {
                    events,
                    partitions,
                    threads: threads.unwrap_or_else(|| default_threads(partitions as usize)),
                    rate,
                    seed,
                    output,
                    progress: true,
                    metrics: Some(metrics),
                },
            )?;
            print!("{}", demo::render(&result, 10));
        }
    }
    Ok(())
}

/// Deletes every location, then fails naming the ones that could not be deleted.
fn delete_savepoints(job: &std::path::Path, locations: &[String]) -> anyhow::Result<()> {
    let results = streamjoin_runtime::job::discard::delete(job, locations)?;
    let mut failed = Vec::new();
    for r in results {
        match r.outcome {
            Ok(objects) => println!("deleted {} ({objects} objects)", r.location),
            Err(e) => {
                eprintln!("not deleted: {e}");
                failed.push(r.location);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} savepoints not deleted: {}",
            failed.len(),
            locations.len(),
            failed.join(", ")
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimestampRecovery {
    Lookup,
    Filter,
}

fn parse_rfc3339_ms(value: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(value).map_err(|e| e.to_string())?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis();
    i64::try_from(ms).map_err(|e| e.to_string())
}

fn run_job(command: Command) -> ExitCode {
    let Command::Run {
        job,
        ordinal,
        replicas,
        data_dir,
        admin_addr,
        admin_addr_file,
        threads,
        admin_token_file,
        restore_from,
        ignore_checkpoints_before,
        timestamp_recovery,
        max_input_rate,
    } = command
    else {
        return ExitCode::FAILURE;
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            tracing::warn!("cannot watch signal {signal}: {e}");
        }
    }
    let opts = streamjoin_runtime::job::run::RunOptions {
        job,
        ordinal,
        replicas,
        data_dir,
        admin_addr,
        admin_addr_file,
        threads,
        admin_token_file,
        restore_from,
        ignore_checkpoints_before_ms: ignore_checkpoints_before,
        timestamp_filter_only: timestamp_recovery == TimestampRecovery::Filter,
        max_input_rate,
    };
    match streamjoin_runtime::job::run::run(opts, Metrics::new(), stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The pod's log (and the termination message the kubelet takes from it).
            tracing::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    if matches!(cli.command, Command::Run { .. }) {
        return run_job(cli.command);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, on stderr: the tools' users read it there, not in a log.
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and those of its causes that its message does not already quote
/// (most errors here quote their source, as `path: reason`).
fn causes(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}
