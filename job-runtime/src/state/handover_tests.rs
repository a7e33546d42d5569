//! Changes handed over to the next checkpoint ahead of it: the checkpoint still
//! holds exactly the state at its moment.

use super::tests::{budgeted, db_copy, event, linked_copy, store};
use super::*;
use crate::model::record::Input;

/// A store that hands every change over at the next chance.
fn handing(dir: &Path) -> (StateEnv, ShardStore) {
    let (env, mut s) = store(dir, true);
    s.changes.slice = 1;
    s.set_handing_over(true);
    (env, s)
}

fn imp(id: &str, t: i64, profile: i64) -> Event {
    event(Input::Impressions, id, t, profile)
}

fn play(id: &str, t: i64, profile: i64) -> Event {
    event(Input::Plays, id, t, profile)
}

/// Takes a checkpoint now as the checkpoint thread writes it, and opens the
/// linked copy as a restored store.
fn checkpoint(s: &mut ShardStore, dir: &Path) -> (StateEnv, ShardStore) {
    let taken = s.take_changes();
    taken.write(s.db()).expect("write");
    let copy = linked_copy(s, dir, s.live_entries());
    s.thaw().expect("thaw");
    copy
}

/// Fires every entry of a store: each timer must find its entry.
fn fire_all(s: &mut ShardStore) -> Vec<(Key, Entry)> {
    let mut out = Vec::new();
    while let Some((fire, key)) = s.next_timer().expect("timer") {
        out.push((key, s.fire(fire, key).expect("fire")));
    }
    out
}

/// Two entries handed over: entry 0 is in RocksDB and changed since, entry 1
/// is new (only in memory and in the handed-over list).
fn two_handed_over(dir: &Path) -> (StateEnv, ShardStore) {
    let (env, mut s) = handing(dir);
    s.apply(&imp("i0", 1_000, 0)).expect("apply");
    s.persist_all().expect("persist");
    s.apply(&play("p0", 1_200, 0)).expect("fold");
    s.apply(&imp("i1", 1_500, 1)).expect("apply");
    s.hand_over().expect("hand over");
    assert_eq!(s.handed.copies(), 2);
    (env, s)
}

fn cached(s: &ShardStore, key: Key) -> Entry {
    s.cache.get(&key).expect("cached").entry.clone()
}

#[test]
fn an_entry_changed_after_its_handover_is_checkpointed_as_it_is_at_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = handing(&dir.path().join("live"));
    s.apply(&imp("i0", 1_000, 0)).expect("apply");
    s.hand_over().expect("hand over");
    let key = imp("i0", 1_000, 0).key;
    assert_eq!(s.handed.copies(), 1);
    assert!(s.handed_bytes() > 0);
    assert!(!s.cache.get(&key).expect("cached").dirty, "handed over");
    s.apply(&play("p0", 2_000, 0)).expect("fold");
    s.hand_over().expect("hand over");
    assert_eq!(s.handed.copies(), 1, "the later copy replaces the earlier");
    s.apply(&play("p1", 3_000, 0)).expect("fold");
    let at_checkpoint = cached(&s, key);
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    assert_eq!(s.handed_bytes(), 0, "taken with the checkpoint");
    assert_eq!(db_copy(&copy, key), at_checkpoint.encode());
    let fired = fire_all(&mut copy);
    assert_eq!(fired.len(), 1, "one entry, one timer");
    assert_eq!(fired[0].1.plays, 2);
}

#[test]
fn an_entry_fired_after_its_handover_is_not_in_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = two_handed_over(&dir.path().join("live"));
    assert_eq!(fire_all(&mut s).len(), 2);
    assert_eq!(s.handed_bytes(), 0, "fired entries' copies are dropped");
    // Entry 2 opens after them and stays.
    s.apply(&imp("i2", 2_000, 2)).expect("apply");
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    assert_eq!(copy.db_entry_count().expect("count"), 1, "only entry 2");
    let fired = fire_all(&mut copy);
    assert_eq!(fired.len(), 1, "no timer of a fired entry is left");
    assert_eq!(fired[0].0, imp("i2", 2_000, 2).key);
    assert_eq!(s.db_entry_count().expect("count"), 1);
}

