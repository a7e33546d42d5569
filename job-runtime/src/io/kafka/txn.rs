//! Exactly-once output of one shard: its transactional producer and the commit
//! of each checkpoint's offsets into the transaction (protocol in
//! [`crate::durability::exactly_once`] and `docs/exactly-once.md`).

use std::sync::Arc;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::RuntimeConsumer;
use super::producer::KafkaProducer;
use crate::durability::exactly_once::marker;
use crate::io::sink::{EpochCommit, SinkError};

pub struct ShardTransaction {
    producer: Arc<KafkaProducer>,
    consumer: Arc<RuntimeConsumer>,
    /// Impressions, then plays.
    topics: [String; 2],
    partition: i32,
    /// Offsets committed for an input that has no position yet (nothing read
    /// since a fresh start): its committed offset as found at start, so that
    /// both inputs always carry the newest marker.
    fallback: [i64; 2],
}

impl ShardTransaction {
    pub fn new(
        producer: Arc<KafkaProducer>,
        consumer: Arc<RuntimeConsumer>,
        topics: [String; 2],
        partition: i32,
        fallback: [i64; 2],
    ) -> Self {
        Self {
            producer,
            consumer,
            topics,
            partition,
            fallback,
        }
    }
}

/// `streamjoin-<job>-shard-<p>`: stable across restarts, rescales and thread
/// counts, so a new owner of the shard fences the previous one.
pub fn transactional_id(job: &str, shard: u32) -> String {
    format!("streamjoin-{job}-shard-{shard}")
}

impl EpochCommit for ShardTransaction {
    fn commit(&mut self, checkpoint_id: u64, offsets: [Option<i64>; 2]) -> Result<(), SinkError> {
        let err = |e: &dyn std::fmt::Display| SinkError::Other {
            name: format!("kafka transaction of shard {}", self.partition),
            reason: e.to_string(),
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, offset), fallback) in self.topics.iter().zip(offsets).zip(self.fallback) {
            let o = offset.unwrap_or(fallback);
            tpl.add_partition_offset(topic, self.partition, Offset::Offset(o))
                .map_err(|e| err(&e))?;
        }
        let mark = marker(checkpoint_id);
        for topic in &self.topics {
            if let Some(mut e) = tpl.find_partition(topic, self.partition) {
                e.set_metadata(&mark);
            }
        }
        let group = self.consumer.group_metadata();
        self.producer
            .commit_transaction(&tpl, group.as_ref())
            .map_err(|e| err(&e))
    }
}

impl Drop for ShardTransaction {
    fn drop(&mut self) {
        // Output after the last checkpoint is not committed; aborting now lets
        // read_committed consumers move on without waiting for the next owner.
        if let Err(e) = self.producer.abort_transaction() {
            tracing::debug!(shard = self.partition, "aborting the open transaction: {e}");
        }
    }
}
