//! A sink that holds entries back to send them together (as the Kafka entry
//! sink does) gets `send_pending` at the end of every drain: entries a drain
//! emits are sent without waiting for more input or a flush.

mod common;

use std::sync::{Arc, Mutex};

use common::{HOUR, T0, imp, play};
use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::engine::runner::{Engine, EngineOptions, ShardIo};
use streamjoin_runtime::engine::shard::ShardSinks;
use streamjoin_runtime::io::sink::{EntrySink, MemorySink, SinkError};
use streamjoin_runtime::io::source::FeedHandle;
use streamjoin_runtime::model::record::Key;
use streamjoin_runtime::time::watermark::ManualClock;

/// Holds emitted entries until `send_pending` or `flush`.
#[derive(Clone, Default)]
struct HoldingSink {
    held: Arc<Mutex<Vec<Vec<u8>>>>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl HoldingSink {
    fn count(list: &Mutex<Vec<Vec<u8>>>) -> usize {
        list.lock().map_or(0, |l| l.len())
    }
}

impl EntrySink for HoldingSink {
    fn emit(&mut self, _key: Key, record: &[u8]) -> Result<(), SinkError> {
        if let Ok(mut held) = self.held.lock() {
            held.push(record.to_vec());
        }
        Ok(())
    }
    fn send_pending(&mut self) -> Result<(), SinkError> {
        if let (Ok(mut held), Ok(mut sent)) = (self.held.lock(), self.sent.lock()) {
            sent.append(&mut held);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.send_pending()
    }
}

#[test]
fn entries_held_by_a_batching_sink_are_sent_at_the_end_of_the_drain_that_emitted_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = HoldingSink::default();
    let feeds = [FeedHandle::default(), FeedHandle::default()];
    let io = vec![ShardIo {
        partition: 0,
        sources: [
            Box::new(feeds[0].source("impressions-0")),
            Box::new(feeds[1].source("plays-0")),
        ],
        sinks: ShardSinks {
            entries: Box::new(sink.clone()),
            late: Box::new(MemorySink::default()),
            dead_letter: Box::new(MemorySink::default()),
            commit: None,
        },
        restore: None,
    }];
    let mut opts = EngineOptions::new(dir.path().join("state"));
    opts.clock = ManualClock::new(T0);
    let mut engine = Engine::new(EngineConfig::default(), io, opts).expect("engine");

    feeds[0].push(imp("a", T0, 1, 1, 1, 1, "tv"));
    feeds[1].push(play("b", T0, 1, 1, "tv", 60));
    engine.run_until_blocked().expect("engine step");
    assert_eq!(HoldingSink::count(&sink.sent), 0, "the window is open");

    // Both inputs move 5 hours on: the first key's 4-hour timer fires. The
    // inputs stay open and nothing flushes.
    feeds[0].push(imp("c", T0 + 5 * HOUR, 2, 2, 1, 1, "tv"));
    feeds[1].push(play("d", T0 + 5 * HOUR, 2, 2, "tv", 60));
    engine.run_until_blocked().expect("engine step");
    assert_eq!(
        HoldingSink::count(&sink.sent),
        1,
        "the fired entry was sent"
    );
    assert_eq!(HoldingSink::count(&sink.held), 0, "nothing left held back");
}
