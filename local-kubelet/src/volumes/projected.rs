//! configMap, secret, downwardAPI and projected volumes as lists of files.

use anyhow::{Context, anyhow};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, DownwardAPIVolumeFile, Pod, ProjectedVolumeSource, SecretVolumeSource,
    ServiceAccount, ServiceAccountTokenProjection,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::files::{DEFAULT_MODE, VolumeFile, select};
use crate::container::env::{PodAddrs, field_value};
use crate::sources;

pub struct PodRef<'a> {
    pub client: &'a Client,
    pub pod: &'a Pod,
    pub addrs: &'a PodAddrs,
}

impl PodRef<'_> {
    pub fn ns(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// Which kind of object a volume's files come from.
#[derive(Clone, Copy)]
enum Source {
    Secret,
    ConfigMap,
}

impl Source {
    fn kind(self) -> &'static str {
        match self {
            Source::Secret => "secret",
            Source::ConfigMap => "configmap",
        }
    }
}

/// The files of a secret's or configmap's volume (or projection).
async fn source_files(
    p: &PodRef<'_>,
    source: Source,
    name: &str,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> anyhow::Result<Vec<VolumeFile>> {
    let kind = source.kind();
    let data = match source {
        Source::Secret => sources::secret(p.client, p.ns(), name).await?,
        Source::ConfigMap => sources::config_map(p.client, p.ns(), name).await?,
    };
    match data {
        Some(data) => select(
            &format!("{kind} {}/{name}", p.ns()),
            &data,
            items,
            default_mode,
            optional,
        )
        .map_err(|e| anyhow!(e)),
        None if optional => Ok(Vec::new()),
        None => Err(anyhow!("{kind} \"{name}\" not found")),
    }
}

pub async fn secret(p: &PodRef<'_>, s: &SecretVolumeSource) -> anyhow::Result<Vec<VolumeFile>> {
    let name = s.secret_name.as_deref().unwrap_or_default();
    let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
    let opt = s.optional.unwrap_or(false);
    source_files(p, Source::Secret, name, s.items.as_deref(), mode, opt).await
}

pub async fn config_map(
    p: &PodRef<'_>,
    s: &ConfigMapVolumeSource,
) -> anyhow::Result<Vec<VolumeFile>> {
    let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
    let opt = s.optional.unwrap_or(false);
    source_files(p, Source::ConfigMap, &s.name, s.items.as_deref(), mode, opt).await
}

pub fn downward(
    p: &PodRef<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> anyhow::Result<Vec<VolumeFile>> {
    items
        .iter()
        .map(|item| {
            let value = match (&item.field_ref, &item.resource_field_ref) {
                (Some(f), _) => {
                    field_value(p.pod, &f.field_path, p.addrs).map_err(|e| anyhow!(e))?
                }
                (None, Some(r)) => {
                    return Err(anyhow!(
                        "resourceFieldRef {:?} is not supported",
                        r.resource
                    ));
                }
                (None, None) => String::new(),
            };
            let mode = item.mode.unwrap_or(default_mode) & 0o7777;
            Ok(VolumeFile {
                path: item.path.clone(),
                data: value.into_bytes(),
                mode: u32::try_from(mode).unwrap_or(0o644),
            })
        })
        .collect()
}

/// A bound token of the pod's service account from the TokenRequest API.
async fn token(p: &PodRef<'_>, t: &ServiceAccountTokenProjection) -> anyhow::Result<String> {
    let sa = p
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: t.audience.clone().map(|a| vec![a]),
            expiration_seconds: Some(t.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: p.pod.metadata.name.clone(),
                uid: p.pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let api = Api::<ServiceAccount>::namespaced(p.client.clone(), p.ns());
    let resp: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token of serviceaccount {}/{sa}", p.ns()))?;
    resp.status.and_then(|s| s.token).ok_or_else(|| {
        anyhow!(
            "the token request of serviceaccount {}/{sa} returned no token",
            p.ns()
        )
    })
}

pub async fn projected(
    p: &PodRef<'_>,
    v: &ProjectedVolumeSource,
) -> anyhow::Result<Vec<VolumeFile>> {
    let mode = v.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Vec::new();
    for src in v.sources.iter().flatten() {
        if let Some(s) = &src.secret {
            let opt = s.optional.unwrap_or(false);
            out.extend(
                source_files(p, Source::Secret, &s.name, s.items.as_deref(), mode, opt).await?,
            );
        }
        if let Some(c) = &src.config_map {
            let opt = c.optional.unwrap_or(false);
            out.extend(
                source_files(p, Source::ConfigMap, &c.name, c.items.as_deref(), mode, opt).await?,
            );
        }
        if let Some(d) = &src.downward_api {
            out.extend(downward(p, d.items.as_deref().unwrap_or_default(), mode)?);
        }
        if let Some(t) = &src.service_account_token {
            out.push(VolumeFile {
                path: t.path.clone(),
                data: token(p, t).await?.into_bytes(),
                mode: u32::try_from(mode & 0o7777).unwrap_or(0o644),
            });
        }
    }
    Ok(out)
}
