//! What every step of the lifecycle run reads ([`Scope`]) and how it reaches the
//! runtime pods: their admin addresses and the admin token.

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

/// The admin token: from memory, else the Secret, else a new Secret.
pub(super) async fn token(ctx: &Context, r: &JobRef<'_>) -> Result<String> {
    let uid = r.owner.uid.clone();
    if let Some(t) = ctx.token(&uid) {
        return Ok(t);
    }
    let name = build::admin_secret_name(r.name);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), r.namespace);
    let object = ObjectName::new("Secret", r.namespace, &name);
    let err = |source| Error::Apply {
        object: object.clone(),
        source: Box::new(source),
    };
    let found = api.get_opt(&name).await.map_err(err)?;
    let t = match (found.as_ref().map(secret::token_of), found.is_some()) {
        (Some(Some(t)), _) => t,
        (_, true) => {
            // Never overwritten (the pods read it): a person must delete it.
            return Err(Error::Build {
                object,
                reason: "the admin token Secret has no `token` key; delete it and the operator creates a new one".into(),
            });
        }
        (_, false) => {
            let t = secret::new_token();
            api.create(&PostParams::default(), &secret::build(r, &t))
                .await
                .map_err(err)?;
            t
        }
    };
    ctx.remember_token(&uid, &t);
    Ok(t)
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
