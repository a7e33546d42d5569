//! An Apache Kafka broker for a test: one KRaft node (broker and controller in
//! one JVM) on free loopback ports, from the jars `scripts/kafka.sh install`
//! puts in `$STREAMJOIN_KAFKA_HOME`, killed when dropped.
//!
//! Every test starts its own broker. The tests of the `kafka` binary already
//! run one at a time (`.config/nextest.toml`: they rely on processing-time
//! rules and need the 2 cores), so there is one JVM (~350–400 MB resident) at a
//! time and its start (format and start: 3–5 s, up to ~18 s while builds run)
//! is small beside each test's run; in exchange no test
//! sees another's topics, groups or transactions, and the tests that pause,
//! kill or restart the broker need one of their own anyway.

#![allow(dead_code)]

mod process;
mod read;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

pub use process::kafka_home;

pub struct Broker {
    pub bootstrap: String,
    process: process::KafkaProcess,
}

impl Broker {
    /// A new broker, ready for clients; `None` (after printing SKIPPED) when
    /// Kafka is not installed outside CI. Under `CI=true` a missing install panics.
    /// A node that exits while starting (a port taken between its choice and
    /// the broker's bind, say) is replaced by a new one, three times in all.
    pub fn start() -> Option<Broker> {
        let home = kafka_home()?;
        let started = Instant::now();
        for attempt in 1..=3 {
            let process = process::KafkaProcess::start(&home);
            let mut broker = Broker {
                bootstrap: process.bootstrap(),
                process,
            };
            match broker.wait_ready(Duration::from_secs(120)) {
                Ok(()) => {
                    eprintln!(
                        "Kafka broker {} ready in {:.1} s (formatted and started)",
                        broker.bootstrap,
                        started.elapsed().as_secs_f64()
                    );
                    return Some(broker);
                }
                Err(exited) => eprintln!("attempt {attempt} of 3: {exited}"),
            }
        }
        panic!("the Kafka broker exited while starting, three times");
    }

    /// The broker's own log (warnings and errors, and its start line).
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// Ready: the broker answers metadata with itself in it (the listener opens
    /// only once the node's controller and broker have started). An error says
    /// how the process exited, with its log.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let consumer: BaseConsumer = self.client().create().expect("metadata client");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok_and(|md| !md.brokers().is_empty())
            {
                return Ok(());
            }
            if let Some(status) = self.process.exited() {
                return Err(format!(
                    "the Kafka broker exited while starting ({status}):\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the Kafka broker did not answer within {limit:?}:\n{}",
            self.log()
        );
    }

    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// Creates `name` through the admin API and waits until every partition has
    /// a leader.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            self.client().create().expect("admin client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(1));
        let res = rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
        for r in res {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        let consumer: BaseConsumer = self.client().create().expect("metadata client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let md = consumer.fetch_metadata(Some(name), Duration::from_secs(2));
            if let Ok(md) = md
                && md.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} never became usable"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Produces every line of `file` to `topic` partition `partition`, in order.
    pub fn produce_lines(&self, topic: &str, partition: i32, file: &Path) -> u64 {
        self.produce_part(topic, partition, file, 0, 1)
    }

    /// Produces part `part` of `parts` equal parts of `file`'s lines, in order.
    pub fn produce_part(
        &self,
        topic: &str,
        partition: i32,
        file: &Path,
        part: usize,
        parts: usize,
    ) -> u64 {
        use std::io::BufRead;
        let producer: ThreadedProducer<Deliveries> = self
            .client()
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            // A request retried after a pause or a lost connection must neither
            // repeat nor reorder the data set: repeated records arrive behind
            // the watermark and are late, which the data set's truth is not.
            .set("enable.idempotence", "true")
            .create_with_context(Deliveries::default())
            .expect("producer");
        let reader = std::io::BufReader::new(std::fs::File::open(file).expect("input file"));
        let lines: Vec<Vec<u8>> = reader.split(b'\n').map(|l| l.expect("read line")).collect();
        let (from, to) = (lines.len() * part / parts, lines.len() * (part + 1) / parts);
        let mut n = 0;
        for line in &lines[from..to] {
            let mut rec = BaseRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(&line[..]);
            while let Err((_, back)) = producer.send(rec) {
                rec = back;
                producer.poll(Duration::from_millis(10));
            }
            n += 1;
        }
        producer.flush(Duration::from_secs(120)).expect("flush");
        let lost = producer.context().lost.lock().expect("deliveries");
        assert!(
            lost.is_empty(),
            "the broker did not take {} input records: {:?}",
            lost.len(),
            lost.first()
        );
        n
    }

    /// The broker's JVM.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.process.signal("STOP");
    }

    pub fn resume(&self) {
        self.process.signal("CONT");
    }

    /// SIGKILL, then a new process on the same ports and data: what the broker
    /// wrote to its page cache survives, as after a crash of the JVM alone.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// SIGKILL: the broker is gone until [`Broker::restart`].
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// A new process on the same ports and data, once it answers.
    pub fn restart(&mut self) {
        self.process.spawn();
        if let Err(exited) = self.wait_ready(Duration::from_secs(120)) {
            panic!("{exited}");
        }
    }
}

/// Where `scripts/kafka.sh install` put the broker by default.
pub fn default_kafka_home() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home)
        .join(".cache/streamjoin/kafka")
        .join(process::KAFKA_VERSION)
}

/// Records the broker did not take (their errors): a data set loaded with a
/// gap would make every comparison after it wrong for another reason. Counted,
/// not panicked on: the callback runs inside librdkafka's poll.
#[derive(Default)]
struct Deliveries {
    lost: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut lost) = self.lost.lock()
        {
            lost.push(e.to_string());
        }
    }
}
