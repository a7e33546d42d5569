//! Savepoints: portable copies of every shard's state in `savepoints.location`
//! (a shared filesystem path or a `file://` URL, through `object_store`).
//!
//! Layout of savepoint `<id>`: `<location>/<id>/shard-<p>/` holds one shard's
//! checkpoint as [`crate::durability::checkpoint`] writes it (`db/`, `pending.bin`,
//! `MANIFEST.json` with offsets, watermarks, counters, the format version and
//! file checksums), the shard manifest uploaded last; each process adds
//! `<location>/<id>/_process-<ordinal>.json` listing the shards it wrote. All
//! processes of a job write into the same `<id>`, so a savepoint holds every
//! shard whatever the number of processes, and a restore with another number of
//! processes takes exactly the shards each one now owns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::durability::checkpoint::{self, CheckpointManifest, InputState};

pub const FORMAT_VERSION: u32 = 1;

/// One shard's part of a savepoint, written locally by its worker.
#[derive(Debug, Clone)]
pub struct StagedShard {
    pub dir: PathBuf,
    pub manifest: CheckpointManifest,
}

#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    #[error("savepoint location {location:?}: {reason}")]
    Location { location: String, reason: String },
    #[error("savepoint {location}: {source}")]
    Store {
        location: String,
        source: object_store::Error,
    },
    #[error("savepoint {location}: {path}: {source}")]
    Local {
        location: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("savepoint {location} has no shard {shard}")]
    MissingShard { location: String, shard: u32 },
    #[error(transparent)]
    Invalid(#[from] checkpoint::CheckpointError),
}

/// What one process wrote into a savepoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessManifest {
    pub format_version: u32,
    pub id: String,
    pub created_ms: i64,
    pub ordinal: u32,
    pub replicas: u32,
    pub partitions: u32,
    pub shards: Vec<ShardSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    pub shard: u32,
    pub checkpoint_id: u64,
    /// Impressions, then plays.
    pub inputs: [InputState; 2],
    pub job_watermark: i64,
    pub live_entries: u64,
    pub bytes: u64,
}

/// A savepoint location: the store and the path prefix inside it.
#[derive(Clone)]
pub struct SavepointStore {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    location: String,
}

impl std::fmt::Debug for SavepointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location)
    }
}

