//! Savepoints: portable copies of every shard's state in `savepoints.location`
//! (a shared filesystem path, a `file://` URL or an object store: `s3://`,
//! `gs://`, `az://`; opened by [`crate::durability::location`]).
//!
//! Layout of savepoint `<id>`: `<location>/<id>/shard-<p>/` holds one shard's
//! checkpoint as [`crate::durability::checkpoint`] writes it (`db/`, `pending.bin`,
//! `MANIFEST.json` with offsets, watermarks, counters, the format version and
//! file checksums), the shard manifest uploaded last; each process adds
//! `<location>/<id>/_process-<ordinal>.json` listing the shards it wrote. All
//! processes of a job write into the same `<id>`, so a savepoint holds every
//! shard whatever the number of processes, and a restore with another number of
//! processes takes exactly the shards each one now owns.
//!
//! Visibility: a shard counts only when the process manifest that lists it
//! exists, and each process writes its manifest after every shard it lists, so
//! a process killed mid-upload leaves shards no restore uses and a savepoint
//! [`SavepointStore::list_complete`] does not list. Files above
//! [`MULTIPART_THRESHOLD`] go up as multipart uploads of [`PART_SIZE`] parts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::durability::checkpoint::{self, CheckpointManifest};
pub use crate::durability::location::StoreSettings;
use crate::durability::location::{self, OpenError};