#[test]
fn an_entry_fired_and_opened_again_while_frozen_is_checkpointed_as_the_new_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = handing(&dir.path().join("live"));
    let key = imp("i0", 1_000, 0).key;
    s.apply(&imp("i0", 1_000, 0)).expect("apply");
    s.persist_all().expect("persist");
    // A checkpoint is being written (frozen): the old entry is changed and
    // handed over, fires (its delete waits for the thaw), and opens again.
    let first = s.take_changes();
    s.apply(&play("p0", 1_100, 0)).expect("fold");
    s.hand_over().expect("hand over");
    let (fire, k) = s.next_timer().expect("timer").expect("due");
    assert_eq!(k, key);
    s.fire(fire, key).expect("fire");
    assert_eq!(s.handed_bytes(), 0);
    s.apply(&imp("i0b", fire + 10, 0)).expect("reopen");
    s.hand_over().expect("hand over");
    assert_eq!(s.handed.copies(), 2, "a dropped copy and the new one");
    first.write(s.db()).expect("write");
    s.thaw().expect("thaw");
    assert_eq!(
        s.db_entry_count().expect("count"),
        0,
        "the old entry deleted"
    );
    let new = cached(&s, key);
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    assert_eq!(db_copy(&copy, key), new.encode());
    let fired = fire_all(&mut copy);
    assert_eq!(fired.len(), 1, "one timer: the new entry's");
    assert_eq!(fired[0].1.window_start, fire + 10);
    assert_eq!(fired[0].1.plays, 0);
}

#[test]
fn a_failed_checkpoint_leaves_every_handed_over_change_for_the_next() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = handing(&dir.path().join("live"));
    for p in 0..3 {
        s.apply(&imp(&format!("i{p}"), 1_000 + p, p))
            .expect("apply");
    }
    s.hand_over().expect("hand over");
    s.apply(&play("p0", 1_100, 0)).expect("fold");
    s.apply(&imp("i3", 1_300, 3)).expect("apply");
    let taken = s.take_changes();
    assert_eq!(taken.len(), 4);
    // While it is being written, entry 1 changes and is handed over to the next.
    s.apply(&play("p1", 1_200, 1)).expect("fold");
    s.hand_over().expect("hand over");
    // The write fails: nothing reached RocksDB.
    s.untake(taken);
    s.thaw().expect("thaw");
    assert_eq!(s.db_entry_count().expect("count"), 0);
    s.apply(&imp("i4", 1_400, 4)).expect("apply");
    s.hand_over().expect("hand over");
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    assert_eq!(s.db_entries, 5, "counted once each");
    let mut fired = fire_all(&mut copy);
    assert_eq!(fired.len(), 5, "every entry with its timer");
    fired.sort_by_key(|(k, _)| k.profile);
    for (key, entry) in fired {
        assert_eq!(entry.encode(), cached(&s, key).encode(), "{key:?}");
    }
}

#[test]
fn an_entry_written_back_after_its_handover_keeps_its_latest_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = handing(&dir.path().join("live"));
    let key = imp("i0", 1_000, 0).key;
    s.apply(&imp("i0", 1_000, 0)).expect("apply");
    s.hand_over().expect("hand over");
    s.apply(&play("p0", 1_100, 0)).expect("fold");
    s.hand_over().expect("hand over");
    s.write_back_all([key].into_iter()).expect("evict");
    assert_eq!(s.handed_bytes(), 0, "written now instead");
    assert_eq!(s.db_entry_count().expect("count"), 1);
    s.apply(&play("p1", 1_200, 0)).expect("load and fold");
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    let fired = fire_all(&mut copy);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].1.encode(), cached(&s, key).encode());
    assert_eq!(fired[0].1.plays, 2);
}