impl SavepointStore {
    /// Opens a location: an absolute path or a `file://` URL. Other schemes
    /// (s3, gs, az) are refused with a message: this build carries no cloud clients.
    pub fn open(location: &str) -> Result<Self, SavepointError> {
        let err = |reason: String| SavepointError::Location {
            location: location.to_owned(),
            reason,
        };
        let url = if location.contains("://") {
            url::Url::parse(location).map_err(|e| err(e.to_string()))?
        } else {
            let path = Path::new(location);
            if !path.is_absolute() {
                return Err(err("a filesystem location must be an absolute path".into()));
            }
            url::Url::from_directory_path(path)
                .map_err(|()| err("not a usable directory path".into()))?
        };
        if url.scheme() != "file" {
            return Err(err(format!(
                "the {}:// scheme is not supported by this runtime build; use a shared filesystem path (a ReadWriteMany volume mounted in every pod) or a file:// URL",
                url.scheme()
            )));
        }
        let dir = url
            .to_file_path()
            .map_err(|()| err("not a local file URL".into()))?;
        std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: StorePath::default(),
            location: location.trim_end_matches('/').to_owned(),
        })
    }

    /// The location as users wrote it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The savepoint `id` under this location, as a location of its own.
    pub fn child(&self, id: &str) -> Self {
        Self {
            store: self.store.clone(),
            prefix: self.prefix.clone().join(id),
            location: format!("{}/{id}", self.location),
        }
    }

    fn store_err(&self) -> impl FnOnce(object_store::Error) -> SavepointError + '_ {
        move |source| SavepointError::Store {
            location: self.location.clone(),
            source,
        }
    }

    fn local_err(&self, path: &Path) -> impl FnOnce(std::io::Error) -> SavepointError + '_ {
        let path = path.to_path_buf();
        move |source| SavepointError::Local {
            location: self.location.clone(),
            path,
            source,
        }
    }

    fn shard_prefix(&self, shard: u32) -> StorePath {
        self.prefix.clone().join(format!("shard-{shard}"))
    }

    /// Uploads one shard's staged checkpoint, its manifest last (a reader that
    /// finds the manifest finds every file). Returns the bytes written.
    pub async fn upload_shard(&self, staged: &StagedShard) -> Result<u64, SavepointError> {
        let base = self.shard_prefix(staged.manifest.shard);
        let mut files = Vec::new();
        walk(&staged.dir, &staged.dir, &mut files).map_err(self.local_err(&staged.dir))?;
        // The manifest goes last.
        files.sort_by_key(|f| (f == Path::new(checkpoint::MANIFEST), f.clone()));
        let mut bytes = 0;
        for rel in files {
            let local = staged.dir.join(&rel);
            let data = tokio::fs::read(&local)
                .await
                .map_err(self.local_err(&local))?;
            bytes += data.len() as u64;
            let mut target = base.clone();
            for part in rel.iter() {
                target = target.join(part.to_string_lossy().as_ref());
            }
            self.store
                .put(&target, PutPayload::from(data))
                .await
                .map_err(self.store_err())?;
        }
        Ok(bytes)
    }

    pub async fn write_process_manifest(
        &self,
        manifest: &ProcessManifest,
    ) -> Result<(), SavepointError> {
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| SavepointError::Location {
            location: self.location.clone(),
            reason: e.to_string(),
        })?;
        let path = self
            .prefix
            .clone()
            .join(format!("_process-{}.json", manifest.ordinal));
        self.store
            .put(&path, PutPayload::from(text))
            .await
            .map_err(self.store_err())?;
        Ok(())
    }

    /// Whether this savepoint holds shard `shard` (its manifest was written).
    pub async fn has_shard(&self, shard: u32) -> Result<bool, SavepointError> {
        let m = self.shard_prefix(shard).join(checkpoint::MANIFEST);
        match self.store.head(&m).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.store_err()(e)),
        }
    }

    /// The manifest of shard `shard` (offsets, watermarks, creation time), read
    /// without fetching the state.
    pub async fn shard_manifest(
        &self,
        shard: u32,
    ) -> Result<Option<CheckpointManifest>, SavepointError> {
        let m = self.shard_prefix(shard).join(checkpoint::MANIFEST);
        let data = match self.store.get(&m).await {
            Ok(r) => r.bytes().await.map_err(self.store_err())?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_err()(e)),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| SavepointError::Location {
                location: self.location.clone(),
                reason: format!("shard-{shard}/{}: {e}", checkpoint::MANIFEST),
            })
    }

    /// Copies shard `shard` into `dest` and checks it against its manifest.
    pub async fn download_shard(
        &self,
        shard: u32,
        dest: &Path,
    ) -> Result<CheckpointManifest, SavepointError> {
        if !self.has_shard(shard).await? {
            return Err(SavepointError::MissingShard {
                location: self.location.clone(),
                shard,
            });
        }
        if dest.exists() {
            tokio::fs::remove_dir_all(dest)
                .await
                .map_err(self.local_err(dest))?;
        }
        let base = self.shard_prefix(shard);
        let listed: Vec<_> = {
            use futures::TryStreamExt;
            self.store
                .list(Some(&base))
                .try_collect()
                .await
                .map_err(self.store_err())?
        };
        for meta in listed {
            let Some(rel) = meta.location.prefix_match(&base) else {
                continue;
            };
            let mut local = dest.to_path_buf();
            for part in rel {
                local.push(part.as_ref());
            }
            if let Some(parent) = local.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(self.local_err(parent))?;
            }
            let data = self
                .store
                .get(&meta.location)
                .await
                .map_err(self.store_err())?
                .bytes()
                .await
                .map_err(self.store_err())?;
            tokio::fs::write(&local, &data)
                .await
                .map_err(self.local_err(&local))?;
        }
        // Create `db/` even for a shard whose RocksDB had no file (never happens
        // with RocksDB checkpoints, but an empty directory is not an object).
        let db = dest.join(checkpoint::DB_DIR);
        tokio::fs::create_dir_all(&db)
            .await
            .map_err(self.local_err(&db))?;
        Ok(checkpoint::validate(dest)?)
    }
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, base, out)?;
        } else {
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

/// `--restore-from`: one savepoint location, or a comma-separated list of them
/// (what processes that wrote to different places reported).
pub fn parse_restore_from(value: &str) -> Result<Vec<SavepointStore>, SavepointError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(SavepointStore::open)
        .collect()
}

