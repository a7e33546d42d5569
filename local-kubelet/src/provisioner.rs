//! Dynamic provisioner of the `local-kubelet` StorageClass: a pending claim of the
//! class gets a hostPath PersistentVolume under `<root>/volumes/`, which the
//! controller-manager's binder then binds. Released volumes of reclaim policy Delete
//! are removed with their directory. A claim asking for more than its volume has is
//! granted at once (a directory has no size), like an external resizer.
//!
//! The class `local-kubelet-sized` (parameter `medium: tmpfs`) gives sized volumes
//! instead ([`crate::volumes::sized`]): the same directory with a tmpfs of the
//! volume's capacity on it, mounted when a pod of the claim starts; an expansion
//! remounts it larger before the volume and the claim report the new size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

use crate::kubelet::FIELD_MANAGER;
use crate::volumes::sized;

pub const CLASS: &str = "local-kubelet";
/// The class of sized (tmpfs) volumes.
pub const SIZED_CLASS: &str = "local-kubelet-sized";
pub const PROVISIONER: &str = "streamjoin.dev/local-kubelet";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Creates (or re-applies) the StorageClasses served by this provisioner: the
/// default one (directories) and the sized one (tmpfs).
pub async fn ensure_class(client: &Client) -> anyhow::Result<()> {
    for class in [
        class(CLASS, true, None),
        class(SIZED_CLASS, false, Some(sized::TMPFS)),
    ] {
        let name = class.metadata.name.clone().unwrap_or_default();
        Api::<StorageClass>::all(client.clone())
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&class),
            )
            .await
            .with_context(|| format!("applying storageclass {name}"))?;
    }
    Ok(())
}

fn class(name: &str, default: bool, medium: Option<&str>) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_owned(),
                default.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        parameters: medium
            .map(|m| BTreeMap::from([(sized::MEDIUM_PARAMETER.to_owned(), m.into())])),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        allow_volume_expansion: Some(true),
        ..StorageClass::default()
    }
}

/// Whether a volume is a sized one (a tmpfs on its directory).
pub fn is_sized(pv: &PersistentVolume) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(sized::MEDIUM_ANNOTATION))
        .map(String::as_str)
        == Some(sized::TMPFS)
}

/// The host directory of a volume of ours.
fn host_dir(pv: &PersistentVolume) -> Option<PathBuf> {
    pv.spec
        .as_ref()?
        .host_path
        .as_ref()
        .map(|h| PathBuf::from(&h.path))
}

/// The capacity of a volume, in bytes.
pub fn capacity_bytes(pv: &PersistentVolume) -> Option<u128> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    quantity_bytes(&q.0)
}

/// Bytes of a quantity such as `1Gi`, `500M`, `1024` (None when unparsable).
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let factor: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let value: f64 = num.parse().ok()?;
    // Rounding up to whole bytes, as Kubernetes does.
    Some((value * factor as f64).ceil() as u128)
}

fn wants_us(pvc: &PersistentVolumeClaim) -> bool {
    let ann = pvc.metadata.annotations.as_ref();
    let by = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str) == Some(PROVISIONER);
    by("volume.kubernetes.io/storage-provisioner")
        || by("volume.beta.kubernetes.io/storage-provisioner")
}

fn request(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .cloned()
}

pub fn volume_dir(volumes: &Path, pv_name: &str) -> PathBuf {
    volumes.join(pv_name)
}

/// The class a claim asks for (the default class when it names none).
fn class_of(pvc: &PersistentVolumeClaim) -> String {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_else(|| CLASS.into())
}

/// The PersistentVolume for a claim of `class` (its reclaim policy and medium,
/// `None` for a plain directory), named `pvc-<claim uid>` (so concurrent
/// provisioners make the same one).
pub fn volume_for(
    pvc: &PersistentVolumeClaim,
    root: &Path,
    class: &StorageClass,
) -> Option<PersistentVolume> {
    let uid = pvc.metadata.uid.clone()?;
    let name = format!("pvc-{uid}");
    let spec = pvc.spec.as_ref()?;
    let path = volume_dir(root, &name);
    let reclaim = class.reclaim_policy.as_deref().unwrap_or("Delete");
    let mut annotations = BTreeMap::from([(PROVISIONED_BY.to_owned(), PROVISIONER.to_owned())]);
    let medium = class
        .parameters
        .as_ref()
        .and_then(|p| p.get(sized::MEDIUM_PARAMETER));
    if let Some(m) = medium {
        annotations.insert(sized::MEDIUM_ANNOTATION.to_owned(), m.clone());
    }
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_owned(), request(pvc)?)])),
            access_modes: spec.access_modes.clone(),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: pvc.metadata.namespace.clone(),
                name: pvc.metadata.name.clone(),
                uid: Some(uid),
                ..ObjectReference::default()
            }),
            persistent_volume_reclaim_policy: Some(reclaim.to_owned()),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some("Filesystem".into()),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..PersistentVolumeSpec::default()
        }),
        ..PersistentVolume::default()
    })
}

