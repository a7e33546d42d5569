//! One reconcile of one StreamJoinJob, the pipeline in order:
//!
//! `validate` → `build::{configmap,service,statefulset,pdb,networkpolicy}` → `apply` → `status`
//! (with `conditions`), wrapped in a finalizer, with Events on every transition.
//!
//! Observed state comes from the reflector caches ([`Stores`]); the API is only
//! called to write, and only what changed, so a reconcile that finds nothing to do
//! makes no request at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use streamjoin_api::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, JobPhase, StreamJoinJob,
    StreamJoinJobStatus,
};

use crate::build::{self, JobRef, statefulset};
use crate::conditions::{Want, merge, transitions};
use crate::context::Built;
use crate::error::{Error, ObjectName, Result};
use crate::lifecycle::{self, LifecycleOutcome};
// Where they have always been found (the controller, tests, benchmarks).
pub use crate::context::{Clock, Context, Requeue};
use crate::observe::ObservedChildren;
use crate::{apply, status, validate};
use streamjoin_api::{
    CONDITION_INPUTS_INACTIVE, LifecycleState, SavepointOnDelete, SavepointTrigger,
};

/// The finalizer the operator puts on every job.
pub const FINALIZER: &str = "streamjoin.dev/cleanup";

fn hashes(c: &build::Children) -> [String; 5] {
    let h = |o: Option<&str>| o.unwrap_or_default().to_owned();
    [
        h(build::applied_hash(&c.config_map)),
        h(build::applied_hash(&c.service)),
        h(build::applied_hash(&c.stateful_set)),
        h(build::applied_hash(&c.pdb)),
        h(c.network_policy.as_ref().and_then(build::applied_hash)),
    ]
}

/// Whether every observed child carries the memoised hash, is owned by the job and
/// was changed by nobody since the operator applied it (its marker).
fn observed_matches(o: &ObservedChildren, memo: &Built, uid: &str) -> bool {
    fn same<K: Resource>(obj: Option<&K>, memo: &Built, i: usize, uid: &str) -> bool {
        obj.is_some_and(|obj| {
            build::applied_hash(obj) == Some(memo.hashes[i].as_str())
                && apply::marker(obj) == memo.markers[i]
                && obj
                    .meta()
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.controller == Some(true))
        })
    }
    same(o.config_map.as_deref(), memo, 0, uid)
        && same(o.service.as_deref(), memo, 1, uid)
        && same(o.stateful_set.as_deref(), memo, 2, uid)
        && same(o.pdb.as_deref(), memo, 3, uid)
        // No hash: the operator generates no NetworkPolicy, whatever exists.
        && (memo.hashes[4].is_empty() || same(o.network_policy.as_deref(), memo, 4, uid))
}

/// The children of a deployment, with existing volume claims kept (they cannot change).
fn desired_children(
    r: &JobRef<'_>,
    observed: &ObservedChildren,
) -> Result<(build::Children, Option<String>)> {
    let mut desired = build::children(r)?;
    let mut note = None;
    if let Some(obs) = observed.stateful_set.as_deref()
        && let Some(n) = statefulset::keep_existing_claims(&mut desired.stateful_set, obs)
    {
        let object = r.object("StatefulSet", r.name);
        desired.stateful_set = build::stamp(desired.stateful_set, &object)?;
        note = Some(n);
    }
    Ok((desired, note))
}

/// Static reasons for the Degraded condition, from the lifecycle record's failure.
fn failure_reason(reason: &str) -> &'static str {
    match reason {
        "SavepointFailed" => "SavepointFailed",
        "SavepointTimedOut" => "SavepointTimedOut",
        "RolledBack" => "RolledBack",
        "RollbackFailed" => "RollbackFailed",
        "DeployFailed" => "DeployFailed",
        "ParallelismAbovePartitions" => "ParallelismAbovePartitions",
        "StatelessRedeployRequired" => "StatelessRedeployRequired",
        _ => "LifecycleFailed",
    }
}

