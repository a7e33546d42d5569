//! The broker's JVM: its install, configuration, storage format and process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Keep in step with `scripts/kafka.sh` and `scripts/kafka/pom.xml`.
pub const KAFKA_VERSION: &str = "4.1.1";

/// `$STREAMJOIN_KAFKA_HOME` (default `~/.cache/streamjoin/kafka/<version>`)
/// when it holds the broker's jars. Missing: a panic under `CI=true`, else
/// SKIPPED on stderr and `None`.
pub fn kafka_home() -> Option<PathBuf> {
    let home = std::env::var_os("STREAMJOIN_KAFKA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(super::default_kafka_home);
    let jar = home
        .join("lib")
        .join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    if jar.exists() {
        return Some(home);
    }
    let why = format!(
        "Apache Kafka {KAFKA_VERSION} is not installed in {} (run scripts/kafka.sh install, \
         or set STREAMJOIN_KAFKA_HOME)",
        home.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

pub struct KafkaProcess {
    home: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl KafkaProcess {
    /// Configures and formats a new node, then starts it (not yet ready).
    pub fn start(home: &Path) -> KafkaProcess {
        // Under the target's temporary directory: a failed run's log stays findable.
        let dir = tempfile::Builder::new()
            .prefix("kafka-broker-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("broker dir");
        let (port, cport) = (free_port(), free_port());
        let props = server_properties(dir.path(), port, cport);
        std::fs::write(dir.path().join("server.properties"), props).expect("server.properties");
        let mut process = KafkaProcess {
            home: home.to_path_buf(),
            dir,
            port,
            child: None,
        };
        process.format();
        process.spawn();
        process
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn java(&self) -> Command {
        let mut c = Command::new("java");
        // A small heap: the tests share 2 cores and the memory with builds.
        c.args([
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            self.home.join("config/log4j2.xml").display()
        ))
        .arg(format!("-Dkafka.logs.dir={}", self.dir.path().display()))
        .arg("-cp")
        .arg(format!("{}/*", self.home.join("lib").display()))
        .current_dir(self.dir.path());
        c
    }

    /// Writes the node's storage (cluster id, metadata version) into `log.dirs`.
    fn format(&self) {
        let out = self
            .java()
            // `=` form: one id in 64 starts with `-`, which the tool's parser would take for an option.
            .args([
                "kafka.tools.StorageTool",
                "format",
                &format!("--cluster-id={}", cluster_id()),
            ])
            .arg("-c")
            .arg(self.dir.path().join("server.properties"))
            .output()
            .expect("java runs the storage tool");
        assert!(
            out.status.success(),
            "formatting the broker's storage: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .expect("broker stdout log");
        let child = self
            .java()
            .arg("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("java starts the broker");
        self.child = Some(child);
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "{}{}",
            read("broker.log").unwrap_or_default(),
            read("stdout.log").unwrap_or_default()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("a running broker")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} {pid}");
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped JVM dies on SIGKILL too.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for KafkaProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let path = self.dir.path().to_path_buf();
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tmp"));
            let _ = kept.keep();
            eprintln!("Kafka broker directory kept: {}", path.display());
        }
    }
}

/// A random cluster id in Kafka's form: 16 bytes, URL-safe base64 without padding.
fn cluster_id() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn server_properties(dir: &Path, port: u16, cport: u16) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
# The tests create every topic they use; a typo must not create another.
auto.create.topics.enable=false
# One node: internal topics with one replica (and one partition: a faster start).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
",
        data = dir.join("data").display()
    )
}
