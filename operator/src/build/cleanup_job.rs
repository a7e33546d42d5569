//! The short-lived batch Job that deletes savepoints when no runtime pod runs to
//! take the request through its admin API (a suspended job, or one deleted with
//! `savepoints.onDelete: none`): the runtime image with the pods' store settings,
//! credentials and volumes, running `streamjoin-runtime savepoints delete`.
//! Finished Jobs are removed by the TTL controller, so the operator never deletes.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::meta::{APP_NAME, CONFIG_DIR, CONFIG_KEY, DATA_VOLUME, JobRef, owned_meta, stamp};
use crate::error::Result;

/// Annotation listing (JSON) the savepoint locations a cleanup Job deletes.
pub const SAVEPOINTS_ANNOTATION: &str = "streamjoin.dev/savepoints";
/// A finished Job stays this long: its logs can be read, and a failed deletion
/// is tried again once the Job is gone.
pub const TTL_SECONDS: i32 = 30;
/// Retries of the pod within one Job.
const BACKOFF_LIMIT: i32 = 2;
/// Volumes the deletion does not need (the checkpoint claim belongs to the pods).
const UNNEEDED_VOLUMES: [&str; 2] = [DATA_VOLUME, "admin-token"];

pub fn cleanup_job_name(job: &str) -> String {
    format!("{job}-savepoint-cleanup")
}

/// The cleanup Job for `locations`.
pub fn build(job: &JobRef<'_>, locations: &[String]) -> Result<Job> {
    let name = cleanup_job_name(job.name);
    let object = job.object("Job", &name);
    let mut meta = owned_meta(job, name);
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(
            SAVEPOINTS_ANNOTATION.to_owned(),
            serde_json::to_string(locations).unwrap_or_default(),
        );
    let cleanup = Job {
        metadata: meta,
        spec: Some(JobSpec {
            template: pod_template(job, locations),
            backoff_limit: Some(BACKOFF_LIMIT),
            ttl_seconds_after_finished: Some(TTL_SECONDS),
            active_deadline_seconds: Some(600),
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    stamp(cleanup, &object)
}

/// The runtime pods' template, made a one-shot deletion: other arguments, no
/// ports, probes, checkpoint claim or admin token, and labels no selector of the
/// job's Service or PodDisruptionBudget matches.
fn pod_template(job: &JobRef<'_>, locations: &[String]) -> PodTemplateSpec {
    let mut template = super::statefulset::pod_template(job, "");
    if let Some(meta) = template.metadata.as_mut() {
        meta.labels.get_or_insert_with(Default::default).insert(
            "app.kubernetes.io/name".to_owned(),
            format!("{APP_NAME}-savepoint-cleanup"),
        );
    }
    let Some(pod) = template.spec.as_mut() else {
        return template;
    };
    pod.restart_policy = Some("Never".to_owned());
    pod.affinity = job.job.spec.pod_template.affinity.clone();
    pod.termination_grace_period_seconds = Some(10);
    if let Some(volumes) = pod.volumes.as_mut() {
        volumes.retain(|v| !UNNEEDED_VOLUMES.contains(&v.name.as_str()));
    }
    for c in &mut pod.containers {
        let mut args = vec![
            "savepoints".to_owned(),
            "delete".to_owned(),
            "--job".to_owned(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ];
        args.extend(locations.iter().cloned());
        c.args = Some(args);
        c.ports = None;
        c.startup_probe = None;
        c.liveness_probe = None;
        c.readiness_probe = None;
        if let Some(mounts) = c.volume_mounts.as_mut() {
            mounts.retain(|m| !UNNEEDED_VOLUMES.contains(&m.name.as_str()));
        }
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::job;

    fn built(locations: &[&str]) -> Job {
        let j = job("clicks");
        let r = JobRef::new(&j).expect("ref");
        let locations: Vec<String> = locations.iter().map(|s| (*s).to_owned()).collect();
        build(&r, &locations).expect("built")
    }

    #[test]
    fn the_job_runs_the_delete_command_on_the_listed_locations_once() {
        let j = built(&["s3://b/sp/sp-1", "s3://b/sp/sp-2"]);
        let spec = j.spec.expect("spec");
        assert_eq!(spec.ttl_seconds_after_finished, Some(TTL_SECONDS));
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().expect("args"),
            [
                "savepoints",
                "delete",
                "--job",
                "/etc/streamjoin/job.yaml",
                "s3://b/sp/sp-1",
                "s3://b/sp/sp-2"
            ]
        );
        assert!(c.readiness_probe.is_none() && c.ports.is_none());
        let listed = &j.metadata.annotations.expect("annotations")[SAVEPOINTS_ANNOTATION];
        assert_eq!(listed, r#"["s3://b/sp/sp-1","s3://b/sp/sp-2"]"#);
    }

    #[test]
    fn the_pod_has_the_store_settings_but_no_claim_token_or_selector_labels() {
        let mut j = job("clicks");
        j.spec.savepoints.location = Some("s3://b/sp".into());
        j.spec.savepoints.credentials = serde_json::from_value(serde_json::json!({
            "secretRef": { "name": "store" }
        }))
        .expect("credentials");
        let r = JobRef::new(&j).expect("ref");
        let built = build(&r, &["s3://b/sp/sp-1".to_owned()]).expect("built");
        let template = built.spec.expect("spec").template;
        let labels = template.metadata.expect("meta").labels.expect("labels");
        assert_eq!(labels["streamjoin.dev/job"], "clicks");
        assert_ne!(labels["app.kubernetes.io/name"], APP_NAME);
        let pod = template.spec.expect("pod");
        let volumes: Vec<String> = pod
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert!(volumes.contains(&"config".to_owned()), "{volumes:?}");
        assert!(
            !volumes
                .iter()
                .any(|v| UNNEEDED_VOLUMES.contains(&v.as_str()))
        );
        let env: Vec<String> = pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(
            env.iter()
                .any(|n| n == "STREAMJOIN_SAVEPOINT_AWS_SECRET_ACCESS_KEY"),
            "{env:?}"
        );
    }
}
