//! One partition's queue read a batch at a time. rdkafka's `PartitionQueue`
//! polls one event per call, and each poll takes the queue's lock and reads the
//! clock: a fifth of the runtime's CPU went there. librdkafka's
//! `rd_kafka_consume_batch_queue` takes up to a batch of messages under one
//! lock. This module and `topic.rs` are the only places that call librdkafka
//! directly; every pointer they hold is owned there and released in `Drop`.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::io::kafka::RuntimeConsumer;
use crate::io::source::InputWaker;

/// Messages taken per call.
const BATCH: usize = 512;

/// What the queue holds next.
pub enum Polled {
    /// A message; [`BatchQueue::payload`] is its value and
    /// [`BatchQueue::timestamp_ms`] its timestamp.
    Message { offset: i64 },
    /// The end of the partition as it is now.
    Eof,
    /// A consumer error carried in the queue (librdkafka retries by itself).
    Error(RDKafkaErrorCode),
    /// Nothing queued right now.
    Empty,
}

/// The low and high watermarks librdkafka last saw for a partition (the high
/// one arrives with every fetch response), without asking the broker: a
/// watermark query waits behind the fetch in flight on the same connection, and
/// when it timed out librdkafka closed the connection, stalling every partition
/// of the broker. `None` until the first fetch response; the low watermark only
/// when statistics are enabled.
pub fn cached_watermarks(
    consumer: &RuntimeConsumer,
    topic: &str,
    partition: i32,
) -> Option<(Option<i64>, i64)> {
    use rdkafka::consumer::Consumer;
    let topic = CString::new(topic).ok()?;
    let invalid = i64::from(rdsys::RD_KAFKA_OFFSET_INVALID);
    let (mut low, mut high) = (invalid, invalid);
    // SAFETY: the consumer's handle is live for the call; the two out-pointers
    // are locals written before the call returns.
    let err = unsafe {
        rdsys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
        return None;
    }
    Some(((low >= 0).then_some(low), high))
}

/// A new reference to `topic`/`partition`'s queue, for the caller to destroy
/// (before the consumer, which the caller keeps alive). `None` when the consumer
/// does not know the partition.
fn partition_queue(
    consumer: &RuntimeConsumer,
    topic: &str,
    partition: i32,
) -> Option<NonNull<rdsys::rd_kafka_queue_t>> {
    use rdkafka::consumer::Consumer;
    let topic = CString::new(topic).ok()?;
    // SAFETY: the consumer's handle is live for the call; the returned
    // reference is the caller's to destroy.
    NonNull::new(unsafe {
        rdsys::rd_kafka_queue_get_partition(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
        )
    })
}

pub struct BatchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The current batch: `batch[..len]` are messages owned here until the
    /// next refill; `batch[next..len]` were not handed out yet.
    batch: Box<[*mut rdsys::rd_kafka_message_t]>,
    len: usize,
    next: usize,
    /// Called by librdkafka when the queue goes from empty to not empty; kept
    /// alive here until the callback is disabled in `Drop`.
    waker: Option<Arc<InputWaker>>,
    // Declared last: dropped after the queue and messages it owns.
    _consumer: Arc<RuntimeConsumer>,
}

/// librdkafka's queue event callback: runs on a librdkafka thread with the
/// queue locked, so it only unparks the reader.
unsafe extern "C" fn on_arrival(_rk: *mut rdsys::rd_kafka_t, opaque: *mut std::ffi::c_void) {
    // SAFETY: `opaque` is the `InputWaker` a `BatchQueue` registered and keeps
    // alive until it disables this callback (under the same queue lock).
    let waker = unsafe { &*opaque.cast::<InputWaker>() };
    waker.wake();
}

