//! The example job with its savepoints in the local S3 store, as
//! `examples/local-s3/patch.yaml` says to run it: the store's key pair in a
//! Secret, the overlay, then the endpoint, the broker and the node of the moment.
//! Its input goes in two halves (each partition's first half of records before
//! the job starts, the rest when the test says), so that a test shows output
//! flowing on after what it did; the whole output is then compared with the
//! reference.

#![allow(dead_code)]

pub mod feed;
mod flows;
pub mod measure;
pub mod observe;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use streamjoin_api::StreamJoinJob;

use crate::broker::Broker;
use crate::cluster::example::{JOB, patched_example, placed};
use crate::cluster::kubelet::NodeForTest;
use crate::cluster::operator::OperatorProcess;
use crate::cluster::testbed::{Testbed, testbed};
use crate::cluster::wait::try_poll;
use crate::data::{dataset, expected_entries, oracle_compare};
use crate::s3::S3Env;

pub use feed::Feed;
pub use observe::{PodRun, events, ready_at_generation, savepoint_failed};

pub const OVERLAY: &str = "examples/local-s3/patch.yaml";
/// The Secret the overlay's `savepoints.credentials.secretRef` names.
pub const SECRET: &str = "savepoint-store";
/// The overlay's (and the shipped example's) savepoint location.
pub const LOCATION: &str = "s3://streamjoin-savepoints/impressions-plays";
pub const PARTITIONS: u32 = 4;
const TOPICS: [&str; 5] = [
    "impressions",
    "plays",
    "impression-plays",
    "impression-plays-dead-letter",
    "impression-plays-late",
];
const OUTPUT: &str = "impression-plays";

/// One test's job and everything it runs on. Fields drop in order: the
/// operator, then the kubelet (and its pods), the broker, the namespace.
pub struct S3Job {
    pub op: OperatorProcess,
    pub node: NodeForTest,
    pub broker: Broker,
    pub s3: S3Env,
    pub t: Testbed,
    pub data: PathBuf,
    halves: tempfile::TempDir,
    /// The test's operations on top of the overlay (see [`S3Job::apply`]).
    pub ops: Vec<Value>,
}

impl S3Job {
    /// The testbed, the S3 store, a broker with the first half of the input, a
    /// node and the operator; `None` when a component is missing outside CI
    /// (under `CI=true` each of them panics instead).
    pub async fn start(test: &str, node: &str, seed: u64) -> Option<S3Job> {
        let t = testbed(test).await?;
        let s3 = S3Env::from_env(test)?;
        let broker = Broker::start()?;
        let node = NodeForTest::get(&t.client, &t.kubectl, node).await;
        let data = dataset(100_000, PARTITIONS, seed);
        let halves = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap_or_else(|e| panic!("a directory for the input halves: {e}"));
        split_in_halves(&data, halves.path());
        tokio::task::block_in_place(|| {
            for topic in TOPICS {
                broker.create_topic(topic, PARTITIONS);
            }
            produce(&broker, &halves.path().join("1"));
        });
        let op = OperatorProcess::in_namespace(&t).await;
        let mut ops = placed(&t.ns.name, &broker.bootstrap, Some(&node.name));
        ops.extend([
            json!({ "op": "replace", "path": "/spec/savepoints/endpoint", "value": s3.endpoint }),
            json!({ "op": "replace", "path": "/spec/savepoints/region", "value": s3.region }),
            // The input is finite: should a test end without the end-of-input
            // records (see `end_of_input`), a short inactivity timeout emits the
            // last entries 1 min (idleTimeout) + 5 s after the input ends,
            // instead of the example's 15 min; checkpoints (on which Ready and
            // the transactions' commits wait) every 5 s instead of 30.
            json!({ "op": "replace", "path": "/spec/watermarks/inactivityTimeout", "value": "5s" }),
            json!({ "op": "replace", "path": "/spec/checkpoints/interval", "value": "5s" }),
        ]);
        Some(S3Job {
            op,
            node,
            broker,
            s3,
            t,
            data,
            halves,
            ops,
        })
    }

    pub fn ns(&self) -> &str {
        &self.t.ns.name
    }

    /// The log of pod `name`, as plain text.
    pub fn pod_log(&self, name: &str) -> String {
        observe::without_ansi(&self.node.pod_logs(self.ns(), name))
    }

    /// `kubectl create secret generic savepoint-store` with this key pair, as the
    /// overlay says.
    pub fn create_secret(&self, access_key_id: &str, secret_access_key: &str) {
        self.t.kubectl.run(&[
            "create",
            "secret",
            "generic",
            SECRET,
            "-n",
            self.ns(),
            &format!("--from-literal=AWS_ACCESS_KEY_ID={access_key_id}"),
            &format!("--from-literal=AWS_SECRET_ACCESS_KEY={secret_access_key}"),
        ]);
    }