fn lifecycle_conditions(o: &LifecycleOutcome) -> (Option<Want>, Option<Want>, Vec<Want>) {
    let Some(rec) = o.status.lifecycle.as_ref() else {
        return (None, None, Vec::new());
    };
    let degraded = rec
        .failure
        .as_ref()
        // A DeployFailed is shown by the pod problem itself when one exists.
        .filter(|f| f.reason != "DeployFailed")
        .map(|f| {
            Want::new(
                CONDITION_DEGRADED,
                true,
                failure_reason(&f.reason),
                f.message.clone(),
            )
        });
    let progressing = match rec.state {
        LifecycleState::Savepointing => rec.savepoint.as_ref().map(|p| {
            let reason = match p.trigger {
                SavepointTrigger::Upgrade => "SavepointForUpgrade",
                SavepointTrigger::Suspend => "SavepointForSuspend",
                SavepointTrigger::Delete => "SavepointForDelete",
                SavepointTrigger::Manual | SavepointTrigger::Periodic => "Savepointing",
            };
            Want::new(
                CONDITION_PROGRESSING,
                true,
                reason,
                format!("savepoint {} of {} pods under way", p.id, p.parallelism),
            )
        }),
        LifecycleState::Deploying => Some(Want::new(
            CONDITION_PROGRESSING,
            true,
            "Deploying",
            format!(
                "generation {} is rolling out{}; stable when every pod is ready and has completed a checkpoint",
                rec.target_generation.unwrap_or_default(),
                rec.restore_from
                    .as_deref()
                    .map(|s| format!(" from savepoint {s}"))
                    .unwrap_or_default()
            ),
        )),
        LifecycleState::RollingBack => Some(Want::new(
            CONDITION_PROGRESSING,
            true,
            "RollingBack",
            format!(
                "rolling back to generation {}",
                rec.stable_generation.unwrap_or_default()
            ),
        )),
        LifecycleState::Running | LifecycleState::Suspended => None,
    };
    let extra = o
        .inputs_inactive
        .as_ref()
        .map(|(b, m)| {
            vec![Want::new(
                CONDITION_INPUTS_INACTIVE,
                *b,
                if *b {
                    "AllInputsInactive"
                } else {
                    "InputsActive"
                },
                m.clone(),
            )]
        })
        .unwrap_or_default();
    (degraded, progressing, extra)
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
    if wants_final_savepoint(&job) {
        return final_savepoint(&job, ctx).await;
    }
    if deleting_with_savepoints(&job) {
        let (left, events) = lifecycle::discard::on_job_deletion(&job, ctx).await?;
        for (t, reason, message) in events {
            publish(ctx, &job, t, reason, "DeleteSavepoints", message).await;
        }
        if left {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }
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

/// A job being deleted with `savepoints.onDelete: take` whose pods run and whose
/// final savepoint is neither done nor failed: the finalizer waits for it.
fn wants_final_savepoint(job: &StreamJoinJob) -> bool {
    if job.metadata.deletion_timestamp.is_none()
        || job.spec.savepoints.on_delete != SavepointOnDelete::Take
        || !job.finalizers().iter().any(|f| f == FINALIZER)
    {
        return false;
    }
    let Some(st) = job.status.as_ref() else {
        return false;
    };
    if st
        .last_savepoint
        .as_ref()
        .is_some_and(|s| s.trigger == Some(SavepointTrigger::Delete))
    {
        return false;
    }
    let Some(rec) = st.lifecycle.as_ref() else {
        return false;
    };
    match rec.state {
        LifecycleState::Savepointing => true,
        LifecycleState::Running => {
            rec.failure.is_none()
                && lifecycle::machine::stable_spec(rec).is_some_and(|s| s.parallelism > 0)
        }
        _ => false,
    }
}

/// A job being deleted whose `savepoints.onDelete` removes savepoints (`take`
/// after its final one, `none`): the finalizer waits until they are deleted.
fn deleting_with_savepoints(job: &StreamJoinJob) -> bool {
    job.metadata.deletion_timestamp.is_some()
        && job.spec.savepoints.on_delete != SavepointOnDelete::Skip
        && job.finalizers().iter().any(|f| f == FINALIZER)
}

async fn final_savepoint(job: &StreamJoinJob, ctx: &Context) -> Result<Action> {
    let r = JobRef::new(job)?;
    let observed = ctx.stores.observe(r.namespace, r.name);
    let now = (ctx.now)();
    let outcome = lifecycle::run(job, ctx, &r, &observed, now, &|_, _| None).await?;
    for n in &outcome.notes {
        let t = if n.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, job, t, n.reason, "FinalSavepoint", n.message.clone()).await;
    }
    Ok(Action::requeue(Duration::from_secs(5)))
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
    // 2. lifecycle: decide which spec runs (write-ahead record), act on the runtime.
    let outcome = if verdict.is_ok() {
        Some(run_lifecycle(job, ctx, &r, &observed, now).await?)
    } else {
        None
    };
    // 3. build and 4. apply the deployment the lifecycle chose.
    let applied = match &outcome {
        Some(o) => build_and_apply(job, ctx, &r, &observed, o).await?,
        None => Applied::default(),
    };
    // 5. status
    let invalid = verdict.as_ref().err().map(|v| validate::message(v));
    let new = new_status(job, &r, &observed, invalid, outcome.as_ref(), &applied, now);
    write_status(job, ctx, &r, outcome.as_ref(), &new).await?;
    // 6. events
    publish_apply_events(job, ctx, &applied, outcome.as_ref(), &new).await;
    Ok(requeue_after(job, ctx, outcome.as_ref(), &new, now))
}

/// What building and applying the children did in this reconcile.
#[derive(Default)]
struct Applied {
    /// The children written (none when they were already what the deployment builds).
    written: Vec<ObjectName>,
    /// Parts of the spec that could not be applied, with the reason.
    not_applied: Option<String>,
}

/// Runs the lifecycle, telling it the applied hash of any deployment's StatefulSet.
async fn run_lifecycle(
    job: &StreamJoinJob,
    ctx: &Context,
    r: &JobRef<'_>,
    observed: &ObservedChildren,
    now: Timestamp,
) -> Result<LifecycleOutcome> {
    let hash_of = |spec: &streamjoin_api::StreamJoinJobSpec, restore: Option<&str>| {
        let mut j = job.clone();
        j.spec = spec.clone();
        let mut jr = JobRef::new(&j).ok()?;
        jr.restore_from = restore.map(str::to_owned);
        let record = job.status.as_ref().and_then(|s| s.lifecycle.as_ref());
        jr.restart_marker = record.and_then(|l| l.restart_marker.clone());
        jr.ignore_checkpoints_before = record.and_then(|l| l.ignore_checkpoints_before.clone());
        let (c, _) = desired_children(&jr, observed).ok()?;
        build::applied_hash(&c.stateful_set).map(str::to_owned)
    };
    lifecycle::run(job, ctx, r, observed, now, &hash_of).await
}

/// What identifies a deployment for the built-children memo: the generation, the
/// deployed spec, the restore point and the restart markers.
fn deployment_key(job: &StreamJoinJob, o: &LifecycleOutcome) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        job.metadata.generation.unwrap_or_default(),
        build::stable_hash(
            serde_json::to_string(&o.deployed)
                .unwrap_or_default()
                .as_bytes()
        ),
        o.restore_from.as_deref().unwrap_or_default(),
        o.restart_marker.as_deref().unwrap_or_default(),
        o.ignore_checkpoints_before.as_deref().unwrap_or_default()
    )
}

