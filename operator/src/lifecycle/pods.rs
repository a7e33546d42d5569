//! What every step of the lifecycle run reads ([`Scope`]) and how it reaches the
//! runtime pods: their admin addresses and the admin token.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use streamjoin_api::StreamJoinJob;

use crate::admin::PodAddr;
use crate::build::{self, JobRef, secret};
use crate::context::Context;
use crate::error::{Error, ObjectName, Result};
use crate::observe::ObservedChildren;

/// One run of the lifecycle for one job: what every step reads.
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub job: &'a StreamJoinJob,
    pub ctx: &'a Context,
    pub r: &'a JobRef<'a>,
    pub observed: &'a ObservedChildren,
    pub now: Timestamp,
}

impl Scope<'_> {
    /// The admin address of pod `ordinal`.
    pub fn pod(&self, ordinal: i32) -> PodAddr {
        pod(self.r, self.observed, ordinal)
    }
}

pub(super) fn ms_to_ts(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

pub(super) fn ts_string(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The address of one pod; its IP from the pod cache (used with `--pod-address ip`).
fn pod(r: &JobRef<'_>, observed: &ObservedChildren, ordinal: i32) -> PodAddr {
    let name = format!("{}-{ordinal}", build::stateful_set_name(r.name));
    let pod_ip = observed
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        .and_then(|p| p.status.as_ref()?.pod_ip.clone());
    PodAddr {
        namespace: r.namespace.to_owned(),
        job: r.name.to_owned(),
        service: build::service_name(r.name),
        ordinal,
        pod_ip,
    }
}

/// How often a running job's token Secret is created again at most (an
/// `AlreadyExists` answer costs nothing and reveals nothing).
const TOKEN_SECRET_EVERY: Duration = Duration::from_secs(10);

/// The job's admin token, derived from the operator's key. Its Secret is created
/// when missing (create only: the operator cannot read Secrets in job namespaces),
/// so a deleted one comes back with the same token: at the job's next reconcile
/// after [`TOKEN_SECRET_EVERY`], or at once after an edit of the job.
pub(super) async fn token(ctx: &Context, r: &JobRef<'_>) -> Result<String> {
    let key = ctx.admin_keys.current().await?;
    let t = key.token(r.namespace, r.name, &r.owner.uid);
    let seen = format!("{t}/{}", r.job.metadata.generation.unwrap_or_default());
    if ctx.token_secret_due(&r.owner.uid, &seen, TOKEN_SECRET_EVERY) {
        create_token_secret(ctx, r, &t).await?;
        ctx.token_secret_made(&r.owner.uid, &seen);
    }
    Ok(t)
}

async fn create_token_secret(ctx: &Context, r: &JobRef<'_>, token: &str) -> Result<()> {
    let name = build::admin_secret_name(r.name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), r.namespace);
    match api
        .create(&PostParams::default(), &secret::build(r, token))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = r.namespace, secret = %name, "created the admin token Secret");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(Error::Apply {
            object: ObjectName::new("Secret", r.namespace, &name),
            source: Box::new(source),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Pod, PodStatus};
    use kube::api::ObjectMeta;

    use super::*;
    use crate::build::test_support;

    fn with_ip(name: &str, ip: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                ..PodStatus::default()
            }),
            ..Pod::default()
        })
    }

    #[test]
    fn a_pod_address_carries_the_observed_pod_ip_of_its_ordinal() {
        let job = test_support::job("clicks");
        let r = JobRef::new(&job).expect("meta");
        let observed = ObservedChildren {
            pods: vec![
                with_ip("clicks-0", Some("127.0.0.3")),
                with_ip("clicks-1", None),
            ],
            ..ObservedChildren::default()
        };
        assert_eq!(pod(&r, &observed, 0).pod_ip.as_deref(), Some("127.0.0.3"));
        assert_eq!(pod(&r, &observed, 1).pod_ip, None, "no IP assigned yet");
        assert_eq!(pod(&r, &observed, 2).pod_ip, None, "pod not observed");
        assert_eq!(pod(&r, &observed, 0).service, "clicks");
    }
}
