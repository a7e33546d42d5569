//! One hot key with 10,000,000 events in one window under a 64 MiB state-cache
//! budget (`cargo bench --bench hot_key`; figures on stdout, the last line JSON).
//!
//! The hot key's impressions come one per millisecond of event time (2.8 h, one
//! 4 h window) with exact copies of earlier ones up to 50 minutes back (the job
//! allows 1 h of lateness so they are on time), copies with other content, plays
//! with copies, and 5,000 background keys (`hot_key/input.rs`). Nothing of the
//! input is held in memory: two sources generate it as the engine reads.
//!
//! Reports peak RSS (VmHWM), events/s, the hot entry's ids spilled to RocksDB,
//! and the peak of the cache's own byte count; checks the output and counters
//! against the contract computed in one streaming pass (`hot_key/expected.rs`).
//! Exits 1 when the output is not exact or peak RSS exceeds the budget plus the
//! fixed allowance [`ALLOWANCE`] (RocksDB block cache and write buffers as
//! configured, plus a baseline for the binary, the allocator, RocksDB's
//! per-instance memory, the reorder buffer and the background keys).
//! `HOT_KEY_EVENTS` sets another event count.

use std::time::Instant;

use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::engine::runner::{Engine, EngineOptions, ShardIo};
use streamjoin_runtime::engine::shard::ShardSinks;
use streamjoin_runtime::engine::worker::Progress;
use streamjoin_runtime::io::sink::{MemorySink, NullSink};
use streamjoin_runtime::time::watermark::ManualClock;

#[path = "hot_key/expected.rs"]
mod expected;
#[path = "hot_key/input.rs"]
mod input;

// The runtime binary's allocator, so the figures are the runtime's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MIB: usize = 1 << 20;
const BUDGET: usize = 64 * MIB;
const BLOCK_CACHE: usize = 32 * MIB;
const WRITE_BUFFERS: usize = 32 * MIB;
/// Memory beyond the cache budget the process may use: RocksDB's block cache
/// and write buffers as configured, and 96 MiB of baseline (the binary and
/// its libraries, allocator slack, RocksDB's table readers and compaction
/// buffers, the reorder buffer of the first two minutes, 5,000 background
/// entries, the output).
const ALLOWANCE: usize = BLOCK_CACHE + WRITE_BUFFERS + 96 * MIB;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn config() -> EngineConfig {
    EngineConfig {
        cache_bytes: BUDGET,
        block_cache_bytes: BLOCK_CACHE,
        write_buffer_bytes: WRITE_BUFFERS,
        allowed_lateness_ms: 3_600_000,
        read_batch: 1024,
        ..EngineConfig::default()
    }
}

struct Run {
    entries: Vec<String>,
    seconds: f64,
    ids_spilled: u64,
    peak_cache_bytes: usize,
    counters: streamjoin_runtime::model::counters::ShardCounters,
}

fn run(steps: u64, dir: &std::path::Path) -> Run {
    let entries = MemorySink::default();
    let late = MemorySink::default();
    let io = ShardIo {
        partition: 0,
        sources: [
            Box::new(input::Generated::new(false, steps)),
            Box::new(input::Generated::new(true, steps)),
        ],
        sinks: ShardSinks {
            entries: Box::new(entries.clone()),
            late: Box::new(late.clone()),
            dead_letter: Box::new(NullSink),
            commit: None,
        },
        restore: None,
    };
    let mut opts = EngineOptions::new(dir.join("state"));
    opts.clock = ManualClock::new(input::T0);
    let mut engine = Engine::new(config(), vec![io], opts).expect("engine");
    let started = Instant::now();
    let mut peak_cache_bytes = 0;
    let mut turns = 0u64;
    loop {
        let progress = engine.workers[0].step().expect("engine step");
        turns += 1;
        if turns.is_multiple_of(64) {
            let bytes = engine.shards().map(|s| s.store().cached_bytes()).sum();
            peak_cache_bytes = peak_cache_bytes.max(bytes);
        }
        if progress == Progress::Done {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(late.take().is_empty(), "no record is late");
    Run {
        entries: entries.take(),
        seconds,
        ids_spilled: engine.shards().map(|s| s.store().ids_spilled_total()).sum(),
        peak_cache_bytes,
        counters: engine.counters(),
    }
}

/// What differs between the run and the contract, if anything.
fn check(run: &Run, want: &expected::Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let mut got = run.entries.clone();
    got.sort();
    if got != want.entries {
        let missing = want.entries.iter().filter(|e| !got.contains(e)).count();
        problems.push(format!(
            "{} entries, {} expected, {missing} expected ones missing; hot entry: {:?} vs {:?}",
            got.len(),
            want.entries.len(),
            got.iter().find(|e| e.starts_with(r#"{"profile_id":7,"#)),
            want.entries
                .iter()
                .find(|e| e.starts_with(r#"{"profile_id":7,"#)),
        ));
    }
    let c = &run.counters;
    if c.duplicates != want.duplicates {
        problems.push(format!(
            "duplicates {:?}, expected {:?}",
            c.duplicates, want.duplicates
        ));
    }
    if c.malformed_total() != want.conflicts {
        problems.push(format!(
            "malformed {}, expected {} conflicting duplicates",
            c.malformed_total(),
            want.conflicts
        ));
    }
    if c.events != want.events {
        problems.push(format!("events {}, expected {}", c.events, want.events));
    }
    problems
}

fn main() {
    let steps: u64 = std::env::var("HOT_KEY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    assert!(
        steps > 0 && (steps as i64) < 4 * 3_600_000,
        "one 4 h window"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let baseline_kib = status_kib("VmRSS:");
    let want = expected::compute(steps);
    let run = run(steps, dir.path());
    let peak_kib = status_kib("VmHWM:");
    let problems = check(&run, &want);
    let limit_kib = ((BUDGET + ALLOWANCE) / 1024) as u64;
    let records = run.counters.records.iter().sum::<u64>();
    println!(
        "hot key: {steps} hot events ({records} records, {} distinct ids in the hot entry) in {:.1} s: {:.0} records/s",
        want.hot_ids,
        run.seconds,
        records as f64 / run.seconds
    );
    println!(
        "peak RSS {:.1} MiB (limit {:.0} MiB = budget {} MiB + allowance {} MiB); RSS before the engine {:.1} MiB",
        peak_kib as f64 / 1024.0,
        limit_kib as f64 / 1024.0,
        BUDGET / MIB,
        ALLOWANCE / MIB,
        baseline_kib as f64 / 1024.0
    );
    println!(
        "ids spilled to RocksDB {}; cache bytes peak {:.1} MiB (budget {} MiB); duplicates {:?}, conflicting {}",
        run.ids_spilled,
        run.peak_cache_bytes as f64 / MIB as f64,
        BUDGET / MIB,
        run.counters.duplicates,
        run.counters.malformed_total()
    );
    let exact = problems.is_empty();
    for p in &problems {
        println!("NOT EXACT: {p}");
    }
    let within = peak_kib <= limit_kib;
    println!(
        "{}",
        serde_json::json!({
            "bench": "hot_key",
            "hot_events": steps,
            "records": records,
            "seconds": run.seconds,
            "records_per_s": records as f64 / run.seconds,
            "peak_rss_mib": peak_kib as f64 / 1024.0,
            "limit_mib": limit_kib as f64 / 1024.0,
            "ids_spilled": run.ids_spilled,
            "peak_cache_mib": run.peak_cache_bytes as f64 / MIB as f64,
            "exact": exact,
            "within_memory": within,
        })
    );
    if !(exact && within) {
        std::process::exit(1);
    }
}
