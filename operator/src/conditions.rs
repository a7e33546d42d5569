//! Standard `metav1.Condition`s: the operator states each condition's status,
//! reason and message; this module keeps `lastTransitionTime` unchanged while the
//! status stays the same, which is what makes "no change, no write" possible.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition as the status step decides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Want {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Second precision, as the API server stores it, so that what we compute compares
/// equal to what we read back.
pub fn truncate(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// The conditions to write: `wanted`, in order, each keeping the previous
/// `lastTransitionTime` when its status did not change.
pub fn merge(
    existing: &[Condition],
    wanted: &[Want],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = status_str(w.status);
            let last_transition_time = existing
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(truncate(now)));
            Condition {
                type_: w.type_.to_owned(),
                status: status.to_owned(),
                reason: w.reason.to_owned(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// A condition whose status differs between two lists (new or flipped).
pub fn transitions<'a>(old: &[Condition], new: &'a [Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|n| {
            !old.iter()
                .any(|o| o.type_ == n.type_ && o.status == n.status && o.reason == n.reason)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    #[test]
    fn transition_time_is_kept_while_the_status_is_unchanged() {
        let first = merge(
            &[],
            &[Want::new("Ready", false, "Starting", "0 of 3")],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, Time(at(100)));
        // Same status, new reason and message, later: the time stays.
        let second = merge(
            &first,
            &[Want::new("Ready", false, "ReplicasNotReady", "1 of 3")],
            Some(2),
            at(200),
        );
        assert_eq!(second[0].last_transition_time, Time(at(100)));
        assert_eq!(second[0].reason, "ReplicasNotReady");
        assert_eq!(second[0].observed_generation, Some(2));
        // Status flips: the time moves.
        let third = merge(
            &second,
            &[Want::new("Ready", true, "AllReplicasReady", "3 of 3")],
            Some(2),
            at(300),
        );
        assert_eq!(third[0].last_transition_time, Time(at(300)));
        assert_eq!(third[0].status, "True");
    }

    #[test]
    fn new_times_are_truncated_to_seconds() {
        let now = Timestamp::from_millisecond(1_700_000_000_789).expect("valid");
        let c = merge(&[], &[Want::new("Degraded", true, "X", "")], None, now);
        assert_eq!(c[0].last_transition_time.0.subsec_nanosecond(), 0);
    }

    #[test]
    fn transitions_lists_flips_and_reason_changes_only() {
        let a = merge(
            &[],
            &[
                Want::new("Ready", true, "AllReplicasReady", ""),
                Want::new("Degraded", false, "AsExpected", ""),
            ],
            None,
            at(1),
        );
        assert!(transitions(&a, &a).is_empty());
        let b = merge(
            &a,
            &[
                Want::new("Ready", true, "AllReplicasReady", "other message"),
                Want::new("Degraded", true, "CrashLoopBackOff", ""),
            ],
            None,
            at(2),
        );
        let t = transitions(&a, &b);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].type_, "Degraded");
    }
}
