//! Checkpoints of one shard on the checkpoint volume, and how they become
//! visible and are found again.
//!
//! Layout: `<root>/shard-<p>/chk-<id>/` holding `db/` (a RocksDB checkpoint:
//! hard links of the shard's SST files after a memtable flush), `pending.bin`
//! (the reorder buffer) and `MANIFEST.json` (offsets, watermarks, counters, the
//! format version and the size and hash of every file). A checkpoint is written
//! under `.tmp-chk-<id>`, every file is fsynced, the manifest is written last,
//! and the directory is renamed into place: a reader sees all of it or nothing.
//! On restore the newest checkpoint whose files match its manifest wins; a
//! corrupt one is skipped (logged and counted) in favour of the one before.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use streamjoin_formats::checkpoint::{
    CheckpointManifest, FORMAT_VERSION, FileSum, InputState, MANIFEST, decode_manifest,
};

pub const PENDING: &str = "pending.bin";
pub const DB_DIR: &str = "db";
const PREFIX: &str = "chk-";
const TMP_PREFIX: &str = ".tmp-chk-";
/// Files up to this size are hashed; larger ones (SST files) are checked by size,
/// RocksDB verifying their block checksums when they are read.
const HASHED_MAX: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is unusable: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

static PROCESS_STARTED_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// This process's start, as checkpoints record it (fixed at the first call).
pub fn process_started_ms() -> i64 {
    *PROCESS_STARTED_MS.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    })
}

pub fn shard_dir(root: &Path, shard: u32) -> PathBuf {
    root.join(format!("shard-{shard}"))
}