// SAFETY: librdkafka queues and messages may be used from any thread; a
// `BatchQueue` is used by one thread at a time (`&mut self` on every call).
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// The queue of `topic`/`partition`, no longer forwarded to the consumer's
    /// main queue (as rdkafka's `split_partition_queue` does). `None` when the
    /// consumer does not know the partition.
    pub fn new(consumer: Arc<RuntimeConsumer>, topic: &str, partition: i32) -> Option<Self> {
        let queue = partition_queue(&consumer, topic, partition)?;
        // SAFETY: `queue` is a valid queue; a null destination stops forwarding.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Some(Self {
            queue,
            batch: vec![std::ptr::null_mut(); BATCH].into_boxed_slice(),
            len: 0,
            next: 0,
            waker: None,
            _consumer: consumer,
        })
    }

    /// From now on `waker` is woken whenever fetched messages reach this
    /// queue while it is empty.
    pub fn wake_on_arrival(&mut self, waker: &Arc<InputWaker>) {
        let waker = self.waker.insert(waker.clone());
        let opaque = Arc::as_ptr(waker).cast_mut().cast::<std::ffi::c_void>();
        // SAFETY: `queue` is valid; `opaque` outlives the registration (held in
        // `self.waker`, replaced or dropped only after the callback is replaced
        // or disabled under the queue's lock).
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), Some(on_arrival), opaque)
        };
    }

    fn release_batch(&mut self) {
        for m in &mut self.batch[..self.len] {
            // SAFETY: each of `batch[..len]` came from `rd_kafka_consume_batch_queue`
            // and is destroyed exactly once (the slots are cleared and `len` reset).
            unsafe { rdsys::rd_kafka_message_destroy(*m) };
            *m = std::ptr::null_mut();
        }
        self.len = 0;
        self.next = 0;
    }

    /// Moves to the next message, without waiting.
    pub fn poll(&mut self) -> Polled {
        if self.next == self.len {
            self.release_batch();
            // SAFETY: `queue` is valid; `batch` has room for `BATCH` pointers,
            // which librdkafka fills and whose count it returns (or -1).
            let n = unsafe {
                rdsys::rd_kafka_consume_batch_queue(
                    self.queue.as_ptr(),
                    0,
                    self.batch.as_mut_ptr(),
                    self.batch.len(),
                )
            };
            match usize::try_from(n) {
                Ok(0) => return Polled::Empty,
                Ok(n) => self.len = n.min(self.batch.len()),
                // -1: librdkafka refused the call (a queue in use elsewhere).
                Err(_) => return Polled::Error(RDKafkaErrorCode::Fail),
            }
        }
        let m = self.batch[self.next];
        self.next += 1;
        // SAFETY: `m` is a live message owned by this batch until the next refill.
        let msg = unsafe { &*m };
        match msg.err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {}
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => return Polled::Eof,
            e => return Polled::Error(e.into()),
        }
        Polled::Message { offset: msg.offset }
    }

    /// The message the last [`Self::poll`] moved to, if that poll found one.
    fn current(&self) -> Option<*mut rdsys::rd_kafka_message_t> {
        self.next
            .checked_sub(1)
            .and_then(|i| self.batch[..self.len].get(i))
            .copied()
    }

    /// The timestamp (milliseconds since the epoch) of the message the last
    /// [`Self::poll`] moved to, when the broker or producer set one. Asked
    /// only when needed: the call was ~1% of a worker's time on every record.
    pub fn timestamp_ms(&self) -> Option<i64> {
        let m = self.current()?;
        let mut ts_type = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `m` is a live message of the current batch; `ts_type` is a
        // valid out-pointer.
        let ts = unsafe { rdsys::rd_kafka_message_timestamp(m, &mut ts_type) };
        (ts >= 0).then_some(ts)
    }

    /// The value of the message the last [`Self::poll`] moved to (empty when
    /// it has none, or when that poll found no message).
    pub fn payload(&self) -> &[u8] {
        let Some(m) = self.current() else {
            return &[];
        };
        // SAFETY: `m` is a live message of the current batch; it is destroyed
        // only by a refill or drop, which need `&mut self` and so end this borrow.
        let msg = unsafe { &*m };
        if msg.payload.is_null() {
            return &[];
        }
        // SAFETY: librdkafka guarantees `len` readable bytes at `payload` for
        // the message's lifetime.
        unsafe { std::slice::from_raw_parts(msg.payload.cast::<u8>(), msg.len) }
    }
}

/// Whether a partition's queue holds fetched messages not read yet, asked from
/// any thread without taking them. A source reports "caught up" only with its
/// own batch used up, so for an idle partition the queue is what is waiting.
pub struct QueueProbe {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    _consumer: Arc<RuntimeConsumer>,
}

// SAFETY: `rd_kafka_queue_length` takes the queue's own lock; the handle is a
// reference of its own, released once in `Drop`.
unsafe impl Send for QueueProbe {}
unsafe impl Sync for QueueProbe {}

impl QueueProbe {
    /// A second handle on `topic`/`partition`'s queue (its forwarding is left as
    /// [`BatchQueue::new`] set it). `None` when the consumer does not know it.
    pub fn new(consumer: Arc<RuntimeConsumer>, topic: &str, partition: i32) -> Option<Self> {
        let queue = partition_queue(&consumer, topic, partition)?;
        Some(Self {
            queue,
            _consumer: consumer,
        })
    }

    pub fn waiting(&self) -> bool {
        // SAFETY: `queue` is a valid queue reference until `Drop`.
        unsafe { rdsys::rd_kafka_queue_length(self.queue.as_ptr()) > 0 }
    }
}

impl Drop for QueueProbe {
    fn drop(&mut self) {
        // SAFETY: the reference came from `rd_kafka_queue_get_partition` and is
        // destroyed once, before the consumer it belongs to.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        if self.waker.is_some() {
            // SAFETY: `queue` is valid; disabling takes the queue's lock, so no
            // callback runs with the waker after this returns.
            unsafe {
                rdsys::rd_kafka_queue_cb_event_enable(
                    self.queue.as_ptr(),
                    None,
                    std::ptr::null_mut(),
                )
            };
        }
        self.release_batch();
        // SAFETY: the queue came from `rd_kafka_queue_get_partition` and is
        // destroyed once, before the consumer it belongs to.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}
