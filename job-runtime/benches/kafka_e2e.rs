//! End-to-end throughput through Apache Kafka against the raw consume rate of
//! the same topics through the same consume path (`cargo bench --bench
//! kafka_e2e`; needs `scripts/kafka.sh install`).
//!
//! A `small`-sized data set of the runtime's own generator (`streamjoin-runtime
//! generate`: 1M records, 4 partitions, seed 1; `STREAMJOIN_BENCH_EVENTS` changes
//! the size) is loaded into a one-node Kafka broker. Both reads use the same
//! job manifest, broker and data:
//! - raw: the runtime's consumer (made by its own code from the manifest, so
//!   the same client settings) reads every input record from the beginning
//!   through the runtime's `KafkaSource`s, on as many threads as the runtime has
//!   workers, shards split over them as the engine splits them; no parse, no
//!   join, no output (`kafka_e2e/raw.rs`);
//! - end to end: one `streamjoin-runtime run` process (2 worker threads) reads,
//!   joins and produces the entries; the time runs from its start (start-up
//!   included) until `/v1/status` shows every input record read
//!   (`kafka_e2e/runtime.rs`).
//!
//! Each round measures both, one after the other (`STREAMJOIN_BENCH_ROUNDS`,
//! default 5, after `STREAMJOIN_BENCH_WARMUP` unmeasured rounds, default 4, that
//! let the broker's JIT compile its fetch and produce paths); the medians
//! count, as this shared machine's speed varies from run to run. Target: the
//! median end to end at least 85% of the median raw rate; the benchmark prints
//! both rates and their ratio and exits non-zero on a miss.
//! `STREAMJOIN_BENCH_PERF=DIR` runs the runtime under `perf record`
//! (`STREAMJOIN_BENCH_PERF_CALLGRAPH=1`: with call stacks);
//! `STREAMJOIN_BENCH_THREADS=1` prints each runtime thread's CPU over a run.
//! Each round also prints how busy the machine's cores were over the end-to-end
//! run (`/proc/stat`): idle cores there mean waiting, not work.

#[path = "../tests/broker/mod.rs"]
mod broker;
#[path = "../tests/data/mod.rs"]
mod data;
#[path = "kafka_e2e/raw.rs"]
mod raw;
#[path = "kafka_e2e/runtime.rs"]
mod runtime;

use broker::Broker;
use mimalloc::MiMalloc;
use runtime::{manifest_yaml, process_cpu_seconds, run_runtime};

