//! Kafka sinks: entries keyed `"<profile_id>:<title_id>"`, dead letters and late
//! records with their reason in headers. One idempotent producer per process;
//! when its queue is full the sending shard waits (back-pressure, bounded memory).

use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::io::kafka::producer::KafkaProducer;
use crate::io::kafka::topic::TopicHandle;
use crate::io::sink::{EntrySink, SideKind, SideRecord, SideSink, SinkError};
use crate::model::record::Key;

fn sink_err(topic: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Other {
        name: format!("kafka topic {topic}"),
        reason: e.to_string(),
    }
}

/// Emitted entries of one shard.
pub struct KafkaEntrySink {
    handle: TopicHandle,
    topic: String,
    key: Vec<u8>,
}

impl KafkaEntrySink {
    pub fn new(producer: Arc<KafkaProducer>, topic: &str) -> Result<Self, KafkaError> {
        Ok(Self {
            handle: TopicHandle::new(producer, topic)?,
            topic: topic.to_owned(),
            key: Vec::with_capacity(48),
        })
    }
}

impl EntrySink for KafkaEntrySink {
    fn emit(&mut self, key: Key, record: &[u8]) -> Result<(), SinkError> {
        let mut num = itoa::Buffer::new();
        self.key.clear();
        self.key
            .extend_from_slice(num.format(key.profile).as_bytes());
        self.key.push(b':');
        self.key.extend_from_slice(num.format(key.title).as_bytes());
        self.handle
            .produce_waiting(&self.key, record)
            .map_err(|e| sink_err(&self.topic, e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
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
