//! A real Kafka-protocol broker for a test: started on a free loopback port from
//! the binaries `scripts/brokers.sh` installs, stopped when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tansu,
    Noida,
    /// A Kafka cluster given by `STREAMJOIN_KAFKA_BOOTSTRAP` (topics are
    /// recreated by each test).
    External,
}

pub struct Broker {
    pub kind: Kind,
    pub bootstrap: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

fn brokers_bin(name: &str) -> PathBuf {
    let root = std::env::var("STREAMJOIN_BROKERS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(&std::env::var("HOME").expect("HOME is set"))
                .join(".cache/streamjoin/brokers")
        });
    let bin = root.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} not found: run scripts/brokers.sh (scripts/test.sh does) or set STREAMJOIN_BROKERS",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Broker {
    pub fn start(kind: Kind) -> Broker {
        let dir = tempfile::tempdir().expect("broker dir");
        if kind == Kind::External {
            let bootstrap = std::env::var("STREAMJOIN_KAFKA_BOOTSTRAP")
                .expect("STREAMJOIN_KAFKA_BOOTSTRAP names the cluster");
            let broker = Broker {
                kind,
                bootstrap,
                child: None,
                _dir: dir,
            };
            broker.wait_ready(Duration::from_secs(60));
            return broker;
        }
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = match kind {
            Kind::Tansu => {
                let mut c = Command::new(brokers_bin("tansu"));
                c.args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"]);
                c
            }
            Kind::External => unreachable!("no process for an external cluster"),
            Kind::Noida => {
                let mut c = Command::new(brokers_bin("noida-db"));
                c.args([
                    "start",
                    "--only",
                    "kafka",
                    "--kafka-port",
                    &port.to_string(),
                ])
                .arg("--data-dir")
                .arg(dir.path().join("data"));
                c
            }
        };
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("broker log");
        let child = cmd
            .current_dir(dir.path())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("the broker starts");
        let broker = Broker {
            kind,
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
            _dir: dir,
        };
        broker.wait_ready(Duration::from_secs(60));
        broker
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("broker.log")).unwrap_or_default()
    }

    fn wait_ready(&self, limit: Duration) {
        let consumer: BaseConsumer = self.client().create().expect("metadata client");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
            {
                return;
            }
        }
        panic!(
            "{:?} broker did not answer within {limit:?}:\n{}",
            self.kind,
            self.log()
        );
    }

    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        match self.kind {
            Kind::Tansu => {
                let status = Command::new(brokers_bin("tansu"))
                    .args([
                        "topic",
                        "create",
                        name,
                        "--partitions",
                        &partitions.to_string(),
                    ])
                    .args(["--broker", &format!("tcp://{}", self.bootstrap)])
                    .stdout(Stdio::null())
                    .status()
                    .expect("tansu topic create runs");
                assert!(status.success(), "creating topic {name}");
            }
            Kind::Noida | Kind::External => {
                use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
                let admin: AdminClient<rdkafka::client::DefaultClientContext> =
                    self.client().create().expect("admin client");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                if self.kind == Kind::External {
                    // A previous run's topic (an error when there is none is fine).
                    let _ = rt.block_on(admin.delete_topics(&[name], &AdminOptions::new()));
                    let consumer: BaseConsumer = self.client().create().expect("metadata client");
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while consumer
                        .fetch_metadata(Some(name), Duration::from_secs(2))
                        .is_ok_and(|md| {
                            md.topics()
                                .iter()
                                .any(|t| t.name() == name && t.error().is_none())
                        })
                    {
                        assert!(Instant::now() < deadline, "topic {name} was not deleted");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                let topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(1));
                let res = rt
                    .block_on(admin.create_topics([&topic], &AdminOptions::new()))
                    .expect("create_topics");
                for r in res {
                    r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
                }
            }
        }
        // Metadata shows the topic once it is usable.
        let consumer: BaseConsumer = self.client().create().expect("metadata client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let md = consumer.fetch_metadata(Some(name), Duration::from_secs(2));
            if let Ok(md) = md
                && md
                    .topics()
                    .iter()
                    .any(|t| t.name() == name && t.partitions().len() == partitions as usize)
            {
                return;
            }
            assert!(Instant::now() < deadline, "topic {name} never appeared");
        }
    }

    /// Produces every line of `file` to `topic` partition `partition`, in order.
    pub fn produce_lines(&self, topic: &str, partition: i32, file: &Path) -> u64 {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .client()
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .expect("producer");
        let reader = BufReader::new(std::fs::File::open(file).expect("input file"));
        let mut n = 0;
        for line in reader.split(b'\n') {
            let line = line.expect("read line");
            let mut rec = BaseRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(&line[..]);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
            n += 1;
        }
        producer.flush(Duration::from_secs(120)).expect("flush");
        n
    }

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
            // Brokers that answer a fetch with one small batch would otherwise make
            // every round trip wait the default 500 ms.
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
        use rdkafka::Message;
        let consumer = self.reader(topic, partitions, read_committed, false);
        let mut out = Vec::new();
        let deadline = Instant::now() + limit;
        let mut nudge = Nudge::new(self);
        loop {
            if Instant::now() >= deadline {
                return Err(out);
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.payload() == Some(NUDGE) => {}
                Some(Ok(m)) => {
                    nudge.progressed();
                    let payload = m.payload().unwrap_or_default().to_vec();
                    let finished = done(&payload);
                    out.push(payload);
                    if finished {
                        return Ok(out);
                    }
                }
                _ => nudge.if_stalled(topic, partitions),
            }
        }
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
        use rdkafka::Message;
        let consumer = self.reader(topic, partitions, read_committed, true);
        let mut nudge = Nudge::new(self);
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
                Some(Ok(m)) if m.payload() == Some(NUDGE) => {}
                Some(Ok(m)) => {
                    nudge.progressed();
                    at_end[m.partition() as usize] = false;
                    out.push(m.payload().unwrap_or_default().to_vec());
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    at_end[p as usize] = true;
                    if out.len() >= at_least && at_end.iter().all(|e| *e) {
                        return out;
                    }
                    nudge.if_stalled(topic, partitions);
                }
                _ => nudge.if_stalled(topic, partitions),
            }
        }
    }

    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("only a broker this test started can be paused")
    }
}

/// The value of the records [`Nudge`] writes; readers drop them.
pub const NUDGE: &[u8] = b"\0streamjoin-test-nudge";

/// tansu sometimes serves a partition only up to the start of its last
/// compressed batch: the batch stays invisible to readers until another record
/// follows it. A reader that has seen nothing new for a while writes one record
/// of its own to every partition (tansu only; readers skip them).
struct Nudge<'a> {
    broker: &'a Broker,
    last_progress: Instant,
}

impl<'a> Nudge<'a> {
    const QUIET: Duration = Duration::from_secs(2);

    fn new(broker: &'a Broker) -> Self {
        Self {
            broker,
            last_progress: Instant::now(),
        }
    }

    fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    fn if_stalled(&mut self, topic: &str, partitions: u32) {
        if self.broker.kind != Kind::Tansu || self.last_progress.elapsed() < Self::QUIET {
            return;
        }
        let producer: ThreadedProducer<DefaultProducerContext> =
            self.broker.client().create().expect("producer");
        for p in 0..partitions as i32 {
            let rec = BaseRecord::<(), [u8]>::to(topic)
                .partition(p)
                .payload(NUDGE);
            producer.send(rec).map_err(|(e, _)| e).expect("nudge");
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("nudge flush");
        self.last_progress = Instant::now();
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
