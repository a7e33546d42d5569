//! The Kafka side of a job process: its consumer and the topic check, the
//! output producers, each owned partition's source, each shard's sinks, and
//! the thread serving the consumer's main queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use streamjoin_api::StreamJoinJob;

use crate::durability::exactly_once::Committed;
use crate::engine::runner::ShardIo;
use crate::engine::shard::ShardSinks;
use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::sink::{KafkaEntrySink, KafkaSideSink};
use crate::io::kafka::source::{PartitionPosition, SourceSpec};
use crate::io::kafka::txn::{ShardTransaction, transactional_id};
use crate::io::kafka::{self, KafkaSetupError, RuntimeConsumer, Topics, base_config, check_topics};
use crate::io::sink::{NullSink, SideSink};
use crate::io::source::PartitionSource;
use crate::job::error::{RunError, exit_code};
use crate::job::recovery::RestoredShard;

/// Where one input partition's reader is: topic, partition and position.
pub type Position = (String, i32, Arc<PartitionPosition>);

/// The process's consumer: offsets live in checkpoints, the group only sees
/// commits for lag monitoring.
pub fn consumer(job: &StreamJoinJob) -> Result<Arc<RuntimeConsumer>, RunError> {
    let config = consumer_config(job)?;
    let setting = |key: &str, default: i64| {
        config
            .get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    };
    let contact = kafka::contact::Contact::new(
        setting("statistics.interval.ms", 0),
        // librdkafka's default.
        setting("fetch.wait.max.ms", 500),
    );
    let events = kafka::ConsumerEvents {
        contact: Arc::new(contact),
    };
    Ok(Arc::new(
        config
            .create_with_context(events)
            .map_err(KafkaSetupError::from)?,
    ))
}

fn consumer_config(job: &StreamJoinJob) -> Result<rdkafka::ClientConfig, KafkaSetupError> {
    let mut c = base_config(&job.spec.kafka)?;
    let group = format!(
        "streamjoin-{}",
        job.metadata.name.as_deref().unwrap_or("job")
    );
    for (k, v) in [
        ("group.id", group.as_str()),
        // Offsets live in checkpoints; commits to the group only feed lag monitoring.
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
        // Tells which partitions can be reached (io::kafka::contact).
        (
            "statistics.interval.ms",
            crate::io::kafka::contact::STATISTICS_INTERVAL_MS,
        ),
    ]
    .into_iter()
    .chain(crate::io::kafka::CONSUMER_FETCH_SETTINGS)
    {
        c.set(k, v);
    }
    for (k, v) in &job.spec.kafka.consumer_properties {
        c.set(k, v);
    }
    Ok(c)
}

/// The input and output topics the start-up check looks at.
pub fn topics(job: &StreamJoinJob) -> Topics<'_> {
    let spec = &job.spec;
    let late_topic = spec.late_output.as_ref().map(|t| t.topic.as_str());
    let mut outputs = vec![
        (spec.output.topic.as_str(), "output.topic"),
        (spec.dead_letter.topic.as_str(), "deadLetter.topic"),
    ];
    if let Some(t) = late_topic {
        outputs.push((t, "lateOutput.topic"));
    }
    Topics {
        impressions: &spec.inputs.impressions.topic,
        plays: &spec.inputs.plays.topic,
        outputs,
    }
}

