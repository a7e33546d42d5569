//! The longest pause of each output partition around the upgrade: the
//! harness's measure (`s3_job::measure`) takes the gaps of the whole topic, in
//! which one pod's output hides the other's pause while the StatefulSet
//! replaces the pods one after the other.

use std::time::{Duration, Instant, SystemTime};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::broker::Broker;
use crate::s3_job::PARTITIONS;
use crate::s3_job::measure::{Flow, longest_pause};

/// For each partition of `topic` (read committed to its end), the longest
/// pause of its output around `flow`.
pub fn by_partition(broker: &Broker, topic: &str, flow: &Flow) -> Vec<Duration> {
    let end = flow.end.map_or_else(SystemTime::now, |(at, _)| at);
    stamps_by_partition(broker, topic, Duration::from_secs(120))
        .iter()
        .map(|stamps| longest_pause(stamps, flow.start, end))
        .collect()
}

fn stamps_by_partition(broker: &Broker, topic: &str, limit: Duration) -> Vec<Vec<i64>> {
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
                stamps[m.partition() as usize].extend(m.timestamp().to_millis());
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
