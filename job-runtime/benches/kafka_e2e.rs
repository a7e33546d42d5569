//! End-to-end throughput through Apache Kafka against the raw consume rate of
//! the same topics with the same client (`cargo bench --bench kafka_e2e`; needs
//! `scripts/kafka.sh install`).
//!
//! A `small`-sized data set of the runtime's own generator (`streamjoin-runtime
//! generate`: 1M records, 4 partitions, seed 1; `STREAMJOIN_BENCH_EVENTS` changes
//! the size) is loaded into a one-node Kafka broker. The raw rate: one rdkafka consumer with
//! the runtime's fetch settings (`STREAMJOIN_BENCH_RAW_PROPERTIES="k=v,..."` adds
//! others) reads every input record. End to end: one `streamjoin-runtime run`
//! process (2 worker threads) reads, joins and produces the entries; the time runs
//! from its start until `/v1/status` shows every input record read. Each round
//! measures both (`STREAMJOIN_BENCH_ROUNDS`, default 5, after
//! `STREAMJOIN_BENCH_WARMUP` unmeasured rounds, default 1, that let the broker's
//! JIT compile its fetch and produce paths); the medians count, as
//! this shared machine's speed varies from run to run. Target: the median end to
//! end at least 80% of the median raw rate (the benchmark exits non-zero on a miss).

#[path = "../tests/broker/mod.rs"]
mod broker;
#[path = "../tests/data/mod.rs"]
mod data;

use std::process::Command;
use std::time::{Duration, Instant};

use broker::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The share of the raw consume rate the runtime must reach end to end.
const TARGET: f64 = 0.80;

fn raw_consume(broker: &Broker, total: u64) -> Duration {
    let mut config = broker.client();
    config
        .set("group.id", "streamjoin-bench-raw")
        .set("enable.auto.commit", "false");
    for (k, v) in streamjoin_runtime::io::kafka::CONSUMER_FETCH_SETTINGS {
        config.set(k, v);
    }
    let extra = std::env::var("STREAMJOIN_BENCH_RAW_PROPERTIES").unwrap_or_default();
    for kv in extra.split(',').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .unwrap_or_else(|| panic!("STREAMJOIN_BENCH_RAW_PROPERTIES: {kv} is not k=v"));
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut tpl = rdkafka::TopicPartitionList::new();
    for topic in ["impressions", "plays"] {
        for p in 0..4 {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let started = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    while n < total {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            bytes += m.payload().map_or(0, <[u8]>::len);
            n += 1;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "raw read stalled at {n}"
        );
    }
    std::hint::black_box(bytes);
    started.elapsed()
}

/// User and system CPU seconds a process has used so far (Linux `/proc`).
fn process_cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // Clock ticks are 100 a second on every Linux this runs on.
    Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
}

