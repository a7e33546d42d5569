//! The StatefulSet running the join runtime: one pod per shard, a checkpoint volume
//! per pod, hardened containers, probes on the runtime's admin port.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use streamjoin_api::validation::OPERATOR_VOLUMES;
use streamjoin_api::{ImagePullPolicy, JobState, SecretKeyRef};

use super::meta::{
    ADMIN_PORT, ADMIN_PORT_NAME, CONFIG_DIR, CONFIG_HASH, CONFIG_KEY, DATA_DIR, DATA_VOLUME,
    JobRef, common_labels, config_map_name, owned_meta, selector_labels, service_name, stamp,
    stateful_set_name,
};
use crate::error::Result;

/// Unprivileged uid/gid of the runtime image.
pub const RUNTIME_UID: i64 = 65532;
/// Where Kafka TLS material is mounted when `kafka.tls` is set.
pub const KAFKA_TLS_DIR: &str = "/var/run/secrets/streamjoin/kafka-tls";
const CONTAINER: &str = "runtime";
const RESTART_NONCE: &str = "streamjoin.dev/restart-nonce";
/// Environment names the operator sets; a user entry with one of them is dropped.
const RESERVED_ENV: [&str; 7] = [
    "POD_NAME",
    "POD_IP",
    "POD_NAMESPACE",
    "STREAMJOIN_REPLICAS",
    "STREAMJOIN_KAFKA_SASL_USERNAME",
    "STREAMJOIN_KAFKA_SASL_PASSWORD",
    "STREAMJOIN_KAFKA_TLS_DIR",
];

/// StatefulSet replicas: the parallelism, or 0 when suspended.
pub fn desired_replicas(job: &JobRef<'_>) -> i32 {
    match job.job.spec.state {
        JobState::Running => job.job.spec.parallelism,
        JobState::Suspended => 0,
    }
}

/// Where the job's admin token Secret is mounted; the runtime reads `token` there.
pub const ADMIN_TOKEN_DIR: &str = "/var/run/secrets/streamjoin/admin";
pub const ADMIN_TOKEN_KEY: &str = "token";

/// The runtime's command line. `restore_from`: the savepoint to start from;
/// `ignore_checkpoints_before`: local checkpoints created before this time (RFC 3339)
/// are not resumed from (a stateless start, a rollback).
pub fn runtime_args(
    restore_from: Option<&str>,
    ignore_checkpoints_before: Option<&str>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--job",
        &format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        "--data-dir",
        DATA_DIR,
        // The pod IP, not 0.0.0.0: pods that share the host network (a local kubelet)
        // each bind their own address; the kubelet probes and the operator call it.
        // `$(POD_IP)` is expanded by the kubelet from the container's env.
        "--admin-addr",
        &format!("$(POD_IP):{ADMIN_PORT}"),
        "--admin-token-file",
        &format!("{ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(sp) = restore_from {
        args.push("--restore-from".to_owned());
        args.push(sp.to_owned());
    }
    if let Some(t) = ignore_checkpoints_before {
        args.push("--ignore-checkpoints-before".to_owned());
        args.push(t.to_owned());
    }
    args
}

fn pull_policy(p: ImagePullPolicy) -> &'static str {
    match p {
        ImagePullPolicy::Always => "Always",
        ImagePullPolicy::IfNotPresent => "IfNotPresent",
        ImagePullPolicy::Never => "Never",
    }
}

fn env_value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn env_secret(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUNTIME_UID),
        run_as_group: Some(RUNTIME_UID),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// Spread the shards over nodes when possible; never block scheduling on it.
