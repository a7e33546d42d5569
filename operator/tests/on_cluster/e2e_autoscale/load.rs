//! Input at a chosen rate: the lines of every (topic, partition), interleaved so
//! that each partition keeps its order and all of them advance together, sent
//! from a thread of its own at the rate (records per second, all partitions
//! together) that a schedule gives for each moment since the start.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};

use crate::e2e_scaling::trickle::Part;
use crate::s3_job::feed::send_line;

/// Records per second at a time since the start.
pub type Schedule = fn(Duration) -> f64;

/// How often the thread sends what the schedule owes.
const TICK: Duration = Duration::from_millis(100);

pub struct Load {
    thread: Option<JoinHandle<u64>>,
}

impl Load {
    pub fn start(bootstrap: &str, parts: Vec<Part>, schedule: Schedule) -> Load {
        let lines = interleaved(parts);
        let bootstrap = bootstrap.to_owned();
        let thread = std::thread::spawn(move || run(&bootstrap, &lines, schedule));
        Load {
            thread: Some(thread),
        }
    }

    /// Whether records are still to come.
    pub fn is_sending(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the last record, at the schedule's pace; how many were sent.
    pub fn finish(mut self) -> u64 {
        self.thread
            .take()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| panic!("the load thread panicked"))
            })
            .unwrap_or(0)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // A test that fails before finish() does not wait for the rest.
        if !std::thread::panicking()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

/// Every part's lines in one sequence: line k of a part of n lines at k/n.
fn interleaved(parts: Vec<Part>) -> Vec<(String, i32, String)> {
    let mut keyed: Vec<(f64, usize, (String, i32, String))> = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let n = part.lines.len().max(1) as f64;
        for (k, line) in part.lines.into_iter().enumerate() {
            keyed.push((k as f64 / n, i, (part.topic.clone(), part.partition, line)));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    keyed.into_iter().map(|(_, _, l)| l).collect()
}

fn run(bootstrap: &str, lines: &[(String, i32, String)], schedule: Schedule) -> u64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        // Retries neither repeat nor reorder the data set.
        .set("enable.idempotence", "true")
        .create()
        .unwrap_or_else(|e| panic!("a producer for {bootstrap}: {e}"));
    let start = Instant::now();
    let (mut last, mut owed, mut sent) = (start, 0.0f64, 0usize);
    while sent < lines.len() {
        // Pacing, not waiting for a condition: the next records are due then.
        std::thread::sleep(TICK);
        let now = Instant::now();
        owed += schedule(now - start) * (now - last).as_secs_f64();
        last = now;
        let n = (owed.floor() as usize).min(lines.len() - sent);
        owed -= n as f64;
        for (topic, partition, line) in &lines[sent..sent + n] {
            send_line(&producer, topic, *partition, line);
        }
        sent += n;
    }
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("flushing the load to {bootstrap}: {e}"));
    sent as u64
}
