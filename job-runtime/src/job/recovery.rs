//! Where each owned shard starts: restored from a checkpoint or savepoint, or
//! fresh at the offsets `recovery.onMissingCheckpoint` names; with exactly-once,
//! the consumer group's committed markers decide which checkpoint is valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use streamjoin_api::{OnMissingCheckpoint, StreamJoinJob};

use crate::control::metrics::Metrics;
use crate::durability::checkpoint::CheckpointManifest;
use crate::durability::exactly_once::{Committed, parse_marker};
use crate::durability::restore::{self, Plan};
use crate::durability::savepoint::SavepointStore;
use crate::io::kafka::{KafkaSetupError, RuntimeConsumer};
use crate::job::error::RunError;

/// A shard restored from a checkpoint: its partition, the checkpoint's
/// directory and its manifest.
pub type RestoredShard = (u32, PathBuf, CheckpointManifest);

/// Where to start reading when there is no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

pub fn start_at(job: &StreamJoinJob) -> Result<StartAt, RunError> {
    let r = &job.spec.recovery;
    Ok(match r.on_missing_checkpoint {
        OnMissingCheckpoint::Fail => return Err(RunError::NoCheckpoint),
        OnMissingCheckpoint::Earliest => StartAt::Earliest,
        OnMissingCheckpoint::Latest => StartAt::Latest,
        OnMissingCheckpoint::Timestamp => {
            let value = r.from_timestamp.clone().unwrap_or_default();
            let t = humantime::parse_rfc3339_weak(&value).map_err(|e| RunError::Timestamp {
                value: value.clone(),
                reason: e.to_string(),
            })?;
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| RunError::Timestamp {
                    value,
                    reason: e.to_string(),
                })?
                .as_millis();
            StartAt::Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
        }
    })
}

/// Start offsets for the owned partitions, and the Kafka-timestamp filter to
/// apply when the broker cannot look offsets up by time.
fn start_offsets(
    consumer: &RuntimeConsumer,
    topics: [&str; 2],
    shards: &[u32],
    start: StartAt,
    timeout: Duration,
    lookup: bool,
) -> Result<(TopicPartitionList, Option<i64>), RunError> {
    let mut tpl = TopicPartitionList::new();
    let fixed = |tpl: &mut TopicPartitionList, offset: Offset| -> Result<(), RunError> {
        for topic in topics {
            for &p in shards {
                tpl.add_partition_offset(topic, p as i32, offset)
                    .map_err(KafkaSetupError::from)?;
            }
        }
        Ok(())
    };
    match start {
        StartAt::Earliest => fixed(&mut tpl, Offset::Beginning)?,
        StartAt::Latest => fixed(&mut tpl, Offset::End)?,
        StartAt::Timestamp(ms) if !lookup => {
            tracing::info!(
                timestamp_ms = ms,
                "recovery by timestamp without lookup (--timestamp-recovery filter): reading from the earliest offset and skipping older records"
            );
            fixed(&mut tpl, Offset::Beginning)?;
            return Ok((tpl, Some(ms)));
        }
        StartAt::Timestamp(ms) => {
            let mut query = TopicPartitionList::new();
            fixed(&mut query, Offset::Offset(ms))?;
            match consumer.offsets_for_times(query, timeout) {
                Ok(found) if found.elements().iter().all(|e| e.error().is_ok()) => {
                    tracing::info!(
                        timestamp_ms = ms,
                        "recovery by timestamp: the broker looked the offsets up"
                    );
                    // Records before the time may still follow in a partition whose
                    // timestamps are not monotonic: the filter drops those too.
                    return Ok((found, Some(ms)));
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(
                        timestamp_ms = ms,
                        "recovery by timestamp: the broker cannot look offsets up by time; reading from the earliest offset and skipping older records"
                    );
                    fixed(&mut tpl, Offset::Beginning)?;
                    return Ok((tpl, Some(ms)));
                }
            }
        }
    }
    Ok((tpl, None))
}

