//! `streamjoin-runtime demo`: the embedded default. Generates data with the
//! built-in generator, joins it, and prints a readable summary.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::EngineConfig;
use crate::control::metrics::Metrics;
use crate::engine::runner::{Engine, EngineError, EngineOptions, ShardIo};
use crate::engine::shard::TitleStats;
use crate::io::sink::SharedFile;
use crate::tools::generator::{GenSpec, partition_sources};
use crate::tools::replay::{DEAD_LETTER_FILE, LATE_FILE, SUMMARY_FILE, file_sinks, write_summary};
use crate::tools::report::{self, Recorder, Report, ReportError};
use crate::tools::summary::Summary;

pub struct DemoOptions {
    pub events: u64,
    pub partitions: u32,
    pub threads: usize,
    pub rate: Option<f64>,
    pub seed: u64,
    pub output: PathBuf,
    pub progress: bool,
    pub metrics: Option<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot prepare output directory {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] crate::io::sink::SinkError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Replay(#[from] crate::tools::replay::ReplayError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

pub struct DemoResult {
    pub summary: Summary,
    pub titles: TitleStats,
    pub output: PathBuf,
    /// The HTML report with plots, in the output directory.
    pub report: PathBuf,
}

pub fn run(cfg: EngineConfig, opts: DemoOptions) -> Result<DemoResult, DemoError> {
    std::fs::create_dir_all(&opts.output).map_err(|source| DemoError::Output {
        path: opts.output.clone(),
        source,
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut spec = GenSpec::new(opts.events, opts.partitions, now - 26 * 3_600_000);
    spec.seed = opts.seed;
    spec.rate = opts.rate;
    spec.window_ms = cfg.window_ms;
    spec.max_disorder_ms = cfg.max_out_of_orderness_ms;
    let late = SharedFile::create(&opts.output.join(LATE_FILE))?;
    let dead = SharedFile::create(&opts.output.join(DEAD_LETTER_FILE))?;
    let mut io = Vec::new();
    for p in 0..opts.partitions {
        let [imp, play] = partition_sources(&spec, p);
        io.push(ShardIo {
            partition: p,
            sources: [Box::new(imp), Box::new(play)],
            sinks: file_sinks(&opts.output, p, &late, &dead)?,
            restore: None,
        });
    }
    let state_dir = opts.output.join(".state");
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut eo = EngineOptions::new(state_dir.clone());
    eo.threads = opts.threads;
    // The report's state plots read what the shards publish to the metrics.
    eo.metrics = Some(opts.metrics.clone().unwrap_or_default());
    eo.title_stats = true;
    let bar = if opts.progress {
        let bar = ProgressBar::new(opts.events);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} records ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut recorder = Recorder::since(started);
    let mut engine = Engine::new(cfg, io, eo)?;
    let stop = AtomicBool::new(false);
    engine.run(&stop, Duration::from_millis(100), |p| {
        recorder.record(&p);
        bar.set_position(p.records_read);
        if p.job_watermark > 0 && p.job_watermark < i64::MAX {
            bar.set_message(format!("watermark {}", format_ms(p.job_watermark)));
        }
    })?;
    bar.finish_and_clear();
    let summary = Summary::new(
        &engine.counters(),
        engine.live_entries(),
        opts.partitions,
        engine.workers.len(),
        started.elapsed(),
    );
    let titles = engine.title_stats();
    drop(engine);
    let _ = std::fs::remove_dir_all(&state_dir);
    write_summary(&opts.output.join(SUMMARY_FILE), &summary)?;
    let report = report::write(
        &opts.output,
        &Report {
            verb: "demo",
            output: &opts.output,
            summary: &summary,
            samples: recorder.samples(),
        },
    )?;
    Ok(DemoResult {
        summary,
        titles,
        output: opts.output,
        report,
    })
}

/// RFC 3339 UTC time of a millisecond timestamp.
pub fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The human summary printed at the end of the demo.
pub fn render(result: &DemoResult, top: usize) -> String {
    let s = &result.summary;
    let mut out = String::new();
    let _ = writeln!(out, "streamjoin demo: impressions joined with plays");
    let _ = writeln!(out, "  records in          {:>12}", s.records);
    for (input, n) in &s.records_by_input {
        let _ = writeln!(out, "    {input:<17} {n:>12}");
    }
    let _ = writeln!(
        out,
        "  malformed           {:>12}  (dead-letter: {})",
        s.malformed, DEAD_LETTER_FILE
    );
    for (reason, n) in &s.malformed_by_reason {
        let _ = writeln!(out, "    {reason:<17} {n:>12}");
    }
    let _ = writeln!(
        out,
        "  late                {:>12}  (late output: {})",
        s.late, LATE_FILE
    );
    let _ = writeln!(out, "  duplicates          {:>12}", s.duplicates);
    let _ = writeln!(out, "  entries emitted     {:>12}", s.entries);
    let _ = writeln!(out, "  live entries at end {:>12}", s.live_entries_at_end);
    if let Some(tf) = s.take_fraction {
        let _ = writeln!(
            out,
            "  take fraction       {:>11.2}%  ({} of {} entries with impressions had plays)",
            tf * 100.0,
            s.entries_joined,
            s.entries_with_impressions
        );
    }
    let mut titles: Vec<(i64, u64, u64)> = result
        .titles
        .iter()
        .filter(|(_, (n, _))| *n >= 30)
        .map(|(t, (n, j))| (*t, *n, *j))
        .collect();
    titles.sort_by(|a, b| {
        let fa = a.2 as f64 / a.1 as f64;
        let fb = b.2 as f64 / b.1 as f64;
        fb.total_cmp(&fa).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0))
    });
    if !titles.is_empty() {
        let _ = writeln!(
            out,
            "  top titles by take fraction (at least 30 entries with impressions):"
        );
        for (t, n, j) in titles.iter().take(top) {
            let _ = writeln!(
                out,
                "    title {t:>6}  {:>6.2}%  ({j} of {n})",
                *j as f64 / *n as f64 * 100.0
            );
        }
    }
    let _ = writeln!(
        out,
        "  throughput          {:>12.0} events/s  ({:.2} s, {} threads)",
        s.records_per_second, s.elapsed_seconds, s.threads
    );
    let _ = writeln!(out, "  output              {}", result.output.display());
    let _ = writeln!(out, "  report with plots   {}", result.report.display());
    out
}
