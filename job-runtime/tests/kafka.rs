//! The runtime against Apache Kafka (a broker of its own per test, see
//! `broker/`): data sets of the built-in generator loaded into topics, runtime
//! processes started as a pod would start them, the output topic read back and
//! compared with the reference implementation (`streamjoin-reference`).

mod broker;
mod data;
mod runtime;

use std::path::{Path, PathBuf};
use std::time::Duration;

use broker::Broker;
use data::{dataset, expected_counts, expected_entries, oracle_compare};
use runtime::{
    Job, Pod, TOKEN, assert_exact, load, load_part, load_slowly, read_distinct,
    rescale_to_three_then_one, stop_with_savepoint, until_distinct,
};

/// A job named `kafka-test`, `extra` appended to its spec.
fn job(broker: &Broker, extra: &str) -> Job {
    Job::new(broker, "kafka-test", extra)
}

/// Reads the output topic until every expected entry arrived (repeats allowed).
fn read_entries(broker: &Broker, data: &Path, partitions: u32) -> Vec<Vec<u8>> {
    read_distinct(broker, partitions, expected_entries(data))
}

/// At least once: 0 missing and 0 differing, identical repeats allowed.
fn assert_matches_at_least_once(data: &Path, records: &[Vec<u8>]) {
    let report = oracle_compare(data, records, &["--at-least-once"]);
    assert!(
        report.contains(" 0 missing") && report.contains(" 0 differing"),
        "{report}"
    );
}

/// The late topic (2 partitions) holds the data set's own late events and no
/// others (repeats allowed: at least once).
fn assert_only_the_data_sets_late_events(broker: &Broker, data: &Path) {
    let late = broker.consume_all("late", 2, false, 0, Duration::from_secs(30));
    let late: std::collections::HashSet<_> = late.into_iter().collect();
    assert_eq!(late.len() as u64, expected_counts(data).late);
}

/// Reads the output topic (2 partitions) until `expected` distinct entries
/// arrived, starting job's pod 0 again whenever it exits; at most 300 s.
fn read_restarting(
    broker: &Broker,
    job: &Job,
    pod: &mut Pod,
    read_committed: bool,
    expected: usize,
) -> Vec<Vec<u8>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut restarts = 0;
    loop {
        let read = broker.consume_for(
            "entries",
            2,
            read_committed,
            Duration::from_secs(10),
            until_distinct(expected),
        );
        if let Ok(records) = read {
            return records;
        }
        if let Some(status) = pod.0.try_wait().expect("pod status") {
            eprintln!("runtime exited ({status}); started again");
            *pod = job.pod(0, 1, &[]);
            restarts += 1;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every entry arrived within 300 s ({restarts} runtime restarts):\n{}",
            job.log(0)
        );
    }
}

#[test]
fn two_processes_match_the_reference() {
    // STREAMJOIN_KAFKA_SMALL=1 runs a `small`-sized data set (1M records) instead.
    let data = if std::env::var_os("STREAMJOIN_KAFKA_SMALL").is_some() {
        dataset(1_000_000, 4, 1)
    } else {
        dataset(100_000, 4, 11)
    };
    let Some(broker) = Broker::start() else {
        return;
    };
    load(&broker, &data, 4);
    let job = job(&broker, "");
    let a = job.pod(0, 2, &[]);
    let b = job.pod(1, 2, &[]);
    let records = read_entries(&broker, &data, 4);
    a.stop();
    b.stop();
    assert_matches_at_least_once(&data, &records);
}

