//! Issue 16, acceptance 4: a savepoint upgrade of a 2-pod job holding at least
//! 1,000,000 live entries pauses its output for less than 30 s.
//!
//! On the local cluster with Apache Kafka and the S3 store, through the e2e
//! harness (`operator/tests/on_cluster/s3_job`): the operator binary as the chart's
//! ServiceAccount, the example job (parallelism 2) with its savepoints in S3,
//! its join window 5 h over a 6 h data set of 3.2M records. 90% of the input is
//! read first (most entries still open), the rest arrives over `FEED` while a
//! spec change with `upgradeMode: savepoint` runs; then the whole output is
//! compared with the reference. One `UPGRADE_PAUSE` line; exit 1 when the
//! longest pause of the output (the harness's measure over the whole topic, and
//! the same for each shard's entries) is not under the target, 2 when a
//! component is missing; a difference from the reference panics (exit 101).
//!
//! ```sh
//! eval "$(bash scripts/kafka.sh env)"
//! export STREAMJOIN_CLUSTER_DIR=~/.cache/streamjoin/cluster-pause; bash scripts/cluster.sh up >/dev/null
//! source $STREAMJOIN_CLUSTER_DIR/env
//! export STREAMJOIN_S3_DIR=~/.cache/streamjoin/s3-pause; bash scripts/s3.sh up >/dev/null
//! eval "$(bash scripts/s3.sh env)"
//! cargo bench --bench upgrade_pause
//! ```

#[path = "../../../job-runtime/tests/broker/mod.rs"]
mod broker;
#[path = "../../tests/on_cluster/cluster/mod.rs"]
mod cluster;
#[path = "../../../job-runtime/tests/data/mod.rs"]
mod data;
#[path = "../../../job-runtime/tests/s3/mod.rs"]
mod s3;
#[path = "../../tests/on_cluster/s3_job/mod.rs"]
#[allow(unused_imports)]
mod s3_job;

mod input;
mod observe;
mod pauses;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use s3_job::S3Job;
use s3_job::measure::Flow;
use s3_job::store::{BUCKET, ensure_bucket};

const TARGET: Duration = Duration::from_secs(30);
const MIN_LIVE: i64 = 1_000_000;
/// The last 10% of the input arrives over this long, from before the upgrade
/// to after it.
const FEED: Duration = Duration::from_secs(180);
const READY: Duration = Duration::from_secs(600);
/// The example's output topic.
const OUTPUT: &str = "impression-plays";

/// The components, as the tests find them; the line to start each.
const NEEDED: [(&str, &str); 3] = [
    (
        "STREAMJOIN_KUBECONFIG",
        "scripts/cluster.sh up; source $STREAMJOIN_CLUSTER_DIR/env",
    ),
    (
        "STREAMJOIN_KAFKA_HOME",
        "eval \"$(bash scripts/kafka.sh env)\"",
    ),
    (
        "STREAMJOIN_S3_ENDPOINT",
        "scripts/s3.sh up; eval \"$(bash scripts/s3.sh env)\"",
    ),
];

fn main() -> ExitCode {
    let missing: Vec<String> = NEEDED
        .iter()
        .filter(|(var, _)| std::env::var_os(var).is_none_or(|v| v.is_empty()))
        .map(|(var, how)| format!("{var} is unset ({how})"))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "upgrade_pause: needs the local cluster, Kafka and the S3 store: {}",
            missing.join("; ")
        );
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
    match rt.block_on(run()) {
        None => {
            eprintln!("upgrade_pause: a component did not start (see above)");
            ExitCode::from(2)
        }
        Some(pause) if pause < TARGET => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
    }
}

/// The job reads this benchmark's topics with the data set's window; 2 GiB per pod.
fn ops() -> Vec<Value> {
    let mut ops: Vec<Value> = input::TOPICS
        .iter()
        .map(|(stream, topic)| {
            json!({ "op": "replace", "path": format!("/spec/inputs/{stream}/topic"), "value": topic })
        })
        .collect();
    ops.push(json!({ "op": "replace", "path": "/spec/join/window", "value": input::WINDOW }));
    ops.push(json!({
        "op": "replace",
        "path": "/spec/resources",
        "value": { "requests": { "cpu": "100m", "memory": "256Mi" }, "limits": { "memory": "2Gi" } }
    }));
    ops
}

