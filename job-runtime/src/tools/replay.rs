//! Bounded replay of a generator-layout directory into an output directory.
//!
//! Output layout: `entries-<p>.jsonl` per shard; side outputs and the summary
//! carry a leading underscore (`_late.jsonl`, `_dead-letter.jsonl`,
//! `_summary.json`, `_report.html`) so that tools reading "every file of the directory" as
//! entries (such as the oracle's `compare`) skip them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::config::EngineConfig;
use crate::control::metrics::Metrics;
use crate::engine::runner::{Engine, EngineError, EngineOptions, ShardIo};
use crate::engine::shard::ShardSinks;
use crate::io::sink::{FileEntrySink, SharedFile, SinkError};
use crate::io::source::{FileSource, PartitionSource, SourceError};
use crate::model::record::Input;
use crate::tools::report::{self, Recorder, Report, ReportError};
use crate::tools::summary::{DirBytes, Summary, dir_bytes};

pub const LATE_FILE: &str = "_late.jsonl";
pub const DEAD_LETTER_FILE: &str = "_dead-letter.jsonl";
pub const SUMMARY_FILE: &str = "_summary.json";

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("input directory {0} has no impressions-<p>.jsonl / plays-<p>.jsonl files")]
    NoInput(PathBuf),
    #[error("input directory {dir} lacks {missing}")]
    MissingFile { dir: PathBuf, missing: String },
    #[error("cannot read input directory {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create output directory {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("cannot write summary {path}: {source}")]
    Summary {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The sinks of shard `p` writing into an output directory: its own entries
/// file, and the shared side-output files.
pub fn file_sinks(
    output: &Path,
    p: u32,
    late: &SharedFile,
    dead: &SharedFile,
) -> Result<ShardSinks, SinkError> {
    Ok(ShardSinks {
        entries: Box::new(FileEntrySink::create(
            &output.join(format!("entries-{p}.jsonl")),
        )?),
        late: Box::new(late.sink()),
        dead_letter: Box::new(dead.sink()),
        commit: None,
    })
}

/// Counts input partitions from the file names (`impressions-<p>.jsonl`).
pub fn count_partitions(dir: &Path) -> Result<u32, ReplayError> {
    let read = std::fs::read_dir(dir).map_err(|source| ReplayError::Input {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut max = None;
    for entry in read.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        for prefix in ["impressions-", "plays-"] {
            if let Some(p) = name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                max = Some(max.map_or(p, |m: u32| m.max(p)));
            }
        }
    }
    let partitions = max
        .map(|m| m + 1)
        .ok_or_else(|| ReplayError::NoInput(dir.to_path_buf()))?;
    for p in 0..partitions {
        for input in Input::ALL {
            let name = format!("{}-{p}.jsonl", input.name());
            if !dir.join(&name).exists() {
                return Err(ReplayError::MissingFile {
                    dir: dir.to_path_buf(),
                    missing: name,
                });
            }
        }
    }
    Ok(partitions)
}

/// Options of one replay run.
pub struct ReplayOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    pub threads: usize,
    pub state_dir: Option<PathBuf>,
    pub keep_state: bool,
    pub metrics: Option<Metrics>,
}

/// Replays the directory; returns the summary (also written to `_summary.json`).
pub fn replay(cfg: EngineConfig, opts: ReplayOptions) -> Result<Summary, ReplayError> {
    let partitions = count_partitions(&opts.input)?;
    std::fs::create_dir_all(&opts.output).map_err(|source| ReplayError::Output {
        path: opts.output.clone(),
        source,
    })?;
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| opts.output.join(".state"));
    if state_dir.exists() {
        // Replay starts from empty state; stale shards would double-count.
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let late = SharedFile::create(&opts.output.join(LATE_FILE))?;
    let dead = SharedFile::create(&opts.output.join(DEAD_LETTER_FILE))?;
    let mut io = Vec::new();
    for p in 0..partitions {
        let open = |input: Input| -> Result<Box<dyn PartitionSource>, ReplayError> {
            let path = opts.input.join(format!("{}-{p}.jsonl", input.name()));
            Ok(Box::new(FileSource::open(&path)?))
        };
        io.push(ShardIo {
            partition: p,
            sources: [open(Input::Impressions)?, open(Input::Plays)?],
            sinks: file_sinks(&opts.output, p, &late, &dead)?,
            restore: None,
        });
    }
    let threads = opts.threads.max(1);
    let mut eo = EngineOptions::new(state_dir.clone());
    eo.threads = threads;
    // The report's state plots read what the shards publish to the metrics.
    eo.metrics = Some(opts.metrics.clone().unwrap_or_default());
    let started = Instant::now();
    let mut recorder = Recorder::since(started);
    let mut engine = Engine::new(cfg, io, eo)?;
    let stop = AtomicBool::new(false);
    let mut peak_live = 0;
    let mut disk_peak = DirBytes::default();
    engine.run(&stop, Duration::from_millis(100), |p| {
        peak_live = peak_live.max(p.live_entries);
        disk_peak = disk_peak.max(dir_bytes(&state_dir));
        recorder.record(&p)
    })?;
    let elapsed = started.elapsed();
    let mut summary = Summary::new(
        &engine.counters(),
        engine.live_entries(),
        partitions,
        engine.workers.len(),
        elapsed,
    );
    drop(engine);
    let disk_end = dir_bytes(&state_dir);
    disk_peak = disk_peak.max(disk_end);
    summary.peak_live_entries = summary.peak_live_entries.max(peak_live);
    summary.state_dir_bytes_peak = Some(disk_peak.total);
    summary.state_data_bytes_peak = Some(disk_peak.data);
    summary.state_dir_bytes_at_end = Some(disk_end.total);
    if !opts.keep_state {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    write_summary(&opts.output.join(SUMMARY_FILE), &summary)?;
    report::write(
        &opts.output,
        &Report {
            verb: "replay",
            output: &opts.output,
            summary: &summary,
            samples: recorder.samples(),
        },
    )?;
    Ok(summary)
}

pub fn write_summary(path: &Path, summary: &Summary) -> Result<(), ReplayError> {
    let text = serde_json::to_string_pretty(summary).unwrap_or_else(|e| unreachable!("{e}"));
    std::fs::write(path, text + "\n").map_err(|source| ReplayError::Summary {
        path: path.to_path_buf(),
        source,
    })
}
