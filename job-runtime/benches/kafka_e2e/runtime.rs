//! One end-to-end run: a `streamjoin-runtime run` process over the loaded
//! topics, timed from its start until `/v1/status` shows every input record read.

use std::process::Command;
use std::time::{Duration, Instant};

/// The job the runtime runs (and whose consumer the raw read uses).
/// `STREAMJOIN_BENCH_PRODUCER_PROPERTIES="k=v,..."`: its producerProperties,
/// `STREAMJOIN_BENCH_CONSUMER_PROPERTIES` its consumerProperties (raw read too);
/// `STREAMJOIN_BENCH_DELIVERY=exactlyOnce`: its delivery.
pub fn manifest_yaml(bootstrap: &str) -> String {
    let properties = |var: &str, field: &str| {
        std::env::var(var)
            .map(|kvs| {
                let lines: String = kvs
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| format!("      {k}: \"{v}\"\n"))
                    .collect();
                format!("    {field}:\n{lines}")
            })
            .unwrap_or_default()
    };
    let producer = properties("STREAMJOIN_BENCH_PRODUCER_PROPERTIES", "producerProperties")
        + &properties("STREAMJOIN_BENCH_CONSUMER_PROPERTIES", "consumerProperties");
    let delivery = std::env::var("STREAMJOIN_BENCH_DELIVERY")
        .map(|d| format!("  delivery: {d}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata:\n  name: bench\nspec:\n  parallelism: 1\n  kafka:\n    bootstrapServers: {bootstrap}\n{producer}  inputs:\n    impressions: {{ topic: impressions }}\n    plays: {{ topic: plays }}\n  output: {{ topic: entries }}\n{delivery}  deadLetter: {{ topic: dead-letter }}\n  lateOutput: {{ topic: late }}\n  recovery:\n    onMissingCheckpoint: earliest\n",
    )
}

/// The runtime started by `perf record` (its only child).
fn perf_child(perf: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{perf}/task/{perf}/children"))
            .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "perf started no runtime");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The machine's busy and total core-seconds so far (`/proc/stat`): how much
/// of the cores a run left idle.
pub fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let all: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(((all - idle) / 100.0, all / 100.0))
}

/// User and system CPU seconds a process has used so far (Linux `/proc`).
pub fn process_cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // Clock ticks are 100 a second on every Linux this runs on.
    Some((ticks(11)? / 100.0, ticks(12)? / 100.0))
}

fn print_thread_cpu(pid: u32, elapsed: Duration) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    let mut rows: Vec<(f64, String)> = tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i)?.parse::<f64>().ok();
            Some(((ticks(11)? + ticks(12)?) / 100.0, name))
        })
        .filter(|(cpu, _)| *cpu > 0.0)
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let wall = elapsed.as_secs_f64();
    let list: Vec<String> = rows
        .iter()
        .map(|(cpu, name)| format!("{name} {cpu:.2} s ({:.0}%)", 100.0 * cpu / wall))
        .collect();
    eprintln!("threads over {wall:.2} s: {}", list.join(", "));
}

fn is_ready(addr: &str) -> bool {
    ureq::get(format!("http://{addr}/readyz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

fn records_read(addr: &str) -> Option<u64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut r = agent.get(format!("http://{addr}/v1/status")).call().ok()?;
    let v: serde_json::Value = r.body_mut().read_json().ok()?;
    let shards = v["shards"].as_array()?;
    Some(
        shards
            .iter()
            .flat_map(|s| s["offsets"].as_object().into_iter().flatten())
            .filter_map(|(_, o)| o.as_u64())
            .sum(),
    )
}

/// One run of the runtime over the loaded topics.
pub struct EndToEnd {
    /// From the process start until every input record was read.
    pub elapsed: Duration,
    /// From the process start until `/readyz` answered.
    pub ready: Duration,
    /// The process's user and system CPU seconds at the end.
    pub cpu: Option<(f64, f64)>,
}

pub fn run_runtime(bootstrap: &str, threads: usize, total: u64) -> EndToEnd {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, manifest_yaml(bootstrap)).unwrap_or_else(|e| panic!("{e}"));
    let addr_file = dir.path().join("admin-addr");
    // STREAMJOIN_BENCH_LOGS=DIR keeps each run's log there (start-up analysis).
    let log_path = match std::env::var_os("STREAMJOIN_BENCH_LOGS") {
        Some(keep) => {
            let n = std::fs::read_dir(&keep).map_or(0, Iterator::count);
            std::path::PathBuf::from(keep).join(format!("runtime-{n}.log"))
        }
        None => dir.path().join("runtime.log"),
    };
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let runtime = env!("CARGO_BIN_EXE_streamjoin-runtime");
    // STREAMJOIN_BENCH_PERF=DIR: each run under `perf record` (all threads), kept there.
    let perf = std::env::var_os("STREAMJOIN_BENCH_PERF");
    let mut command = match &perf {
        Some(keep) => {
            let n = std::fs::read_dir(keep).map_or(0, Iterator::count);
            let mut c = Command::new("perf");
            c.args(["record", "-q", "-F", "1999"]);
            // STREAMJOIN_BENCH_PERF_CALLGRAPH=1: with call stacks (DWARF), to
            // find who calls a shared routine such as memmove.
            if std::env::var_os("STREAMJOIN_BENCH_PERF_CALLGRAPH").is_some() {
                c.args(["--call-graph", "dwarf,16384"]);
            }
            c.arg("-o")
                .arg(std::path::PathBuf::from(keep).join(format!("perf-{n}.data")))
                .arg("--")
                .arg(runtime);
            c
        }
        None => Command::new(runtime),
    };
    let mut child = command
        .args(["run", "--job"])
        .arg(&manifest)
        .args(["--ordinal", "0", "--replicas", "1", "--threads"])
        .arg(threads.to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--admin-addr", "127.0.0.1:0", "--admin-addr-file"])
        .arg(&addr_file)
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    // Start-up (RocksDB, topic checks, restore) is reported apart: it is a
    // fixed cost that a longer run spreads thinner.
    let mut ready = None;
    // STREAMJOIN_BENCH_TIMELINE=1: the records read at every poll, on stderr.
    let timeline = std::env::var_os("STREAMJOIN_BENCH_TIMELINE").is_some();
    let elapsed = loop {
        let addr = std::fs::read_to_string(&addr_file).unwrap_or_default();
        if !addr.is_empty() {
            if ready.is_none() && is_ready(addr.trim()) {
                ready = Some(started.elapsed());
            }
            let read = records_read(addr.trim());
            if timeline {
                eprintln!("{:.3} s: {read:?}", started.elapsed().as_secs_f64());
            }
            if read == Some(total) {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the runtime did not read every record"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let pid = if perf.is_some() {
        perf_child(child.id())
    } else {
        child.id()
    };
    let cpu = process_cpu_seconds(pid);
    // STREAMJOIN_BENCH_THREADS=1: each thread's CPU over the run, on stderr
    // (which threads had the cores, and how much of the wall time they used).
    if std::env::var_os("STREAMJOIN_BENCH_THREADS").is_some() {
        print_thread_cpu(pid, elapsed);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    EndToEnd {
        elapsed,
        ready: ready.unwrap_or(Duration::ZERO),
        cpu,
    }
}
