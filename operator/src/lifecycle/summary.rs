//! Status fields summarised for people: from what the pods report (the job's
//! watermark, inactive inputs, the newest checkpoint) and from the lifecycle record
//! (the upgrade under way, the savepoints taken).

use k8s_openapi::jiff::Timestamp;
use streamjoin_api::{
    CheckpointStatus, LifecycleState, LifecycleStatus, SAVEPOINT_HISTORY_LIMIT, SavepointStatus,
    SavepointTrigger, StreamJoinJobStatus, UpgradeStatus, WatermarkStatus,
};

use super::machine::{self, Note};
use super::pods::{ms_to_ts, ts_string};
use crate::admin::RuntimeStatus;

/// 11. What the pods report, when every pod answered: the job's watermark, the
///     newest checkpoint, and whether every input is inactive (`Some((inactive,
///     message))`, with a Warning when the watermark was force-advanced again).
pub(super) fn from_pod_reports(
    heard: &[&RuntimeStatus],
    old_status: &StreamJoinJobStatus,
    now: Timestamp,
    status: &mut StreamJoinJobStatus,
    notes: &mut Vec<Note>,
) -> Option<(bool, String)> {
    let idle: i32 = heard.iter().filter_map(|s| s.idle_partitions).sum();
    let forced: i64 = heard.iter().filter_map(|s| s.forced_advances).sum();
    let prev = old_status.watermark.clone().unwrap_or_default();
    status.watermark = Some(watermark(heard, &prev, idle, forced, now));
    let all_idle = heard.iter().all(|s| {
        !s.shards.is_empty()
            && s.shards
                .iter()
                .all(|x| !x.idle.is_empty() && x.idle.iter().all(|b| *b))
    });
    let inactive = all_idle && forced > 0;
    if inactive && forced > prev.forced_advances.unwrap_or(0) {
        notes.push(Note { warning: true, reason: "InputsInactive", message: format!("every input partition is inactive (traffic moved to another region?); the watermark was force-advanced ({forced} times so far)") });
    }
    let inputs_inactive = Some((
        inactive,
        if inactive {
            format!(
                "all {idle} input partitions are inactive; the watermark is force-advanced ({forced} forced advances)"
            )
        } else {
            "inputs are active".to_owned()
        },
    ));
    if let Some(c) = newest_checkpoint(heard) {
        status.last_checkpoint = Some(c);
    }
    inputs_inactive
}

/// The job's watermark: the smallest of the pods', the largest lag.
fn watermark(
    heard: &[&RuntimeStatus],
    prev: &WatermarkStatus,
    idle: i32,
    forced: i64,
    now: Timestamp,
) -> WatermarkStatus {
    let wm = heard.iter().filter_map(|s| s.job_watermark_ms).min();
    let lag = heard
        .iter()
        .filter_map(|s| s.watermark_lag_seconds)
        .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
    let last_forced = if forced > prev.forced_advances.unwrap_or(0) {
        Some(ts_string(now))
    } else {
        prev.last_forced_advance.clone()
    };
    WatermarkStatus {
        current: wm.and_then(ms_to_ts).map(ts_string),
        lag_seconds: lag.map(|l| (l * 10.0).round() / 10.0),
        idle_partitions: Some(idle),
        forced_advances: Some(forced),
        last_forced_advance: last_forced,
    }
}

fn newest_checkpoint(heard: &[&RuntimeStatus]) -> Option<CheckpointStatus> {
    let c = heard
        .iter()
        .filter_map(|s| s.last_checkpoint.as_ref())
        .max_by_key(|c| c.completed_at_ms)?;
    Some(CheckpointStatus {
        id: Some(c.id),
        time: ms_to_ts(c.completed_at_ms).map(ts_string),
    })
}

/// A completed savepoint becomes `lastSavepoint` and heads the history.
pub(super) fn record_savepoint(
    status: &mut StreamJoinJobStatus,
    done: &machine::Completed,
    now: Timestamp,
) {
    let sp = SavepointStatus {
        id: Some(done.id.clone()),
        location: done.location.clone(),
        time: ts_string(now),
        trigger: Some(done.trigger),
        parallelism: Some(done.parallelism),
        deletion_error: None,
    };
    status.last_savepoint = Some(sp.clone());
    status
        .savepoint_history
        .retain(|h| h.location != sp.location);
    status.savepoint_history.insert(0, sp);
    status.savepoint_history.truncate(SAVEPOINT_HISTORY_LIMIT);
}

/// `status.upgrade`, from the record and the previous summary.
pub(super) fn upgrade_summary(
    r: &LifecycleStatus,
    prev: Option<&UpgradeStatus>,
) -> Option<UpgradeStatus> {
    let state = match r.state {
        LifecycleState::Savepointing
            if r.savepoint
                .as_ref()
                .is_some_and(|p| p.trigger == SavepointTrigger::Upgrade) =>
        {
            "Savepointing"
        }
        LifecycleState::Deploying if r.stable_generation.is_some() => "Restoring",
        LifecycleState::RollingBack => "RollingBack",
        _ => {
            return match (prev, &r.failure) {
                (Some(p), Some(f)) if f.reason == "RolledBack" => Some(UpgradeStatus {
                    state: Some("RolledBack".into()),
                    ..p.clone()
                }),
                (Some(p), _)
                    if p.state.as_deref() != Some("Done")
                        && r.stable_generation == p.to_generation =>
                {
                    Some(UpgradeStatus {
                        state: Some("Done".into()),
                        ..p.clone()
                    })
                }
                (Some(p), _) => Some(p.clone()),
                (None, _) => None,
            };
        }
    };
    let same = prev.filter(|p| {
        p.to_generation
            == r.target_generation
                .or(r.last_change.as_ref().map(|c| c.generation))
    });
    Some(UpgradeStatus {
        state: Some(state.into()),
        from_generation: r.stable_generation,
        to_generation: r
            .last_change
            .as_ref()
            .map(|c| c.generation)
            .or(r.target_generation),
        savepoint: r
            .restore_from
            .clone()
            .or_else(|| same.and_then(|p| p.savepoint.clone())),
        started_at: same
            .and_then(|p| p.started_at.clone())
            .or_else(|| r.deploy_started_at.clone())
            .or_else(|| r.savepoint.as_ref().map(|p| p.started_at.clone())),
    })
}
