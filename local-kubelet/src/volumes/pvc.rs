//! A persistentVolumeClaim volume: the host directory of the bound PersistentVolume;
//! for a sized volume, with its tmpfs mounted at the volume's capacity.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{Api, Client};

use super::sized;
use crate::provisioner;

pub async fn host_path(client: &Client, ns: &str, claim: &str) -> anyhow::Result<PathBuf> {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(claim)
        .await
        .with_context(|| format!("reading persistentvolumeclaim {ns}/{claim}"))?
        .ok_or_else(|| anyhow!("persistentvolumeclaim \"{claim}\" not found"))?;
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let (Some("Bound"), Some(volume)) = (phase, volume) else {
        return Err(anyhow!(
            "persistentvolumeclaim {ns}/{claim} is not bound yet"
        ));
    };
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(volume)
        .await
        .with_context(|| format!("reading persistentvolume {volume}"))?;
    let spec = pv.spec.as_ref();
    let path = spec
        .and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.and_then(|s| s.local.as_ref().map(|l| l.path.clone())))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("persistentvolume {volume} has neither hostPath nor local path"))?;
    if provisioner::is_sized(&pv) {
        let bytes = provisioner::capacity_bytes(&pv)
            .ok_or_else(|| anyhow!("persistentvolume {volume} has no capacity to size it"))?;
        sized::ensure_mounted(&path, bytes)
            .with_context(|| format!("staging persistentvolume {volume}"))?;
    }
    Ok(path)
}
