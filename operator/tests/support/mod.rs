//! Shared by the scenario tests and the benchmark: the API double and a harness
//! that plays the part of the watches (copying what the double holds into the
//! reconciler's caches), so a scenario is a sequence of plain function calls.

#![allow(dead_code)]

pub mod fake_api;
pub mod fake_runtime;
pub mod flows;

use std::sync::Arc;

use fake_api::{FakeApi, job_path};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use streamjoin_api::StreamJoinJob;
use streamjoin_operator::build::networkpolicy::AdminPeers;
use streamjoin_operator::error::Error;
use streamjoin_operator::metrics::Metrics;
use streamjoin_operator::observe::{Stores, Writers};
use streamjoin_operator::reconcile::{Context, FINALIZER, reconcile};

pub const NS: &str = "streams";

pub fn fixed_now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid time")
}

/// A clock that moves only when the test says so; starts at [`fixed_now`].
#[derive(Clone)]
pub struct ManualClock(Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Arc::new(std::sync::atomic::AtomicI64::new(
            fixed_now().as_second(),
        )))
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_second(self.0.load(std::sync::atomic::Ordering::SeqCst))
            .expect("valid time")
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

pub struct Harness {
    pub fake: FakeApi,
    pub ctx: Arc<Context>,
    pub writers: Writers,
    /// The runtime pods' admin API (one in-process HTTP server for all pods).
    pub runtime: fake_runtime::FakeRuntime,
    /// Where the fake runtime writes savepoints.
    pub savepoints: tempfile::TempDir,
}

/// A complete, valid job manifest (what `kubectl apply` would send).
pub fn job_json(name: &str) -> Value {
    json!({
        "apiVersion": "streamjoin.dev/v1alpha1",
        "kind": "StreamJoinJob",
        "metadata": { "name": name, "namespace": NS, "finalizers": [FINALIZER] },
        "spec": {
            "image": "ghcr.io/streamjoin/streamjoin-runtime:test",
            "parallelism": 3,
            "kafka": { "bootstrapServers": "kafka:9092" },
            "inputs": { "impressions": { "topic": "impressions" }, "plays": { "topic": "plays" } },
            "output": { "topic": "joined" },
            "deadLetter": { "topic": "dead-letter" },
            // Savepoint upgrades and rescales need a location (without one an upgrade
            // resumes from the checkpoints and a rescale is refused).
            "savepoints": { "location": "/savepoints" }
        }
    })
}

impl Harness {
    /// Must be called inside a tokio runtime (the fake runtime admin server is spawned).
    pub fn new() -> Self {
        Self::with_clock(fixed_now)
    }

    /// A harness whose clock moves only through the returned [`ManualClock`].
    pub fn with_manual_clock() -> (Self, ManualClock) {
        let clock = ManualClock::new();
        let c = clock.clone();
        (Self::with_clock(move || c.now()), clock)
    }

    pub fn with_clock(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        let (client, fake) = FakeApi::start();
        let (stores, mut writers) = Stores::new();
        writers.mark_ready();
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let savepoints = tempfile::tempdir().expect("tempdir");
        let runtime =
            fake_runtime::FakeRuntime::start(savepoints.path().to_str().expect("utf-8 path"));
        let mut ctx = Context::new(client, stores, metrics, Some("test".into()));
        ctx.now = Arc::new(now);
        ctx.admin = Arc::new(runtime.admin());
        Harness {
            fake,
            ctx: Arc::new(ctx),
            writers,
            runtime,
            savepoints,
        }
    }

    /// Has the operator give each job a NetworkPolicy admitting `peers` (as
    /// `--network-policy-generation`, off in a new harness). Call before the
    /// first reconcile.
    pub fn generate_network_policies(&mut self, peers: AdminPeers) {
        Arc::get_mut(&mut self.ctx)
            .expect("the context is not shared before the first reconcile")
            .network_policy = Some(Arc::new(peers));
    }

    /// Replaces the context (a restarted operator: same API, empty memory).
    pub fn restart_operator(&mut self) {
        let (stores, mut writers) = Stores::new();
        writers.mark_ready();
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let mut ctx = Context::new(
            self.ctx.client.clone(),
            stores,
            metrics,
            Some("test".into()),
        );
        ctx.now = self.ctx.now.clone();
        ctx.admin = Arc::new(self.runtime.admin());
        ctx.network_policy = self.ctx.network_policy.clone();
        self.ctx = Arc::new(ctx);
        self.writers = writers;
        self.sync_caches();
    }

