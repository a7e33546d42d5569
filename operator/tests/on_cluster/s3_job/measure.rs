//! What a lifecycle flow cost, measured from outside the operator: its wall
//! time, the API writes the operator made meanwhile (from its log of the kube
//! client's requests, which `cluster::operator` turns on), and the longest time
//! the output stopped (the largest gap between the Kafka timestamps of
//! consecutive committed output records around the flow). One line per flow,
//! `FLOW ...`, to collect from the test log.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::broker::Broker;

/// One flow being measured: started by [`Flow::begin`], its end marked by
/// [`Flow::done`] once the operator finished it.
pub struct Flow {
    pub name: &'static str,
    pub start: SystemTime,
    started: Instant,
    pub end: Option<(SystemTime, Duration)>,
}

impl Flow {
    pub fn begin(name: &'static str) -> Flow {
        Flow {
            name,
            start: SystemTime::now(),
            started: Instant::now(),
            end: None,
        }
    }

    /// Marks the end of the flow (the job is where the flow takes it).
    pub fn done(&mut self) {
        self.end = Some((SystemTime::now(), self.started.elapsed()));
    }

    /// The report of the flow, from the operator's log and the whole output
    /// topic (read committed, at least `records` records). Call it after
    /// [`Flow::done`] and after the output is complete.
    pub fn report(
        &self,
        operator_log: &str,
        broker: &Broker,
        topic: &str,
        partitions: u32,
        records: usize,
    ) -> FlowReport {
        let (end, wall) = self
            .end
            .unwrap_or_else(|| (SystemTime::now(), self.started.elapsed()));
        let writes = api_writes(operator_log, self.start, end);
        let stamps = tokio::task::block_in_place(|| {
            output_timestamps(broker, topic, partitions, records, Duration::from_secs(120))
        });
        FlowReport {
            flow: self.name,
            wall,
            api_writes: writes.values().sum(),
            writes_by: writes,
            longest_pause: longest_pause(&stamps, self.start, end),
            records: stamps.len(),
        }
    }
}

/// The figures of one flow.
#[derive(Debug, Clone)]
pub struct FlowReport {
    pub flow: &'static str,
    pub wall: Duration,
    pub api_writes: usize,
    /// The writes by method and resource, e.g. `PATCH statefulsets`.
    pub writes_by: BTreeMap<String, usize>,
    pub longest_pause: Duration,
    /// Committed output records in the whole topic.
    pub records: usize,
}

impl FlowReport {
    /// One line on stderr: `FLOW <name> wall=..s api_writes=N (..) longest_pause=..s records=N`.
    pub fn print(&self) {
        eprintln!("{self}");
    }
}

impl std::fmt::Display for FlowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by: Vec<String> = self
            .writes_by
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        write!(
            f,
            "FLOW {} wall={:.1}s api_writes={} ({}) longest_pause={:.1}s records={}",
            self.flow,
            self.wall.as_secs_f64(),
            self.api_writes,
            by.join(", "),
            self.longest_pause.as_secs_f64(),
            self.records
        )
    }
}

/// The operator's API writes (every request but GET, without the leader
/// Lease's renewals, which come with time and not with the flow) logged
/// between `from` and `to`, counted by method and resource. Each request is
/// one `HTTP{http.method=.. http.url=..}: kube_client::client::builder:
/// requesting` line (a retry is a line of its own: it is a write too).
pub fn api_writes(log: &str, from: SystemTime, to: SystemTime) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for line in log.lines().filter(|l| l.ends_with("requesting")) {
        let Some((at, method, url)) = request_line(line) else {
            continue;
        };
        if at < from || at > to || method == "GET" {
            continue;
        }
        let resource = resource_of(url);
        if resource == "leases" {
            continue;
        }
        *by.entry(format!("{method} {resource}")).or_insert(0) += 1;
    }
    by
}

/// The time, method and URL of a kube client request line.
fn request_line(line: &str) -> Option<(SystemTime, &str, &str)> {
    let at: Timestamp = line.split_whitespace().next()?.parse().ok()?;
    let span = &line[line.find("HTTP{")?..];
    let field = |name: &str| -> Option<&str> {
        let rest = &span[span.find(name)? + name.len()..];
        rest.split([' ', '}']).next()
    };
    Some((
        SystemTime::from(at),
        field("http.method=")?,
        field("http.url=")?,
    ))
}

/// The resource a request's URL names (`statefulsets`, `pods/eviction`,
/// `streamjoinjobs/status`): after `/api/v1` or `/apis/<group>/<version>` and
/// `namespaces/<ns>`.
fn resource_of(url: &str) -> String {
    let path = url.split('?').next().unwrap_or_default();
    let path = path
        .split_once("://")
        .map_or(path, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let skip = if segs.first() == Some(&"api") { 2 } else { 3 };
    let mut rest = segs.get(skip..).unwrap_or_default();
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        rest = &rest[2..];
    }
    match rest {
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => path.to_owned(),
    }
}

