//! Where each owned shard's state comes from at start: the newest valid local
//! checkpoint, the savepoint given with `--restore-from`, or nothing (then
//! `recovery.onMissingCheckpoint` decides where reading starts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::durability::checkpoint::{self, CheckpointManifest};
use crate::durability::exactly_once::{self, Candidate, Committed, Decision};
use crate::durability::savepoint::{self, SavepointError, SavepointStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Local,
    Savepoint,
    Fresh,
}

/// A local checkpoint wins over the savepoint only when it was written after
/// it: `--restore-from` stays in the pod template after a restore, and a crash
/// afterwards must resume from the newer local state, while checkpoints left on
/// the volume from before the savepoint are stale.
pub fn choose(local_created_ms: Option<i64>, savepoint_created_ms: Option<i64>) -> Origin {
    match (local_created_ms, savepoint_created_ms) {
        (Some(l), Some(s)) if l > s => Origin::Local,
        (_, Some(_)) => Origin::Savepoint,
        (Some(_), None) => Origin::Local,
        (None, None) => Origin::Fresh,
    }
}

/// One shard's restore source, ready for the engine.
#[derive(Debug)]
pub enum Plan {
    Restore {
        dir: PathBuf,
        manifest: Box<CheckpointManifest>,
        from_savepoint: bool,
    },
    Fresh,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Savepoint(#[from] SavepointError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("restore: {0}")]
    Runtime(std::io::Error),
}

fn candidate(m: &CheckpointManifest) -> Candidate {
    Candidate {
        id: m.id,
        transactional: m.transactional,
        offsets: m.inputs.map(|i| i.next_offset),
    }
}

/// Downloads shard `p` of a savepoint into `download_root/shard-<p>`.
fn from_savepoint(
    rt: &tokio::runtime::Runtime,
    store: &SavepointStore,
    p: u32,
    download_root: &Path,
) -> Result<Plan, RestoreError> {
    let dest = download_root.join(format!("shard-{p}"));
    let manifest = rt.block_on(store.download_shard(p, &dest))?;
    tracing::info!(
        shard = p,
        savepoint = store.location(),
        "restoring from the savepoint"
    );
    Ok(Plan::Restore {
        dir: dest,
        manifest: Box::new(manifest),
        from_savepoint: true,
    })
}

/// Plans every owned shard. Savepoint shards are downloaded into
/// `download_root/shard-<p>`. With `committed` (exactly-once), each shard
/// restores the checkpoint its committed offsets name (see [`exactly_once`]).
/// Returns the plans and the number of corrupt local checkpoints skipped.
pub fn plan(
    shards: &[u32],
    checkpoint_root: &Path,
    savepoints: &[SavepointStore],
    ignore_before_ms: Option<i64>,
    download_root: &Path,
    committed: Option<&BTreeMap<u32, Committed>>,
) -> Result<(Vec<(u32, Plan)>, u32), RestoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RestoreError::Runtime)?;
    if !savepoints.is_empty() {
        rt.block_on(savepoint::check_complete(savepoints))?;
    }
    let mut skipped_total = 0;
    let mut out = Vec::with_capacity(shards.len());
    let since = ignore_before_ms.unwrap_or(i64::MIN);
    for &p in shards {
        let remote = if savepoints.is_empty() {
            None
        } else {
            Some(rt.block_on(savepoint::locate_shard(savepoints, p))?)
        };
        if let Some(committed) = committed {
            let (locals, skipped) = checkpoint::all_valid_since(checkpoint_root, p, since)?;
            skipped_total += skipped;
            // Newest first; the savepoint's part takes its place by id.
            let mut cands: Vec<(Candidate, Option<usize>)> = locals
                .iter()
                .enumerate()
                .map(|(i, (_, m))| (candidate(m), Some(i)))
                .collect();
            if let Some((_, m)) = &remote {
                cands.push((candidate(m), None));
            }
            cands.sort_by_key(|c| std::cmp::Reverse(c.0.id));
            let list: Vec<Candidate> = cands.iter().map(|c| c.0).collect();
            let mark = committed.get(&p).copied().unwrap_or_default();
            let plan = match exactly_once::choose(&list, &mark) {
                Decision::Restore(i) => match (cands[i].1, &remote) {
                    (Some(local), _) => {
                        let (dir, manifest) = locals[local].clone();
                        Plan::Restore {
                            dir,
                            manifest: Box::new(manifest),
                            from_savepoint: false,
                        }
                    }
                    (None, Some((store, _))) => from_savepoint(&rt, store, p, download_root)?,
                    (None, None) => Plan::Fresh,
                },
                Decision::Fresh => {
                    if !list.is_empty() {
                        tracing::warn!(
                            shard = p,
                            marker = ?mark.marker,
                            "no checkpoint matches the committed offsets; starting as recovery.onMissingCheckpoint says"
                        );
                    }
                    Plan::Fresh
                }
            };
            out.push((p, plan));
            continue;
        }
        let (local, skipped) = checkpoint::newest_valid_since(checkpoint_root, p, since)?;
        skipped_total += skipped;
        let origin = choose(
            local.as_ref().map(|l| l.1.created_ms),
            remote.as_ref().map(|r| r.1.created_ms),
        );
        let plan = match (origin, local, remote) {
            (Origin::Local, Some((dir, manifest)), _) => Plan::Restore {
                dir,
                manifest: Box::new(manifest),
                from_savepoint: false,
            },
            (Origin::Savepoint, _, Some((store, _))) => {
                from_savepoint(&rt, &store, p, download_root)?
            }
            _ => Plan::Fresh,
        };
        out.push((p, plan));
    }
    Ok((out, skipped_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_checkpoint_newer_than_the_savepoint_wins() {
        assert_eq!(choose(Some(20), Some(10)), Origin::Local);
    }

    #[test]
    fn a_stale_local_checkpoint_loses_to_the_savepoint() {
        assert_eq!(choose(Some(5), Some(10)), Origin::Savepoint);
        assert_eq!(choose(Some(10), Some(10)), Origin::Savepoint);
        assert_eq!(choose(None, Some(10)), Origin::Savepoint);
    }

    #[test]
    fn without_a_savepoint_the_local_checkpoint_or_nothing() {
        assert_eq!(choose(Some(1), None), Origin::Local);
        assert_eq!(choose(None, None), Origin::Fresh);
    }
}
