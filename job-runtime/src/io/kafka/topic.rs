//! A producer topic handle kept for the life of a sink. rdkafka's `send` names
//! the topic on every record: a C string allocated and freed, and a lookup of
//! the topic under the client's lock, for each of the hundreds of thousands of
//! entries a second. librdkafka's `rd_kafka_produce_batch` takes a topic handle
//! made once and a batch of records, produced under one topic lock and one
//! clock reading. Records with headers (dead letters, late records: few) still
//! go through rdkafka's `send`.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::io::kafka::producer::KafkaProducer;

/// librdkafka's `RD_KAFKA_PARTITION_UA`: the partitioner picks by key.
const PARTITION_UNASSIGNED: i32 = -1;

/// Records per `rd_kafka_produce_batch` call (its count is a C int).
const MAX_BATCH: usize = 1 << 16;

/// Records waiting to be produced together: keys and values in one buffer,
/// so that collecting them allocates nothing once the buffers have grown.
#[derive(Default)]
pub struct OutBatch {
    bytes: Vec<u8>,
    /// Per record: where its key starts, where its key ends and its value
    /// starts, and where its value ends, in `bytes`.
    spans: Vec<[usize; 3]>,
    /// Scratch for the call, rebuilt from `spans` each time.
    records: Vec<rdsys::rd_kafka_message_t>,
}

// SAFETY: the raw pointers in `records` are only set and read during a produce
// call (`&mut self`) and point into `bytes`, owned here.
unsafe impl Send for OutBatch {}

impl OutBatch {
    /// Adds a record whose key `write_key` appends to the buffer it is given.
    pub fn push_with(&mut self, write_key: impl FnOnce(&mut Vec<u8>), value: &[u8]) {
        let start = self.bytes.len();
        write_key(&mut self.bytes);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans.push([start, key_end, self.bytes.len()]);
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.records.clear();
    }
}

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

    /// Queues every record of `batch` (keys and values copied), partitioned by
    /// key, in order, waiting while the producer queue is full; empties it.
    pub fn produce_batch_waiting(&self, batch: &mut OutBatch) -> Result<(), KafkaError> {
        let OutBatch {
            bytes,
            spans,
            records,
        } = batch;
        records.clear();
        records.extend(spans.iter().map(|&[k, v, end]| rdsys::rd_kafka_message_t {
            err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            rkt: std::ptr::null_mut(),
            partition: PARTITION_UNASSIGNED,
            payload: bytes[v..end].as_ptr() as *mut std::ffi::c_void,
            len: end - v,
            key: bytes[k..v].as_ptr() as *mut std::ffi::c_void,
            key_len: v - k,
            offset: 0,
            // What rdkafka's delivery callback reads as the `()` opaque.
            _private: std::ptr::null_mut(),
        }));
        // Records before the first failure are queued; a full queue is retried
        // from that record on.
        let mut start = 0;
        let sent = self.producer.wait_for_room(|| {
            let rest = &mut records[start..];
            let Some(failed) = self.produce_batch(rest) else {
                start += rest.len();
                return Ok(());
            };
            let code = rest[failed].err.into();
            start += failed;
            Err(KafkaError::MessageProduction(code))
        });
        batch.clear();
        sent
    }

    /// Queues `records` under one topic lock and one clock reading per call;
    /// the index of the first record not queued, if any (its `err` says why;
    /// after a full queue every later record of the call is refused too).
    fn produce_batch(&self, records: &mut [rdsys::rd_kafka_message_t]) -> Option<usize> {
        let mut done = 0;
        for chunk in records.chunks_mut(MAX_BATCH) {
            // SAFETY: the handle is live; `chunk` holds `chunk.len()` (at most
            // `MAX_BATCH`, so it fits a C int) records whose keys and values
            // point into the batch's buffer, alive and unchanged for the call;
            // with `RD_KAFKA_MSG_F_COPY` librdkafka copies them before returning
            // and writes only the records' `err` fields.
            unsafe {
                rdsys::rd_kafka_produce_batch(
                    self.topic.as_ptr(),
                    PARTITION_UNASSIGNED,
                    rdsys::RD_KAFKA_MSG_F_COPY,
                    chunk.as_mut_ptr(),
                    chunk.len() as std::ffi::c_int,
                )
            };
            let ok = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
            if let Some(i) = chunk.iter().position(|r| r.err != ok) {
                return Some(done + i);
            }
            done += chunk.len();
        }
        None
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: made by `rd_kafka_topic_new` and destroyed once, before the
        // client (`producer` is dropped after this).
        unsafe { rdsys::rd_kafka_topic_destroy(self.topic.as_ptr()) };
    }
}