fn is_ready(addr: &str) -> bool {
    ureq::get(format!("http://{addr}/readyz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

fn records_read(addr: &str) -> Option<u64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut r = agent.get(format!("http://{addr}/v1/status")).call().ok()?;
    let v: serde_json::Value = r.body_mut().read_json().ok()?;
    let shards = v["shards"].as_array()?;
    Some(
        shards
            .iter()
            .flat_map(|s| s["offsets"].as_object().into_iter().flatten())
            .filter_map(|(_, o)| o.as_u64())
            .sum(),
    )
}

/// One run of the runtime over the loaded topics.
struct EndToEnd {
    /// From the process start until every input record was read.
    elapsed: Duration,
    /// From the process start until `/readyz` answered.
    ready: Duration,
    /// The process's user and system CPU seconds at the end.
    cpu: Option<(f64, f64)>,
}

fn run_runtime(bootstrap: &str, total: u64) -> EndToEnd {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // STREAMJOIN_BENCH_PRODUCER_PROPERTIES="k=v,...": the job's producerProperties.
    let producer: String = std::env::var("STREAMJOIN_BENCH_PRODUCER_PROPERTIES")
        .map(|kvs| {
            let lines: String = kvs
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| format!("      {k}: \"{v}\"\n"))
                .collect();
            format!("    producerProperties:\n{lines}")
        })
        .unwrap_or_default();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata:\n  name: bench\nspec:\n  parallelism: 1\n  kafka:\n    bootstrapServers: {bootstrap}\n{producer}  inputs:\n    impressions: {{ topic: impressions }}\n    plays: {{ topic: plays }}\n  output: {{ topic: entries }}\n  deadLetter: {{ topic: dead-letter }}\n  lateOutput: {{ topic: late }}\n  recovery:\n    onMissingCheckpoint: earliest\n",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addr_file = dir.path().join("admin-addr");
    // STREAMJOIN_BENCH_LOGS=DIR keeps each run's log there (start-up analysis).
    let log_path = match std::env::var_os("STREAMJOIN_BENCH_LOGS") {
        Some(keep) => {
            let n = std::fs::read_dir(&keep).map_or(0, Iterator::count);
            std::path::PathBuf::from(keep).join(format!("runtime-{n}.log"))
        }
        None => dir.path().join("runtime.log"),
    };
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamjoin-runtime"))
        .args(["run", "--job"])
        .arg(&manifest)
        .args(["--ordinal", "0", "--replicas", "1", "--threads", "2"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--admin-addr", "127.0.0.1:0", "--admin-addr-file"])
        .arg(&addr_file)
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    // Start-up (RocksDB, topic checks, restore) is reported apart: it is a
    // fixed cost that a longer run spreads thinner.
    let mut ready = None;
    // STREAMJOIN_BENCH_TIMELINE=1: the records read at every poll, on stderr.
    let timeline = std::env::var_os("STREAMJOIN_BENCH_TIMELINE").is_some();
    let elapsed = loop {
        let addr = std::fs::read_to_string(&addr_file).unwrap_or_default();
        if !addr.is_empty() {
            if ready.is_none() && is_ready(addr.trim()) {
                ready = Some(started.elapsed());
            }
            let read = records_read(addr.trim());
            if timeline {
                eprintln!("{:.3} s: {read:?}", started.elapsed().as_secs_f64());
            }
            if read == Some(total) {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the runtime did not read every record"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let cpu = process_cpu_seconds(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    EndToEnd {
        elapsed,
        ready: ready.unwrap_or(Duration::ZERO),
        cpu,
    }
}

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
    let input = data::dataset(events, 4, seed);
    let Some(broker) = Broker::start() else {
        eprintln!("kafka_e2e needs Apache Kafka: run scripts/kafka.sh install");
        std::process::exit(1);
    };
    for topic in ["impressions", "plays", "entries", "dead-letter", "late"] {
        broker.create_topic(topic, 4);
    }
    let mut total = 0;
    for p in 0..4 {
        for topic in ["impressions", "plays"] {
            total += broker.produce_lines(topic, p, &input.join(format!("{topic}-{p}.jsonl")));
        }
    }

    let (mut raw_rates, mut e2e_rates, mut after_ready_rates, mut startups, mut cpu_per_record) =
        (vec![], vec![], vec![], vec![], vec![]);
    // The broker is a JVM: its fetch and produce paths are compiled while
    // they first run (the JIT threads took ~18% of the CPU in the first
    // rounds). Unmeasured warm-up rounds run both paths first.
    let warmup = env_u64("STREAMJOIN_BENCH_WARMUP", 1);
    for _ in 0..warmup {
        raw_consume(&broker, total);
        run_runtime(&broker.bootstrap, total);
    }
    for round in 1..=rounds {
        let broker_cpu = || {
            process_cpu_seconds(broker.pid())
                .map(|(u, s)| u + s)
                .unwrap_or(f64::NAN)
        };
        let before_raw = broker_cpu();
        let raw = raw_consume(&broker, total);
        let raw_broker_cpu = broker_cpu() - before_raw;
        let raw_rate = total as f64 / raw.as_secs_f64();
        let before_run = broker_cpu();
        let run = run_runtime(&broker.bootstrap, total);
        // Up to the runtime's stop: it includes the produce of the entries
        // still queued then, which is little.
        let run_broker_cpu = broker_cpu() - before_run;
        println!(
            "round {round}: broker CPU: raw read {raw_broker_cpu:.2} s, end to end {run_broker_cpu:.2} s"
        );
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
    // The target: a miss fails the benchmark (the broker stopped first).
    drop(broker);
    if ratio < TARGET {
        println!(
            "target (end to end >= {:.0}% of the raw rate): MISSED",
            TARGET * 100.0
        );
        std::process::exit(1);
    }
    println!(
        "target (end to end >= {:.0}% of the raw rate): met",
        TARGET * 100.0
    );
}
