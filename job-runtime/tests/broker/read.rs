//! Reading a topic back: every partition from the beginning, with or without
//! `read_committed`.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::Broker;

impl Broker {
    /// A consumer assigned every partition of `topic` from the beginning.
    fn reader(
        &self,
        topic: &str,
        partitions: u32,
        read_committed: bool,
        eof: bool,
    ) -> BaseConsumer {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", "streamjoin-test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", if eof { "true" } else { "false" })
            // A reader polls while the runtime is still writing: answer with
            // what there is instead of waiting the default 500 ms for more.
            .set("fetch.wait.max.ms", "10")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        consumer
    }

    /// Reads `topic` from the beginning until `done`, told of each new record, says
    /// the records suffice.
    pub fn consume_until(
        &self,
        topic: &str,
        partitions: u32,
        read_committed: bool,
        limit: Duration,
        done: impl FnMut(&[u8]) -> bool,
    ) -> Vec<Vec<u8>> {
        self.consume_for(topic, partitions, read_committed, limit, done)
            .unwrap_or_else(|got| panic!("{topic}: only {} records after {limit:?}", got.len()))
    }

    /// As [`Broker::consume_until`]; what was read by then when `limit` passes first.
    pub fn consume_for(
        &self,
        topic: &str,
        partitions: u32,
        read_committed: bool,
        limit: Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>, Vec<Vec<u8>>> {
        let consumer = self.reader(topic, partitions, read_committed, false);
        let mut out = Vec::new();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let payload = m.payload().unwrap_or_default().to_vec();
                let finished = done(&payload);
                out.push(payload);
                if finished {
                    return Ok(out);
                }
            }
        }
        Err(out)
    }

    /// Reads `topic` from the beginning until at least `at_least` records arrived
    /// and every partition then reported its end: the whole topic, once its
    /// producers stopped.
    pub fn consume_all(
        &self,
        topic: &str,
        partitions: u32,
        read_committed: bool,
        at_least: usize,
        limit: Duration,
    ) -> Vec<Vec<u8>> {
        let consumer = self.reader(topic, partitions, read_committed, true);
        let mut out = Vec::new();
        let mut at_end = vec![false; partitions as usize];
        let deadline = Instant::now() + limit;
        loop {
            assert!(
                Instant::now() < deadline,
                "{topic}: only {} records after {limit:?}",
                out.len()
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    at_end[m.partition() as usize] = false;
                    out.push(m.payload().unwrap_or_default().to_vec());
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end[p as usize] = true;
                    if out.len() >= at_least && at_end.iter().all(|e| *e) {
                        return out;
                    }
                }
                _ => {}
            }
        }
    }
}
