//! Kafka in and out through rdkafka (bundled librdkafka): client settings from
//! the job's `kafka` section, the start-up topic check, per-partition sources
//! and the entry, dead-letter and late sinks.

pub mod batch;
pub mod contact;
pub mod producer;
pub mod sink;
pub mod source;
pub mod throttle;
pub mod topic;
pub mod txn;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext};
use streamjoin_api::{KafkaSpec, SaslMechanism, SecurityProtocol};

/// Consumer settings for throughput (`spec.kafka.consumerProperties` overrides
/// any of them). The queue of each partition is kept shallow and refilled at
/// once: records parsed soon after they are fetched are still in the CPU
/// caches. Prefetching a whole backlog (200,000 records or 256 MiB a
/// partition) left the workers reading cold memory, and a shallow queue with
/// librdkafka's default refill back-off (`fetch.queue.backoff.ms`, 1 s) ran dry.
pub const CONSUMER_FETCH_SETTINGS: [(&str, &str); 6] = [
    ("fetch.wait.max.ms", "100"),
    ("fetch.max.bytes", "52428800"),
    ("max.partition.fetch.bytes", "4194304"),
    ("queued.min.messages", "20000"),
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "5"),
];

/// Environment the operator sets from the job's Secrets.
pub const ENV_SASL_USERNAME: &str = "STREAMJOIN_KAFKA_SASL_USERNAME";
pub const ENV_SASL_PASSWORD: &str = "STREAMJOIN_KAFKA_SASL_PASSWORD";
pub const ENV_TLS_DIR: &str = "STREAMJOIN_KAFKA_TLS_DIR";

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error(
        "kafka: {what} is required by kafka.{field} but the environment variable {env} is not set"
    )]
    MissingCredential {
        what: &'static str,
        field: &'static str,
        env: &'static str,
    },
    #[error("kafka: topic {topic} does not exist (spec.{field})")]
    MissingTopic { topic: String, field: &'static str },
    #[error(
        "kafka: the input topics are not co-partitioned: {impressions} has {impressions_partitions} partitions, {plays} has {plays_partitions}"
    )]
    PartitionMismatch {
        impressions: String,
        impressions_partitions: usize,
        plays: String,
        plays_partitions: usize,
    },
    #[error("kafka: broker metadata for {topic} carries an error: {reason}")]
    Metadata { topic: String, reason: String },
}

/// The consumer's client context: the end of a partition is normal for a
/// stream that is caught up, not an error to log; statistics and "all brokers
/// down" tell [`contact::Contact`] which partitions can be reached.
pub struct ConsumerEvents {
    pub contact: std::sync::Arc<contact::Contact>,
}

impl ClientContext for ConsumerEvents {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!("{reason}")
            }
            other => {
                if let KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) = other
                {
                    self.contact.lose_all();
                }
                throttle::warn(&other.to_string(), reason)
            }
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        use crate::time::watermark::{Clock, SystemClock};
        // The runtime's processing time on Kafka is the system clock.
        self.contact.observe(statistics, SystemClock.now_ms());
    }
}

impl ConsumerContext for ConsumerEvents {}

pub type RuntimeConsumer = BaseConsumer<ConsumerEvents>;

