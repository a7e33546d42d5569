//! The process's Kafka producer: idempotent (or transactional, one per shard,
//! for exactly-once), with delivery failures tracked so that a flush fails over
//! lost output, and back-pressure while its queue is full.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// Counts failed deliveries (librdkafka reports only those); a failure fails the
/// next flush, so a checkpoint is never taken over lost output.
#[derive(Default)]
pub struct DeliveryTracker {
    pub failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTracker {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        super::throttle::warn(&error.to_string(), reason);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Relaxed);
            if let Ok(mut first) = self.first_error.lock()
                && first.is_none()
            {
                *first = Some(e.to_string());
            }
        }
    }
}

pub struct KafkaProducer {
    inner: ThreadedProducer<DeliveryTracker>,
    flush_timeout: Duration,
    /// Set on SIGTERM: a shard waiting for room in a full queue gives up then
    /// (its output is re-emitted after the restart from the last checkpoint).
    stop: Arc<AtomicBool>,
}

impl KafkaProducer {
    /// `config` carries the connection settings; throughput and safety settings
    /// are added here unless the job overrides them.
    pub fn new(
        mut config: ClientConfig,
        overrides: &[(String, String)],
        stop: Arc<AtomicBool>,
    ) -> Result<Arc<Self>, KafkaError> {
        for (k, v) in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            // Entries leave when event-time timers fire, hours after their
            // records: 100 ms more makes no difference to a consumer, and the
            // larger requests halved the broker's CPU per entry (kafka_e2e:
            // 0.29-0.36 s against 0.46-0.57 s at 20 ms; end to end +7%).
            ("linger.ms", "100"),
            ("batch.size", "1000000"),
            ("compression.type", "lz4"),
            // Failures only: the success reports of every record cost a callback
            // each on the polling thread, and flush() waits for the queue anyway.
            ("delivery.report.only.error", "true"),
            // Memory is bounded by bytes (256 MiB); at 200,000 messages the queue
            // filled during bursts of fired timers while the broker was still
            // acknowledging, and the shards waited ~0.3 s.
            ("queue.buffering.max.messages", "1000000"),
            ("queue.buffering.max.kbytes", "262144"),
            // Same partition for the same key as Java clients.
            ("partitioner", "murmur2_random"),
        ] {
            config.set(k, v);
        }
        for (k, v) in overrides {
            config.set(k, v);
        }
        let inner: ThreadedProducer<DeliveryTracker> =
            config.create_with_context(DeliveryTracker::default())?;
        Ok(Arc::new(Self {
            inner,
            flush_timeout: Duration::from_secs(120),
            stop,
        }))
    }

    /// A transactional producer for one shard (exactly-once): `init_transactions`
    /// fences and aborts whatever a previous process left open under the same
    /// `transactional_id`, then the first transaction begins.
    pub fn transactional(
        mut config: ClientConfig,
        overrides: &[(String, String)],
        stop: Arc<AtomicBool>,
        transactional_id: &str,
        transaction_timeout: Duration,
    ) -> Result<Arc<Self>, KafkaError> {
        config.set("transactional.id", transactional_id);
        config.set(
            "transaction.timeout.ms",
            transaction_timeout.as_millis().to_string(),
        );
        let p = Self::new(config, overrides, stop)?;
        p.inner.init_transactions(p.flush_timeout)?;
        p.inner.begin_transaction()?;
        Ok(p)
    }

    /// Adds `offsets` (the consumer group's, with their metadata) to the open
    /// transaction, commits it and begins the next one.
    pub fn commit_transaction(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    ) -> Result<(), ProduceError> {
        self.flush()?;
        if offsets.count() > 0 {
            let group = group.ok_or(ProduceError::NoGroup)?;
            self.inner
                .send_offsets_to_transaction(offsets, group, self.flush_timeout)?;
        }
        self.inner.commit_transaction(self.flush_timeout)?;
        self.inner.begin_transaction()?;
        Ok(())
    }

    /// Aborts the open transaction (on shutdown; a restart would abort it anyway,
    /// but only when it comes back).
    pub fn abort_transaction(&self) -> Result<(), KafkaError> {
        self.inner.abort_transaction(Duration::from_secs(10))
    }

    pub fn tracker(&self) -> &DeliveryTracker {
        self.inner.context()
    }

    pub(super) fn client(&self) -> &rdkafka::client::Client<DeliveryTracker> {
        self.inner.client()
    }

    /// Sends, waiting while the producer queue is full.
    pub(super) fn send(&self, record: BaseRecord<'_, [u8], [u8], ()>) -> Result<(), KafkaError> {
        // rdkafka hands a record it could not queue back; it is kept for the retry.
        let mut pending = Some(record);
        self.wait_for_room(|| {
            let Some(record) = pending.take() else {
                return Ok(());
            };
            self.inner.send(record).map_err(|(e, back)| {
                pending = Some(back);
                e
            })
        })
    }

    /// Runs `attempt` until the producer queue has room for its record.
    pub(super) fn wait_for_room(
        &self,
        mut attempt: impl FnMut() -> Result<(), KafkaError>,
    ) -> Result<(), KafkaError> {
        loop {
            match attempt() {
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull))
                    if !self.stop.load(Relaxed) =>
                {
                    // The producer thread drains the queue; give it a moment.
                    std::thread::sleep(Duration::from_millis(1));
                }
                done => return done,
            }
        }
    }

    /// Waits for every sent record to be acknowledged; fails if any was lost.
    pub fn flush(&self) -> Result<(), ProduceError> {
        self.inner.flush(self.flush_timeout)?;
        let t = self.tracker();
        let failed = t.failed.load(Relaxed);
        if failed > 0 {
            let first = t
                .first_error
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_default();
            return Err(ProduceError::Undelivered { failed, first });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("{failed} records could not be delivered; first error: {first}")]
    Undelivered { failed: u64, first: String },
    #[error("the consumer has no group metadata to commit offsets with")]
    NoGroup,
}