#[test]
fn fetched_records_reach_their_partitions_source_and_statistics_show_each_partition_reachable() {
    use rdkafka::consumer::Consumer;
    use std::sync::Arc;
    use streamjoin_runtime::io::kafka::contact::Contact;
    use streamjoin_runtime::io::kafka::source::{SourceSpec, open_then_assign};
    use streamjoin_runtime::io::kafka::{CONSUMER_FETCH_SETTINGS, ConsumerEvents, RuntimeConsumer};
    use streamjoin_runtime::io::source::{Next, PartitionSource};

    let data = dataset(20_000, 2, 21);
    let Some(broker) = Broker::start() else {
        return;
    };
    let mut specs = Vec::new();
    let mut expected = Vec::new();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for topic in ["impressions", "plays"] {
        broker.create_topic(topic, 2);
        for p in 0..2 {
            let file = data.join(format!("{topic}-{p}.jsonl"));
            expected.push(broker.produce_lines(topic, p, &file));
            specs.push(SourceSpec {
                topic,
                partition: p,
                skip_before_ms: None,
                start: None,
            });
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
    }
    let mut config = broker.client();
    config
        .set("group.id", "streamjoin-queues-test")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "200");
    for (k, v) in CONSUMER_FETCH_SETTINGS {
        config.set(k, v);
    }
    let events = ConsumerEvents {
        contact: Arc::new(Contact::new(200, 100)),
    };
    let consumer: Arc<RuntimeConsumer> =
        Arc::new(config.create_with_context(events).expect("consumer"));
    // Connected first, as the runtime is by its topic checks: a fetch can then
    // follow the assignment at once.
    consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata");
    let mut sources = open_then_assign(&consumer, &specs, &assignment).expect("sources");

    // Every record of every partition arrives through that partition's source.
    let mut read = vec![0u64; sources.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while read != expected {
        for (i, (source, _)) in sources.iter_mut().enumerate() {
            while let Next::Record(_) = source.next().expect("read") {
                read[i] += 1;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read {read:?} of {expected:?}"
        );
        std::thread::yield_now();
    }
    for (i, (_, position)) in sources.iter().enumerate() {
        let next = position
            .next_offset
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(next, expected[i] as i64, "position of source {i}");
    }
    // librdkafka's statistics, served from the main queue, show every
    // partition's leader answering; no record was left on that queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sources.iter().any(|(s, _)| s.in_contact_since().is_none()) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            panic!(
                "a record reached the main queue: {} {} @{}",
                m.topic(),
                m.partition(),
                m.offset()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the statistics never showed every partition reachable"
        );
    }
}

fn checkpoint_count(job: &Job, ordinal: u32) -> usize {
    let root = job.dir.path().join(format!("pod-{ordinal}/checkpoints"));
    let Ok(shards) = std::fs::read_dir(&root) else {
        return 0;
    };
    shards
        .flatten()
        .filter_map(|s| std::fs::read_dir(s.path()).ok())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("chk-"))
                .count()
        })
        .sum()
}

/// Identical repeats are allowed (at-least-once); differing ones are not.
fn assert_repeats_identical(records: &[Vec<u8>]) {
    let mut by_key: std::collections::HashMap<(i64, i64, i64), &[u8]> = Default::default();
    for r in records {
        let v: serde_json::Value = serde_json::from_slice(r).expect("entry json");
        let k = (
            v["profile_id"].as_i64().expect("profile"),
            v["title_id"].as_i64().expect("title"),
            v["window_start"].as_i64().expect("window_start"),
        );
        if let Some(prev) = by_key.insert(k, r) {
            assert_eq!(prev, &r[..], "a repeated entry differs");
        }
    }
}

