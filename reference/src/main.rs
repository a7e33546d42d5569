//! `streamjoin-reference`: the expected output of a data set, and a check of
//! a runtime's output and counters against it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use streamjoin_reference::compare::{Options, compare_path};
use streamjoin_reference::counters;
use streamjoin_reference::dataset::{Dataset, Overrides};
use streamjoin_reference::expected;

#[derive(Parser)]
#[command(
    name = "streamjoin-reference",
    about = "The join contract computed in batch, and a comparison with a runtime's output"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Input {
    /// Data-set directory (manifest.json, impressions-<p>.jsonl, plays-<p>.jsonl).
    #[arg(long = "in")]
    input: PathBuf,
    /// W in milliseconds (default: the manifest's, else 4 h).
    #[arg(long)]
    window_ms: Option<i64>,
    /// D in milliseconds (default: the manifest's, else 2 min).
    #[arg(long)]
    max_disorder_ms: Option<i64>,
}

impl Input {
    fn open(&self) -> anyhow::Result<Dataset> {
        let over = Overrides {
            window_ms: self.window_ms,
            max_disorder_ms: self.max_disorder_ms,
        };
        Dataset::open(&self.input, over)
            .with_context(|| format!("data set {}", self.input.display()))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Writes OUT/entries.jsonl (canonical, sorted by key and window_start) and OUT/_counts.json.
    Expected {
        #[command(flatten)]
        input: Input,
        #[arg(long)]
        out: PathBuf,
    },
    /// Compares a runtime's output (a file, or every file of a directory except
    /// names starting with '.' or '_') with the expected output; exits 1 on a difference.
    Compare {
        #[command(flatten)]
        input: Input,
        #[arg(long)]
        actual: PathBuf,
        /// Forbid the interleaving-dependent outcomes (aligned runs).
        #[arg(long)]
        strict: bool,
        /// Allow identical copies of an entry.
        #[arg(long)]
        at_least_once: bool,
        /// A JSON object of counters reported by the runtime (e.g. _summary.json) to check too.
        #[arg(long)]
        counters: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("streamjoin-reference: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<bool> {
    let started = Instant::now();
    match command {
        Command::Expected { input, out } => {
            let ds = input.open()?;
            let c = expected::write(&ds, &out)?;
            eprintln!(
                "reference: {} entries, {} keys, {} events; input {} records, {} malformed, {} late, {} duplicates -> {} ({:.1} s)",
                c.entries,
                c.keys,
                c.events,
                c.records,
                c.malformed,
                c.late,
                c.duplicates,
                out.join(expected::ENTRIES_FILE).display(),
                started.elapsed().as_secs_f64()
            );
            Ok(true)
        }
        Command::Compare {
            input,
            actual,
            strict,
            at_least_once,
            counters: reported,
        } => {
            let ds = input.open()?;
            let report = compare_path(
                &ds,
                &actual,
                Options {
                    strict,
                    at_least_once,
                },
            )?;
            print!("{}", report.render());
            let mut ok = report.ok();
            if let Some(path) = reported {
                let text =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                let value = serde_json::from_slice(&text)
                    .with_context(|| format!("parse {}", path.display()))?;
                let check = counters::check(&report.counts, &value)?;
                print!("{}", check.text);
                ok &= check.differing == 0;
            }
            eprintln!(
                "reference: compared in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(ok)
        }
    }
}