    /// Stores a job in the double, as if a user had applied it.
    pub fn create_job(&self, manifest: Value) {
        let name = manifest["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let mut m = manifest;
        m["metadata"]["uid"] = json!(format!("uid-{name}"));
        m["metadata"]["generation"] = json!(1);
        self.fake.put(&job_path(NS, &name), m);
    }

    /// Edits the stored job's spec (bumping its generation), as `kubectl edit` would.
    pub fn edit_spec(&self, name: &str, edit: impl FnOnce(&mut Value)) {
        let path = job_path(NS, name);
        let mut job = self.fake.get(&path).expect("job exists");
        edit(&mut job["spec"]);
        let generation = job["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
        job["metadata"]["generation"] = json!(generation);
        self.fake.put(&path, job);
    }

    pub fn job(&self, name: &str) -> StreamJoinJob {
        self.fake.get_as(&job_path(NS, name)).expect("job exists")
    }

    /// Runs one reconcile of the job as currently stored in the double.
    pub async fn reconcile(&self, name: &str) -> Result<Action, Error> {
        let job = self.job(name);
        reconcile(Arc::new(DeserializeGuard(Ok(job))), self.ctx.clone()).await
    }

    /// Plays the watches: copies every child the double holds into the caches.
    pub fn sync_caches(&mut self) {
        for o in self.fake.typed_under::<ConfigMap>("/configmaps/") {
            self.writers.config_map(o);
        }
        for o in self.fake.typed_under::<Service>("/services/") {
            self.writers.service(o);
        }
        for o in self.fake.typed_under::<StatefulSet>("/statefulsets/") {
            self.writers.stateful_set(o);
        }
        for o in self
            .fake
            .typed_under::<PodDisruptionBudget>("/poddisruptionbudgets/")
        {
            self.writers.pdb(o);
        }
        for o in self.fake.typed_under::<NetworkPolicy>("/networkpolicies/") {
            self.writers.network_policy(o);
        }
    }

    /// Plays the StatefulSet controller: the rollout of `name` is complete with
    /// `ready` ready pods, and the caches show it.
    pub fn rollout_done(&mut self, name: &str, ready: i32) {
        let path = fake_api::sts_path(NS, name);
        let mut sts: StatefulSet = self.fake.get_as(&path).expect("sts exists");
        let replicas = sts.spec.replicas.unwrap_or(0);
        sts.status = Some(StatefulSetStatus {
            observed_generation: sts.metadata.generation,
            replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            updated_replicas: Some(replicas),
            current_replicas: Some(replicas),
            current_revision: Some(format!("{name}-rev")),
            update_revision: Some(format!("{name}-rev")),
            ..StatefulSetStatus::default()
        });
        self.fake
            .put(&path, serde_json::to_value(&sts).expect("sts json"));
        self.sync_caches();
    }

    /// `rollout_done` for every StatefulSet the double holds, with one cache sync.
    pub fn rollout_all_done(&mut self) {
        for mut sts in self.fake.typed_under::<StatefulSet>("/statefulsets/") {
            let name = sts.metadata.name.clone().unwrap_or_default();
            let replicas = sts.spec.replicas.unwrap_or(0);
            sts.status = Some(StatefulSetStatus {
                observed_generation: sts.metadata.generation,
                replicas,
                ready_replicas: Some(replicas),
                available_replicas: Some(replicas),
                updated_replicas: Some(replicas),
                current_replicas: Some(replicas),
                current_revision: Some(format!("{name}-rev")),
                update_revision: Some(format!("{name}-rev")),
                ..StatefulSetStatus::default()
            });
            self.fake.put(
                &fake_api::sts_path(NS, &name),
                serde_json::to_value(&sts).expect("sts json"),
            );
        }
        self.sync_caches();
    }

    /// Plays the StatefulSet controller at the start of a rollout of `name`: it has
    /// seen the new template and runs new pods from the update revision that
    /// [`crashing_pod`] labels.
    pub fn rollout_started(&mut self, name: &str) {
        let path = fake_api::sts_path(NS, name);
        let mut sts: StatefulSet = self.fake.get_as(&path).expect("sts exists");
        let mut st = sts.status.clone().unwrap_or_default();
        st.observed_generation = sts.metadata.generation;
        st.update_revision = Some(format!("{name}-{ROLLOUT_REVISION}"));
        sts.status = Some(st);
        self.fake
            .put(&path, serde_json::to_value(&sts).expect("sts json"));
        self.sync_caches();
    }

    pub fn add_pod(&mut self, pod: Pod) {
        self.writers.pod(pod);
    }

    /// Create → caches see the children → rollout complete → status settles.
    pub async fn settle(&mut self, name: &str) {
        self.reconcile(name).await.expect("first reconcile");
        self.sync_caches();
        self.rollout_done(name, 3);
        self.reconcile(name).await.expect("settling reconcile");
    }
}

/// The update revision of a rollout under way (see [`Harness::rollout_started`]).
pub const ROLLOUT_REVISION: &str = "rollout";

/// A pod of job `name`, of the rollout's revision, whose runtime container waits
/// with `reason`.
pub fn crashing_pod(name: &str, reason: &str, restart_count: i32, message: &str) -> Pod {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus,
    };
    use kube::api::ObjectMeta;
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{name}-1")),
            namespace: Some(NS.into()),
            labels: Some(std::collections::BTreeMap::from([
                (
                    streamjoin_operator::build::JOB_LABEL.to_owned(),
                    name.to_owned(),
                ),
                (
                    "controller-revision-hash".to_owned(),
                    format!("{name}-{ROLLOUT_REVISION}"),
                ),
            ])),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "runtime".into(),
                restart_count,
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.into()),
                        message: Some(message.into()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}
