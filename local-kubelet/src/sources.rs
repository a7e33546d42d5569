//! Reading the ConfigMaps and Secrets a pod refers to.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::{Api, Client};

use crate::container::env::{Sources, referenced};

/// A Secret's data (`None`: no such Secret).
pub async fn secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, Vec<u8>>>> {
    let s = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading secret {ns}/{name}"))?;
    Ok(s.map(|s| {
        let mut out: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in s.string_data.unwrap_or_default() {
            out.insert(k, v.into_bytes());
        }
        out
    }))
}

/// A ConfigMap's data and binaryData (`None`: no such ConfigMap).
pub async fn config_map(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, Vec<u8>>>> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .with_context(|| format!("reading configmap {ns}/{name}"))?;
    Ok(cm.map(|cm| {
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.unwrap_or_default() {
            out.insert(k, v.0);
        }
        out
    }))
}

fn as_strings(m: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    m.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// Everything the container's `env`/`envFrom` reads.
pub async fn env_sources(client: &Client, ns: &str, c: &Container) -> anyhow::Result<Sources> {
    let (cms, secrets) = referenced(c);
    let mut out = Sources::default();
    for name in cms {
        let data = config_map(client, ns, &name).await?.map(as_strings);
        out.config_maps.insert(name, data);
    }
    for name in secrets {
        let data = secret(client, ns, &name).await?.map(as_strings);
        out.secrets.insert(name, data);
    }
    Ok(out)
}