async fn provision(
    client: &Client,
    root: &Path,
    pvc: &PersistentVolumeClaim,
) -> anyhow::Result<()> {
    let name = class_of(pvc);
    let Some(class) = Api::<StorageClass>::all(client.clone())
        .get_opt(&name)
        .await
        .with_context(|| format!("reading storageclass {name}"))?
    else {
        return Err(anyhow::anyhow!("storageclass {name} not found"));
    };
    let Some(pv) = volume_for(pvc, root, &class) else {
        return Ok(());
    };
    let name = pv.metadata.name.clone().unwrap_or_default();
    let dir = volume_dir(root, &name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Any uid may write, like other host-path provisioners; fsGroup narrows it at mount.
    crate::volumes::files::set_mode(&dir, 0o777, None)?;
    match Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => {
            tracing::info!(pv = %name, claim = ?pvc.metadata.name, "provisioned a volume");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating persistentvolume {name}")),
    }
}

async fn expand(client: &Client, pvc: &PersistentVolumeClaim) -> anyhow::Result<()> {
    let (Some(want), Some(pv_name)) = (
        request(pvc),
        pvc.spec.as_ref().and_then(|s| s.volume_name.clone()),
    ) else {
        return Ok(());
    };
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let Some(pv) = pvs.get_opt(&pv_name).await.context("reading the volume")? else {
        return Ok(());
    };
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER);
    let has = pv
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .cloned();
    let bigger = |a: &Quantity, b: &Quantity| quantity_bytes(&a.0) > quantity_bytes(&b.0);
    if !ours || !has.as_ref().is_some_and(|h| bigger(&want, h)) {
        return Ok(());
    }
    // A sized volume grows first (where it is mounted; a later mount takes the
    // new capacity): the claim reports only a size its pods can use.
    if is_sized(&pv)
        && let (Some(dir), Some(bytes)) = (host_dir(&pv), quantity_bytes(&want.0))
        && dir.exists()
        && sized::is_mountpoint(&dir)?
    {
        sized::resize(&dir, bytes)
            .with_context(|| format!("growing persistentvolume {pv_name}"))?;
    }
    let patch = json!({"spec": {"capacity": {"storage": want.0}}});
    pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("growing persistentvolume {pv_name}"))?;
    let (ns, name) = (
        pvc.metadata.namespace.clone().unwrap_or_default(),
        pvc.metadata.name.clone().unwrap_or_default(),
    );
    let status = json!({"status": {"capacity": {"storage": want.0}, "allocatedResources": {"storage": want.0}, "conditions": null}});
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("reporting the new size of claim {ns}/{name}"))?;
    tracing::info!(pv = %pv_name, size = %want.0, "expanded a volume");
    Ok(())
}

async fn reclaim(client: &Client, pv: &PersistentVolume) -> anyhow::Result<()> {
    let ann = pv.metadata.annotations.as_ref();
    let ours = ann.and_then(|a| a.get(PROVISIONED_BY)).map(String::as_str) == Some(PROVISIONER);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let spec = pv.spec.as_ref();
    let delete = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    if !(ours && released && delete) {
        return Ok(());
    }
    let name = pv.metadata.name.clone().unwrap_or_default();
    if let Some(path) = host_dir(pv)
        && path.exists()
    {
        if is_sized(pv) {
            sized::unmount(&path)?;
        }
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    match Api::<PersistentVolume>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) => tracing::info!(pv = %name, "deleted a released volume"),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).with_context(|| format!("deleting persistentvolume {name}")),
    }
    Ok(())
}

/// Serves claims and volumes until the kubelet stops.
pub async fn run(client: Client, root: Arc<PathBuf>) {
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let c2 = client.clone();
    let r2 = root.clone();
    let claims = claims.for_each(move |ev| {
        let (client, root) = (c2.clone(), r2.clone());
        async move {
            let Ok(pvc) = ev else { return };
            let pending = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
            let unbound = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_ref())
                .is_none();
            let result = if pending && unbound && wants_us(&pvc) {
                provision(&client, &root, &pvc).await
            } else if !pending {
                expand(&client, &pvc).await
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::warn!("provisioner: {e:#}");
            }
        }
    });
    let volumes = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .for_each(move |ev| {
        let client = client.clone();
        async move {
            let Ok(pv) = ev else { return };
            if let Err(e) = reclaim(&client, &pv).await {
                tracing::warn!("provisioner: {e:#}");
            }
        }
    });
    tokio::join!(claims, volumes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_to_bytes() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("1024"), Some(1024));
        assert_eq!(quantity_bytes("1Zz"), None);
    }

    #[test]
    fn a_claim_gets_a_volume_with_its_size_claim_ref_and_a_directory_under_the_root() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-j-0", "namespace": "ns", "uid": "u-1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
        }))
        .expect("pvc");
        let pv = volume_for(&pvc, Path::new("/r"), &class(CLASS, true, None)).expect("pv");
        assert!(!is_sized(&pv));
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-1"));
        let spec = pv.spec.expect("spec");
        assert_eq!(spec.capacity.expect("cap")["storage"].0, "2Gi");
        assert_eq!(spec.host_path.expect("hostPath").path, "/r/pvc-u-1");
        let claim = spec.claim_ref.expect("claimRef");
        assert_eq!(
            (claim.name.as_deref(), claim.uid.as_deref()),
            (Some("data-j-0"), Some("u-1"))
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some(CLASS));
    }

    #[test]
    fn a_claim_of_the_sized_class_gets_a_sized_volume_of_that_class() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-j-0", "namespace": "ns", "uid": "u-2"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": SIZED_CLASS,
                     "resources": {"requests": {"storage": "8Mi"}}}
        }))
        .expect("pvc");
        assert_eq!(class_of(&pvc), SIZED_CLASS);
        let sized_class = class(SIZED_CLASS, false, Some(sized::TMPFS));
        let pv = volume_for(&pvc, Path::new("/r"), &sized_class).expect("pv");
        assert!(is_sized(&pv));
        assert_eq!(capacity_bytes(&pv), Some(8 << 20));
        assert_eq!(host_dir(&pv), Some(PathBuf::from("/r/pvc-u-2")));
        let spec = pv.spec.expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some(SIZED_CLASS));
    }
}