pub use streamjoin_formats::savepoint::{
    FORMAT_VERSION, ProcessManifest, ShardSummary, decode_process_manifest, is_complete,
};
/// Files from this size on are uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// The size of one part (S3 wants at least 5 MiB, except for the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
const PROCESS_MANIFEST_PREFIX: &str = "_process-";

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
    #[error(
        "savepoint {location} is incomplete (manifests of processes {processes:?} only): a process did not finish writing it, so it is not restored"
    )]
    Incomplete {
        location: String,
        processes: Vec<u32>,
    },
    #[error(transparent)]
    Invalid(#[from] checkpoint::CheckpointError),
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
    /// Opens a location: an absolute path, a `file://` URL or an object-store
    /// URL (`s3://`, `gs://`, `az://`) with `settings`.
    pub fn open(location: &str, settings: &StoreSettings) -> Result<Self, SavepointError> {
        let opened =
            location::open(location, settings).map_err(|OpenError { shown, reason }| {
                SavepointError::Location {
                    location: shown,
                    reason,
                }
            })?;
        Ok(Self {
            store: opened.store,
            prefix: opened.prefix,
            location: opened.shown,
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
            let mut target = base.clone();
            for part in rel.iter() {
                target = target.join(part.to_string_lossy().as_ref());
            }
            bytes += self.put_file(&staged.dir.join(&rel), &target).await?;
        }
        Ok(bytes)
    }

    /// Puts one local file: in one request, or in parts from
    /// [`MULTIPART_THRESHOLD`] on (an upload that fails is aborted, so it
    /// leaves no object).
    async fn put_file(&self, local: &Path, target: &StorePath) -> Result<u64, SavepointError> {
        let len = tokio::fs::metadata(local)
            .await
            .map_err(self.local_err(local))?
            .len();
        if len < MULTIPART_THRESHOLD {
            let data = tokio::fs::read(local)
                .await
                .map_err(self.local_err(local))?;
            self.store
                .put(target, PutPayload::from(data))
                .await
                .map_err(self.store_err())?;
            return Ok(len);
        }
        let upload = self
            .store
            .put_multipart(target)
            .await
            .map_err(self.store_err())?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        match self.write_parts(local, &mut writer).await {
            Ok(()) => {
                writer.finish().await.map_err(self.store_err())?;
                Ok(len)
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(savepoint = %self.location, object = %target, "aborting a failed multipart upload: {abort}");
                }
                Err(e)
            }
        }
    }

    async fn write_parts(
        &self,
        local: &Path,
        writer: &mut WriteMultipart,
    ) -> Result<(), SavepointError> {
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(self.local_err(local))?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = file.read(&mut buf).await.map_err(self.local_err(local))?;
            if n == 0 {
                return Ok(());
            }
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(self.store_err())?;
            writer.write(&buf[..n]);
        }
    }

    pub async fn write_process_manifest(
        &self,
        manifest: &ProcessManifest,
    ) -> Result<(), SavepointError> {
        let text = serde_json::to_vec_pretty(manifest).map_err(|e| SavepointError::Location {
            location: self.location.clone(),
            reason: e.to_string(),
        })?;
        let path = self.prefix.clone().join(format!(
            "{PROCESS_MANIFEST_PREFIX}{}.json",
            manifest.ordinal
        ));
        self.store
            .put(&path, PutPayload::from(text))
            .await
            .map_err(self.store_err())?;
        Ok(())
    }

    /// Whether this savepoint holds shard `shard`: a process manifest lists it
    /// (so every file of the shard, its manifest last, was written before).
    pub async fn has_shard(&self, shard: u32) -> Result<bool, SavepointError> {
        Ok(self
            .process_manifests()
            .await?
            .iter()
            .any(|m| m.shards.iter().any(|s| s.shard == shard)))
    }

    /// The objects and sub-prefixes directly under this location.
    async fn list_here(&self) -> Result<object_store::ListResult, SavepointError> {
        self.store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(self.store_err())
    }

    /// Deletes this savepoint: its process manifests first, so that no reader
    /// takes a half-deleted savepoint for a complete one, then every other object
    /// under it. A savepoint already gone is no error (retention retries).
    /// Returns the number of objects deleted.
    pub async fn delete(&self) -> Result<usize, SavepointError> {
        let objects: Vec<StorePath> = self
            .store
            .list(Some(&self.prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(self.store_err())?;
        let (manifests, rest): (Vec<_>, Vec<_>) = objects.into_iter().partition(|p| {
            p.filename()
                .is_some_and(|n| n.starts_with(PROCESS_MANIFEST_PREFIX))
        });
        let count = manifests.len() + rest.len();
        for batch in [manifests, rest] {
            let paths = futures::stream::iter(batch.into_iter().map(Ok)).boxed();
            let mut deleted = self.store.delete_stream(paths);
            while let Some(result) = deleted.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.store_err()(e)),
                }
            }
        }
        Ok(count)
    }

    /// The process manifests of this savepoint, by ordinal.
    pub async fn process_manifests(&self) -> Result<Vec<ProcessManifest>, SavepointError> {
        let listed = self.list_here().await?;
        let mut out = Vec::new();
        for meta in listed.objects {
            let name = meta.location.filename().unwrap_or_default();
            if !(name.starts_with(PROCESS_MANIFEST_PREFIX) && name.ends_with(".json")) {
                continue;
            }
            let data = self
                .store
                .get(&meta.location)
                .await
                .map_err(self.store_err())?
                .bytes()
                .await
                .map_err(self.store_err())?;
            let m = decode_process_manifest(&data).map_err(|e| SavepointError::Location {
                location: self.location.clone(),
                reason: format!("{name}: {e}"),
            })?;
            out.push(m);
        }
        out.sort_by_key(|m| m.ordinal);
        Ok(out)
    }

    /// Whether every process of the job that took this savepoint wrote its
    /// manifest and together they hold every shard.
    pub async fn is_complete(&self) -> Result<bool, SavepointError> {
        Ok(is_complete(&self.process_manifests().await?))
    }

    /// The ids of the complete savepoints under this location, in name order;
    /// one still being written, or whose writer died, is left out.
    pub async fn list_complete(&self) -> Result<Vec<String>, SavepointError> {
        let listed = self.list_here().await?;
        let mut out = Vec::new();
        for dir in listed.common_prefixes {
            let Some(id) = dir.filename() else {
                continue;
            };
            if self.child(id).is_complete().await? {
                out.push(id.to_owned());
            }
        }
        out.sort();
        Ok(out)
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
        let listed: Vec<_> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(self.store_err())?;
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
            self.get_file(&meta.location, &local).await?;
        }
        // Create `db/` even for a shard whose RocksDB had no file (never happens
        // with RocksDB checkpoints, but an empty directory is not an object).
        let db = dest.join(checkpoint::DB_DIR);
        tokio::fs::create_dir_all(&db)
            .await
            .map_err(self.local_err(&db))?;
        Ok(checkpoint::validate(dest)?)
    }

    /// Streams one object into a local file (a large file is never whole in memory).
    async fn get_file(&self, object: &StorePath, local: &Path) -> Result<(), SavepointError> {
        let mut stream = self
            .store
            .get(object)
            .await
            .map_err(self.store_err())?
            .into_stream();
        let mut file = tokio::fs::File::create(local)
            .await
            .map_err(self.local_err(local))?;
        while let Some(chunk) = stream.try_next().await.map_err(self.store_err())? {
            file.write_all(&chunk)
                .await
                .map_err(self.local_err(local))?;
        }
        file.flush().await.map_err(self.local_err(local))
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
pub fn parse_restore_from(
    value: &str,
    settings: &StoreSettings,
) -> Result<Vec<SavepointStore>, SavepointError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|l| SavepointStore::open(l, settings))
        .collect()
}

/// Refuses a savepoint (one location, or the locations its processes reported)
/// that is not complete: a process of the job that took it did not write its
/// manifest, or a shard is missing. A half-written savepoint is never restored.
pub async fn check_complete(locations: &[SavepointStore]) -> Result<(), SavepointError> {
    let mut all = Vec::new();
    for l in locations {
        all.extend(l.process_manifests().await?);
    }
    all.sort_by_key(|m| m.ordinal);
    all.dedup_by_key(|m| m.ordinal);
    if is_complete(&all) {
        return Ok(());
    }
    Err(SavepointError::Incomplete {
        location: join_locations(locations),
        processes: all.iter().map(|m| m.ordinal).collect(),
    })
}