/// 3. Builds the children of the deployment and 4. applies them, unless the observed
///    children are exactly what the memo says this deployment builds.
async fn build_and_apply(
    job: &StreamJoinJob,
    ctx: &Context,
    r: &JobRef<'_>,
    observed: &ObservedChildren,
    o: &LifecycleOutcome,
) -> Result<Applied> {
    let uid = r.owner.uid.clone();
    let mut deployed_job = job.clone();
    deployed_job.spec = o.deployed.clone();
    let mut dr = JobRef::new(&deployed_job)?;
    dr.restore_from = o.restore_from.clone();
    dr.restart_marker = o.restart_marker.clone();
    dr.ignore_checkpoints_before = o.ignore_checkpoints_before.clone();
    let key = deployment_key(job, o);
    let last = ctx.built.lock().ok().and_then(|b| b.get(&uid).cloned());
    if let Some(m) = last
        .as_ref()
        .filter(|m| m.key == key && observed_matches(observed, m, &uid))
    {
        // Fast path: the children are exactly what this deployment builds.
        return Ok(Applied {
            written: Vec::new(),
            not_applied: m.not_applied.clone(),
        });
    }
    let (mut desired, not_applied) = desired_children(&dr, observed)?;
    desired.network_policy = ctx
        .network_policy
        .as_deref()
        .map(|peers| build::networkpolicy::build(&dr, peers))
        .transpose()?;
    let markers = last.as_ref().map(|m| &m.markers);
    let done = apply::apply_children(&ctx.client, &dr, &desired, observed, markers).await?;
    for w in &done.written {
        ctx.metrics.applied.with_label_values(&[w.kind]).inc();
    }
    if let Ok(mut built) = ctx.built.lock() {
        built.insert(
            uid.clone(),
            Built {
                key,
                hashes: hashes(&desired),
                markers: done.markers,
                not_applied: not_applied.clone(),
            },
        );
    }
    Ok(Applied {
        written: done.written,
        not_applied,
    })
}

