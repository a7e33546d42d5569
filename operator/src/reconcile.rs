//! One reconcile of one StreamJoinJob, the pipeline in order:
//!
//! `validate` → `build::{configmap,service,statefulset,pdb}` → `apply` → `status`
//! (with `conditions`), wrapped in a finalizer, with Events on every transition.
//!
//! Observed state comes from the reflector caches ([`Stores`]); the API is only
//! called to write, and only what changed, so a reconcile that finds nothing to do
//! makes no request at all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Client, Resource, ResourceExt};
use streamjoin_api::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, JobPhase, StreamJoinJob,
    StreamJoinJobStatus,
};

use crate::build::{self, JobRef, statefulset};
use crate::conditions::{Want, merge, transitions};
use crate::error::{Error, ObjectName, Result};
use crate::metrics::Metrics;
use crate::observe::{ObservedChildren, Stores};
use crate::{apply, status, validate};

/// The finalizer the operator puts on every job.
pub const FINALIZER: &str = "streamjoin.dev/cleanup";

/// How often a job is looked at again without any change (drift, status refresh).
#[derive(Clone, Copy, Debug)]
pub struct Requeue {
    pub settled: Duration,
    pub unsettled: Duration,
}

impl Default for Requeue {
    fn default() -> Self {
        Self {
            settled: Duration::from_secs(300),
            unsettled: Duration::from_secs(30),
        }
    }
}

/// Shared by every reconcile of one watch scope.
pub struct Context {
    pub client: Client,
    pub stores: Stores,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub requeue: Requeue,
    /// The clock, replaceable in tests.
    pub now: fn() -> Timestamp,
    /// Malformed objects already reported, by uid → resourceVersion: reported once each.
    malformed_seen: Mutex<HashMap<String, String>>,
    /// Applied hashes of the children last built for each job (by uid), with the
    /// generation they were built from: when the observed children carry exactly these,
    /// nothing needs building, and a reconcile costs a cache lookup.
    built: Mutex<HashMap<String, Built>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Built {
    generation: i64,
    hashes: [String; 4],
    not_applied: Option<String>,
}

fn hashes(c: &build::Children) -> [String; 4] {
    let h = |o: Option<&str>| o.unwrap_or_default().to_owned();
    [
        h(build::applied_hash(&c.config_map)),
        h(build::applied_hash(&c.service)),
        h(build::applied_hash(&c.stateful_set)),
        h(build::applied_hash(&c.pdb)),
    ]
}

/// Whether every observed child carries the memoised hash and is owned by the job.
fn observed_matches(o: &ObservedChildren, memo: &Built, uid: &str) -> bool {
    fn same<K: Resource>(obj: Option<&K>, hash: &str, uid: &str) -> bool {
        obj.is_some_and(|obj| {
            build::applied_hash(obj) == Some(hash)
                && obj
                    .meta()
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.controller == Some(true))
        })
    }
    same(o.config_map.as_deref(), &memo.hashes[0], uid)
        && same(o.service.as_deref(), &memo.hashes[1], uid)
        && same(o.stateful_set.as_deref(), &memo.hashes[2], uid)
        && same(o.pdb.as_deref(), &memo.hashes[3], uid)
}

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: build::MANAGER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            stores,
            metrics,
            requeue: Requeue::default(),
            now: Timestamp::now,
            malformed_seen: Mutex::new(HashMap::new()),
            built: Mutex::new(HashMap::new()),
        }
    }
}

/// The controller's reconcile entry point: times the work and counts the outcome.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<StreamJoinJob>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    let start = Instant::now();
    let result = match &obj.0 {
        Ok(job) => reconcile_job(Arc::new(job.clone()), &ctx).await,
        Err(invalid) => report_malformed(invalid, &ctx).await,
    };
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciles.with_label_values(&[label]).inc();
    ctx.metrics
        .duration
        .with_label_values(&[label])
        .observe(start.elapsed().as_secs_f64());
    if let Err(e) = &result {
        ctx.metrics
            .errors
            .with_label_values(&[e.metric_label()])
            .inc();
    }
    result
}