#[test]
fn processes_killed_ten_times_and_restarted_lose_nothing() {
    use rand::{Rng, SeedableRng};
    let data = dataset(100_000, 4, 12);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 4);
    let job = job(
        &broker,
        "  checkpoints:\n    interval: 300ms\n    retained: 2\n",
    );
    let mut pods = [job.pod(0, 2, &[]), job.pod(1, 2, &[])];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    while kills < 12 {
        // A random moment: the test's input, not a wait for something observable.
        std::thread::sleep(Duration::from_millis(rng.random_range(150..700)));
        let i = rng.random_range(0..2usize);
        pods[i].kill();
        pods[i] = job.pod(i as u32, 2, &[]);
        kills += 1;
    }
    loader.join().expect("loader");
    let records = read_entries(&broker, &data, 4);
    let [a, b] = pods;
    a.stop();
    b.stop();
    assert!(checkpoint_count(&job, 0) > 0 && checkpoint_count(&job, 1) > 0);
    let log0 = job.log(0);
    assert!(
        log0.contains("restoring from"),
        "no restart restored a checkpoint:\n{log0}"
    );
    assert_repeats_identical(&records);
    assert_matches_at_least_once(&data, &records);
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
    let data = dataset(50_000, 2, 13);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 2);
    let job = job(
        &broker,
        "  checkpoints:\n    interval: 200ms\n    retained: 3\n",
    );
    let mut pod = job.pod(0, 1, &[]);
    // Observable: wait until at least two checkpoints of shard 0 exist.
    let shard0 = job.dir.path().join("pod-0/checkpoints/shard-0");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let newest = loop {
        let mut chks: Vec<PathBuf> = std::fs::read_dir(&shard0)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        chks.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        });
        chks.sort();
        if chks.len() >= 2 {
            pod.kill();
            break chks.pop().expect("newest");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoints were written"
        );
    };
    // Truncate the largest file that belongs to the newest checkpoint alone (SST
    // and OPTIONS files are hard links shared with older checkpoints).
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(newest.join("db"))
        .expect("db dir")
        .flatten()
        .chain(
            std::fs::read_dir(&newest)
                .expect("checkpoint dir")
                .flatten(),
        )
        .filter_map(|e| {
            let m = e.metadata().expect("meta");
            (m.is_file() && m.nlink() == 1 && m.len() > 1).then(|| (m.len(), e.path()))
        })
        .collect();
    files.sort();
    let (size, victim) = files.pop().expect("a file");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .expect("open");
    f.set_len(size / 2).expect("truncate");
    let pod = job.pod(0, 1, &[]);
    loader.join().expect("loader");
    let records = read_entries(&broker, &data, 2);
    pod.stop();
    let log = job.log(0);
    assert!(
        log.contains("falling back to the previous checkpoint"),
        "{log}"
    );
    assert_matches_at_least_once(&data, &records);
}

/// A frozen broker keeps its connections, but nothing arrives on them: the
/// partitions cannot be known to be caught up, so with idleTimeout 10s and
/// inactivityTimeout 3s neither rule fires during the pause (after a forced
/// advance the rest of the historical data would be late).
#[test]
fn a_broker_paused_for_30_seconds_is_recovered_from_without_loss_and_nothing_late() {
    let data = dataset(50_000, 2, 14);
    let Some(broker) = Broker::start() else {
        return;
    };
    load_part(&broker, &data, 2, 0, 2);
    let job = job(&broker, "  checkpoints:\n    interval: 1s\n");
    let pod = job.pod(0, 1, &[]);
    // Observable: the runtime has produced output before the broker freezes.
    broker.consume_until("entries", 2, false, Duration::from_secs(120), |_| true);
    broker.pause();
    std::thread::scope(|s| {
        // The second half waits in the producer until the broker answers.
        let loader = s.spawn(|| load_part(&broker, &data, 2, 1, 2));
        // The pause length is the test's input.
        std::thread::sleep(Duration::from_secs(30));
        broker.resume();
        loader.join().expect("loader");
    });
    let records = read_entries(&broker, &data, 2);
    pod.stop();
    assert_matches_at_least_once(&data, &records);
    assert_only_the_data_sets_late_events(&broker, &data);
}

/// While the broker is down, the consumer cannot tell that its partitions are
/// caught up: none goes idle and the inactivity rule (which the job's
/// historical data would make every later record late for) does not fire.
#[test]
fn a_broker_down_past_the_idle_and_inactivity_timeouts_makes_nothing_late() {
    let data = dataset(20_000, 2, 23);
    let Some(mut broker) = Broker::start() else {
        return;
    };
    load_part(&broker, &data, 2, 0, 2);
    // idleTimeout 10s, inactivityTimeout 3s: this outage is past both.
    let job = job(&broker, "  checkpoints:\n    interval: 1s\n");
    let mut pod = job.pod(0, 1, &[]);
    // Observable: the first half is being read.
    broker.consume_until("entries", 2, false, Duration::from_secs(120), |_| true);
    broker.kill();
    // The outage's length is the test's input.
    std::thread::sleep(Duration::from_secs(20));
    broker.restart();
    load_part(&broker, &data, 2, 1, 2);
    let expected = expected_entries(&data);
    let records = read_restarting(&broker, &job, &mut pod, false, expected);
    pod.stop();
    assert_matches_at_least_once(&data, &records);
    assert_only_the_data_sets_late_events(&broker, &data);
}

