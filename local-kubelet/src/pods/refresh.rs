//! The kubelet's periodic sync of a running pod's configMap and secret volumes:
//! a changed source (a re-created Secret, an edited ConfigMap) reaches the files
//! without a restart, as with the real kubelet. A source that cannot be read (a
//! deleted Secret) leaves the files as they are. Projected and downwardAPI
//! volumes are written once, at the pod's start.

use std::path::Path;
use std::time::Duration;

use crate::volumes::files::sync_dir;
use crate::volumes::projected::{self, PodRef};
use crate::volumes::volumes_dir;

/// How often the volumes are compared with their sources (the real kubelet: its
/// one-minute pod sync; shorter here, for tests).
pub const EVERY: Duration = Duration::from_secs(10);

/// Brings each configMap and secret volume of the pod up to date; errors are
/// logged (the pod runs on with the files it has).
pub async fn refresh_volumes(p: &PodRef<'_>, pod_dir: &Path) {
    let spec = p.pod.spec.as_ref();
    let fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let pod = format!(
        "{}/{}",
        p.ns(),
        p.pod.metadata.name.as_deref().unwrap_or_default()
    );
    for v in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let files = if let Some(s) = &v.secret {
            projected::secret(p, s).await
        } else if let Some(c) = &v.config_map {
            projected::config_map(p, c).await
        } else {
            continue;
        };
        let dir = volumes_dir(pod_dir).join(&v.name);
        let result = files.and_then(|f| sync_dir(&dir, &f, fs_group));
        match result {
            Ok(true) => {
                tracing::info!(pod = %pod, volume = %v.name, "volume updated from its source")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(pod = %pod, volume = %v.name, error = %format!("{e:#}"), "volume not updated")
            }
        }
    }
}