#[test]
fn handed_over_copies_count_in_the_byte_budget_and_all_reach_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = budgeted(&dir.path().join("live"));
    s.changes.slice = 1;
    s.set_handing_over(true);
    let budget: usize = 256 << 10;
    let mut most = 0;
    for p in 0..5_000 {
        s.apply(&imp("i", 1_000, p)).expect("apply");
        s.hand_over().expect("hand over");
        assert!(
            s.memory_bytes() <= budget as u64,
            "{} at {p}",
            s.memory_bytes()
        );
        most = most.max(s.handed_bytes());
    }
    assert!(most > 0, "copies were handed over");
    assert!(
        most <= budget / 4 + size_of::<Change>(),
        "a quarter of the budget at most: {most}"
    );
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, copy) = checkpoint(&mut s, copy_dir.path());
    assert_eq!(copy.db_entry_count().expect("count"), 5_000);
}

/// Deletes RocksDB holds in its active memtables (entries and timers).
fn deletes_in_memtables(s: &ShardStore) -> u64 {
    [CF_ENTRIES, CF_TIMERS]
        .into_iter()
        .map(|cf| {
            let cf = s.db().cf(cf).expect("column family");
            s.db()
                .db
                .property_int_value_cf(cf, "rocksdb.num-deletes-active-mem-table")
                .expect("property")
                .expect("a number")
        })
        .sum()
}

#[test]
fn an_entry_firing_before_its_first_copy_reaches_rocksdb_writes_nothing_there() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = two_handed_over(&dir.path().join("live"));
    let before = deletes_in_memtables(&s);
    let fired = fire_all(&mut s);
    assert_eq!(fired.len(), 2);
    assert_eq!(
        deletes_in_memtables(&s) - before,
        2,
        "only the entry RocksDB holds is deleted there (its entry and its timer)"
    );
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    assert!(
        fire_all(&mut copy).is_empty(),
        "nothing left in the checkpoint"
    );
}

#[test]
fn outside_the_lead_up_to_a_checkpoint_nothing_is_handed_over_and_the_checkpoint_copies_it_all() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_env, mut s) = handing(&dir.path().join("live"));
    s.set_handing_over(false);
    s.apply(&imp("i0", 1_000, 0)).expect("apply");
    s.apply(&imp("i1", 1_500, 1)).expect("apply");
    s.hand_over().expect("hand over");
    assert_eq!(s.handed.copies(), 0, "closed: nothing copied");
    let first = cached(&s, imp("i0", 1_000, 0).key);
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, copy) = checkpoint(&mut s, copy_dir.path());
    assert_eq!(db_copy(&copy, imp("i0", 1_000, 0).key), first.encode());
    assert_eq!(copy.live_entries(), 2);
}

#[test]
fn a_backlog_is_handed_over_a_chunk_a_call_and_every_key_reaches_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    // Room for every entry in the cache and for their copies in the budget.
    let env = StateEnv::new(&dir.path().join("live"), 8 << 20, 8 << 20);
    let db = env.open_shard(0).expect("open");
    let mut s = ShardStore::new(db, 100_000, super::tests::W).with_byte_budget(1 << 30);
    s.track_changes();
    s.changes.slice = 1;
    let n = HANDOVER_CHUNK as i64 + 100;
    for p in 0..n {
        s.apply(&imp(&format!("i{p}"), 1_000 + p, p))
            .expect("apply");
    }
    s.set_handing_over(true);
    s.hand_over().expect("hand over");
    assert_eq!(s.handed.copies(), HANDOVER_CHUNK, "one chunk a call");
    s.hand_over().expect("hand over");
    assert_eq!(s.handed.copies() as i64, n, "the rest at the next call");
    // Changed again after its handover: copied again at the checkpoint.
    s.apply(&play("p0", 2_000, 0)).expect("fold");
    let copy_dir = tempfile::tempdir().expect("tmp");
    let (_copy_env, mut copy) = checkpoint(&mut s, copy_dir.path());
    let fired = fire_all(&mut copy);
    assert_eq!(fired.len() as i64, n, "every entry in the checkpoint");
    assert_eq!(fired.iter().map(|(_, e)| e.plays).sum::<u64>(), 1);
}