pub fn clear_dir(path: &Path) -> Result<(), RunError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|source| RunError::StateDir {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::create_dir_all(path).map_err(|source| RunError::StateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// The consumer group's committed offsets of each shard's two input partitions,
/// with the checkpoint their metadata names (exactly-once).
pub fn committed_markers(
    consumer: &RuntimeConsumer,
    topics: [&str; 2],
    shards: &[u32],
) -> Result<BTreeMap<u32, Committed>, RunError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        for &p in shards {
            tpl.add_partition(topic, p as i32);
        }
    }
    let found = consumer
        .committed_offsets(tpl, Duration::from_secs(60))
        .map_err(KafkaSetupError::from)?;
    let mut out = BTreeMap::new();
    for &p in shards {
        let mut c = Committed::default();
        for (i, topic) in topics.iter().enumerate() {
            if let Some(e) = found.find_partition(topic, p as i32) {
                if let Offset::Offset(o) = e.offset() {
                    c.offsets[i] = Some(o);
                }
                if let Some(id) = parse_marker(e.metadata()) {
                    c.marker = Some(c.marker.map_or(id, |m: u64| m.min(id)));
                }
            }
        }
        tracing::info!(shard = p, marker = ?c.marker, offsets = ?c.offsets, "committed offsets");
        out.insert(p, c);
    }
    Ok(out)
}

/// Whether the job never ran these shards: the consumer group has no committed
/// offset for any of their input partitions (the runtime commits its progress in
/// both delivery modes), so a missing checkpoint is no lost state.
fn first_start(
    consumer: &RuntimeConsumer,
    topics: [&str; 2],
    shards: &[u32],
) -> Result<bool, RunError> {
    let committed = committed_markers(consumer, topics, shards)?;
    Ok(committed
        .values()
        .all(|c| c.marker.is_none() && c.offsets.iter().all(Option::is_none)))
}

/// Each owned shard restores from its newest valid checkpoint, or from the
/// savepoint when that is newer; shards with neither start as
/// recovery.onMissingCheckpoint says. Returns the restored shards and the
/// fresh ones.
pub fn plan_restore(
    shards: &[u32],
    checkpoint_root: &Path,
    restore_from: &[SavepointStore],
    ignore_checkpoints_before_ms: Option<i64>,
    download_root: &Path,
    committed: Option<&BTreeMap<u32, Committed>>,
    metrics: &Metrics,
) -> Result<(Vec<RestoredShard>, Vec<u32>), RunError> {
    let (plans, skipped) = restore::plan(
        shards,
        checkpoint_root,
        restore_from,
        ignore_checkpoints_before_ms,
        download_root,
        committed,
    )
    .map_err(|e| match e {
        restore::RestoreError::Savepoint(e) => RunError::Savepoint(e),
        other => RunError::StateDir {
            path: checkpoint_root.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    metrics
        .checkpoints
        .restore_fallbacks
        .inc_by(u64::from(skipped));
    let mut restored: Vec<RestoredShard> = Vec::new();
    let mut fresh: Vec<u32> = Vec::new();
    for (p, plan) in plans {
        match plan {
            Plan::Restore {
                dir,
                manifest,
                from_savepoint,
            } => {
                tracing::info!(
                    shard = p,
                    id = manifest.id,
                    from_savepoint,
                    "restoring from {}",
                    dir.display()
                );
                restored.push((p, dir, *manifest));
            }
            Plan::Fresh => fresh.push(p),
        }
    }
    Ok((restored, fresh))
}

/// The consumer's assignment: fresh shards at the offsets
/// recovery.onMissingCheckpoint gives, restored ones at their checkpoint's;
/// with the Kafka-timestamp filter of a recovery by timestamp.
pub fn assignment(
    consumer: &RuntimeConsumer,
    job: &StreamJoinJob,
    input_topics: [&str; 2],
    restored: &[RestoredShard],
    fresh: &[u32],
    timestamp_lookup: bool,
) -> Result<(TopicPartitionList, Option<i64>), RunError> {
    let (mut assignment, skip_before) = if fresh.is_empty() {
        (TopicPartitionList::new(), None)
    } else {
        let start = match start_at(job) {
            Err(RunError::NoCheckpoint) if first_start(consumer, input_topics, fresh)? => {
                tracing::info!(
                    shards = ?fresh,
                    "first start (the consumer group has no offsets for these shards): reading from the earliest offsets; recovery.onMissingCheckpoint fail applies once the job has run"
                );
                StartAt::Earliest
            }
            other => other?,
        };
        tracing::info!(shards = ?fresh, ?start, "no checkpoint to restore");
        start_offsets(
            consumer,
            input_topics,
            fresh,
            start,
            Duration::from_secs(30),
            timestamp_lookup,
        )?
    };
    for (p, _, manifest) in restored {
        for (topic, input) in input_topics.iter().zip(manifest.inputs.iter()) {
            let offset = match input.next_offset {
                Some(n) => Offset::Offset(n),
                None => Offset::Beginning,
            };
            assignment
                .add_partition_offset(topic, *p as i32, offset)
                .map_err(KafkaSetupError::from)?;
        }
    }
    Ok((assignment, skip_before))
}