/// The whole benchmark; the longest pause of the output (of any partition)
/// around the upgrade.
async fn run() -> Option<Duration> {
    let set = input::big_set();
    let mut job = S3Job::start("upgrade_pause", "bench-pause", 16).await?;
    let (preloaded, took) =
        tokio::task::block_in_place(|| input::send_all(&job.broker, &set.preload));
    eprintln!("upgrade_pause: {preloaded} records sent before the job starts in {took:.1?}");
    job.data = set.data.clone();
    job.ops.extend(ops());
    ensure_bucket(&job.s3, BUCKET).await;
    job.create_secret(&job.s3.access_key_id, &job.s3.secret_access_key);
    let started = Instant::now();
    job.apply(&[]);
    job.wait_ready("first deployment", READY).await;
    // Input keeps coming from now on (before the pods run out of it and go idle).
    let feed = s3_job::Feed::start_to(
        &job.broker.bootstrap,
        &set.feed,
        s3_job::PARTITIONS,
        FEED,
        input::TOPICS,
    );
    let fed_from = Instant::now();
    let live = observe::wait_live(&job, MIN_LIVE, 50_000, READY).await;
    eprintln!(
        "upgrade_pause: {live} live entries {:.1?} after the apply",
        started.elapsed()
    );
    let now = job.output_now();
    job.wait_output_above(now, Duration::from_secs(60)).await;
    let before = job.pods().await;

    let watch = observe::SavepointWatch::start(&job);
    let mut flow = Flow::begin("savepoint-upgrade-1m-live");
    job.apply(&[json!({
        "op": "add",
        "path": "/spec/podTemplate/env/-",
        "value": { "name": "JOB_REVISION", "value": "2" }
    })]);
    let (_, sp, after) = job.wait_upgraded(&before, READY).await;
    flow.done();
    let upgrade_done = fed_from.elapsed();
    let sp_ms = watch
        .duration_ms(sp.id.as_deref().unwrap_or_default())
        .await;
    let (objects, bytes) = observe::savepoint_size(&job, &sp.location).await;
    let restore = observe::restore_seconds(&job, &after);

    let fed = feed.finish();
    job.assert_output_matches_the_reference();
    let report = job.flow_report(&flow);
    // Called after the whole output is in (flow_report waited for it).
    let by_shard = tokio::task::block_in_place(|| pauses::by_shard(&job.broker, OUTPUT, &flow));
    // The target holds for every shard's output, not only for the topic's.
    let pause = by_shard
        .iter()
        .copied()
        .chain([report.longest_pause])
        .max()
        .unwrap_or_default();
    let shards: Vec<String> = by_shard
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect();
    let line = format!(
        "UPGRADE_PAUSE longest_pause={:.1}s (topic {:.1}s, shards {}s) target<{}s {} live_entries={live} \
         savepoint={} ({objects} objects, {:.1} MiB) restore={} upgrade_wall={:.1}s \
         api_writes={} output={} exact input={} records",
        pause.as_secs_f64(),
        report.longest_pause.as_secs_f64(),
        shards.join("/"),
        TARGET.as_secs(),
        if pause < TARGET { "MET" } else { "MISSED" },
        sp_ms.map_or("?".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
        bytes as f64 / (1024.0 * 1024.0),
        restore
            .iter()
            .map(|s| format!("{s:.2}s"))
            .collect::<Vec<_>>()
            .join("/"),
        report.wall.as_secs_f64(),
        report.api_writes,
        report.records,
        preloaded + fed,
    );
    println!("{line}");
    if upgrade_done > FEED {
        eprintln!(
            "upgrade_pause: the upgrade ended after the input did ({upgrade_done:.1?}): the pause includes idle input"
        );
    }
    Some(pause)
}