/// The Kafka timestamps (ms since the epoch) of every committed record of
/// `topic`, sorted: read from the beginning until at least `at_least` records
/// came and every partition reported its end.
pub fn output_timestamps(
    broker: &Broker,
    topic: &str,
    partitions: u32,
    at_least: usize,
    limit: Duration,
) -> Vec<i64> {
    let consumer: BaseConsumer = broker
        .client()
        .set("group.id", "streamjoin-test-timestamps")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap_or_else(|e| panic!("a consumer of {topic}: {e}"));
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap_or_else(|e| panic!("{topic} partition {p}: {e}"));
    }
    consumer
        .assign(&tpl)
        .unwrap_or_else(|e| panic!("assigning {topic}: {e}"));
    let mut stamps = Vec::new();
    let mut at_end = vec![false; partitions as usize];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end[m.partition() as usize] = false;
                stamps.extend(m.timestamp().to_millis());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end[p as usize] = true;
                if stamps.len() >= at_least && at_end.iter().all(|e| *e) {
                    stamps.sort_unstable();
                    return stamps;
                }
            }
            _ => {}
        }
    }
    panic!(
        "{topic}: only {} timestamped records after {limit:?}",
        stamps.len()
    );
}

/// The longest time without output around `[from, to]`: the largest gap
/// between consecutive `stamps` (sorted, ms) that overlaps the window; from
/// the last record before it to the first after it (or the window's bounds
/// when there is none on that side).
pub fn longest_pause(stamps: &[i64], from: SystemTime, to: SystemTime) -> Duration {
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let (from, to) = (ms(from), ms(to));
    let first = stamps.partition_point(|s| *s < from);
    let last = stamps.partition_point(|s| *s <= to);
    let before = first.checked_sub(1).map_or(from, |i| stamps[i]);
    let after = stamps.get(last).copied().unwrap_or(to);
    let inside = &stamps[first..last];
    let points: Vec<i64> = std::iter::once(before)
        .chain(inside.iter().copied())
        .chain(std::iter::once(after))
        .collect();
    let gap = points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Duration::from_millis(u64::try_from(gap).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        SystemTime::from(
            s.parse::<Timestamp>()
                .unwrap_or_else(|e| panic!("{s}: {e}")),
        )
    }

    #[test]
    fn writes_are_counted_by_method_and_resource_inside_the_window_without_gets_and_leases() {
        let log = "\
2026-12-06T10:00:00.5Z DEBUG HTTP{http.method=PATCH http.url=https://127.0.0.1:6443/apis/apps/v1/namespaces/n/statefulsets/j?fieldManager=x otel.name=\"patch\" otel.kind=\"client\"}: kube_client::client::builder: requesting
2026-12-06T10:00:01Z DEBUG reconcile{job=j}:HTTP{http.method=PATCH http.url=https://127.0.0.1:6443/apis/streamjoin.dev/v1alpha1/namespaces/n/streamjoinjobs/j/status otel.name=\"patch_status\"}: kube_client::client::builder: requesting
2026-12-06T10:00:02Z DEBUG HTTP{http.method=GET http.url=https://127.0.0.1:6443/api/v1/namespaces/n/pods?watch=true}: kube_client::client::builder: requesting
2026-12-06T10:00:03Z DEBUG HTTP{http.method=PUT http.url=https://127.0.0.1:6443/apis/coordination.k8s.io/v1/namespaces/n/leases/op}: kube_client::client::builder: requesting
2026-12-06T10:00:04Z DEBUG HTTP{http.method=POST http.url=https://127.0.0.1:6443/apis/events.k8s.io/v1/namespaces/n/events}: kube_client::client::builder: requesting
2026-12-06T10:00:04Z DEBUG HTTP{http.method=DELETE http.url=https://127.0.0.1:6443/api/v1/namespaces/n/pods/j-0}: kube_client::client::builder: requesting
2026-12-06T10:00:04Z DEBUG HTTP{http.method=DELETE http.url=https://127.0.0.1:6443/api/v1/namespaces/n/pods/j-0}: kube_client::client::builder: stream closed
2026-12-06T10:00:09Z DEBUG HTTP{http.method=POST http.url=https://127.0.0.1:6443/apis/events.k8s.io/v1/namespaces/n/events}: kube_client::client::builder: requesting
";
        let by = api_writes(log, at("2026-12-06T10:00:01Z"), at("2026-12-06T10:00:05Z"));
        let want: BTreeMap<String, usize> = [
            ("PATCH streamjoinjobs/status", 1),
            ("POST events", 1),
            ("DELETE pods", 1),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        assert_eq!(by, want);
    }

    #[test]
    fn the_longest_pause_is_the_largest_gap_around_the_window() {
        let base = at("2026-12-06T10:00:00Z");
        let ms = |t: SystemTime| {
            i64::try_from(
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(0)
        };
        let b = ms(base);
        // Records every 100 ms, then 7 s without, then on; the window starts
        // inside the gap and ends 200 ms after the last record.
        let mut stamps: Vec<i64> = (0..20).map(|i| b + i * 100).collect();
        stamps.extend((0..20).map(|i| b + 1_900 + 7_000 + i * 100));
        let from = base + Duration::from_secs(3);
        let to = base + Duration::from_secs(11);
        assert_eq!(
            longest_pause(&stamps, from, to),
            Duration::from_millis(7_000)
        );
        // No record after the window: the gap runs to its end.
        assert_eq!(
            longest_pause(&stamps[..20], from, to),
            Duration::from_millis(11_000 - 1_900)
        );
    }
}