#[test]
fn rescale_by_stop_with_savepoint_from_two_to_three_to_one_is_exact() {
    let data = dataset(100_000, 4, 15);
    let expected = expected_entries(&data);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 4);
    let savepoints = tempfile::tempdir().expect("savepoint dir");
    let job = job(
        &broker,
        &format!(
            "  checkpoints:\n    interval: 1s\n  savepoints:\n    location: {}\n",
            savepoints.path().display()
        ),
    );
    let distinct_at_least = |n: usize| {
        read_distinct(&broker, 4, n);
    };

    let two: Vec<_> = (0..2).map(|o| job.pod_with_admin(o, 2, None)).collect();
    for (_, a) in &two {
        assert_eq!(a.owned_shards(), 2);
    }
    // Mid-stream: some output exists, input is still arriving.
    distinct_at_least(expected / 4);
    let sp1 = stop_with_savepoint(two, "rescale-1");
    assert_eq!(sp1, format!("{}/rescale-1", savepoints.path().display()));
    for p in 0..4 {
        assert!(
            Path::new(&sp1)
                .join(format!("shard-{p}/MANIFEST.json"))
                .exists(),
            "shard {p} is in the savepoint"
        );
    }

    rescale_to_three_then_one(&job, &broker, (&data, expected), &sp1, loader);
}

#[test]
fn admin_api_reports_status_and_requires_the_token_for_changes() {
    let data = dataset(20_000, 2, 16);
    let Some(broker) = Broker::start() else {
        return;
    };
    load(&broker, &data, 2);
    let savepoints = tempfile::tempdir().expect("savepoint dir");
    let job = job(
        &broker,
        &format!(
            "  checkpoints:\n    interval: 500ms\n  savepoints:\n    location: {}\n",
            savepoints.path().display()
        ),
    );
    let (pod, admin) = job.pod_with_admin(0, 1, None);
    admin.wait_ready();
    // Observable: every entry was emitted, so offsets and checkpoints exist.
    read_entries(&broker, &data, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = admin.get("/v1/status").1;
        if !s["last_checkpoint"].is_null() && s["shards"][1]["offsets"]["plays"].is_i64() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["ordinal"], 0);
    assert_eq!(status["partitions"], 2);
    assert!(status["job_watermark_ms"].is_i64(), "{status}");
    assert!(status["checkpoint_volume"]["capacity_bytes"].as_u64() > Some(0));
    assert_eq!(status["stopped"], false);

    let body = serde_json::json!({ "id": "sp-auth" });
    assert_eq!(admin.post("/v1/savepoints", None, body.clone()).0, 401);
    assert_eq!(
        admin.post("/v1/savepoints", Some("wrong"), body.clone()).0,
        401
    );
    assert_eq!(
        admin
            .post("/v1/watermark/advance", None, serde_json::json!({}))
            .0,
        401
    );
    assert_eq!(
        admin
            .post(
                "/v1/savepoints",
                Some(TOKEN),
                serde_json::json!({ "id": "../x" })
            )
            .0,
        400
    );
    let before = status["forced_advances"].as_u64().expect("forced advances");
    let (code, answer) = admin.post("/v1/watermark/advance", Some(TOKEN), serde_json::json!({}));
    assert_eq!(code, 200, "{answer}");
    assert!(admin.get("/v1/status").1["forced_advances"].as_u64() > Some(before));

    admin.trigger_savepoint("sp-auth", false);
    let path = admin.savepoint_path("sp-auth");
    assert!(Path::new(&path).join("_process-0.json").exists());
    assert_eq!(
        admin.get("/v1/status").1["stopped"],
        false,
        "a plain savepoint keeps running"
    );
    assert_eq!(admin.get("/v1/savepoints/unknown").0, 404);
    pod.stop();
}