fn join_locations(locations: &[SavepointStore]) -> String {
    locations
        .iter()
        .map(|l| l.location().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// The first location that holds shard `shard`, with the shard's manifest.
pub async fn locate_shard(
    locations: &[SavepointStore],
    shard: u32,
) -> Result<(SavepointStore, CheckpointManifest), SavepointError> {
    for l in locations {
        if l.has_shard(shard).await?
            && let Some(m) = l.shard_manifest(shard).await?
        {
            return Ok((l.clone(), m));
        }
    }
    Err(SavepointError::MissingShard {
        location: join_locations(locations),
        shard,
    })
}

/// The fixture names this crate `super::rt` (see `tests/fixtures/mod.rs`).
#[cfg(test)]
use crate as rt;
#[cfg(test)]
#[path = "../../tests/fixtures/shards.rs"]
mod fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::checkpoint::{DB_DIR, PENDING};
    use fixture::process_manifest as process;

    /// A staged shard whose SST is 1000 bytes of the shard's number.
    fn staged(root: &Path, shard: u32) -> StagedShard {
        fixture::staged_shard(root, shard, &[shard as u8; 1000])
    }

    /// A store in directory `dir`, as a plain path location.
    fn store_at(dir: &Path) -> SavepointStore {
        SavepointStore::open(&dir.display().to_string(), &StoreSettings::default()).expect("open")
    }

    /// Uploads `shards`, staged under `local`, and the manifest of process
    /// `ordinal` of `replicas` (over `partitions`) that lists them.
    async fn write_process(
        loc: &SavepointStore,
        local: &Path,
        (ordinal, replicas, partitions): (u32, u32, u32),
        shards: &[u32],
    ) {
        for &shard in shards {
            loc.upload_shard(&staged(local, shard)).await.expect("up");
        }
        loc.write_process_manifest(&process(ordinal, replicas, partitions, shards))
            .await
            .expect("manifest");
    }

    #[tokio::test]
    async fn a_shard_goes_up_and_comes_back_identical() {
        let local = tempfile::tempdir().expect("tmp");
        let remote = tempfile::tempdir().expect("tmp");
        let s = staged(local.path(), 3);
        let loc = SavepointStore::open(
            &format!("file://{}", remote.path().display()),
            &StoreSettings::default(),
        )
        .expect("open")
        .child("sp-1");
        assert!(!loc.has_shard(3).await.expect("head"));
        let bytes = loc.upload_shard(&s).await.expect("upload");
        assert!(bytes > 1000);
        assert!(
            !loc.has_shard(3).await.expect("head"),
            "not before the process manifest lists it"
        );
        loc.write_process_manifest(&process(0, 1, 4, &[3]))
            .await
            .expect("process manifest");
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
        let a = store_at(&remote.path().join("a"));
        let b = store_at(&remote.path().join("b"));
        write_process(&a, local.path(), (0, 2, 2), &[0]).await;
        write_process(&b, local.path(), (1, 2, 2), &[1]).await;
        let both = parse_restore_from(
            &format!("{},{}", a.location(), b.location()),
            &StoreSettings::default(),
        )
        .expect("parse");
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
        check_complete(&both).await.expect("complete across both");
        let only_a = check_complete(&both[..1]).await;
        assert!(
            matches!(&only_a, Err(SavepointError::Incomplete { processes, .. }) if processes == &[0]),
            "{only_a:?}"
        );
    }

    #[tokio::test]
    async fn a_savepoint_is_listed_only_when_every_process_wrote_its_manifest() {
        let local = tempfile::tempdir().expect("tmp");
        let remote = tempfile::tempdir().expect("tmp");
        let root = store_at(remote.path());
        let (done, half) = (root.child("sp-done"), root.child("sp-half"));
        for (ordinal, shard) in [(0, 0), (1, 1)] {
            write_process(&done, &local.path().join("done"), (ordinal, 2, 2), &[shard]).await;
        }
        // Process 1 of the second one died after its shard, before its manifest.
        for shard in [0, 1] {
            half.upload_shard(&staged(&local.path().join("half"), shard))
                .await
                .expect("up");
        }
        half.write_process_manifest(&process(0, 2, 2, &[0]))
            .await
            .expect("manifest");
        assert_eq!(root.list_complete().await.expect("list"), ["sp-done"]);
        assert!(!half.has_shard(1).await.expect("has"));
        let r = locate_shard(std::slice::from_ref(&half), 1).await;
        assert!(
            matches!(r, Err(SavepointError::MissingShard { .. })),
            "{r:?}"
        );
        assert!(matches!(
            check_complete(&[half]).await,
            Err(SavepointError::Incomplete { .. })
        ));
    }

    #[tokio::test]
    async fn a_corrupted_savepoint_file_is_refused() {
        let local = tempfile::tempdir().expect("tmp");
        let remote = tempfile::tempdir().expect("tmp");
        let loc = store_at(remote.path());
        write_process(&loc, local.path(), (0, 1, 1), &[0]).await;
        std::fs::write(remote.path().join("shard-0").join(PENDING), b"pendinG").expect("flip");
        let r = loc.download_shard(0, &local.path().join("r")).await;
        assert!(matches!(r, Err(SavepointError::Invalid(_))), "{r:?}");
    }

    #[test]
    fn unsupported_schemes_and_relative_paths_are_refused_with_a_reason() {
        for bad in ["http://host/sp", "relative/dir"] {
            let e = SavepointStore::open(bad, &StoreSettings::default())
                .expect_err(bad)
                .to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