/// 5. The status this reconcile computes, with the fields the lifecycle owns: this
///    reconcile's, or (invalid spec) the stored ones.
fn new_status(
    job: &StreamJoinJob,
    r: &JobRef<'_>,
    observed: &ObservedChildren,
    invalid: Option<String>,
    outcome: Option<&LifecycleOutcome>,
    applied: &Applied,
    now: Timestamp,
) -> StreamJoinJobStatus {
    let deployed_replicas = match outcome {
        Some(o) if o.deployed.state == streamjoin_api::JobState::Suspended => 0,
        Some(o) => o.deployed.parallelism,
        None => statefulset::desired_replicas(r),
    };
    let (lifecycle_degraded, lifecycle_progressing, extra) =
        outcome.map(lifecycle_conditions).unwrap_or_default();
    let suspended = match outcome {
        Some(o) => o.deployed.state == streamjoin_api::JobState::Suspended,
        None => job.spec.state == streamjoin_api::JobState::Suspended,
    };
    let mut new = status::compute(&status::Input {
        job,
        observed,
        desired_replicas: deployed_replicas,
        invalid,
        applied: !applied.written.is_empty(),
        not_applied: applied.not_applied.clone(),
        now,
        suspended,
        lifecycle_degraded,
        lifecycle_progressing,
        extra,
    });
    let owned = outcome
        .map(|o| o.status.clone())
        .or_else(|| job.status.clone())
        .unwrap_or_default();
    new.lifecycle = owned.lifecycle;
    new.last_savepoint = owned.last_savepoint;
    new.savepoint_history = owned.savepoint_history;
    new.upgrade = owned.upgrade;
    new.autoscaler = owned.autoscaler;
    new.watermark = owned.watermark;
    new.last_checkpoint = owned.last_checkpoint;
    new.audit = owned.audit;
    new
}

/// Writes the status when it differs from the stored one, and exports the conditions.
async fn write_status(
    job: &StreamJoinJob,
    ctx: &Context,
    r: &JobRef<'_>,
    outcome: Option<&LifecycleOutcome>,
    new: &StreamJoinJobStatus,
) -> Result<()> {
    // The write-ahead record may have been written already in this reconcile.
    let differs = match outcome.map(|o| &o.written) {
        Some(s) => status::owned_part(s) != *new,
        None => status::needs_write(job, new),
    };
    if differs {
        status::write(&ctx.client, r.namespace, r.name, new).await?;
        ctx.metrics.status_writes.inc();
    }
    ctx.metrics
        .set_job_conditions(r.namespace, r.name, &new.conditions);
    Ok(())
}

