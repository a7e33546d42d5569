//! A pod's volumes as host directories: emptyDir, configMap, secret, downwardAPI and
//! projected under the pod's directory; persistentVolumeClaim and hostPath where the
//! volume lives.

pub mod files;
pub mod projected;
pub mod pvc;
pub mod sized;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use k8s_openapi::api::core::v1::Volume;

use files::{set_mode, write_all};
use projected::PodRef;

/// The directory of every volume of the pod.
pub type VolumePaths = HashMap<String, PathBuf>;

/// Where a pod's kubelet-made volumes live.
pub fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join(".volumes")
}

/// Makes every volume of the pod; an error names the volume (a `FailedMount`).
pub async fn prepare(p: &PodRef<'_>, pod_dir: &Path) -> anyhow::Result<VolumePaths> {
    let spec = p.pod.spec.as_ref();
    let fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let mut out = HashMap::new();
    for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let path = prepare_one(p, pod_dir, v, fs_group)
            .await
            .with_context(|| format!("MountVolume.SetUp failed for volume \"{}\"", v.name))?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// Group ownership and group write for a writable volume's root, like the kubelet's
/// fsGroup handling (`OnRootMismatch`: only the root directory).
fn own(dir: &Path, fs_group: Option<u32>, mode: u32) -> anyhow::Result<()> {
    match fs_group {
        Some(g) => set_mode(dir, mode | 0o2070, Some(g)),
        None => set_mode(dir, mode, None),
    }
}

async fn prepare_one(
    p: &PodRef<'_>,
    pod_dir: &Path,
    v: &Volume,
    fs_group: Option<u32>,
) -> anyhow::Result<PathBuf> {
    let dir = volumes_dir(pod_dir).join(&v.name);
    if v.empty_dir.is_some() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        own(&dir, fs_group, 0o777)?;
        return Ok(dir);
    }
    let file_volume = if let Some(s) = &v.secret {
        Some(projected::secret(p, s).await?)
    } else if let Some(c) = &v.config_map {
        Some(projected::config_map(p, c).await?)
    } else if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(files::DEFAULT_MODE);
        Some(projected::downward(
            p,
            d.items.as_deref().unwrap_or_default(),
            mode,
        )?)
    } else if let Some(pr) = &v.projected {
        Some(projected::projected(p, pr).await?)
    } else {
        None
    };
    if let Some(files) = file_volume {
        write_all(&dir, &files, fs_group)?;
        return Ok(dir);
    }
    if let Some(c) = &v.persistent_volume_claim {
        let path = pvc::host_path(p.client, p.ns(), &c.claim_name).await?;
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        own(&path, fs_group, 0o777)?;
        return Ok(path);
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref() {
            Some("DirectoryOrCreate") => std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?,
            Some("Directory") | Some("File") | Some("FileOrCreate") | Some("Socket")
                if !path.exists() =>
            {
                return Err(anyhow!("hostPath {} does not exist", path.display()));
            }
            _ => {}
        }
        return Ok(path);
    }
    Err(anyhow!(
        "this volume type is not supported by the local kubelet"
    ))
}

/// Removes the pod's kubelet-made volumes (emptyDir, configMap, …); claims and host
/// paths stay.
pub fn remove(pod_dir: &Path) -> anyhow::Result<()> {
    let dir = volumes_dir(pod_dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let scratch = pod_dir.join(".scratch");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
    }
    Ok(())
}