/// What the controller does after a failed reconcile: log it and retry soon.
pub fn error_policy(
    obj: Arc<DeserializeGuard<StreamJoinJob>>,
    err: &Error,
    _ctx: Arc<Context>,
) -> Action {
    let name = match &obj.0 {
        Ok(j) => format!("{}/{}", j.namespace().unwrap_or_default(), j.name_any()),
        Err(e) => format!("{:?}/{:?}", e.metadata.namespace, e.metadata.name),
    };
    tracing::warn!(job = %name, error = %err, "reconcile failed; retrying in 15s");
    Action::requeue(Duration::from_secs(15))
}

async fn reconcile_job(job: Arc<StreamJoinJob>, ctx: &Context) -> Result<Action> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let api: Api<StreamJoinJob> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, job, |event| async move {
        match event {
            finalizer::Event::Apply(job) => apply_job(&job, ctx).await,
            finalizer::Event::Cleanup(job) => cleanup(&job, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer {
        object: ObjectName::new("StreamJoinJob", &ns, &name),
        source: Box::new(e),
    })
}

/// The pipeline for a job that exists (not being deleted).
pub async fn apply_job(job: &StreamJoinJob, ctx: &Context) -> Result<Action> {
    if !ctx.stores.wait_ready(Duration::from_secs(10)).await {
        tracing::info!("caches not filled yet; retrying shortly");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let r = JobRef::new(job)?;
    let observed = ctx.stores.observe(r.namespace, r.name);
    let now = (ctx.now)();

    // 1. validate
    let verdict = validate::validate(job);
    let mut written = Vec::new();
    let mut not_applied = None;
    let uid = r.owner.uid.clone();
    let memo = job.metadata.generation.and_then(|g| {
        let built = ctx.built.lock().ok()?;
        built.get(&uid).filter(|m| m.generation == g).cloned()
    });
    let up_to_date = memo
        .as_ref()
        .filter(|m| observed_matches(&observed, m, &uid));
    if let Some(m) = up_to_date
        && verdict.is_ok()
    {
        // Fast path: the children are exactly what this generation builds.
        not_applied = m.not_applied.clone();
    } else if let Ok(()) = &verdict {
        // 2. build
        let mut desired = build::children(&r)?;
        if let Some(obs) = observed.stateful_set.as_deref()
            && let Some(note) = statefulset::keep_existing_claims(&mut desired.stateful_set, obs)
        {
            let object = r.object("StatefulSet", r.name);
            desired.stateful_set = build::stamp(desired.stateful_set, &object)?;
            not_applied = Some(note);
        }
        // 3. apply
        written = apply::apply_children(&ctx.client, &r, &desired, &observed).await?;
        for w in &written {
            ctx.metrics.applied.with_label_values(&[w.kind]).inc();
        }
        if let (Some(generation), Ok(mut built)) = (job.metadata.generation, ctx.built.lock()) {
            built.insert(
                uid.clone(),
                Built {
                    generation,
                    hashes: hashes(&desired),
                    not_applied: not_applied.clone(),
                },
            );
        }
    }

    // 4. status
    let invalid = verdict.as_ref().err().map(|v| validate::message(v));
    let new = status::compute(&status::Input {
        job,
        observed: &observed,
        desired_replicas: statefulset::desired_replicas(&r),
        invalid,
        applied: !written.is_empty(),
        not_applied,
        now,
    });
    let old_conditions = job
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if status::needs_write(job, &new) {
        status::write(&ctx.client, r.namespace, r.name, &new).await?;
        ctx.metrics.status_writes.inc();
    }
    ctx.metrics
        .set_job_conditions(r.namespace, r.name, &new.conditions);

    // 5. events
    if !written.is_empty() {
        let list = written
            .iter()
            .map(|o| format!("{} {}", o.kind, o.name))
            .collect::<Vec<_>>()
            .join(", ");
        publish(
            ctx,
            job,
            EventType::Normal,
            "Applied",
            "Apply",
            format!("applied {list}"),
        )
        .await;
    }
    publish_transitions(ctx, job, &old_conditions, &new.conditions).await;

    let settled = new.phase == Some(JobPhase::Running) || new.phase == Some(JobPhase::Suspended);
    Ok(Action::requeue(if settled {
        ctx.requeue.settled
    } else {
        ctx.requeue.unsettled
    }))
}

/// Finalizer cleanup. Children are deleted by the garbage collector through their
/// owner references; checkpoint volumes stay (retention policy `Retain`), so state
/// is never destroyed by accident. What is left to do here is to record the
/// deletion and forget the job's in-memory bookkeeping.
pub async fn cleanup(job: &StreamJoinJob, ctx: &Context) -> Result<Action> {
    if let Some(uid) = job.uid() {
        if let Ok(mut seen) = ctx.malformed_seen.lock() {
            seen.remove(&uid);
        }
        if let Ok(mut built) = ctx.built.lock() {
            built.remove(&uid);
        }
    }
    ctx.metrics.forget_job(
        job.namespace().as_deref().unwrap_or_default(),
        &job.name_any(),
    );
    publish(
        ctx,
        job,
        EventType::Normal,
        "Deleting",
        "Cleanup",
        "children are removed through their owner references; checkpoint volumes are kept"
            .to_owned(),
    )
    .await;
    Ok(Action::await_change())
}

/// A job that cannot be deserialized: report it once per resourceVersion (a Warning
/// Event and a Degraded status) and carry on with the others.
async fn report_malformed(invalid: &InvalidObject, ctx: &Context) -> Result<Action> {
    let meta = &invalid.metadata;
    let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
        return Ok(Action::await_change());
    };
    let uid = meta.uid.clone().unwrap_or_default();
    let version = meta.resource_version.clone().unwrap_or_default();
    {
        let Ok(mut seen) = ctx.malformed_seen.lock() else {
            return Ok(Action::await_change());
        };
        if seen.get(&uid) == Some(&version) {
            return Ok(Action::await_change());
        }
        seen.insert(uid.clone(), version);
    }
    ctx.metrics.malformed.inc();
    tracing::warn!(namespace = ns, name, error = %invalid.error, "StreamJoinJob cannot be read; skipped");
    let message = format!("the object cannot be read: {}", invalid.error);
    let generation = meta.generation;
    let now = (ctx.now)();
    let status = StreamJoinJobStatus {
        observed_generation: generation,
        phase: Some(JobPhase::Degraded),
        conditions: merge(
            &[],
            &[
                Want::new(
                    CONDITION_READY,
                    false,
                    "MalformedObject",
                    "the spec cannot be read",
                ),
                Want::new(
                    CONDITION_PROGRESSING,
                    false,
                    "MalformedObject",
                    "waiting for a readable spec",
                ),
                Want::new(CONDITION_DEGRADED, true, "MalformedObject", message.clone()),
            ],
            generation,
            now,
        ),
        selector: Some(build::selector_string(name)),
        ..StreamJoinJobStatus::default()
    };
    status::write(&ctx.client, ns, name, &status).await?;
    ctx.metrics.set_job_conditions(ns, name, &status.conditions);
    let mut stub = StreamJoinJob::new(name, streamjoin_api::StreamJoinJobSpec::local_default());
    stub.metadata = meta.clone();
    publish(
        ctx,
        &stub,
        EventType::Warning,
        "MalformedObject",
        "Validate",
        message,
    )
    .await;
    Ok(Action::await_change())
}

async fn publish_transitions(
    ctx: &Context,
    job: &StreamJoinJob,
    old: &[Condition],
    new: &[Condition],
) {
    for c in transitions(old, new) {
        let is_true = c.status == "True";
        let (type_, reason) = match (c.type_.as_str(), is_true) {
            (CONDITION_DEGRADED, true) => (EventType::Warning, c.reason.clone()),
            (CONDITION_DEGRADED, false) if !old.is_empty() => {
                (EventType::Normal, "Recovered".to_owned())
            }
            (CONDITION_READY, true) => (EventType::Normal, "Ready".to_owned()),
            (CONDITION_READY, false)
                if old
                    .iter()
                    .any(|o| o.type_ == CONDITION_READY && o.status == "True") =>
            {
                (EventType::Warning, "NotReady".to_owned())
            }
            (CONDITION_PROGRESSING, true) => (EventType::Normal, c.reason.clone()),
            _ => continue,
        };
        let note = if c.message.is_empty() {
            format!("{} is {}", c.type_, c.status)
        } else {
            c.message.clone()
        };
        publish(ctx, job, type_, &reason, "Reconcile", note).await;
    }
}

/// Publishes an Event about the job. Failing to record an Event never fails the reconcile.
async fn publish(
    ctx: &Context,
    job: &StreamJoinJob,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate_note(note)),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &job.object_ref(&())).await {
        tracing::warn!(job = %job.name_any(), error = %e, "could not record an Event");
    }
}

/// Event notes are limited to 1 kB.
fn truncate_note(mut s: String) -> String {
    if s.len() > 1000 {
        let mut cut = 997;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
