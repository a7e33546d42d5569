//! A job started against a broker that does not answer: it waits, says why on
//! `/readyz`, and logs a bounded number of lines while it waits (librdkafka
//! reports the down broker about 27 times a second).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_streamjoin-runtime");
/// How long the broker stays unreachable.
const OUTAGE: Duration = Duration::from_secs(60);

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn readyz(addr: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1)?.to_owned();
    Some((code, body))
}

fn manifest(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata: {{name: down}}\nspec:\n  kafka: {{bootstrapServers: \"127.0.0.1:{port}\"}}\n  inputs: {{impressions: {{topic: impressions}}, plays: {{topic: plays}}}}\n  output: {{topic: out}}\n  deadLetter: {{topic: dl}}\n  lateOutput: {{topic: late}}\n  parallelism: 1\n"
        ),
    )
    .expect("manifest");
    path
}

#[test]
fn an_unreachable_broker_for_a_minute_gives_few_log_lines_and_readyz_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = manifest(dir.path(), closed_port());
    let addr_file = dir.path().join("admin-addr");
    let log = std::fs::File::create(dir.path().join("log")).expect("log file");
    let mut child = Command::new(BIN)
        .args(["run", "--ordinal", "0", "--replicas", "1", "--job"])
        .arg(&job)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--admin-addr", "127.0.0.1:0", "--admin-addr-file"])
        .arg(&addr_file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starts");
    let started = Instant::now();

    let mut answer = None;
    while started.elapsed() < Duration::from_secs(30) {
        let addr = std::fs::read_to_string(&addr_file).unwrap_or_default();
        if let Some((code, body)) = readyz(addr.trim())
            && body.contains("kafka brokers not reachable")
        {
            answer = Some((code, body));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = answer.expect("/readyz names the unreachable brokers");
    assert_eq!(code, 503, "{body}");

    // The outage itself is what is measured: the process runs through it.
    while started.elapsed() < OUTAGE {
        assert!(
            child.try_wait().expect("status").is_none(),
            "it keeps waiting"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGTERM: it stops cleanly while still waiting.
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = child.wait().expect("reaped");
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(dir.path().join("log")).expect("log");
    let lines = text.lines().count();
    eprintln!("{lines} log lines in {:?}", started.elapsed());
    assert!(lines <= 40, "{lines} lines:\n{text}");
    assert!(
        text.contains("AllBrokersDown") || text.contains("not reachable"),
        "{text}"
    );
}
