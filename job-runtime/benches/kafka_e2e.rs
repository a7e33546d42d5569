//! End-to-end throughput through a Kafka-protocol broker against the raw
//! consume rate of the same topics with the same client
//! (`cargo bench --bench kafka_e2e`; needs `scripts/brokers.sh`).
//!
//! The `small` data set (1M records, 4 partitions, seed 1; `STREAMJOIN_BENCH_EVENTS`
//! changes the size) is loaded into tansu. The raw rate: one rdkafka consumer with
//! the runtime's fetch settings reads every input record. End to end: one
//! `streamjoin-runtime run` process (2 worker threads) reads, joins and produces
//! the entries; the time runs from its start until `/v1/status` shows every input
//! record read. Target: end to end at least 70% of the raw rate.

#[path = "../tests/broker/mod.rs"]
mod broker;
#[path = "../tests/data/mod.rs"]
mod data;

use std::process::Command;
use std::time::{Duration, Instant};

use broker::{Broker, Kind};
use rdkafka::consumer::{BaseConsumer, Consumer};

fn raw_consume(broker: &Broker, total: u64) -> Duration {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "streamjoin-bench-raw")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "4194304")
        .set("queued.min.messages", "200000")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
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

fn main() {
    let events: u64 = std::env::var("STREAMJOIN_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed = if events == 1_000_000 { 1 } else { 5 };
    let input = data::dataset(events, 4, seed);
    let broker = Broker::start(Kind::Tansu);
    for topic in ["impressions", "plays", "entries", "dead-letter", "late"] {
        broker.create_topic(topic, 4);
    }
    let mut total = 0;
    for p in 0..4 {
        for topic in ["impressions", "plays"] {
            total += broker.produce_lines(topic, p, &input.join(format!("{topic}-{p}.jsonl")));
        }
    }
    let raw = raw_consume(&broker, total);
    let raw_rate = total as f64 / raw.as_secs_f64();
    println!(
        "raw consume: {total} records in {:.2} s = {raw_rate:.0} records/s",
        raw.as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let manifest = dir.path().join("job.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata:\n  name: bench\nspec:\n  parallelism: 1\n  kafka:\n    bootstrapServers: {}\n  inputs:\n    impressions: {{ topic: impressions }}\n    plays: {{ topic: plays }}\n  output: {{ topic: entries }}\n  deadLetter: {{ topic: dead-letter }}\n  lateOutput: {{ topic: late }}\n  recovery:\n    onMissingCheckpoint: earliest\n",
            broker.bootstrap
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let addr_file = dir.path().join("admin-addr");
    let log =
        std::fs::File::create(dir.path().join("runtime.log")).unwrap_or_else(|e| panic!("{e}"));
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
    let mut ready_after = None;
    let e2e = loop {
        let addr = std::fs::read_to_string(&addr_file).unwrap_or_default();
        if !addr.is_empty() {
            if ready_after.is_none() && is_ready(addr.trim()) {
                ready_after = Some(started.elapsed());
            }
            if records_read(addr.trim()) == Some(total) {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the runtime did not read every record"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let e2e_rate = total as f64 / e2e.as_secs_f64();
    let ratio = e2e_rate / raw_rate;
    let ready = ready_after.unwrap_or(Duration::ZERO);
    let after_ready_rate = total as f64 / (e2e - ready).as_secs_f64();
    println!(
        "start-up until ready: {:.2} s; from ready: {after_ready_rate:.0} records/s = {:.0}% of the raw rate",
        ready.as_secs_f64(),
        after_ready_rate / raw_rate * 100.0
    );
    println!(
        "end to end: {total} records in {:.2} s = {e2e_rate:.0} records/s = {:.0}% of the raw rate (target 70%)",
        e2e.as_secs_f64(),
        ratio * 100.0
    );
    println!(
        "{{\"records\":{total},\"raw_records_per_s\":{raw_rate:.0},\"e2e_records_per_s\":{e2e_rate:.0},\"ratio\":{ratio:.3},\"startup_seconds\":{:.3},\"after_ready_records_per_s\":{after_ready_rate:.0}}}",
        ready.as_secs_f64()
    );
    // The target: a miss fails the benchmark (the broker stopped first).
    drop(broker);
    if ratio < 0.70 {
        println!("target (end to end >= 70% of the raw rate): MISSED");
        std::process::exit(1);
    }
    println!("target (end to end >= 70% of the raw rate): met");
}