/// A directory to write checkpoint `id` into; [`publish`] makes it visible.
pub fn prepare(root: &Path, shard: u32, id: u64) -> Result<PathBuf, CheckpointError> {
    let dir = shard_dir(root, shard);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!("{TMP_PREFIX}{id:012}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    Ok(tmp)
}

fn xxh3_file(path: &Path) -> Result<u64, CheckpointError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest())
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<(), CheckpointError> {
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        if e.file_type().map_err(io(&p))?.is_dir() {
            walk(&p, base, out)?;
        } else {
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

fn sums(dir: &Path) -> Result<Vec<FileSum>, CheckpointError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for rel in files {
        let name = rel.to_string_lossy().into_owned();
        if name == MANIFEST {
            continue;
        }
        let path = dir.join(&rel);
        let size = fs::metadata(&path).map_err(io(&path))?.len();
        let xxh3 = if size <= HASHED_MAX {
            Some(xxh3_file(&path)?)
        } else {
            None
        };
        out.push(FileSum {
            path: name,
            size,
            xxh3,
        });
    }
    Ok(out)
}

fn fsync_tree(dir: &Path) -> Result<(), CheckpointError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    for rel in files {
        let p = dir.join(rel);
        File::open(&p).and_then(|f| f.sync_all()).map_err(io(&p))?;
    }
    fsync_dir(dir)?;
    let db = dir.join(DB_DIR);
    if db.exists() {
        fsync_dir(&db)?;
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// Records the files, writes the manifest last, and renames the checkpoint into
/// place. Returns its final directory and its size in bytes.
pub fn publish(
    tmp: &Path,
    mut manifest: CheckpointManifest,
) -> Result<(PathBuf, u64), CheckpointError> {
    manifest.files = sums(tmp)?;
    let size = manifest.files.iter().map(|f| f.size).sum();
    fsync_tree(tmp)?;
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| CheckpointError::Invalid {
        path: tmp.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mpath = tmp.join(MANIFEST);
    let mut f = File::create(&mpath).map_err(io(&mpath))?;
    f.write_all(&text).map_err(io(&mpath))?;
    f.sync_all().map_err(io(&mpath))?;
    fsync_dir(tmp)?;
    let parent = tmp.parent().unwrap_or(tmp);
    let dest = parent.join(format!("{PREFIX}{:012}", manifest.id));
    fs::rename(tmp, &dest).map_err(io(&dest))?;
    fsync_dir(parent)?;
    Ok((dest, size))
}

/// Checkpoint directories of a shard, newest first (temporary ones excluded).
pub fn list(root: &Path, shard: u32) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let dir = shard_dir(root, shard);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).map_err(io(&dir))? {
        let e = e.map_err(io(&dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name
            .strip_prefix(PREFIX)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((id, e.path()));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// Reads a checkpoint's manifest and checks every file against it.
pub fn validate(dir: &Path) -> Result<CheckpointManifest, CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: dir.to_path_buf(),
        reason,
    };
    let mpath = dir.join(MANIFEST);
    let text = fs::read(&mpath).map_err(|e| invalid(format!("manifest: {e}")))?;
    let m = decode_manifest(&text).map_err(invalid)?;
    for f in &m.files {
        let p = dir.join(&f.path);
        let size = fs::metadata(&p)
            .map_err(|e| invalid(format!("{}: {e}", f.path)))?
            .len();
        if size != f.size {
            return Err(invalid(format!(
                "{} has {size} bytes, the manifest says {}",
                f.path, f.size
            )));
        }
        if let Some(h) = f.xxh3
            && xxh3_file(&p)? != h
        {
            return Err(invalid(format!("{} does not match its checksum", f.path)));
        }
    }
    Ok(m)
}

/// The newest valid checkpoint of a shard, and how many newer ones were skipped
/// as corrupt.
pub fn newest_valid(
    root: &Path,
    shard: u32,
) -> Result<(Option<(PathBuf, CheckpointManifest)>, u32), CheckpointError> {
    newest_valid_since(root, shard, i64::MIN)
}

/// As [`newest_valid`], among the checkpoints created at `since_ms` or later.
pub fn newest_valid_since(
    root: &Path,
    shard: u32,
    since_ms: i64,
) -> Result<(Option<(PathBuf, CheckpointManifest)>, u32), CheckpointError> {
    let mut skipped = 0;
    for (_, dir) in list(root, shard)? {
        match validate(&dir) {
            Ok(m) if !m.written_since(since_ms) => {
                tracing::info!(
                    shard,
                    id = m.id,
                    "checkpoint ignored: written by a process started before --ignore-checkpoints-before"
                );
                return Ok((None, skipped));
            }
            Ok(m) => return Ok((Some((dir, m)), skipped)),
            Err(e) => {
                tracing::warn!(shard, "{e}; falling back to the previous checkpoint");
                skipped += 1;
            }
        }
    }
    Ok((None, skipped))
}

/// Every valid checkpoint of a shard created at `since_ms` or later, newest
/// first, and how many corrupt ones were skipped.
pub fn all_valid_since(
    root: &Path,
    shard: u32,
    since_ms: i64,
) -> Result<(Vec<(PathBuf, CheckpointManifest)>, u32), CheckpointError> {
    let mut skipped = 0;
    let mut out = Vec::new();
    for (_, dir) in list(root, shard)? {
        match validate(&dir) {
            Ok(m) if !m.written_since(since_ms) => break,
            Ok(m) => out.push((dir, m)),
            Err(e) => {
                tracing::warn!(shard, "{e}; skipped");
                skipped += 1;
            }
        }
    }
    Ok((out, skipped))
}

/// Keeps the newest `retained` checkpoints of a shard and removes leftovers of
/// interrupted writes.
pub fn retain(root: &Path, shard: u32, retained: usize) -> Result<(), CheckpointError> {
    let dir = shard_dir(root, shard);
    for (_, old) in list(root, shard)?.into_iter().skip(retained.max(1)) {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    for e in fs::read_dir(&dir).map_err(io(&dir))? {
        let e = e.map_err(io(&dir))?;
        if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let p = e.path();
            fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Recreates the tree `src` at `dst` with hard links (copies where links are
/// not possible): a second name for an immutable checkpoint.
pub fn link_tree(src: &Path, dst: &Path) -> Result<(), CheckpointError> {
    fs::create_dir_all(dst).map_err(io(dst))?;
    for e in fs::read_dir(src).map_err(io(src))? {
        let e = e.map_err(io(src))?;
        let from = e.path();
        let to = dst.join(e.file_name());
        if e.file_type().map_err(io(&from))?.is_dir() {
            link_tree(&from, &to)?;
        } else if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io(&to))?;
        }
    }
    Ok(())
}

/// Copies a checkpoint's RocksDB files into a fresh state directory (hard links
/// where the file system allows, so a restore does not copy the state).
pub fn materialise(checkpoint: &Path, state: &Path) -> Result<(), CheckpointError> {
    if state.exists() {
        fs::remove_dir_all(state).map_err(io(state))?;
    }
    fs::create_dir_all(state).map_err(io(state))?;
    let src = checkpoint.join(DB_DIR);
    for e in fs::read_dir(&src).map_err(io(&src))? {
        let e = e.map_err(io(&src))?;
        let from = e.path();
        let to = state.join(e.file_name());
        // Immutable SST files can be shared; the rest is copied because RocksDB rewrites it.
        let is_sst = from.extension().is_some_and(|x| x == "sst");
        if !(is_sst && fs::hard_link(&from, &to).is_ok()) {
            fs::copy(&from, &to).map_err(io(&to))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::counters::ShardCounters;
    use crate::state::pending::PendingState;

    fn manifest(id: u64) -> CheckpointManifest {
        CheckpointManifest {
            format_version: FORMAT_VERSION,
            shard: 0,
            id,
            created_ms: id as i64 * 10,
            inputs: [InputState {
                next_offset: Some(5),
                max_event_time: 9,
            }; 2],
            job_watermark: 0,
            live_entries: 0,
            pending: PendingState::default(),
            counters: ShardCounters::default(),
            transactional: false,
            process_started_ms: None,
            files: Vec::new(),
        }
    }

    fn write(root: &Path, id: u64, content: &[u8]) -> PathBuf {
        let tmp = prepare(root, 0, id).expect("prepare");
        fs::create_dir_all(tmp.join(DB_DIR)).expect("db dir");
        fs::write(tmp.join(DB_DIR).join("000001.sst"), content).expect("write");
        fs::write(tmp.join(PENDING), b"p").expect("write");
        publish(&tmp, manifest(id)).expect("publish").0
    }

    #[test]
    fn the_newest_valid_checkpoint_wins() {
        let root = tempfile::tempdir().expect("tmp");
        write(root.path(), 1, b"one");
        write(root.path(), 2, b"two");
        let (found, skipped) = newest_valid(root.path(), 0).expect("list");
        assert_eq!(found.expect("a checkpoint").1.id, 2);
        assert_eq!(skipped, 0);
    }

    #[test]
    fn a_truncated_file_falls_back_to_the_previous_checkpoint() {
        let root = tempfile::tempdir().expect("tmp");
        write(root.path(), 1, b"one");
        let newest = write(root.path(), 2, b"two");
        fs::write(newest.join(DB_DIR).join("000001.sst"), b"t").expect("truncate");
        let (found, skipped) = newest_valid(root.path(), 0).expect("list");
        assert_eq!(found.expect("a checkpoint").1.id, 1);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn a_changed_byte_or_a_missing_manifest_is_detected() {
        let root = tempfile::tempdir().expect("tmp");
        let a = write(root.path(), 1, b"abc");
        fs::write(a.join(DB_DIR).join("000001.sst"), b"abd").expect("flip");
        assert!(validate(&a).is_err());
        let b = write(root.path(), 2, b"abc");
        fs::remove_file(b.join(MANIFEST)).expect("rm");
        assert!(validate(&b).is_err());
    }

    #[test]
    fn an_interrupted_write_is_invisible_and_cleaned_up() {
        let root = tempfile::tempdir().expect("tmp");
        write(root.path(), 1, b"one");
        let tmp = prepare(root.path(), 0, 2).expect("prepare");
        fs::write(tmp.join(PENDING), b"half").expect("write");
        assert_eq!(list(root.path(), 0).expect("list").len(), 1);
        retain(root.path(), 0, 3).expect("retain");
        assert!(!tmp.exists());
    }

    #[test]
    fn checkpoints_before_the_given_time_are_not_restored() {
        let root = tempfile::tempdir().expect("tmp");
        write(root.path(), 1, b"one");
        write(root.path(), 2, b"two");
        let newest = |since| {
            newest_valid_since(root.path(), 0, since)
                .expect("list")
                .0
                .map(|(_, m)| m.id)
        };
        assert_eq!(newest(15), Some(2));
        assert_eq!(newest(20), Some(2));
        assert_eq!(newest(21), None, "older ones are not a fallback either");
    }

    #[test]
    fn a_checkpoint_written_late_by_an_old_process_is_still_ignored() {
        // The operator records the time, then stops the old pods, which may
        // still checkpoint on their way out.
        let mut m = manifest(9);
        m.process_started_ms = Some(5);
        assert!(
            !m.written_since(10),
            "created at 90 by a process started at 5"
        );
        m.process_started_ms = Some(10);
        assert!(m.written_since(10));
    }

    #[test]
    fn retention_keeps_the_newest() {
        let root = tempfile::tempdir().expect("tmp");
        for id in 1..=5 {
            write(root.path(), id, b"x");
        }
        retain(root.path(), 0, 2).expect("retain");
        let ids: Vec<u64> = list(root.path(), 0)
            .expect("list")
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(ids, vec![5, 4]);
    }
}
