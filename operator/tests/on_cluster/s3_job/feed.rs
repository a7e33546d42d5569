//! Input that keeps arriving: the second half of every partition's records,
//! sent from a thread in slices spread over a given time, so that a flow runs
//! while the job has input to read (and output to write). Once the flow is
//! done, [`Feed::finish`] sends what is left at once: the pacing only has to
//! outlast the flow, not set the test's length.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// The thread sending the input; [`Feed::finish`] waits for its last record.
pub struct Feed {
    thread: Option<JoinHandle<Sent>>,
    /// Dropped to end the pacing.
    hurry: Option<Sender<()>>,
}

/// What the thread sent: records in all, and how many slices were still to
/// come when the pacing ended (0: the flow outlasted the feed).
struct Sent {
    records: u64,
    slices_left: usize,
    slices: usize,
}

/// One slice every this long.
const SLICE: Duration = Duration::from_secs(2);

impl Feed {
    /// Sends the files `<dir>/<stream>-<p>.jsonl` to `<stream>` partition `p`,
    /// each in order, in equal slices one every two seconds over `over`.
    pub fn start(bootstrap: &str, dir: &Path, partitions: u32, over: Duration) -> Feed {
        let topics = [("impressions", "impressions"), ("plays", "plays")];
        Feed::start_to(bootstrap, dir, partitions, over, topics)
    }

    /// As [`Feed::start`], each stream's files to the topic `topics` pairs it
    /// with (`(stream, topic)`).
    pub fn start_to(
        bootstrap: &str,
        dir: &Path,
        partitions: u32,
        over: Duration,
        topics: [(&str, &str); 2],
    ) -> Feed {
        let files: Vec<(String, i32, Vec<String>)> = (0..partitions as i32)
            .flat_map(|p| topics.map(|(stream, topic)| (stream, topic, p)))
            .map(|(stream, topic, p)| {
                let path = dir.join(format!("{stream}-{p}.jsonl"));
                (topic.to_owned(), p, lines(&path))
            })
            .collect();
        let slices = (over.as_secs_f64() / SLICE.as_secs_f64()).ceil().max(1.0) as usize;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            // Retries neither repeat nor reorder the data set.
            .set("enable.idempotence", "true")
            .set("queue.buffering.max.messages", "500000");
        let (hurry, paced) = mpsc::channel();
        let thread = std::thread::spawn(move || send(&config, &files, slices, &paced));
        Feed {
            thread: Some(thread),
            hurry: Some(hurry),
        }
    }

    /// Sends the slices still to come at once and waits until every record is
    /// sent; how many there were.
    pub fn finish(mut self) -> u64 {
        self.hurry.take();
        let Some(thread) = self.thread.take() else {
            return 0;
        };
        let sent = thread
            .join()
            .unwrap_or_else(|_| panic!("the input feed failed"));
        eprintln!(
            "input feed: {} records; {} of {} slices were still to come when the flow ended",
            sent.records, sent.slices_left, sent.slices
        );
        sent.records
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // A test that fails before finish() does not wait for the rest.
        self.hurry.take();
        if !std::thread::panicking()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

fn lines(path: &PathBuf) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send_line(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    line: &str,
) {
    let mut rec = BaseRecord::<(), str>::to(topic)
        .partition(partition)
        .payload(line);
    while let Err((_, back)) = producer.send(rec) {
        rec = back;
        producer.poll(Duration::from_millis(10));
    }
}

/// Slice `i` of every file, then a pause until the next slice is due, or until
/// `paced` says to hurry (its sender dropped, or a message): then the rest
/// without pauses.
fn send(
    config: &ClientConfig,
    files: &[(String, i32, Vec<String>)],
    slices: usize,
    paced: &Receiver<()>,
) -> Sent {
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .create()
        .unwrap_or_else(|e| panic!("an input producer: {e}"));
    let start = Instant::now();
    let mut sent = 0;
    let mut slices_left = 0;
    for i in 0..slices {
        for (topic, partition, lines) in files {
            let per = lines.len().div_ceil(slices);
            let slice = lines.iter().skip(i * per).take(per);
            for line in slice {
                send_line(&producer, topic, *partition, line);
                sent += 1;
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("sending slice {i} of the input: {e}"));
        if i + 1 == slices || slices_left > 0 {
            continue;
        }
        // Pacing, not waiting for a condition: the next slice is due then.
        let due = SLICE * (i as u32 + 1);
        let rest = due.saturating_sub(start.elapsed());
        if !matches!(paced.recv_timeout(rest), Err(RecvTimeoutError::Timeout)) {
            slices_left = slices - i - 1;
        }
    }
    Sent {
        records: sent,
        slices_left,
        slices,
    }
}