/// Splits every input file of a data set at its middle: the first halves, and
/// the second halves with the data set's parameters (for the reference).
fn split_dataset(data: &Path, partitions: u32) -> (tempfile::TempDir, tempfile::TempDir) {
    let first = tempfile::tempdir().expect("first half");
    let second = tempfile::tempdir().expect("second half");
    for p in 0..partitions {
        for stream in ["impressions", "plays"] {
            let name = format!("{stream}-{p}.jsonl");
            let text = std::fs::read(data.join(&name)).expect("input");
            let lines: Vec<&[u8]> = text
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            let (a, b) = lines.split_at(lines.len() / 2);
            let join = |ls: &[&[u8]]| {
                let mut out = Vec::new();
                for l in ls {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                }
                out
            };
            std::fs::write(first.path().join(&name), join(a)).expect("write");
            std::fs::write(second.path().join(&name), join(b)).expect("write");
        }
    }
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let params = serde_json::json!({ "params": manifest["params"] });
    for dir in [&first, &second] {
        std::fs::write(dir.path().join("manifest.json"), params.to_string()).expect("manifest");
    }
    (first, second)
}

/// Checkpoints lost, `onMissingCheckpoint: timestamp`: the runtime reads from
/// the first record produced at or after the time, so its output is the join of
/// exactly the records after it.
fn recovery_by_timestamp(path: RecoveryPath) {
    let data = dataset(20_000, 2, 17);
    let (first, second) = split_dataset(&data, 2);
    let Some(broker) = Broker::start() else {
        return;
    };
    for topic in [
        "impressions",
        "plays",
        "entries",
        "entries-after",
        "dead-letter",
        "late",
    ] {
        broker.create_topic(topic, 2);
    }
    let produce = |dir: &Path| {
        for p in 0..2 {
            for topic in ["impressions", "plays"] {
                broker.produce_lines(topic, p, &dir.join(format!("{topic}-{p}.jsonl")));
            }
        }
    };
    produce(first.path());
    let job = job(&broker, "  checkpoints:\n    interval: 300ms\n");
    let mut pod = job.pod(0, 1, &[]);
    // Observable: the first run wrote checkpoints.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while checkpoint_count(&job, 0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint was written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pod.kill();
    std::fs::remove_dir_all(job.dir.path().join("pod-0/checkpoints")).expect("delete checkpoints");

    // Kafka timestamps are the producer's clock: a millisecond boundary between the halves.
    std::thread::sleep(Duration::from_millis(20));
    let from = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(20));
    produce(second.path());
    let manifest = std::fs::read_to_string(&job.manifest).expect("manifest");
    let manifest = manifest
        .replace(
            "output: { topic: entries }",
            "output: { topic: entries-after }",
        )
        .replace(
            "onMissingCheckpoint: earliest",
            &format!("onMissingCheckpoint: timestamp\n    fromTimestamp: \"{from}\""),
        );
    std::fs::write(&job.manifest, manifest).expect("manifest");
    // Kafka answers offsets-for-times lookups, so the runtime seeks unless told
    // to filter (its path for brokers that cannot look offsets up).
    let pod = match path {
        RecoveryPath::Seek => job.pod(0, 1, &[]),
        RecoveryPath::Filter => job.pod(
            0,
            1,
            &["--timestamp-recovery".to_owned(), "filter".to_owned()],
        ),
    };
    let expected = expected_entries(second.path());
    let records = broker.consume_until(
        "entries-after",
        2,
        false,
        Duration::from_secs(300),
        until_distinct(expected),
    );
    pod.stop();
    let log = job.log(0);
    let skipped: u64 = log
        .lines()
        .find_map(|l| {
            l.split("recovery by timestamp: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of skipped records:\n{log}"));
    match path {
        // Seeking: the lookup lands on the first record of the second half.
        RecoveryPath::Seek => {
            assert!(log.contains("the broker looked the offsets up"), "{log}");
            assert_eq!(skipped, 0, "{log}");
        }
        // Filtering: every record of the first half is read and skipped.
        RecoveryPath::Filter => assert!(skipped >= 9_000, "{skipped} skipped\n{log}"),
    }
    assert_matches_at_least_once(second.path(), &records);
}

#[derive(Clone, Copy)]
enum RecoveryPath {
    Seek,
    Filter,
}

#[test]
fn lost_checkpoints_recover_by_timestamp_seeking_to_the_offsets_the_broker_looks_up() {
    recovery_by_timestamp(RecoveryPath::Seek);
}

#[test]
fn lost_checkpoints_recover_by_timestamp_filtering_out_earlier_records() {
    recovery_by_timestamp(RecoveryPath::Filter);
}