/// Fetches metadata until the brokers answer (a broker may start after us);
/// topic problems are final, connection problems are retried.
/// `waiting` hears why, for readiness.
pub fn check_topics_with_retry(
    consumer: &RuntimeConsumer,
    topics: &Topics<'_>,
    stop: &AtomicBool,
    waiting: &dyn Fn(String),
) -> Result<Option<u32>, RunError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match check_topics(consumer, topics, Duration::from_secs(10)) {
            Ok(n) => return Ok(Some(n)),
            Err(KafkaSetupError::Client(e)) => {
                tracing::warn!("kafka brokers not reachable yet ({e}); retrying in {backoff:?}");
                waiting(format!("kafka brokers not reachable: {e}"));
            }
            Err(e) => return Err(e.into()),
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stop.load(Relaxed) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Output producers: one idempotent producer for the process, or for
/// exactly-once one transactional producer per shard, created before the
/// restore so that their init aborts what a previous owner left open.
pub fn producers(
    job: &StreamJoinJob,
    shards: &[u32],
    exactly_once: bool,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<(u32, Arc<KafkaProducer>)>, RunError> {
    let spec = &job.spec;
    let overrides: Vec<(String, String)> = spec
        .kafka
        .producer_properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let interval = Duration::from_millis(
        u64::try_from(spec.checkpoints.interval.as_millis_i64()).unwrap_or(60_000),
    );
    let mut producers: Vec<(u32, Arc<KafkaProducer>)> = Vec::with_capacity(shards.len());
    if exactly_once {
        let job_name = job.metadata.name.as_deref().unwrap_or("job");
        let timeout = (interval * 3 + Duration::from_secs(30))
            .clamp(Duration::from_secs(60), Duration::from_secs(900));
        let config = base_config(&spec.kafka)?;
        let transactional = |p: u32| -> Result<Arc<KafkaProducer>, RunError> {
            let id = transactional_id(job_name, p);
            let producer = KafkaProducer::transactional(
                config.clone(),
                &overrides,
                stop.clone(),
                &id,
                timeout,
            )
            .map_err(KafkaSetupError::from)?;
            tracing::info!(shard = p, transactional_id = %id, "transactions initialised");
            Ok(producer)
        };
        // Each init is a few round trips to the transaction coordinator: all at
        // once, start-up waits for the slowest, not for the sum (4 shards on
        // Apache Kafka: 0.8-1.7 s one after another). Errors in shard order.
        let made: Vec<Result<Arc<KafkaProducer>, RunError>> = std::thread::scope(|scope| {
            let inits: Vec<_> = shards
                .iter()
                .map(|&p| scope.spawn(move || transactional(p)))
                .collect();
            inits
                .into_iter()
                .zip(shards)
                .map(|(init, p)| {
                    init.join().unwrap_or_else(|_| {
                        Err(KafkaSetupError::Metadata {
                            topic: spec.output.topic.clone(),
                            reason: format!("the transactional producer of shard {p} panicked"),
                        }
                        .into())
                    })
                })
                .collect()
        });
        for (&p, producer) in shards.iter().zip(made) {
            producers.push((p, producer?));
        }
    } else {
        let producer = KafkaProducer::new(base_config(&spec.kafka)?, &overrides, stop.clone())
            .map_err(KafkaSetupError::from)?;
        producers.extend(shards.iter().map(|&p| (p, producer.clone())));
    }
    Ok(producers)
}

/// The sources of every owned shard, by shard (impressions, then plays), and
/// their positions.
pub type Sources = (Vec<Position>, BTreeMap<u32, Vec<Box<dyn PartitionSource>>>);

/// Every owned partition's source, made before the assignment (see
/// `open_then_assign`), in shard order: impressions, then plays.
pub fn open_sources(
    consumer: &Arc<RuntimeConsumer>,
    input_topics: [&str; 2],
    shards: &[u32],
    restored: &[RestoredShard],
    skip_before: Option<i64>,
    assignment: &TopicPartitionList,
) -> Result<Sources, RunError> {
    let mut specs = Vec::with_capacity(shards.len() * 2);
    for &p in shards {
        let restore = restored.iter().find(|r| r.0 == p);
        let skip = if restore.is_some() { None } else { skip_before };
        let starts = restore.map_or([None, None], |r| r.2.inputs.map(|i| i.next_offset));
        for (topic, start) in input_topics.into_iter().zip(starts) {
            specs.push(SourceSpec {
                topic,
                partition: p as i32,
                skip_before_ms: skip,
                start,
            });
        }
    }
    let opened = kafka::source::open_then_assign(consumer, &specs, assignment).map_err(|e| {
        KafkaSetupError::Metadata {
            topic: format!("{} and {}", input_topics[0], input_topics[1]),
            reason: e.to_string(),
        }
    })?;
    let mut positions: Vec<Position> = Vec::new();
    let mut by_shard: BTreeMap<u32, Vec<Box<dyn PartitionSource>>> = BTreeMap::new();
    for (spec, (source, position)) in specs.iter().zip(opened) {
        positions.push((spec.topic.to_owned(), spec.partition, position));
        by_shard
            .entry(spec.partition as u32)
            .or_default()
            .push(Box::new(source));
    }
    Ok((positions, by_shard))
}

/// Each owned shard's sources, Kafka sinks and restore checkpoint.
pub fn shard_io(
    job: &StreamJoinJob,
    producers: &[(u32, Arc<KafkaProducer>)],
    restored: &[RestoredShard],
    mut by_shard: BTreeMap<u32, Vec<Box<dyn PartitionSource>>>,
    input_topics: [&str; 2],
) -> Result<Vec<ShardIo>, RunError> {
    let spec = &job.spec;
    let late_topic = spec.late_output.as_ref().map(|t| t.topic.as_str());
    let mut io = Vec::with_capacity(producers.len());
    for &(p, ref producer) in producers {
        let restore = restored
            .iter()
            .find(|r| r.0 == p)
            .map(|r| (r.1.clone(), r.2.clone()));
        let Some([imp, play]) = by_shard
            .remove(&p)
            .and_then(|sources| <[_; 2]>::try_from(sources).ok())
        else {
            return Err(KafkaSetupError::Metadata {
                topic: input_topics[0].to_owned(),
                reason: format!("no sources were opened for shard {p}"),
            }
            .into());
        };
        let late: Box<dyn SideSink> = match late_topic {
            Some(t) => Box::new(KafkaSideSink::new(producer.clone(), t)),
            None => Box::new(NullSink),
        };
        io.push(ShardIo {
            partition: p,
            sources: [imp, play],
            sinks: ShardSinks {
                entries: Box::new(
                    KafkaEntrySink::new(producer.clone(), &spec.output.topic)
                        .map_err(KafkaSetupError::from)?,
                ),
                late,
                dead_letter: Box::new(KafkaSideSink::new(
                    producer.clone(),
                    &spec.dead_letter.topic,
                )),
                commit: None,
            },
            restore,
        });
    }
    Ok(io)
}

/// Exactly-once: each shard commits its output with its checkpoints, in its
/// producer's transactions.
pub fn add_transactions(
    io: &mut [ShardIo],
    producers: &[(u32, Arc<KafkaProducer>)],
    committed: Option<&BTreeMap<u32, Committed>>,
    consumer: &Arc<RuntimeConsumer>,
    input_topics: [&str; 2],
) {
    for (io, (p, producer)) in io.iter_mut().zip(producers) {
        let found = committed
            .and_then(|c| c.get(p))
            .map_or([None, None], |c| c.offsets);
        io.sinks.commit = Some(Box::new(ShardTransaction::new(
            producer.clone(),
            consumer.clone(),
            [input_topics[0].to_owned(), input_topics[1].to_owned()],
            *p as i32,
            found.map(|o| o.unwrap_or(0)),
        )));
    }
}

/// The main queue still carries client events (errors, statistics): a thread
/// serves it until `stop`.
pub fn serve_main_queue(consumer: Arc<RuntimeConsumer>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Relaxed) {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Err(e)) => tracing::warn!("consumer: {e}"),
                Some(Ok(m)) => {
                    use rdkafka::Message;
                    // No shard will see this record. Stopping normally would
                    // checkpoint past it; ending now restarts from the last
                    // checkpoint, which reads it again.
                    tracing::error!(
                        topic = m.topic(),
                        partition = m.partition(),
                        offset = m.offset(),
                        "a record reached the consumer's main queue instead of its partition's; exiting without a checkpoint"
                    );
                    std::process::exit(i32::from(exit_code::OTHER));
                }
                None => {}
            }
        }
    })
}
