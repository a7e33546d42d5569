//! Whether the consumer can reach each of its partitions right now, from
//! librdkafka's statistics. Idleness needs it: a partition is idle only when it
//! is caught up, and an empty local queue says that only while the partition's
//! leader answers. Behind an unreachable or frozen broker, records may be
//! waiting that the consumer has not seen; without this, such a partition went
//! idle during a broker restart, the watermark moved past it (or the inactivity
//! rule fired), and its records were late once the broker was back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// A cell's value while its partition cannot be reached.
pub const LOST: i64 = i64::MAX;
/// A cell's value when contact is not tracked (statistics disabled): always.
pub const ALWAYS: i64 = i64::MIN;

/// How often librdkafka reports statistics (`statistics.interval.ms`), unless
/// the job's consumer properties set it.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

/// One cell per watched partition: the processing time (ms) since which the
/// partition has been reachable without a break, or [`LOST`].
pub type ContactCell = Arc<AtomicI64>;

pub struct Contact {
    /// `None` when statistics are off: every partition counts as reachable.
    rx_idle_max_us: Option<i64>,
    cells: Mutex<Vec<(String, i32, ContactCell)>>,
}

impl Contact {
    /// `statistics_ms` and `fetch_wait_ms` are the consumer's settings. A
    /// broker that is fetched from answers at least every `fetch.wait.max.ms`;
    /// silence well past that (a frozen broker keeps its TCP connection) counts
    /// as lost contact.
    pub fn new(statistics_ms: i64, fetch_wait_ms: i64) -> Self {
        Self {
            rx_idle_max_us: (statistics_ms > 0)
                .then(|| (2 * fetch_wait_ms.max(0) + 2_000).saturating_mul(1_000)),
            cells: Mutex::new(Vec::new()),
        }
    }

    /// The cell of `topic`/`partition`: lost until statistics show its leader.
    pub fn watch(&self, topic: &str, partition: i32) -> ContactCell {
        let start = if self.rx_idle_max_us.is_some() {
            LOST
        } else {
            ALWAYS
        };
        let cell = Arc::new(AtomicI64::new(start));
        if let Ok(mut cells) = self.cells.lock() {
            cells.push((topic.to_owned(), partition, cell.clone()));
        }
        cell
    }

    /// Every broker connection is down: no partition can be reached.
    pub fn lose_all(&self) {
        if self.rx_idle_max_us.is_none() {
            return;
        }
        if let Ok(cells) = self.cells.lock() {
            for (_, _, cell) in cells.iter() {
                cell.store(LOST, Relaxed);
            }
        }
    }

    /// Takes up one statistics report, received at `now_ms`.
    pub fn observe(&self, json: &[u8], now_ms: i64) {
        let Some(rx_idle_max_us) = self.rx_idle_max_us else {
            return;
        };
        let Ok(stats) = serde_json::from_slice::<Stats>(json) else {
            tracing::debug!("kafka statistics not understood; contact unchanged");
            return;
        };
        let answering: HashMap<i32, bool> = stats
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .map(|b| {
                let up = b.state == "UP" && (0..=rx_idle_max_us).contains(&b.rxidle);
                (b.nodeid, up)
            })
            .collect();
        let Ok(cells) = self.cells.lock() else {
            return;
        };
        for (topic, partition, cell) in cells.iter() {
            let reachable = stats
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(&partition.to_string()))
                .is_some_and(|p| {
                    p.fetch_state == "active" && answering.get(&p.leader) == Some(&true)
                });
            let was = cell.load(Relaxed);
            if !reachable {
                cell.store(LOST, Relaxed);
            } else if was == LOST {
                cell.store(now_ms, Relaxed);
            }
        }
    }
}

/// The parts of librdkafka's statistics JSON read here (the rest is ignored).
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: HashMap<String, BrokerStats>,
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Deserialize)]
struct BrokerStats {
    nodeid: i32,
    state: String,
    /// Microseconds since the connection last received (-1: nothing yet).
    rxidle: i64,
}

#[derive(Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Deserialize)]
struct PartitionStats {
    leader: i32,
    fetch_state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(state: &str, rxidle: i64, fetch_state: &str) -> Vec<u8> {
        serde_json::json!({
            "name": "rdkafka#consumer-1",
            "brokers": {
                "GroupCoordinator": {"nodeid": -1, "state": "DOWN", "rxidle": -1},
                "127.0.0.1:9092/1": {"nodeid": 1, "state": state, "rxidle": rxidle},
            },
            "topics": {
                "plays": {"partitions": {
                    "0": {"partition": 0, "leader": 1, "fetch_state": fetch_state},
                    "-1": {"partition": -1, "leader": -1, "fetch_state": "none"},
                }},
            },
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_partition_is_reachable_from_the_first_report_that_shows_its_leader_up() {
        let contact = Contact::new(1000, 100);
        let cell = contact.watch("plays", 0);
        assert_eq!(cell.load(Relaxed), LOST);
        contact.observe(&report("UP", 80_000, "active"), 5_000);
        assert_eq!(cell.load(Relaxed), 5_000);
        // Later reports keep the start of the contact.
        contact.observe(&report("UP", 20_000, "active"), 6_000);
        assert_eq!(cell.load(Relaxed), 5_000);
    }

    #[test]
    fn a_down_leader_a_silent_connection_or_a_stopped_fetch_loses_contact() {
        let contact = Contact::new(1000, 100);
        let cell = contact.watch("plays", 0);
        for lost in [
            report("CONNECT", 10, "active"),
            // Frozen broker: the connection is up but nothing arrived for 10 s.
            report("UP", 10_000_000, "active"),
            report("UP", -1, "active"),
            report("UP", 10, "offset-query"),
        ] {
            contact.observe(&report("UP", 10, "active"), 1_000);
            assert_eq!(cell.load(Relaxed), 1_000);
            contact.observe(&lost, 2_000);
            assert_eq!(cell.load(Relaxed), LOST);
            // Contact regained starts a new span.
            contact.observe(&report("UP", 10, "active"), 3_000);
            assert_eq!(cell.load(Relaxed), 3_000);
            contact.lose_all();
            assert_eq!(cell.load(Relaxed), LOST);
        }
    }

    #[test]
    fn a_partition_missing_from_the_report_is_not_reachable() {
        let contact = Contact::new(1000, 100);
        let cell = contact.watch("impressions", 0);
        contact.observe(&report("UP", 10, "active"), 1_000);
        assert_eq!(cell.load(Relaxed), LOST);
    }

    #[test]
    fn without_statistics_every_partition_counts_as_reachable() {
        let contact = Contact::new(0, 100);
        let cell = contact.watch("plays", 0);
        contact.lose_all();
        contact.observe(&report("DOWN", -1, "active"), 1_000);
        assert_eq!(cell.load(Relaxed), ALWAYS);
    }

    #[test]
    fn a_report_it_cannot_read_changes_nothing() {
        let contact = Contact::new(1000, 100);
        let cell = contact.watch("plays", 0);
        contact.observe(&report("UP", 10, "active"), 1_000);
        contact.observe(b"{not json", 2_000);
        assert_eq!(cell.load(Relaxed), 1_000);
    }
}