fn default_affinity(job: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(job)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The checkpoint volume claim; one PVC per pod (`data-<job>-<ordinal>`).
pub fn volume_claim(job: &JobRef<'_>) -> PersistentVolumeClaim {
    let volume = &job.job.spec.checkpoints.volume;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(common_labels(job.name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: volume.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(volume.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn container(job: &JobRef<'_>) -> Container {
    let spec = &job.job.spec;
    let mut env = vec![
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_field("POD_IP", "status.podIP"),
        env_value("STREAMJOIN_REPLICAS", spec.parallelism.to_string()),
    ];
    if let Some(sasl) = &spec.kafka.sasl {
        env.push(env_secret(
            "STREAMJOIN_KAFKA_SASL_USERNAME",
            &sasl.username_secret_ref,
        ));
        env.push(env_secret(
            "STREAMJOIN_KAFKA_SASL_PASSWORD",
            &sasl.password_secret_ref,
        ));
    }
    let mut mounts = vec![
        mount(DATA_VOLUME, DATA_DIR, false),
        mount("config", CONFIG_DIR, true),
        mount("tmp", "/tmp", false),
        mount("admin-token", ADMIN_TOKEN_DIR, true),
    ];
    if spec.kafka.tls.is_some() {
        env.push(env_value(
            "STREAMJOIN_KAFKA_TLS_DIR",
            KAFKA_TLS_DIR.to_owned(),
        ));
        mounts.push(mount("kafka-tls", KAFKA_TLS_DIR, true));
    }
    // The spec is validated (no clash, no shadowing); a clashing name is still
    // dropped here so that the StatefulSet always applies.
    mounts.extend(
        spec.pod_template
            .volume_mounts
            .iter()
            .filter(|m| !OPERATOR_VOLUMES.contains(&m.name.as_str()))
            .cloned(),
    );
    env.extend(super::store_env::savepoint_env(&spec.savepoints));
    env.extend(user_env(&spec.pod_template.env));

    Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(pull_policy(spec.image_pull_policy).to_owned()),
        args: Some(runtime_args(
            job.restore_from.as_deref(),
            job.ignore_checkpoints_before.as_deref(),
        )),
        ports: Some(vec![ContainerPort {
            name: Some(ADMIN_PORT_NAME.to_owned()),
            container_port: ADMIN_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(env),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        // Restoring RocksDB state can take minutes: liveness starts after startup passes.
        startup_probe: Some(http_probe("/healthz", 10, 60)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        security_context: Some(container_security()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// `podTemplate.env` as it reaches the container: names the operator sets are
/// left out (the operator's value wins), and of a name listed twice the last
/// entry is kept, as a container would see it (`env` is a list keyed by name in
/// server-side apply, which refuses duplicates).
fn user_env(env: &[EnvVar]) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::with_capacity(env.len());
    for e in env.iter().filter(|e| {
        !RESERVED_ENV.contains(&e.name.as_str()) && !e.name.starts_with(super::store_env::PREFIX)
    }) {
        out.retain(|o| o.name != e.name);
        out.push(e.clone());
    }
    out
}

fn volumes(job: &JobRef<'_>) -> Vec<Volume> {
    let mut v = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(job.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: "admin-token".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(super::meta::admin_secret_name(job.name)),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    v.extend(
        job.job
            .spec
            .pod_template
            .volumes
            .iter()
            .filter(|v| !OPERATOR_VOLUMES.contains(&v.name.as_str()))
            .cloned(),
    );
    if let Some(tls) = &job.job.spec.kafka.tls {
        v.push(Volume {
            name: "kafka-tls".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_ref.name.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    v
}

pub(super) fn pod_template(job: &JobRef<'_>, config_hash: &str) -> PodTemplateSpec {
    let spec = &job.job.spec;
    let pt = &spec.pod_template;
    let mut labels = pt.labels.clone();
    labels.extend(common_labels(job.name));
    let mut annotations = pt.annotations.clone();
    annotations.insert(CONFIG_HASH.to_owned(), config_hash.to_owned());
    if let Some(nonce) = spec.restart_nonce {
        annotations.insert(RESTART_NONCE.to_owned(), nonce.to_string());
    }
    if let Some(marker) = &job.restart_marker {
        annotations.insert(
            "streamjoin.dev/restarted-after-savepoint".to_owned(),
            marker.clone(),
        );
    }
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(job)],
            volumes: Some(volumes(job)),
            service_account_name: pt.service_account_name.clone(),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            node_selector: non_empty(&pt.node_selector),
            tolerations: (!pt.tolerations.is_empty()).then(|| pt.tolerations.clone()),
            affinity: Some(
                pt.affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(job.name)),
            ),
            priority_class_name: pt.priority_class_name.clone(),
            image_pull_secrets: (!pt.image_pull_secrets.is_empty())
                .then(|| pt.image_pull_secrets.clone()),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUNTIME_UID),
                run_as_group: Some(RUNTIME_UID),
                fs_group: Some(RUNTIME_UID),
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            // Time to finish a checkpoint and commit offsets on SIGTERM.
            termination_grace_period_seconds: Some(60),
            ..PodSpec::default()
        }),
    }
}

/// Builds the StatefulSet. `config_hash` is the applied hash of the ConfigMap: it is
/// put on the pod template so that a manifest change rolls the pods.
pub fn build(job: &JobRef<'_>, config_hash: &str) -> Result<StatefulSet> {
    let name = stateful_set_name(job.name);
    let object = job.object("StatefulSet", &name);
    let sts = StatefulSet {
        metadata: owned_meta(job, name),
        spec: StatefulSetSpec {
            replicas: Some(desired_replicas(job)),
            service_name: Some(service_name(job.name)),
            selector: LabelSelector {
                match_labels: Some(selector_labels(job.name)),
                ..LabelSelector::default()
            },
            // Shards are independent: start and stop them all at once.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            // Checkpoints survive scale-down (a later scale-up reuses them) and deletion
            // of the job (the state is the only copy when no savepoint location is set).
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            revision_history_limit: Some(5),
            template: pod_template(job, config_hash),
            volume_claim_templates: Some(vec![volume_claim(job)]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    };
    stamp(sts, &object)
}

/// `volumeClaimTemplates` cannot change on an existing StatefulSet. When the spec asks
/// for a different volume, the observed templates are kept (the object stays
/// appliable) and the difference is returned, to be reported.
pub fn keep_existing_claims(desired: &mut StatefulSet, observed: &StatefulSet) -> Option<String> {
    let observed_claims = observed.spec.volume_claim_templates.clone()?;
    let spec = &mut desired.spec;
    let wanted = spec.volume_claim_templates.as_ref()?;
    let key = |c: &PersistentVolumeClaim| {
        c.spec.as_ref().map(|s| {
            (
                s.storage_class_name.clone(),
                s.resources.as_ref().and_then(|r| r.requests.clone()),
            )
        })
    };
    let differs = wanted.len() != observed_claims.len()
        || wanted
            .iter()
            .zip(&observed_claims)
            .any(|(a, b)| key(a) != key(b));
    if !differs {
        return None;
    }
    spec.volume_claim_templates = Some(observed_claims);
    Some(
        "checkpoints.volume changed, but the volume claims of an existing StatefulSet cannot \
         change; existing volumes are kept (use checkpoints.volume.autoExpand to grow them)"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{JobRef, test_support};
    use streamjoin_api::{JobState, TlsSpec};

    fn sts_for(job: &streamjoin_api::StreamJoinJob) -> StatefulSet {
        build(&JobRef::new(job).expect("meta"), "cafe").expect("builds")
    }

    fn runtime(sts: &StatefulSet) -> Container {
        let pod = sts.spec.template.spec.clone().expect("pod");
        pod.containers.into_iter().next().expect("one container")
    }

    #[test]
    fn replicas_follow_parallelism_and_suspend_scales_to_zero() {
        let mut job = test_support::job("clicks");
        assert_eq!(sts_for(&job).spec.replicas, Some(3));
        job.spec.state = JobState::Suspended;
        let sts = sts_for(&job);
        assert_eq!(sts.spec.replicas, Some(0));
        let env = runtime(&sts).env.expect("env");
        let replicas = env
            .iter()
            .find(|e| e.name == "STREAMJOIN_REPLICAS")
            .expect("env");
        assert_eq!(
            replicas.value.as_deref(),
            Some("3"),
            "shard count survives suspend"
        );
    }

    #[test]
    fn statefulset_is_parallel_with_a_headless_service_and_retained_claims() {
        let sts = sts_for(&test_support::job("clicks"));
        let spec = sts.spec;
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.service_name.as_deref(), Some("clicks"));
        let retention = spec
            .persistent_volume_claim_retention_policy
            .expect("policy");
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(spec.selector.match_labels, Some(selector_labels("clicks")));
        let labels = spec
            .template
            .metadata
            .expect("meta")
            .labels
            .expect("labels");
        for (k, v) in selector_labels("clicks") {
            assert_eq!(
                labels.get(&k),
                Some(&v),
                "template carries selector label {k}"
            );
        }
    }

    #[test]
    fn volume_claim_template_mounts_the_checkpoint_volume() {
        let mut job = test_support::job("clicks");
        job.spec.checkpoints.volume.size = "50Gi".into();
        job.spec.checkpoints.volume.storage_class_name = Some("fast-ssd".into());
        let sts = sts_for(&job);
        let claims = sts.spec.volume_claim_templates.clone().expect("claims");
        assert_eq!(claims.len(), 1);
        let claim = &claims[0];
        assert_eq!(claim.metadata.name.as_deref(), Some(DATA_VOLUME));
        let cs = claim.spec.as_ref().expect("claim spec");
        assert_eq!(cs.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast-ssd"));
        let req = cs
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .expect("requests");
        assert_eq!(req["storage"], Quantity("50Gi".into()));
        let mounts = runtime(&sts).volume_mounts.expect("mounts");
        let data = mounts
            .iter()
            .find(|m| m.name == DATA_VOLUME)
            .expect("data mount");
        assert_eq!(data.mount_path, "/var/lib/streamjoin");
        let config = mounts
            .iter()
            .find(|m| m.name == "config")
            .expect("config mount");
        assert_eq!(config.mount_path, "/etc/streamjoin");
        assert_eq!(config.read_only, Some(true));
    }

    #[test]
    fn container_is_hardened() {
        let sts = sts_for(&test_support::job("clicks"));
        let pod = sts.spec.template.spec.clone().expect("pod");
        let psc = pod.security_context.expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.expect("seccomp").type_,
            "RuntimeDefault"
        );
        let c = runtime(&sts);
        let sc = c.security_context.expect("container security context");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.privileged, Some(false));
        let caps = sc.capabilities.expect("capabilities");
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(caps.add, None);
        assert_eq!(sc.seccomp_profile.expect("seccomp").type_, "RuntimeDefault");
        // A read-only root needs a writable /tmp.
        assert!(
            c.volume_mounts
                .expect("mounts")
                .iter()
                .any(|m| m.mount_path == "/tmp")
        );
    }

    #[test]
    fn a_restore_point_adds_restore_from_and_the_token_secret_is_mounted() {
        let job = test_support::job("clicks");
        let mut r = JobRef::new(&job).expect("meta");
        r.restore_from = Some("/sp/sp-1".into());
        let sts = build(&r, "h").expect("builds");
        let pod = sts.spec.template.spec.as_ref().expect("pod");
        let args = pod.containers[0].args.clone().expect("args");
        assert_eq!(args[args.len() - 2..], ["--restore-from", "/sp/sp-1"]);
        r.ignore_checkpoints_before = Some("2027-01-15T08:00:00Z".into());
        let sts = build(&r, "h").expect("builds");
        let args = sts.spec.template.spec.as_ref().expect("pod").containers[0]
            .args
            .clone()
            .expect("args");
        assert_eq!(
            args[args.len() - 4..],
            [
                "--restore-from",
                "/sp/sp-1",
                "--ignore-checkpoints-before",
                "2027-01-15T08:00:00Z"
            ]
        );
        let vol = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "admin-token")
            .expect("token volume");
        assert_eq!(
            vol.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
            Some("clicks-admin-token")
        );
    }

    #[test]
    fn container_runs_the_runtime_with_probes_on_the_admin_port() {
        let c = runtime(&sts_for(&test_support::job("clicks")));
        assert_eq!(
            c.args.expect("args"),
            [
                "run",
                "--job",
                "/etc/streamjoin/job.yaml",
                "--data-dir",
                "/var/lib/streamjoin",
                "--admin-addr",
                "$(POD_IP):9249",
                "--admin-token-file",
                "/var/run/secrets/streamjoin/admin/token"
            ]
        );
        let port = &c.ports.expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("admin"), 9249)
        );
        let path = |p: Option<Probe>| p.and_then(|p| p.http_get).map(|h| (h.path, h.port));
        let admin = IntOrString::String("admin".into());
        assert_eq!(
            path(c.readiness_probe),
            Some((Some("/readyz".into()), admin.clone()))
        );
        assert_eq!(
            path(c.liveness_probe),
            Some((Some("/healthz".into()), admin))
        );
        let env = c.env.expect("env");
        let pod_name = env.iter().find(|e| e.name == "POD_NAME").expect("POD_NAME");
        let field = pod_name
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref());
        assert_eq!(field.map(|f| f.field_path.as_str()), Some("metadata.name"));
        let pod_ip = env.iter().find(|e| e.name == "POD_IP").expect("POD_IP");
        let field = pod_ip
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref());
        assert_eq!(
            field.map(|f| f.field_path.as_str()),
            Some("status.podIP"),
            "the admin address `$(POD_IP)` comes from the downward API"
        );
    }

    #[test]
    fn pods_prefer_distinct_nodes_unless_the_user_sets_affinity() {
        let job = test_support::job("clicks");
        let pod = sts_for(&job).spec.template.spec.expect("pod");
        let anti = pod
            .affinity
            .and_then(|a| a.pod_anti_affinity)
            .expect("anti-affinity");
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none()
        );
        let preferred = anti
            .preferred_during_scheduling_ignored_during_execution
            .expect("preferred");
        assert_eq!(
            preferred[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );

        let mut custom = job.clone();
        custom.spec.pod_template.affinity = Some(Affinity::default());
        let pod = sts_for(&custom).spec.template.spec.expect("pod");
        assert_eq!(pod.affinity, Some(Affinity::default()));
    }

    #[test]
    fn pod_template_settings_are_merged_and_reserved_env_is_not_overridable() {
        let mut job = test_support::job("clicks");
        let pt = &mut job.spec.pod_template;
        pt.labels.insert("team".into(), "growth".into());
        pt.labels
            .insert(crate::build::JOB_LABEL.into(), "hijack".into());
        pt.node_selector.insert("pool".into(), "streaming".into());
        pt.service_account_name = Some("joiner".into());
        pt.priority_class_name = Some("high".into());
        for level in ["debug", "info"] {
            pt.env.push(EnvVar {
                name: "RUST_LOG".into(),
                value: Some(level.into()),
                value_from: None,
            });
        }
        for reserved in ["POD_NAME", "POD_IP"] {
            pt.env.push(EnvVar {
                name: reserved.into(),
                value: Some("x".into()),
                value_from: None,
            });
        }
        job.spec.kafka.tls = Some(TlsSpec::default());
        let sts = sts_for(&job);
        let tpl = sts.spec.template;
        let labels = tpl.metadata.expect("meta").labels.expect("labels");
        assert_eq!(labels["team"], "growth");
        assert_eq!(
            labels[crate::build::JOB_LABEL],
            "clicks",
            "selector labels win"
        );
        let pod = tpl.spec.expect("pod");
        assert_eq!(pod.service_account_name.as_deref(), Some("joiner"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        assert_eq!(pod.node_selector.expect("selector")["pool"], "streaming");
        let env = pod.containers[0].env.clone().expect("env");
        for reserved in ["POD_NAME", "POD_IP"] {
            let set: Vec<_> = env.iter().filter(|e| e.name == reserved).collect();
            assert_eq!(set.len(), 1, "{reserved} set once");
            assert!(set[0].value_from.is_some(), "{reserved} is the operator's");
        }
        let rust_log: Vec<_> = env.iter().filter(|e| e.name == "RUST_LOG").collect();
        assert_eq!(rust_log.len(), 1, "a name listed twice is set once");
        assert_eq!(
            rust_log[0].value.as_deref(),
            Some("info"),
            "the last entry wins"
        );
        assert!(
            pod.volumes
                .expect("volumes")
                .iter()
                .any(|v| v.name == "kafka-tls")
        );
    }

    #[test]
    fn store_credentials_reach_the_pod_by_secret_reference_only() {
        let mut job = test_support::job("clicks");
        job.spec.savepoints.location = Some("s3://bucket/sp".into());
        job.spec.savepoints.credentials = Some(streamjoin_api::SavepointCredentials {
            secret_ref: streamjoin_api::LocalSecretRef {
                name: "store-creds".into(),
            },
        });
        job.spec.pod_template.env.push(EnvVar {
            name: "STREAMJOIN_SAVEPOINT_AWS_ACCESS_KEY_ID".into(),
            value: Some("shadow".into()),
            value_from: None,
        });
        let env = runtime(&sts_for(&job)).env.expect("env");
        let store: Vec<_> = env
            .iter()
            .filter(|e| e.name.starts_with("STREAMJOIN_SAVEPOINT_"))
            .collect();
        assert_eq!(store.len(), 3, "{store:?}");
        for e in store {
            assert!(e.value.is_none(), "{} has no literal value", e.name);
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            assert_eq!(r.map(|r| r.name.as_str()), Some("store-creds"));
        }
    }

    #[test]
    fn store_settings_and_the_credentials_secret_change_the_pod_template() {
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let base = crate::build::configmap::runtime_manifest(&r).expect("manifest");
        let edits: [fn(&mut streamjoin_api::SavepointsSpec); 4] = [
            |s| s.endpoint = Some("http://127.0.0.1:9000".into()),
            |s| s.region = Some("eu-west-1".into()),
            |s| s.path_style = Some(true),
            |s| {
                s.credentials = Some(streamjoin_api::SavepointCredentials {
                    secret_ref: streamjoin_api::LocalSecretRef { name: "b".into() },
                })
            },
        ];
        for edit in edits {
            let mut changed = job.clone();
            changed.spec.savepoints.location = Some("s3://bucket/sp".into());
            let mut before = changed.clone();
            edit(&mut changed.spec.savepoints);
            before.spec.savepoints.location = Some("s3://bucket/sp".into());
            let a = crate::build::configmap::runtime_manifest(&JobRef::new(&before).expect("meta"))
                .expect("manifest");
            let b =
                crate::build::configmap::runtime_manifest(&JobRef::new(&changed).expect("meta"))
                    .expect("manifest");
            assert_ne!(
                a, b,
                "the manifest (and its hash on the pod template) changes"
            );
            assert_ne!(a, base);
        }
    }

    #[test]
    fn pod_template_volumes_and_mounts_are_added_after_the_operators() {
        let mut job = test_support::job("clicks");
        job.spec.kafka.tls = Some(TlsSpec::default());
        let pt = &mut job.spec.pod_template;
        pt.volumes.push(Volume {
            name: "savepoints".into(),
            persistent_volume_claim: Some(
                k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                    claim_name: "shared-savepoints".into(),
                    read_only: None,
                },
            ),
            ..Volume::default()
        });
        pt.volume_mounts
            .push(mount("savepoints", "/savepoints", false));
        // Never valid (the CEL rule refuses it); still never duplicated.
        pt.volumes.push(Volume {
            name: "tmp".into(),
            ..Volume::default()
        });
        let pod = sts_for(&job).spec.template.spec.expect("pod");
        let volumes = pod.volumes.expect("volumes");
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            ["config", "tmp", "admin-token", "savepoints", "kafka-tls"]
        );
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        let m = mounts.last().expect("a mount");
        assert_eq!(
            (m.name.as_str(), m.mount_path.as_str()),
            ("savepoints", "/savepoints")
        );
        assert_eq!(
            mounts[0].mount_path, DATA_DIR,
            "the state volume stays first"
        );
    }

    #[test]
    fn the_operators_volumes_and_paths_are_those_the_spec_rules_protect() {
        let mut job = test_support::job("clicks");
        job.spec.kafka.tls = Some(TlsSpec::default());
        let sts = sts_for(&job);
        let pod = sts.spec.template.spec.expect("pod");
        for v in pod.volumes.expect("volumes") {
            assert!(OPERATOR_VOLUMES.contains(&v.name.as_str()), "{}", v.name);
        }
        for m in pod.containers[0].volume_mounts.clone().expect("mounts") {
            assert!(OPERATOR_VOLUMES.contains(&m.name.as_str()), "{}", m.name);
            assert!(
                streamjoin_api::validation::OPERATOR_MOUNT_PATHS.contains(&m.mount_path.as_str()),
                "{}",
                m.mount_path
            );
        }
    }

    #[test]
    fn changed_volume_keeps_the_existing_claims_and_says_why() {
        let job = test_support::job("clicks");
        let observed = sts_for(&job);
        let mut bigger = job.clone();
        bigger.spec.checkpoints.volume.size = "99Gi".into();
        let mut desired = sts_for(&bigger);
        let note = keep_existing_claims(&mut desired, &observed).expect("difference reported");
        assert!(note.contains("autoExpand"));
        assert_eq!(
            desired.spec.volume_claim_templates,
            observed.spec.volume_claim_templates
        );
        let mut same = sts_for(&job);
        assert_eq!(keep_existing_claims(&mut same, &observed), None);
    }
}