/// 6. Events: the children applied, the conditions that changed, the lifecycle's notes.
async fn publish_apply_events(
    job: &StreamJoinJob,
    ctx: &Context,
    applied: &Applied,
    outcome: Option<&LifecycleOutcome>,
    new: &StreamJoinJobStatus,
) {
    if !applied.written.is_empty() {
        let list = applied
            .written
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
    let old_conditions = job
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    publish_transitions(ctx, job, &old_conditions, &new.conditions).await;
    if let Some(o) = outcome {
        for n in &o.notes {
            let t = if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(ctx, job, t, n.reason, "Lifecycle", n.message.clone()).await;
        }
    }
}

/// When to look at the job again: soon while the lifecycle waits on something no
/// watch event announces, later once the job is settled.
/// How often a savepoint under way is asked about.
const SAVEPOINT_POLL: Duration = Duration::from_secs(2);

fn requeue_after(
    job: &StreamJoinJob,
    ctx: &Context,
    outcome: Option<&LifecycleOutcome>,
    new: &StreamJoinJobStatus,
    now: Timestamp,
) -> Action {
    // A savepoint takes about a second: asking every 10 s made most of an
    // upgrade's pause.
    if outcome.is_some_and(|o| o.savepoint_pending) {
        return Action::requeue(ctx.requeue.unsettled.min(SAVEPOINT_POLL));
    }
    if outcome.is_some_and(|o| o.busy) {
        return Action::requeue(ctx.requeue.unsettled.min(Duration::from_secs(10)));
    }
    let settled = new.phase == Some(JobPhase::Running) || new.phase == Some(JobPhase::Suspended);
    let after = if settled {
        ctx.requeue.settled
    } else {
        ctx.requeue.unsettled
    };
    // No event announces that the next periodic savepoint is due.
    let due = until_periodic_savepoint(job, new, now).unwrap_or(after);
    // Nor that the pods force-advanced the watermark (InputsInactive, its Event).
    let quiet = until_inputs_inactive(job).unwrap_or(after);
    Action::requeue(after.min(due).min(quiet))
}

/// The shortest time after which quiet inputs can have the pods force-advance the
/// watermark (idleTimeout, then inactivityTimeout); `None` when that is disabled.
fn until_inputs_inactive(job: &StreamJoinJob) -> Option<Duration> {
    let w = &job.spec.watermarks;
    Some(w.idle_timeout.0 + w.inactivity_timeout.as_ref()?.0)
}

/// Time until `savepoints.interval` asks for the next periodic savepoint (at
/// least a second).
fn until_periodic_savepoint(
    job: &StreamJoinJob,
    new: &StreamJoinJobStatus,
    now: Timestamp,
) -> Option<Duration> {
    let every = job.spec.savepoints.interval.as_ref()?.0;
    let last: Option<Timestamp> = new
        .last_savepoint
        .as_ref()
        .and_then(|s| s.time.parse().ok());
    let elapsed = last
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or_default();
    Some(every.saturating_sub(elapsed).max(Duration::from_secs(1)))
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
        if let Ok(mut t) = ctx.token_secrets.lock() {
            t.remove(&uid);
        }
        if let Ok(mut m) = ctx.memory.lock() {
            m.remove(&uid);
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

#[cfg(test)]
mod tests {
    use super::*;
    use streamjoin_api::{HumanDuration, SavepointStatus};

    fn job_every(secs: u64) -> StreamJoinJob {
        let mut j = build::test_support::job("clicks");
        j.spec.savepoints.interval = Some(HumanDuration::from_secs(secs));
        j
    }

    fn taken_at(time: &str) -> StreamJoinJobStatus {
        StreamJoinJobStatus {
            last_savepoint: Some(SavepointStatus {
                id: None,
                location: "s3://b/sp/1".into(),
                time: time.into(),
                trigger: None,
                parallelism: None,
                deletion_error: None,
            }),
            ..StreamJoinJobStatus::default()
        }
    }

    #[test]
    fn a_forced_advance_is_looked_for_once_idle_and_inactivity_timeouts_can_have_passed() {
        let mut j = build::test_support::job("clicks");
        j.spec.watermarks.idle_timeout = HumanDuration::from_secs(20);
        j.spec.watermarks.inactivity_timeout = Some(HumanDuration::from_secs(5));
        assert_eq!(until_inputs_inactive(&j), Some(Duration::from_secs(25)));
        j.spec.watermarks.inactivity_timeout = None;
        assert_eq!(until_inputs_inactive(&j), None, "disabled");
    }

    #[test]
    fn the_next_periodic_savepoint_is_due_one_interval_after_the_last() {
        let now: Timestamp = "2027-01-01T00:00:10Z".parse().expect("time");
        let st = taken_at("2027-01-01T00:00:07Z");
        assert_eq!(
            until_periodic_savepoint(&job_every(5), &st, now),
            Some(Duration::from_secs(2))
        );
        // Overdue, or never taken: soon.
        assert_eq!(
            until_periodic_savepoint(&job_every(2), &st, now),
            Some(Duration::from_secs(1))
        );
        let none = StreamJoinJobStatus::default();
        assert_eq!(
            until_periodic_savepoint(&job_every(5), &none, now),
            Some(Duration::from_secs(5))
        );
        let mut no_interval = job_every(5);
        no_interval.spec.savepoints.interval = None;
        assert_eq!(until_periodic_savepoint(&no_interval, &st, now), None);
    }
}
