//! The raw consume rate: the runtime's own consume path without the join. The
//! consumer is made by the runtime's code from the same job manifest (same
//! client settings: fetch sizes, queue depths, `read_committed`, partition
//! ends), each partition is read through its own queue by the runtime's
//! `KafkaSource` (batched polls), and the partitions are split over the same
//! number of threads the way the engine splits shards over workers. Only the
//! consumer group differs (the job's name with `-raw`), so neither run sees the
//! other's offsets.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rdkafka::{Offset, TopicPartitionList};
use streamjoin_api::StreamJoinJob;
use streamjoin_runtime::io::kafka::source::{SourceSpec, open_then_assign};
use streamjoin_runtime::io::source::{Next, PartitionSource};

/// Reads all `total` records of the job's inputs (`partitions` each) from the
/// beginning on `threads` threads; the time from making the consumer until the
/// last record was read.
pub fn raw_consume(manifest: &str, partitions: i32, threads: usize, total: u64) -> Duration {
    let mut job = StreamJoinJob::from_yaml(manifest).unwrap_or_else(|e| panic!("manifest: {e}"));
    let name = job.metadata.name.clone().unwrap_or_default();
    job.metadata.name = Some(format!("{name}-raw"));
    let topics = [
        job.spec.inputs.impressions.topic.clone(),
        job.spec.inputs.plays.topic.clone(),
    ];
    let started = Instant::now();
    let consumer = streamjoin_runtime::job::connect::consumer(&job)
        .unwrap_or_else(|e| panic!("raw consumer: {e}"));
    let mut assignment = TopicPartitionList::new();
    let mut specs = Vec::new();
    // Shard order, impressions then plays: as the runtime opens them.
    for p in 0..partitions {
        for topic in &topics {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .unwrap_or_else(|e| panic!("{topic}/{p}: {e}"));
            specs.push(SourceSpec {
                topic,
                partition: p,
                skip_before_ms: None,
                start: None,
            });
        }
    }
    let sources = open_then_assign(&consumer, &specs, &assignment)
        .unwrap_or_else(|e| panic!("raw sources: {e}"));
    // Shard i (both its inputs) to thread i % threads, as the engine groups them.
    let mut groups: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, (source, _)) in sources.into_iter().enumerate() {
        groups[(i / 2) % threads].push(source);
    }
    let read = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for group in groups {
            let read = &read;
            scope.spawn(move || read_until(group, read, total, started));
        }
    });
    started.elapsed()
}

/// Reads a turn of up to 1,024 records from each source in turn until `read`
/// (shared by every thread) reaches `total`; yields when all were caught up.
fn read_until(
    mut sources: Vec<impl PartitionSource>,
    read: &AtomicU64,
    total: u64,
    started: Instant,
) {
    let mut bytes = 0usize;
    while read.load(Relaxed) < total {
        let mut n = 0u64;
        for source in &mut sources {
            for _ in 0..1024 {
                match source.next() {
                    Ok(Next::Record(r)) => {
                        bytes += r.payload.len();
                        n += 1;
                    }
                    Ok(_) => break,
                    Err(e) => panic!("raw read of {}: {e}", source.describe()),
                }
            }
        }
        if n == 0 {
            std::thread::yield_now();
        } else {
            read.fetch_add(n, Relaxed);
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "raw read stalled at {} records",
            read.load(Relaxed)
        );
    }
    std::hint::black_box(bytes);
}
