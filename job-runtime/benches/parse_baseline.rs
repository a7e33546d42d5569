//! Parse-only baseline: read and parse every record of a generator-layout
//! directory with the runtime's own source and parser, no state, no output.
//! `cargo bench -p streamjoin-runtime --bench parse_baseline -- DIR [THREADS]`
//! prints one JSON line (records, seconds, records/s, peak RSS).

use std::path::PathBuf;
use std::time::Instant;

use streamjoin_runtime::config::FieldNames;
use streamjoin_runtime::io::source::{FileSource, Next, PartitionSource};
use streamjoin_runtime::model::record::{Input, RecordParser};
use streamjoin_runtime::tools::replay::count_partitions;
use streamjoin_runtime::tools::summary::peak_rss_bytes;

// The runtime binary's allocator, so the figures are the runtime's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: parse_baseline DIR [THREADS] (no DIR given: nothing to measure)");
        return;
    };
    let partitions = match count_partitions(&dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("parse_baseline: {e}");
            std::process::exit(2);
        }
    };
    let threads: usize = args
        .get(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let files: Vec<(PathBuf, Input)> = (0..partitions)
        .flat_map(|p| Input::ALL.map(|i| (dir.join(format!("{}-{p}.jsonl", i.name())), i)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (records, valid) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let (mut records, mut valid) = (0u64, 0u64);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((path, input)) = files.get(i) else {
                            break;
                        };
                        let parser = RecordParser::new(*input, FieldNames::default());
                        let mut src = FileSource::open(path).unwrap_or_else(|e| panic!("{e}"));
                        while let Ok(Next::Record(r)) = src.next() {
                            records += 1;
                            valid += u64::from(parser.parse(r.payload).is_ok());
                        }
                    }
                    (records, valid)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "benchmark": "parse_only",
            "input": dir.display().to_string(),
            "threads": threads,
            "records": records,
            "valid": valid,
            "seconds": secs,
            "records_per_second": records as f64 / secs,
            "peak_rss_bytes": peak_rss_bytes(),
        })
    );
}
