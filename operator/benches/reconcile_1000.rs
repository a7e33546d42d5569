//! 1,000 StreamJoinJobs reconciled against the API double (release build):
//! `cargo bench -p streamjoin-operator --bench reconcile_1000`.
//!
//! Three rounds over all jobs: create (every child and the status written),
//! settle (rollout complete: a status write), steady (nothing changed: no request).
//! Per reconcile it reports the wall time minus the time spent inside the double's
//! handler ("excluding the double's latency"), and the raw wall time. The tokio
//! runtime is single-threaded, so the double's handler runs on the same thread and
//! its time is measured exactly. RSS is the process high-water mark (VmHWM), which
//! includes the double's own copy of every object: an upper bound for the operator.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodStatus};
use kube::api::ObjectMeta;
use kube::core::DeserializeGuard;
use streamjoin_operator::build::JOB_LABEL;
use streamjoin_operator::reconcile::reconcile;
use support::{Harness, NS, job_json};

const JOBS: usize = 1000;
const PODS_PER_JOB: usize = 3;

struct Round {
    name: &'static str,
    net: Vec<Duration>,
    raw: Vec<Duration>,
    requests: usize,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a".to_owned(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    )
}

fn healthy_pod(job: &str, i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job}-{i}")),
            namespace: Some(NS.into()),
            labels: Some(BTreeMap::from([(JOB_LABEL.to_owned(), job.to_owned())])),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "runtime".into(),
                ready: true,
                state: Some(ContainerState {
                    running: Some(Default::default()),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

async fn round(h: &Harness, names: &[String], name: &'static str) -> Round {
    let mut r = Round {
        name,
        net: Vec::with_capacity(names.len()),
        raw: Vec::with_capacity(names.len()),
        requests: 0,
    };
    for job_name in names {
        let job = Arc::new(DeserializeGuard(Ok(h.job(job_name))));
        h.fake.take_handler_time();
        let start = Instant::now();
        reconcile(job, h.ctx.clone())
            .await
            .expect("reconcile succeeds");
        let raw = start.elapsed();
        let double = h.fake.take_handler_time();
        r.raw.push(raw);
        r.net.push(raw.saturating_sub(double));
        r.requests += h.fake.take_calls().len();
    }
    r.net.sort();
    r.raw.sort();
    r
}

fn report(r: &Round) {
    println!(
        "{:<8} p50 {:>10}  p99 {:>10}  max {:>10}   (raw p50 {:>10}, p99 {:>10})  requests {:>5}",
        r.name,
        ms(pct(&r.net, 0.50)),
        ms(pct(&r.net, 0.99)),
        ms(*r.net.last().unwrap_or(&Duration::ZERO)),
        ms(pct(&r.raw, 0.50)),
        ms(pct(&r.raw, 0.99)),
        r.requests,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing else.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let baseline = proc_status_kb("VmRSS:");
        let mut h = Harness::new();
        let names: Vec<String> = (0..JOBS).map(|i| format!("job-{i:04}")).collect();
        for n in &names {
            h.create_job(job_json(n));
        }
        let create = round(&h, &names, "create").await;
        let after_create = proc_status_kb("VmRSS:");
        // The watches deliver the children; the StatefulSet controller rolls out.
        h.sync_caches();
        h.rollout_all_done();
        for n in &names {
            for i in 0..PODS_PER_JOB {
                h.add_pod(healthy_pod(n, i));
            }
        }
        let settle = round(&h, &names, "settle").await;
        let steady = round(&h, &names, "steady").await;
        let steady2 = round(&h, &names, "steady").await;

        println!("reconcile of {JOBS} StreamJoinJobs ({} pods in cache) against the API double, release build", JOBS * PODS_PER_JOB);
        println!("times exclude the double's handler; raw includes it");
        for r in [&create, &settle, &steady, &steady2] {
            report(r);
        }
        let all: Vec<Duration> = {
            let mut v: Vec<Duration> = [&create, &settle, &steady, &steady2].iter().flat_map(|r| r.net.clone()).collect();
            v.sort();
            v
        };
        println!("all      p50 {:>10}  p99 {:>10}  over {} reconciles", ms(pct(&all, 0.5)), ms(pct(&all, 0.99)), all.len());
        println!("RSS before any job: {}, after the create round: {}", mb(baseline), mb(after_create));
        println!("RSS high-water mark (VmHWM): {} (operator caches + the double's copy of every object)", mb(proc_status_kb("VmHWM:")));
        h.fake.clear();
        println!("RSS now, the double's objects dropped: {} (freed memory may stay with the allocator)", mb(proc_status_kb("VmRSS:")));
        assert_eq!(steady.requests, 0, "a steady reconcile must not call the API");
    });
}
