//! Kafka sinks: entries keyed `"<profile_id>:<title_id>"`, dead letters and late
//! records with their reason in headers. One idempotent producer per process;
//! when its queue is full the sending shard waits (back-pressure, bounded memory).

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::topic::{OutBatch, TopicHandle};
use crate::io::sink::{EntrySink, SideKind, SideRecord, SideSink, SinkError};
use crate::model::record::Key;

fn sink_err(topic: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Other {
        name: format!("kafka topic {topic}"),
        reason: e.to_string(),
    }
}

/// Entries held back to be produced together, at most this many...
const BATCH_RECORDS: usize = 4096;
/// ...or this many bytes of keys and values.
const BATCH_BYTES: usize = 1 << 20;

/// Emitted entries of one shard, produced a batch at a time: those of one
/// drain of the shard together (one topic lock and one clock reading for all,
/// instead of one each), and no entry waits past the end of its drain.
pub struct KafkaEntrySink {
    handle: TopicHandle,
    topic: String,
    batch: OutBatch,
}

impl KafkaEntrySink {
    pub fn new(producer: Arc<KafkaProducer>, topic: &str) -> Result<Self, KafkaError> {
        Ok(Self {
            handle: TopicHandle::new(producer, topic)?,
            topic: topic.to_owned(),
            batch: OutBatch::default(),
        })
    }
}

impl EntrySink for KafkaEntrySink {
    fn emit(&mut self, key: Key, record: &[u8]) -> Result<(), SinkError> {
        self.batch.push_with(
            |out| {
                let mut num = itoa::Buffer::new();
                out.extend_from_slice(num.format(key.profile).as_bytes());
                out.push(b':');
                out.extend_from_slice(num.format(key.title).as_bytes());
            },
            record,
        );
        if self.batch.len() >= BATCH_RECORDS || self.batch.bytes() >= BATCH_BYTES {
            self.send_pending()?;
        }
        Ok(())
    }

    fn send_pending(&mut self) -> Result<(), SinkError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.handle
            .produce_batch_waiting(&mut self.batch)
            .map_err(|e| sink_err(&self.topic, e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.send_pending()?;
        self.handle
            .producer()
            .flush()
            .map_err(|e| sink_err(&self.topic, e))
    }
}

/// Dead letters or late records: the record as read, the reason in headers.
pub struct KafkaSideSink {
    producer: Arc<KafkaProducer>,
    topic: String,
}

impl KafkaSideSink {
    pub fn new(producer: Arc<KafkaProducer>, topic: &str) -> Self {
        Self {
            producer,
            topic: topic.to_owned(),
        }
    }
}

pub fn side_headers(rec: &SideRecord<'_>) -> OwnedHeaders {
    let partition = rec.partition.to_string();
    let offset = rec.offset.to_string();
    let h = OwnedHeaders::new()
        .insert(Header {
            key: "streamjoin.input",
            value: Some(rec.input.name()),
        })
        .insert(Header {
            key: "streamjoin.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "streamjoin.offset",
            value: Some(&offset),
        });
    match rec.kind {
        SideKind::DeadLetter { reason, detail } => h
            .insert(Header {
                key: "streamjoin.reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "streamjoin.detail",
                value: Some(detail),
            }),
        SideKind::Late {
            event_time,
            watermark,
        } => h
            .insert(Header {
                key: "streamjoin.reason",
                value: Some("late"),
            })
            .insert(Header {
                key: "streamjoin.event_time",
                value: Some(&event_time.to_string()),
            })
            .insert(Header {
                key: "streamjoin.watermark",
                value: Some(&watermark.to_string()),
            }),
    }
}

impl SideSink for KafkaSideSink {
    fn send(&mut self, rec: &SideRecord<'_>) -> Result<(), SinkError> {
        let record = BaseRecord::to(&self.topic)
            .payload(rec.payload)
            .headers(side_headers(rec));
        self.producer
            .send(record)
            .map_err(|e| sink_err(&self.topic, e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.producer.flush().map_err(|e| sink_err(&self.topic, e))
    }
}
