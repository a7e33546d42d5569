//! One input partition read from Kafka. The process's consumer is assigned its
//! shards' partitions statically; each partition gets its own queue, so the
//! worker that owns a shard polls only that shard's partitions and no lock is
//! taken on the per-record path.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::io::kafka::RuntimeConsumer;
use crate::io::kafka::batch::{BatchQueue, Polled, QueueProbe};
use crate::io::kafka::contact::{ContactCell, LOST};
use crate::time::watermark::UnreadProbe;
use rdkafka::error::KafkaError;

use crate::io::source::{InputWaker, Next, PartitionSource, RecordRef, SourceError};

/// Where a partition is, shared with the monitor (status, lag, offset commits).
#[derive(Debug, Default)]
pub struct PartitionPosition {
    /// The next offset to read (-1 until the first record).
    pub next_offset: AtomicI64,
    /// Records skipped because their Kafka timestamp is before the recovery time.
    pub skipped: AtomicU64,
}

pub struct KafkaSource {
    queue: BatchQueue,
    probe: Option<Arc<QueueProbe>>,
    topic: String,
    partition: i32,
    position: Arc<PartitionPosition>,
    contact: ContactCell,
    /// Recovery by timestamp on a broker without offset lookup: skip older records.
    skip_before_ms: Option<i64>,
    last_warning: Option<Instant>,
}

impl KafkaSource {
    /// `start` is the next offset the partition was assigned at, when known (a
    /// restored checkpoint's): the position until the first record is read, so a
    /// checkpoint taken before any new record keeps it.
    pub fn new(
        consumer: Arc<RuntimeConsumer>,
        topic: &str,
        partition: i32,
        skip_before_ms: Option<i64>,
        start: Option<i64>,
    ) -> Result<(Self, Arc<PartitionPosition>), SourceError> {
        let probe = QueueProbe::new(consumer.clone(), topic, partition).map(Arc::new);
        let contact = rdkafka::consumer::Consumer::context(consumer.as_ref())
            .contact
            .watch(topic, partition);
        let queue =
            BatchQueue::new(consumer, topic, partition).ok_or_else(|| SourceError::Other {
                name: format!("{topic}/{partition}"),
                reason: "the consumer has no queue for this partition".into(),
            })?;
        let position = Arc::new(PartitionPosition {
            next_offset: AtomicI64::new(start.unwrap_or(-1)),
            skipped: AtomicU64::new(0),
        });
        Ok((
            Self {
                queue,
                probe,
                topic: topic.to_owned(),
                partition,
                position: position.clone(),
                contact,
                skip_before_ms,
                last_warning: None,
            },
            position,
        ))
    }

    fn warn(&mut self, e: &KafkaError) {
        // librdkafka retries by itself; say so once in a while, not per poll.
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(topic = %self.topic, partition = self.partition, "consumer: {e}; retrying");
            self.last_warning = Some(Instant::now());
        }
    }
}

/// One partition to read, and where from.
pub struct SourceSpec<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// Recovery by timestamp on a broker without offset lookup: skip older records.
    pub skip_before_ms: Option<i64>,
    /// The next offset the partition is assigned at, when known (see [`KafkaSource::new`]).
    pub start: Option<i64>,
}

/// Makes a source for each partition, then assigns `assignment`. In this order:
/// librdkafka delivers what it fetches for a partition without a queue of its
/// own to the consumer's main queue, which no shard reads.
pub fn open_then_assign(
    consumer: &Arc<RuntimeConsumer>,
    specs: &[SourceSpec<'_>],
    assignment: &rdkafka::TopicPartitionList,
) -> Result<Vec<(KafkaSource, Arc<PartitionPosition>)>, SourceError> {
    use rdkafka::consumer::Consumer;
    let sources = specs
        .iter()
        .map(|s| {
            KafkaSource::new(
                consumer.clone(),
                s.topic,
                s.partition,
                s.skip_before_ms,
                s.start,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    consumer
        .assign(assignment)
        .map_err(|e| SourceError::Other {
            name: "consumer assignment".into(),
            reason: e.to_string(),
        })?;
    Ok(sources)
}

impl PartitionSource for KafkaSource {
    fn next(&mut self) -> Result<Next<'_>, SourceError> {
        let offset = loop {
            match self.queue.poll() {
                Polled::Empty | Polled::Eof => return Ok(Next::CaughtUp),
                Polled::Error(code) => {
                    self.warn(&KafkaError::MessageConsumption(code));
                    return Ok(Next::CaughtUp);
                }
                Polled::Message { offset } => {
                    self.position.next_offset.store(offset + 1, Relaxed);
                    if let Some(min) = self.skip_before_ms
                        && let Some(ts) = self.queue.timestamp_ms()
                        && ts < min
                    {
                        self.position.skipped.fetch_add(1, Relaxed);
                        continue;
                    }
                    break offset;
                }
            }
        };
        // A record without a payload reaches the dead letters as invalid JSON.
        Ok(Next::Record(RecordRef {
            payload: self.queue.payload(),
            offset,
        }))
    }

    fn describe(&self) -> String {
        format!("kafka topic {} partition {}", self.topic, self.partition)
    }

    fn position(&self) -> Option<i64> {
        let next = self.position.next_offset.load(Relaxed);
        (next >= 0).then_some(next)
    }

    fn unread_probe(&self) -> Option<UnreadProbe> {
        let probe = self.probe.clone()?;
        Some(Arc::new(move || probe.waiting()))
    }

    fn in_contact_since(&self) -> Option<i64> {
        let since = self.contact.load(Relaxed);
        (since != LOST).then_some(since)
    }

    fn wake_on_arrival(&mut self, waker: &Arc<InputWaker>) -> bool {
        self.queue.wake_on_arrival(waker);
        true
    }
}
