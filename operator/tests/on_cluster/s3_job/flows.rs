//! Waiting for where a flow takes the job: output flowing, an upgrade through a
//! savepoint done.

use std::collections::BTreeSet;
use std::time::Duration;

use streamjoin_api::{SavepointStatus, SavepointTrigger, StreamJoinJob};

use super::S3Job;
use super::{PodRun, ready_at_generation};
use crate::cluster::example::JOB;
use crate::cluster::wait::{poll, try_poll};

impl S3Job {
    /// Waits until the job has more than `than` committed output records (it
    /// keeps them); how many there are then.
    pub async fn wait_output_above(&self, than: usize, limit: Duration) -> usize {
        poll(
            &format!("more than {than} output records"),
            limit,
            || async {
                Some(self.output_now())
                    .filter(|n| *n > than)
                    .ok_or_else(|| format!("{than} or fewer"))
            },
        )
        .await
    }

    /// Polls until an upgrade through a savepoint is done: Ready at the new
    /// generation, an upgrade savepoint recorded, `status.upgrade` Done from it,
    /// and two new pods (none of `before`), ready.
    pub async fn wait_upgraded(
        &self,
        before: &[PodRun],
        limit: Duration,
    ) -> (StreamJoinJob, SavepointStatus, Vec<PodRun>) {
        let old: BTreeSet<String> = before.iter().map(|p| p.uid.clone()).collect();
        let done = try_poll(limit, || {
            let old = old.clone();
            async move {
                let j = self.jobs().get(JOB).await.map_err(|e| e.to_string())?;
                ready_at_generation(&j)?;
                let st = j.status.clone().unwrap_or_default();
                let sp = st
                    .last_savepoint
                    .clone()
                    .filter(|s| s.trigger == Some(SavepointTrigger::Upgrade))
                    .ok_or_else(|| format!("no upgrade savepoint: {:?}", st.last_savepoint))?;
                let up = st.upgrade.clone().unwrap_or_default();
                if up.state.as_deref() != Some("Done")
                    || up.to_generation != j.metadata.generation
                    || up.savepoint.as_deref() != Some(sp.location.as_str())
                {
                    return Err(format!("upgrade {up:?}"));
                }
                let pods = self.pods().await;
                if pods.len() != 2 || pods.iter().any(|p| old.contains(&p.uid) || !p.ready) {
                    return Err(format!("pods {pods:#?}"));
                }
                Ok((j, sp, pods))
            }
        })
        .await;
        done.unwrap_or_else(|last| {
            panic!(
                "the upgrade was not done within {limit:?}: {last}\n{}",
                self.diagnose()
            )
        })
    }
}
