//! The exactly-once protocol's decisions, apart from Kafka I/O (see
//! `docs/exactly-once.md`).
//!
//! Each shard has its own transactional producer (`transactional.id` =
//! `streamjoin-<job>-shard-<p>`). Everything the shard emits between two
//! checkpoints is one transaction. A checkpoint `N` is written first; then the
//! shard's input offsets of `N` are added to the transaction with the metadata
//! `streamjoin:checkpoint=<N>` and the transaction is committed. The committed
//! consumer-group offsets are therefore the commit marker: they name the one
//! checkpoint whose output is visible to `read_committed` consumers.
//!
//! On restore, after the new producer's `init_transactions` aborted whatever the
//! previous one left open, the shard restores exactly the checkpoint the marker
//! names. A crash before the commit leaves the marker on `N−1`: checkpoint `N`
//! is passed over and its input is read again, its output having been aborted.

/// The offset-commit metadata that marks checkpoint `id`.
pub fn marker(id: u64) -> String {
    format!("streamjoin:checkpoint={id}")
}

/// The checkpoint id a committed offset's metadata names.
pub fn parse_marker(metadata: &str) -> Option<u64> {
    metadata
        .strip_prefix("streamjoin:checkpoint=")?
        .parse()
        .ok()
}

/// A restorable checkpoint of one shard: local, or the shard's part of the
/// savepoint being restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: u64,
    /// Written by an exactly-once job: its output is visible only if the
    /// marker names it.
    pub transactional: bool,
    /// Next offsets to read (impressions, plays).
    pub offsets: [Option<i64>; 2],
}

/// What the consumer group holds for the shard's two input partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed {
    /// The checkpoint named by the metadata, when the broker kept it.
    pub marker: Option<u64>,
    /// Committed next offsets (impressions, plays).
    pub offsets: [Option<i64>; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restore this candidate (index into the list given).
    Restore(usize),
    /// No candidate's output is the committed one: start as
    /// `recovery.onMissingCheckpoint` says.
    Fresh,
}

/// Picks the checkpoint whose output is the committed one. `candidates` are
/// ordered newest first.
pub fn choose(candidates: &[Candidate], committed: &Committed) -> Decision {
    if let Some(id) = committed.marker {
        return candidates
            .iter()
            .position(|c| c.id == id)
            .map_or(Decision::Fresh, Decision::Restore);
    }
    let nothing_committed = committed.offsets.iter().all(Option::is_none);
    if !nothing_committed {
        // A broker that drops offset metadata: the newest checkpoint at exactly
        // the committed offsets.
        if let Some(i) = candidates
            .iter()
            .position(|c| c.transactional && c.offsets == committed.offsets)
        {
            return Decision::Restore(i);
        }
    }
    // Nothing of an exactly-once checkpoint was committed; a checkpoint written
    // without transactions (a savepoint of an at-least-once run) stands on its own.
    candidates
        .iter()
        .position(|c| !c.transactional)
        .map_or(Decision::Fresh, Decision::Restore)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chk(id: u64, offsets: i64) -> Candidate {
        Candidate {
            id,
            transactional: true,
            offsets: [Some(offsets), Some(offsets)],
        }
    }

    fn marked(id: u64, offsets: i64) -> Committed {
        Committed {
            marker: Some(id),
            offsets: [Some(offsets), Some(offsets)],
        }
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(
            parse_marker(&marker(1_700_000_000_123)),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_marker(""), None);
        assert_eq!(parse_marker("streamjoin:checkpoint=x"), None);
    }

    // Crash points of one checkpoint round N (N−1 = 1, N = 2), newest first.

    #[test]
    fn crash_while_emitting_restores_the_previous_checkpoint() {
        // Checkpoint 2 not written; transaction 2 open, aborted by the next producer.
        assert_eq!(choose(&[chk(1, 10)], &marked(1, 10)), Decision::Restore(0));
    }

    #[test]
    fn crash_after_the_checkpoint_before_the_commit_passes_it_over() {
        // Checkpoint 2 written, offsets not committed: its output was aborted.
        assert_eq!(
            choose(&[chk(2, 20), chk(1, 10)], &marked(1, 10)),
            Decision::Restore(1)
        );
    }

    #[test]
    fn crash_after_the_commit_restores_the_committed_checkpoint() {
        assert_eq!(
            choose(&[chk(2, 20), chk(1, 10)], &marked(2, 20)),
            Decision::Restore(0)
        );
    }

    #[test]
    fn same_offsets_in_two_rounds_are_told_apart_by_the_marker() {
        // No input between 1 and 2, but an inactivity advance emitted entries in 2.
        assert_eq!(
            choose(&[chk(2, 10), chk(1, 10)], &marked(1, 10)),
            Decision::Restore(1)
        );
    }

    #[test]
    fn without_metadata_the_committed_offsets_decide() {
        let committed = Committed {
            marker: None,
            offsets: [Some(10), Some(10)],
        };
        assert_eq!(
            choose(&[chk(2, 20), chk(1, 10)], &committed),
            Decision::Restore(1)
        );
    }

    #[test]
    fn a_first_round_that_never_committed_starts_afresh() {
        assert_eq!(
            choose(&[chk(1, 10)], &Committed::default()),
            Decision::Fresh
        );
    }

    #[test]
    fn a_marker_naming_a_lost_checkpoint_starts_afresh() {
        assert_eq!(choose(&[chk(1, 10)], &marked(5, 50)), Decision::Fresh);
    }

    #[test]
    fn an_at_least_once_savepoint_restores_without_a_marker() {
        let sp = Candidate {
            transactional: false,
            ..chk(7, 70)
        };
        assert_eq!(choose(&[sp], &Committed::default()), Decision::Restore(0));
    }

    #[test]
    fn a_transactional_savepoint_restores_when_its_marker_is_committed() {
        // Stop-with-savepoint commits like a checkpoint; the new processes find its marker.
        assert_eq!(choose(&[chk(9, 90)], &marked(9, 90)), Decision::Restore(0));
    }
}