/// Exactly-once with Kafka transactions on a `small`-sized data set (1M
/// records of the built-in generator): two processes, ten SIGKILLs at random moments while input is
/// still arriving, the output read back with `read_committed`: nothing missing
/// and nothing twice.
#[test]
fn exactly_once_through_ten_kills_on_the_small_set_has_no_loss_and_no_duplicates() {
    use rand::{Rng, SeedableRng};
    let data = dataset(1_000_000, 4, 1);
    let expected = expected_entries(&data);
    let Some(broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 4);
    let job = job(
        &broker,
        "  delivery: exactlyOnce\n  checkpoints:\n    interval: 300ms\n    retained: 2\n",
    );
    let mut pods = [job.pod(0, 2, &[]), job.pod(1, 2, &[])];
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    for _ in 0..10 {
        // A random moment: the test's input, not a wait for something observable.
        // Ten of them span the load and most of the processing of 1M records.
        std::thread::sleep(Duration::from_millis(rng.random_range(500..3_000)));
        let i = rng.random_range(0..2usize);
        pods[i].kill();
        pods[i] = job.pod(i as u32, 2, &[]);
    }
    loader.join().expect("loader");
    // On a timeout the comparison below says what is missing.
    let _ = broker.consume_for(
        "entries",
        4,
        true,
        Duration::from_secs(600),
        until_distinct(expected),
    );
    let [a, b] = pods;
    a.stop();
    b.stop();
    let log = job.log(0);
    assert!(log.contains("transactions initialised"), "{log}");
    let committed = broker.consume_all("entries", 4, true, 0, Duration::from_secs(300));
    assert_exact(&data, &committed);
}

/// The broker itself crashes (SIGKILL) and comes back on the same ports and
/// data while an exactly-once job runs and input still arrives. A runtime
/// process that exits meanwhile is started again, as its StatefulSet would: the
/// committed output is still exact.
#[test]
fn a_broker_killed_and_restarted_mid_run_leaves_the_committed_output_exact() {
    let data = dataset(100_000, 2, 19);
    let expected = expected_entries(&data);
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let loader = load_slowly(&broker, &data, 2);
    let job = job(
        &broker,
        "  delivery: exactlyOnce\n  checkpoints:\n    interval: 300ms\n",
    );
    let mut pod = job.pod(0, 1, &[]);
    // Observable: committed output exists before the crash.
    broker.consume_until("entries", 2, true, Duration::from_secs(120), |_| true);
    broker.kill_and_restart();
    read_restarting(&broker, &job, &mut pod, true, expected);
    loader.join().expect("loader");
    pod.stop();
    let committed = broker.consume_all("entries", 2, true, 0, Duration::from_secs(120));
    assert_exact(&data, &committed);
}

/// `recovery.onMissingCheckpoint: fail` (the default): a job's first start has
/// no checkpoint and nothing in its consumer group, so it reads from the earliest
/// offsets; once it has run, a lost checkpoint stops it with exit code 4.
#[test]
fn on_missing_checkpoint_fail_lets_a_first_start_read_from_the_earliest_and_fails_after_a_loss() {
    let data = dataset(20_000, 2, 19);
    let Some(broker) = Broker::start() else {
        return;
    };
    load(&broker, &data, 2);
    let job = job(&broker, "  checkpoints:\n    interval: 300ms\n");
    let manifest = std::fs::read_to_string(&job.manifest).expect("manifest");
    std::fs::write(
        &job.manifest,
        manifest.replace("onMissingCheckpoint: earliest", "onMissingCheckpoint: fail"),
    )
    .expect("manifest");

    let pod = job.pod(0, 1, &[]);
    let records = read_entries(&broker, &data, 2);
    assert_matches_at_least_once(&data, &records);
    // SIGTERM: the last progress is committed to the consumer group.
    pod.stop();
    assert!(job.log(0).contains("first start"), "{}", job.log(0));

    std::fs::remove_dir_all(job.dir.path().join("pod-0/checkpoints")).expect("delete checkpoints");
    let mut again = job.pod(0, 1, &[]);
    let status = again.0.wait().expect("exits");
    assert_eq!(status.code(), Some(4), "{}", job.log(0));
    assert!(
        job.log(0).contains("onMissingCheckpoint is fail"),
        "{}",
        job.log(0)
    );
}