/// Client settings shared by consumers and producers.
pub fn base_config(spec: &KafkaSpec) -> Result<ClientConfig, KafkaSetupError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &spec.bootstrap_servers);
    let protocol = match spec.security_protocol {
        SecurityProtocol::Plaintext => "plaintext",
        SecurityProtocol::Ssl => "ssl",
        SecurityProtocol::SaslPlaintext => "sasl_plaintext",
        SecurityProtocol::SaslSsl => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    // librdkafka holds back its first cluster connection for half of this
    // (50 ms at its default of 100 ms): every start paid it, ~60 ms of a
    // ~100 ms start-up. 20 ms is below the Java client's 50 ms default; the
    // backoff still doubles per failed attempt up to reconnect.backoff.max.ms.
    // The job's consumer/producer properties can override it.
    c.set("reconnect.backoff.ms", "20");
    if let Some(sasl) = &spec.sasl {
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        c.set("sasl.mechanism", mechanism);
        let user =
            std::env::var(ENV_SASL_USERNAME).map_err(|_| KafkaSetupError::MissingCredential {
                what: "the SASL username",
                field: "sasl.usernameSecretRef",
                env: ENV_SASL_USERNAME,
            })?;
        let password =
            std::env::var(ENV_SASL_PASSWORD).map_err(|_| KafkaSetupError::MissingCredential {
                what: "the SASL password",
                field: "sasl.passwordSecretRef",
                env: ENV_SASL_PASSWORD,
            })?;
        c.set("sasl.username", user);
        c.set("sasl.password", password);
    }
    if spec.tls.is_some() {
        let dir = std::env::var(ENV_TLS_DIR).map_err(|_| KafkaSetupError::MissingCredential {
            what: "the TLS material directory",
            field: "tls.secretRef",
            env: ENV_TLS_DIR,
        })?;
        let dir = std::path::Path::new(&dir);
        c.set("ssl.ca.location", dir.join("ca.crt").display().to_string());
        if dir.join("tls.crt").exists() {
            c.set(
                "ssl.certificate.location",
                dir.join("tls.crt").display().to_string(),
            );
            c.set(
                "ssl.key.location",
                dir.join("tls.key").display().to_string(),
            );
        }
    }
    Ok(c)
}

/// Partition count of a topic, or why it cannot be used.
pub fn partition_count(
    consumer: &RuntimeConsumer,
    topic: &str,
    field: &'static str,
    timeout: Duration,
) -> Result<usize, KafkaSetupError> {
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Err(KafkaSetupError::MissingTopic {
            topic: topic.to_owned(),
            field,
        });
    };
    if let Some(code) = t.error() {
        if code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            || t.partitions().is_empty()
        {
            return Err(KafkaSetupError::MissingTopic {
                topic: topic.to_owned(),
                field,
            });
        }
        return Err(KafkaSetupError::Metadata {
            topic: topic.to_owned(),
            reason: format!("{code:?}"),
        });
    }
    if t.partitions().is_empty() {
        return Err(KafkaSetupError::MissingTopic {
            topic: topic.to_owned(),
            field,
        });
    }
    Ok(t.partitions().len())
}

/// Topics of a job and their check at start: both inputs exist with the same
/// partition count, and every output topic exists.
pub struct Topics<'a> {
    pub impressions: &'a str,
    pub plays: &'a str,
    pub outputs: Vec<(&'a str, &'static str)>,
}

pub fn check_topics(
    consumer: &RuntimeConsumer,
    topics: &Topics<'_>,
    timeout: Duration,
) -> Result<u32, KafkaSetupError> {
    let mut wanted = vec![
        (topics.impressions, "inputs.impressions.topic"),
        (topics.plays, "inputs.plays.topic"),
    ];
    wanted.extend(topics.outputs.iter().copied());
    // All lookups in flight at once: start-up waits for the slowest round trip,
    // not for the sum of five. Errors are still reported in the fields' order.
    let counts: Vec<Result<usize, KafkaSetupError>> = std::thread::scope(|scope| {
        let lookups: Vec<_> = wanted
            .iter()
            .map(|&(topic, field)| {
                scope.spawn(move || partition_count(consumer, topic, field, timeout))
            })
            .collect();
        lookups
            .into_iter()
            .zip(&wanted)
            .map(|(lookup, (topic, _))| {
                lookup.join().unwrap_or_else(|_| {
                    Err(KafkaSetupError::Metadata {
                        topic: (*topic).to_owned(),
                        reason: "the metadata lookup panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut counts = counts.into_iter();
    let mut next = || counts.next().unwrap_or(Ok(0));
    let imp = next()?;
    let plays = next()?;
    if imp != plays {
        return Err(KafkaSetupError::PartitionMismatch {
            impressions: topics.impressions.to_owned(),
            impressions_partitions: imp,
            plays: topics.plays.to_owned(),
            plays_partitions: plays,
        });
    }
    for _ in &topics.outputs {
        next()?;
    }
    u32::try_from(imp).map_err(|_| KafkaSetupError::Metadata {
        topic: topics.impressions.to_owned(),
        reason: format!("{imp} partitions"),
    })
}
