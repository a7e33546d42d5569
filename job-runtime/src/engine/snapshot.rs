//! The asynchronous part of a shard checkpoint. The worker only copies out what
//! changed since its last handover (see `store::hand_over`; the rest was
//! copied as it changed), the reorder buffer, offsets and counters, and goes on
//! reading; a thread of its own makes the checkpoint's directory, writes the
//! changed entries into RocksDB, links RocksDB's files, writes the reorder
//! buffer and publishes the checkpoint. The store
//! stays frozen meanwhile (see `store`), so the files hold the state of the
//! moment the copy was taken.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::durability::checkpoint::{self, CheckpointError, CheckpointManifest, DB_DIR, PENDING};
use crate::engine::error::ShardError;
use crate::state::pending::Pending;
use crate::state::store::{Change, ShardDb, TakenChanges};

/// Everything a checkpoint writes, taken at one moment between two records.
pub struct Snapshot {
    pub changes: TakenChanges,
    /// The checkpoints' root directory (`checkpoint::prepare` makes this
    /// one's there, off the worker: file system calls can wait on the disk).
    pub root: PathBuf,
    pub pending: Vec<Pending>,
    pub manifest: CheckpointManifest,
}

/// How writing a snapshot ended.
pub struct Written {
    /// The published checkpoint's directory and size.
    pub result: Result<(PathBuf, u64), ShardError>,
    /// The changed entries, when they could not be written into RocksDB.
    pub unwritten: Option<TakenChanges>,
    /// Once written: the emptied list, for the next checkpoint.
    pub spare: Vec<Change>,
}

/// Writes a snapshot: changed entries, RocksDB checkpoint, reorder buffer, manifest.
pub fn write(db: &ShardDb, s: Snapshot) -> Written {
    let tmp = match checkpoint::prepare(&s.root, db.shard(), s.manifest.id) {
        Ok(tmp) => tmp,
        Err(e) => {
            return Written {
                result: Err(e.into()),
                unwritten: Some(s.changes),
                spare: Vec::new(),
            };
        }
    };
    if let Err(e) = s.changes.write(db) {
        return Written {
            result: Err(e.into()),
            unwritten: Some(s.changes),
            spare: Vec::new(),
        };
    }
    // Emptied here: dropping the copies is work the worker need not do.
    let spare = s.changes.recycle();
    let result = (|| {
        rocksdb::checkpoint::Checkpoint::new(&db.db)
            .and_then(|c| c.create_checkpoint(tmp.join(DB_DIR)))
            .map_err(|e| db.err(e))?;
        let bytes = postcard::to_stdvec(&s.pending)
            .unwrap_or_else(|e| unreachable!("encoding pending events to memory: {e}"));
        let path = tmp.join(PENDING);
        std::fs::write(&path, bytes).map_err(|source| CheckpointError::Io { path, source })?;
        Ok(checkpoint::publish(&tmp, s.manifest)?)
    })();
    Written {
        result,
        unwritten: None,
        spare,
    }
}

/// A snapshot being written by its own thread.
pub struct InFlight {
    handle: JoinHandle<Written>,
    shard: u32,
}

impl InFlight {
    /// Starts writing `s`; when no thread can be started, writes it here.
    pub fn start(db: Arc<ShardDb>, s: Snapshot) -> Result<Self, Written> {
        let shard = db.shard();
        // The snapshot moves into the thread; if the spawn fails it comes back.
        let slot = Arc::new(std::sync::Mutex::new(Some(s)));
        let theirs = Arc::clone(&slot);
        let thread_db = Arc::clone(&db);
        let spawned = std::thread::Builder::new()
            .name(format!("checkpoint-{shard}"))
            .spawn(move || {
                let s = theirs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                match s {
                    Some(s) => write(&thread_db, s),
                    None => unreachable!("the snapshot is taken once"),
                }
            });
        match spawned {
            Ok(handle) => Ok(Self { handle, shard }),
            Err(e) => {
                tracing::warn!(shard, "no checkpoint thread ({e}): writing on the worker");
                let s = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                Err(match s {
                    Some(s) => write(&db, s),
                    None => unreachable!("the thread never ran"),
                })
            }
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the thread and returns how the write ended. A panic there is a
    /// bug that may have lost taken changes: it goes on here (the process ends
    /// and restarts from its last checkpoint).
    pub fn join(self) -> Written {
        match self.handle.join() {
            Ok(w) => w,
            Err(panic) => {
                tracing::error!(shard = self.shard, "the checkpoint thread panicked");
                std::panic::resume_unwind(panic)
            }
        }
    }
}