/// The first location that holds shard `shard`, with the shard's manifest.
pub async fn locate_shard(
    locations: &[SavepointStore],
    shard: u32,
) -> Result<(SavepointStore, CheckpointManifest), SavepointError> {
    for l in locations {
        if let Some(m) = l.shard_manifest(shard).await? {
            return Ok((l.clone(), m));
        }
    }
    Err(SavepointError::MissingShard {
        location: locations
            .iter()
            .map(|l| l.location().to_owned())
            .collect::<Vec<_>>()
            .join(","),
        shard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::checkpoint::{DB_DIR, PENDING};
    use crate::model::counters::ShardCounters;
    use crate::state::pending::PendingState;

    fn staged(root: &Path, shard: u32) -> StagedShard {
        let tmp = checkpoint::prepare(root, shard, 7).expect("prepare");
        std::fs::create_dir_all(tmp.join(DB_DIR)).expect("db");
        std::fs::write(tmp.join(DB_DIR).join("000009.sst"), vec![shard as u8; 1000]).expect("sst");
        std::fs::write(tmp.join(DB_DIR).join("CURRENT"), b"MANIFEST-000005\n").expect("cur");
        std::fs::write(tmp.join(PENDING), b"pending").expect("pending");
        let manifest = CheckpointManifest {
            format_version: checkpoint::FORMAT_VERSION,
            shard,
            id: 7,
            created_ms: 1,
            inputs: [InputState {
                next_offset: Some(42),
                max_event_time: 1000,
            }; 2],
            job_watermark: 5,
            live_entries: 3,
            pending: PendingState::default(),
            counters: ShardCounters::default(),
            transactional: false,
            process_started_ms: None,
            files: Vec::new(),
        };
        let (dir, _) = checkpoint::publish(&tmp, manifest).expect("publish");
        let manifest = checkpoint::validate(&dir).expect("valid");
        StagedShard { dir, manifest }
    }

    #[tokio::test]
    async fn a_shard_goes_up_and_comes_back_identical() {
        let local = tempfile::tempdir().expect("tmp");
        let remote = tempfile::tempdir().expect("tmp");
        let s = staged(local.path(), 3);
        let loc = SavepointStore::open(&format!("file://{}", remote.path().display()))
            .expect("open")
            .child("sp-1");
        assert!(!loc.has_shard(3).await.expect("head"));
        let bytes = loc.upload_shard(&s).await.expect("upload");
        assert!(bytes > 1000);
        assert!(loc.has_shard(3).await.expect("head"));
        let back = local.path().join("back");
        let m = loc.download_shard(3, &back).await.expect("download");
        assert_eq!(m, s.manifest);
        assert_eq!(
            std::fs::read(back.join(DB_DIR).join("000009.sst")).expect("sst"),
            vec![3u8; 1000]
        );
    }

    #[tokio::test]
    async fn restore_finds_each_shard_in_whichever_location_holds_it() {
        let local = tempfile::tempdir().expect("tmp");
        let remote = tempfile::tempdir().expect("tmp");
        let a = SavepointStore::open(&remote.path().join("a").display().to_string()).expect("a");
        let b = SavepointStore::open(&remote.path().join("b").display().to_string()).expect("b");
        a.upload_shard(&staged(local.path(), 0)).await.expect("up");
        b.upload_shard(&staged(local.path(), 1)).await.expect("up");
        let both =
            parse_restore_from(&format!("{},{}", a.location(), b.location())).expect("parse");
        for shard in [0, 1] {
            let (loc, m) = locate_shard(&both, shard).await.expect("found");
            assert_eq!(m.shard, shard);
            let got = loc
                .download_shard(shard, &local.path().join(format!("r{shard}")))
                .await
                .expect("download");
            assert_eq!(got, m);
        }
        let missing = locate_shard(&both, 2).await;
        assert!(matches!(
            missing,
            Err(SavepointError::MissingShard { shard: 2, .. })
        ));
    }

    #[tokio::test]
    async fn a_corrupted_savepoint_file_is_refused() {
        let local = tempfile::tempdir().expect("tmp");
        let remote = tempfile::tempdir().expect("tmp");
        let loc = SavepointStore::open(&remote.path().display().to_string()).expect("open");
        loc.upload_shard(&staged(local.path(), 0))
            .await
            .expect("up");
        std::fs::write(remote.path().join("shard-0").join(PENDING), b"pendinG").expect("flip");
        let r = loc.download_shard(0, &local.path().join("r")).await;
        assert!(matches!(r, Err(SavepointError::Invalid(_))), "{r:?}");
    }

    #[test]
    fn cloud_schemes_and_relative_paths_are_refused_with_a_reason() {
        for bad in ["s3://bucket/sp", "relative/dir"] {
            let e = SavepointStore::open(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
