//! A producer topic handle kept for the life of a sink. rdkafka's `send` names
//! the topic on every record: a C string allocated and freed, and a lookup of
//! the topic under the client's lock, for each of the hundreds of thousands of
//! entries a second. librdkafka's `rd_kafka_produce` takes a topic handle made
//! once. Records with headers (dead letters, late records: few) still go
//! through rdkafka's `send`.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::io::kafka::producer::KafkaProducer;

/// librdkafka's `RD_KAFKA_PARTITION_UA`: the partitioner picks by key.
const PARTITION_UNASSIGNED: i32 = -1;

pub struct TopicHandle {
    topic: NonNull<rdsys::rd_kafka_topic_t>,
    // Declared last: the client outlives the handle made from it.
    producer: Arc<KafkaProducer>,
}

// SAFETY: librdkafka topic handles may be used from any thread.
unsafe impl Send for TopicHandle {}

impl TopicHandle {
    /// The handle of `topic` on `producer`'s client, with the client's
    /// topic settings (partitioner included).
    pub fn new(producer: Arc<KafkaProducer>, topic: &str) -> Result<Self, KafkaError> {
        let name = CString::new(topic)
            .map_err(|_| KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument))?;
        let rk = producer.client().native_ptr();
        // SAFETY: `rk` is the live producer's handle (kept alive by `producer`);
        // a null configuration takes the client's default topic settings; the
        // handle returned is ours to destroy.
        let handle = unsafe { rdsys::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut()) };
        let topic = NonNull::new(handle).ok_or_else(|| {
            // SAFETY: reads this thread's last librdkafka error; no pointers.
            let code = unsafe { rdsys::rd_kafka_last_error() };
            KafkaError::MessageProduction(code.into())
        })?;
        Ok(Self { topic, producer })
    }

    pub fn producer(&self) -> &KafkaProducer {
        &self.producer
    }

    /// Queues one entry, waiting while the producer queue is full.
    pub fn produce_waiting(&self, key: &[u8], value: &[u8]) -> Result<(), KafkaError> {
        self.producer.wait_for_room(|| {
            self.produce(key, value)
                .map_err(KafkaError::MessageProduction)
        })
    }

    /// Queues one record (key and value copied), partitioned by key. Fails with
    /// `QueueFull` when the producer queue has no room.
    pub fn produce(&self, key: &[u8], value: &[u8]) -> Result<(), RDKafkaErrorCode> {
        // SAFETY: the handle is live; with `RD_KAFKA_MSG_F_COPY` librdkafka copies
        // `key` and `value` before returning, so the borrowed slices suffice. The
        // null opaque is what rdkafka's delivery callback reads as `()`.
        let rc = unsafe {
            rdsys::rd_kafka_produce(
                self.topic.as_ptr(),
                PARTITION_UNASSIGNED,
                rdsys::RD_KAFKA_MSG_F_COPY,
                value.as_ptr() as *mut std::ffi::c_void,
                value.len(),
                key.as_ptr() as *const std::ffi::c_void,
                key.len(),
                std::ptr::null_mut(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            // SAFETY: reads this thread's last librdkafka error; no pointers.
            Err(unsafe { rdsys::rd_kafka_last_error() }.into())
        }
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: made by `rd_kafka_topic_new` and destroyed once, before the
        // client (`producer` is dropped after this).
        unsafe { rdsys::rd_kafka_topic_destroy(self.topic.as_ptr()) };
    }
}
