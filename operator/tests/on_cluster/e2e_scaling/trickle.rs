//! Input that keeps arriving during a flow: each (topic, partition)'s lines in
//! rounds, one round every few seconds, from a thread of its own, so that no
//! partition goes idle while the operator rescales or restarts the pods.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};

use crate::s3_job::feed::send_line;

/// The lines still to produce to one partition of one topic.
pub struct Part {
    pub topic: String,
    pub partition: i32,
    pub lines: Vec<String>,
}

pub struct Trickle {
    stop: Sender<()>,
    thread: Option<JoinHandle<u64>>,
}

impl Trickle {
    /// Produces `parts` in `rounds` equal slices, one every `every`.
    pub fn start(bootstrap: &str, parts: Vec<Part>, rounds: usize, every: Duration) -> Trickle {
        let cuts = parts
            .iter()
            .map(|p| (0..=rounds).map(|r| p.lines.len() * r / rounds).collect())
            .collect();
        Trickle::spawn(bootstrap, parts, cuts, every)
    }

    /// Produces `parts` as live traffic: round `r` holds every partition's
    /// records with event times in `[from_ms + r·step_ms, from_ms + (r+1)·step_ms)`,
    /// one round every `every`, so that no partition runs ahead of the others in
    /// event time (each part's lines in event-time order).
    pub fn paced(
        bootstrap: &str,
        parts: Vec<Part>,
        from_ms: i64,
        step_ms: i64,
        every: Duration,
    ) -> Trickle {
        let times: Vec<Vec<i64>> = parts
            .iter()
            .map(|p| p.lines.iter().map(|l| event_time(l)).collect())
            .collect();
        let last = times.iter().flatten().copied().max().unwrap_or(from_ms);
        let rounds = usize::try_from((last - from_ms) / step_ms.max(1) + 1).unwrap_or(1);
        let cuts = times
            .iter()
            .map(|t| {
                (0..=rounds)
                    .map(|r| {
                        let end = from_ms + step_ms * r as i64;
                        if r == rounds {
                            t.len()
                        } else {
                            t.partition_point(|&x| x < end)
                        }
                    })
                    .collect()
            })
            .collect();
        Trickle::spawn(bootstrap, parts, cuts, every)
    }

    /// `cuts[i]`: where each round's slice of `parts[i]` starts (and the last ends).
    fn spawn(bootstrap: &str, parts: Vec<Part>, cuts: Vec<Vec<usize>>, every: Duration) -> Trickle {
        let (stop, stopped) = channel();
        let bootstrap = bootstrap.to_owned();
        let thread = std::thread::spawn(move || run(&bootstrap, &parts, &cuts, every, &stopped));
        Trickle {
            stop,
            thread: Some(thread),
        }
    }

    /// Whether records are still to come at the trickle's pace.
    pub fn is_sending(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the last round, at the trickle's pace; the records produced.
    pub fn join(mut self) -> u64 {
        self.thread
            .take()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| panic!("the input thread panicked"))
            })
            .unwrap_or(0)
    }

    /// Produces what is left at once; the records produced in all.
    pub fn finish(mut self) -> u64 {
        let _ = self.stop.send(());
        self.thread
            .take()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| panic!("the input thread panicked"))
            })
            .unwrap_or(0)
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

fn event_time(line: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["event_time"].as_i64())
        .unwrap_or_else(|| panic!("a record without event_time: {line}"))
}

fn run(
    bootstrap: &str,
    parts: &[Part],
    cuts: &[Vec<usize>],
    every: Duration,
    stop: &Receiver<()>,
) -> u64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        // Retries neither repeat nor reorder the data set.
        .set("enable.idempotence", "true")
        .create()
        .unwrap_or_else(|e| panic!("a producer for {bootstrap}: {e}"));
    let mut sent = 0;
    let mut hurry = false;
    let rounds = cuts
        .iter()
        .map(|c| c.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    for round in 0..rounds {
        for (part, cut) in parts.iter().zip(cuts) {
            let (from, to) = (cut[round], cut[round + 1]);
            for line in &part.lines[from..to] {
                send_line(&producer, &part.topic, part.partition, line);
                sent += 1;
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("flushing round {round} to {bootstrap}: {e}"));
        // The pace of the input, until told to hurry: waiting on the stop
        // signal, not sleeping.
        if !hurry {
            match stop.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => hurry = true,
            }
        }
    }
    sent
}
