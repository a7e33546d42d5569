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
        let (stop, stopped) = channel();
        let bootstrap = bootstrap.to_owned();
        let thread = std::thread::spawn(move || run(&bootstrap, &parts, rounds, every, &stopped));
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

fn run(
    bootstrap: &str,
    parts: &[Part],
    rounds: usize,
    every: Duration,
    stop: &Receiver<()>,
) -> u64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap_or_else(|e| panic!("a producer for {bootstrap}: {e}"));
    let mut sent = 0;
    let mut hurry = false;
    for round in 0..rounds {
        for part in parts {
            let (from, to) = (
                part.lines.len() * round / rounds,
                part.lines.len() * (round + 1) / rounds,
            );
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