// The runtime's allocator, so that the raw read allocates as it does.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// The share of the raw consume rate the runtime must reach end to end (issue
/// 18; issue 13 asked for 80%, also reported).
const TARGET: f64 = 0.85;
const TARGET_ISSUE_13: f64 = 0.80;
/// Worker threads of the runtime, and threads of the raw read.
const THREADS: usize = 2;
const PARTITIONS: i32 = 4;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let env_u64 = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = env_u64("STREAMJOIN_BENCH_EVENTS", 1_000_000);
    let rounds = env_u64("STREAMJOIN_BENCH_ROUNDS", 5).max(1);
    let seed = if events == 1_000_000 { 1 } else { 5 };
    let input = data::dataset(events, PARTITIONS as u32, seed);
    let Some(broker) = Broker::start() else {
        eprintln!("kafka_e2e needs Apache Kafka: run scripts/kafka.sh install");
        std::process::exit(1);
    };
    for topic in ["impressions", "plays", "entries", "dead-letter", "late"] {
        broker.create_topic(topic, PARTITIONS as u32);
    }
    let mut total = 0;
    for p in 0..PARTITIONS {
        for topic in ["impressions", "plays"] {
            total += broker.produce_lines(topic, p, &input.join(format!("{topic}-{p}.jsonl")));
        }
    }

    let (mut raw_rates, mut e2e_rates, mut after_ready_rates, mut startups, mut cpu_per_record) =
        (vec![], vec![], vec![], vec![], vec![]);
    // The broker is a JVM: its fetch and produce paths are compiled while
    // they first run (the JIT threads took ~18% of the CPU in the first
    // rounds). Unmeasured warm-up rounds run both paths first: the broker's
    // CPU for a round's output fell from 1.36 s to 0.51, 0.56, 0.42 and then
    // 0.29-0.33 s from the fifth round on (bench/RESULTS.md, 2026-12-07).
    let warmup = env_u64("STREAMJOIN_BENCH_WARMUP", 4);
    let manifest = manifest_yaml(&broker.bootstrap);
    let raw_consume = || raw::raw_consume(&manifest, PARTITIONS, THREADS, total);
    for _ in 0..warmup {
        raw_consume();
        run_runtime(&broker.bootstrap, THREADS, total);
    }
    for round in 1..=rounds {
        let broker_cpu = || {
            process_cpu_seconds(broker.pid())
                .map(|(u, s)| u + s)
                .unwrap_or(f64::NAN)
        };
        let before_raw = broker_cpu();
        let raw = raw_consume();
        let raw_broker_cpu = broker_cpu() - before_raw;
        let raw_rate = total as f64 / raw.as_secs_f64();
        let before_run = broker_cpu();
        let machine_before = runtime::machine_cpu();
        let run = run_runtime(&broker.bootstrap, THREADS, total);
        let machine_after = runtime::machine_cpu();
        // Up to the runtime's stop: it includes the produce of the entries
        // still queued then, which is little.
        let run_broker_cpu = broker_cpu() - before_run;
        println!(
            "round {round}: broker CPU: raw read {raw_broker_cpu:.2} s, end to end {run_broker_cpu:.2} s"
        );
        if let (Some((busy0, all0)), Some((busy1, all1))) = (machine_before, machine_after) {
            println!(
                "round {round}: the machine's cores were busy {:.0}% of the end-to-end run ({:.2} of {:.2} core-seconds)",
                (busy1 - busy0) / (all1 - all0) * 100.0,
                busy1 - busy0,
                all1 - all0
            );
        }
        let e2e_rate = total as f64 / run.elapsed.as_secs_f64();
        let after_ready_rate = total as f64 / (run.elapsed - run.ready).as_secs_f64();
        println!(
            "round {round}: raw consume {raw_rate:.0} records/s; end to end {e2e_rate:.0} records/s = {:.1}% (start-up {:.2} s; from ready {:.1}%)",
            e2e_rate / raw_rate * 100.0,
            run.ready.as_secs_f64(),
            after_ready_rate / raw_rate * 100.0
        );
        if let Some((user, system)) = run.cpu {
            println!(
                "round {round}: runtime CPU until every record was read: {user:.2} s user + {system:.2} s system = {:.2} µs a record",
                (user + system) * 1e6 / total as f64
            );
            cpu_per_record.push((user + system) * 1e6 / total as f64);
        }
        raw_rates.push(raw_rate);
        e2e_rates.push(e2e_rate);
        after_ready_rates.push(after_ready_rate);
        startups.push(run.ready.as_secs_f64());
    }
    let raw_rate = median(raw_rates);
    let e2e_rate = median(e2e_rates);
    let after_ready_rate = median(after_ready_rates);
    let ratio = e2e_rate / raw_rate;
    println!("medians of {rounds} rounds, {total} records:");
    println!("raw consume: {raw_rate:.0} records/s");
    println!(
        "end to end: {e2e_rate:.0} records/s = {:.1}% of the raw rate (target {:.0}%); from ready: {after_ready_rate:.0} records/s = {:.1}%",
        ratio * 100.0,
        TARGET * 100.0,
        after_ready_rate / raw_rate * 100.0
    );
    println!(
        "{{\"records\":{total},\"rounds\":{rounds},\"raw_records_per_s\":{raw_rate:.0},\"e2e_records_per_s\":{e2e_rate:.0},\"ratio\":{ratio:.3},\"startup_seconds\":{:.3},\"after_ready_records_per_s\":{after_ready_rate:.0},\"cpu_us_per_record\":{:.2}}}",
        median(startups),
        median(cpu_per_record)
    );
    // The issue's target: a miss fails the benchmark (the broker stopped first).
    drop(broker);
    for (target, what) in [(TARGET_ISSUE_13, "issue 13"), (TARGET, "issue 18")] {
        println!(
            "target of {what} (end to end >= {:.0}% of the raw rate): {}",
            target * 100.0,
            if ratio >= target { "met" } else { "MISSED" }
        );
    }
    if ratio < TARGET {
        std::process::exit(1);
    }
}