    /// The example with the overlay, `self.ops` and `extra`, applied server-side.
    pub fn apply(&self, extra: &[Value]) {
        let ops: Vec<Value> = self.ops.iter().chain(extra).cloned().collect();
        let manifest = patched_example(&self.t.kubectl, OVERLAY, &ops);
        self.t
            .kubectl
            .try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `kubectl patch sjj` with a merge patch of the spec.
    pub fn patch_spec(&self, spec: Value) {
        let body = json!({ "spec": spec }).to_string();
        self.t.kubectl.run(&[
            "patch",
            "sjj",
            JOB,
            "-n",
            self.ns(),
            "--type",
            "merge",
            "-p",
            &body,
        ]);
    }

    pub fn jobs(&self) -> Api<StreamJoinJob> {
        Api::namespaced(self.t.client.clone(), self.ns())
    }

    pub async fn job(&self) -> StreamJoinJob {
        self.jobs()
            .get(JOB)
            .await
            .unwrap_or_else(|e| panic!("reading job {JOB}: {e}"))
    }

    /// The second half of every partition's input. Its records are on time only
    /// while the pods have not force-advanced their watermark (all partitions
    /// idle for idleTimeout, 1 min, then inactivityTimeout): a machine too slow
    /// for that says so here rather than as missing entries at the end.
    pub async fn produce_second_half(&self) {
        self.assert_not_force_advanced().await;
        tokio::task::block_in_place(|| produce(&self.broker, &self.halves.path().join("2")));
    }

    async fn assert_not_force_advanced(&self) {
        let watermark = self.job().await.status.and_then(|s| s.watermark);
        let forced = watermark.as_ref().and_then(|w| w.forced_advances);
        assert!(
            forced.unwrap_or(0) == 0,
            "the pods force-advanced before the second half of the input ({watermark:?}): \
             more than a minute passed between the first half and it"
        );
    }

    /// As [`S3Job::produce_second_half`], but sent from a thread in slices
    /// spread over `over`: input keeps arriving while a flow runs.
    pub async fn feed_second_half(&self, over: Duration) -> Feed {
        self.assert_not_force_advanced().await;
        Feed::start(
            &self.broker.bootstrap,
            &self.halves.path().join("2"),
            PARTITIONS,
            over,
        )
    }

    /// The figures of `flow` (see [`measure`]), once the output is complete.
    pub fn flow_report(&self, flow: &measure::Flow) -> measure::FlowReport {
        let expected = expected_entries(&self.data);
        flow.report(
            &self.op.log_text(),
            &self.broker,
            OUTPUT,
            PARTITIONS,
            expected,
        )
    }

    /// As [`S3Job::flow_report`], with the API writes counted in `operator_log`
    /// (e.g. the logs of several operator replicas one after the other).
    pub fn flow_report_from(
        &self,
        flow: &measure::Flow,
        operator_log: &str,
    ) -> measure::FlowReport {
        let expected = expected_entries(&self.data);
        flow.report(operator_log, &self.broker, OUTPUT, PARTITIONS, expected)
    }

    /// The job's pods, by name.
    pub async fn pods(&self) -> Vec<PodRun> {
        let pods: Api<Pod> = Api::namespaced(self.t.client.clone(), self.ns());
        let list = pods
            .list(&ListParams::default().labels(&format!("streamjoin.dev/job={JOB}")))
            .await
            .unwrap_or_else(|e| panic!("listing the pods of {JOB}: {e}"));
        let mut runs: Vec<PodRun> = list.items.iter().map(PodRun::of).collect();
        runs.sort_by(|a, b| a.name.cmp(&b.name));
        runs
    }

    /// The job's claims, name and uid.
    pub async fn claims(&self) -> Vec<(String, String)> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.t.client.clone(), self.ns());
        let list = api
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing the claims of {}: {e}", self.ns()));
        let mut out: Vec<(String, String)> = list
            .items
            .iter()
            .map(|c| {
                (
                    c.metadata.name.clone().unwrap_or_default(),
                    c.metadata.uid.clone().unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Ready, for the spec's current generation (`observedGeneration` too).
    pub async fn wait_ready(&self, what: &str, limit: Duration) -> StreamJoinJob {
        let api = self.jobs();
        let ready = try_poll(limit, || {
            let api = api.clone();
            async move {
                let job = api.get(JOB).await.map_err(|e| e.to_string())?;
                observe::ready_at_generation(&job)?;
                Ok(job)
            }
        })
        .await;
        ready.unwrap_or_else(|last| {
            panic!(
                "{what}: the job was not Ready within {limit:?}: {last}\n{}",
                self.diagnose()
            )
        })
    }

    /// The committed output records there are now (read to every partition's end).
    pub fn output_now(&self) -> usize {
        tokio::task::block_in_place(|| {
            self.broker
                .consume_all(OUTPUT, PARTITIONS, true, 0, Duration::from_secs(60))
                .len()
        })
    }

    /// Waits for every expected entry, then reads the topic to its end: the
    /// reference finds nothing missing or differing and no entry is there twice
    /// (delivery exactlyOnce, read committed).
    pub fn assert_output_matches_the_reference(&self) {
        self.end_of_input();
        let expected = expected_entries(&self.data);
        let records = tokio::task::block_in_place(|| {
            self.broker
                .consume_all(OUTPUT, PARTITIONS, true, expected, Duration::from_secs(300))
        });
        let report = oracle_compare(&self.data, &records, &[]);
        assert!(
            report.contains(" 0 missing") && report.contains(" 0 differing"),
            "{report}"
        );
        assert_eq!(
            records.len(),
            expected,
            "exactly once: no entry twice\n{report}"
        );
    }

    /// What to look at when the job does not get where it should.
    pub fn diagnose(&self) -> String {
        let ns = self.ns();
        let objects = self
            .t
            .kubectl
            .try_run(
                &["get", "sjj,sts,pods,events", "-n", ns, "-o", "wide"],
                None,
            )
            .unwrap_or_else(|e| e);
        let status = self
            .t
            .kubectl
            .try_run(
                &["get", "sjj", JOB, "-n", ns, "-o", "jsonpath={.status}"],
                None,
            )
            .unwrap_or_else(|e| e);
        let pods: Vec<String> = (0..2)
            .map(|i| {
                let log = self.node.pod_logs(ns, &format!("{JOB}-{i}"));
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "pod {i}:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        format!("{objects}\nstatus: {status}\n{}", pods.join("\n"))
    }
}

/// Each input file cut at half its records: `<dir>/1/` and `<dir>/2/`, same names.
impl S3Job {
    /// After the last record of the input, one more in every partition of both
    /// streams, a year ahead of the wall clock: the pods' watermark passes every
    /// entry's timer at once, instead of a minute later when every partition is
    /// idle (idleTimeout) and the inactivity rule advances it. These records wait
    /// for a watermark past them, which never comes: they open no entry and
    /// change nothing the reference expects. Any input sent after them is late.
    fn end_of_input(&self) {
        let dir = self.halves.path().join("end");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let year_ahead = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            + 365 * 24 * 3_600_000;
        for p in 0..PARTITIONS {
            for stream in ["impressions", "plays"] {
                let name = format!("{stream}-{p}.jsonl");
                let text = std::fs::read_to_string(self.data.join(&name))
                    .unwrap_or_else(|e| panic!("{}: {e}", self.data.join(&name).display()));
                let last = text
                    .lines()
                    .last()
                    .unwrap_or_else(|| panic!("{name} is empty"));
                let mut record: Value = serde_json::from_str(last)
                    .unwrap_or_else(|e| panic!("{name}: a record that is not JSON ({e}): {last}"));
                record["event_id"] = json!(format!("end-of-input-{stream}-{p}"));
                record["event_time"] = json!(year_ahead);
                std::fs::write(dir.join(&name), format!("{record}\n"))
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.join(&name).display()));
            }
        }
        tokio::task::block_in_place(|| produce(&self.broker, &dir));
    }
}

fn split_in_halves(data: &Path, dir: &Path) {
    for half in ["1", "2"] {
        std::fs::create_dir_all(dir.join(half))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(half).display()));
    }
    for p in 0..PARTITIONS {
        for stream in ["impressions", "plays"] {
            let name = format!("{stream}-{p}.jsonl");
            let text = std::fs::read_to_string(data.join(&name))
                .unwrap_or_else(|e| panic!("{}: {e}", data.join(&name).display()));
            let lines: Vec<&str> = text.lines().collect();
            let (first, second) = lines.split_at(lines.len() / 2);
            for (half, part) in [("1", first), ("2", second)] {
                let path = dir.join(half).join(&name);
                let mut body = part.join("\n");
                body.push('\n');
                std::fs::write(&path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
}

fn produce(broker: &Broker, dir: &Path) {
    for p in 0..PARTITIONS {
        for stream in ["impressions", "plays"] {
            broker.produce_lines(stream, p as i32, &dir.join(format!("{stream}-{p}.jsonl")));
        }
    }
}
