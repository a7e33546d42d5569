//! The longest pause of each shard's output around the upgrade: the harness's
//! measure (`s3_job::measure`) takes the gaps of the whole topic, in which one
//! pod's output would hide the other's pause while the StatefulSet replaces the
//! pods one after the other. An entry's shard is its key's input partition
//! (FNV-1a of `profile_id:title_id`); the output partitions mix the shards.

use std::time::{Duration, Instant, SystemTime};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use streamjoin_reference::dataset::partition_of;

use crate::broker::Broker;
use crate::s3_job::PARTITIONS;
use crate::s3_job::measure::{Flow, longest_pause};

/// For each shard, the longest pause of its output in `topic` (read
/// committed to its end) around `flow`.
pub fn by_shard(broker: &Broker, topic: &str, flow: &Flow) -> Vec<Duration> {
    let end = flow.end.map_or_else(SystemTime::now, |(at, _)| at);
    stamps_by_shard(broker, topic, Duration::from_secs(120))
        .iter()
        .map(|stamps| longest_pause(stamps, flow.start, end))
        .collect()
}

/// The input partition (shard) of an output entry, from its key.
fn shard_of(payload: &[u8]) -> Option<usize> {
    let entry: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let (profile, title) = (entry["profile_id"].as_i64()?, entry["title_id"].as_i64()?);
    Some(partition_of(profile, title, PARTITIONS) as usize)
}

fn stamps_by_shard(broker: &Broker, topic: &str, limit: Duration) -> Vec<Vec<i64>> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "streamjoin-bench-partition-pauses")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap_or_else(|e| panic!("a consumer of {topic}: {e}"));
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap_or_else(|e| panic!("{topic} partition {p}: {e}"));
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    let mut stamps = vec![Vec::new(); PARTITIONS as usize];
    let mut at_end = vec![false; PARTITIONS as usize];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end[m.partition() as usize] = false;
                let shard = m
                    .payload()
                    .and_then(shard_of)
                    .unwrap_or_else(|| panic!("{topic}: an entry without profile_id and title_id"));
                stamps[shard].extend(m.timestamp().to_millis());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end[p as usize] = true;
                if at_end.iter().all(|e| *e) {
                    stamps.iter_mut().for_each(|s| s.sort_unstable());
                    return stamps;
                }
            }
            _ => {}
        }
    }
    panic!("{topic}: not read to its end within {limit:?}");
}
