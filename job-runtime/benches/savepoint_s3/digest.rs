//! A shard's RocksDB content as one comparable value.

use std::path::Path;

use streamjoin_runtime::state::store::CF_ENTRIES;

/// What a shard's RocksDB holds: the entries, and a hash of every column
/// family's keys and values in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub entries: u64,
    pub hash: u64,
}

/// Reads the closed RocksDB instance in `db` (read-only; RocksDB's own log goes
/// to `log_dir`, so nothing is written into `db`).
pub fn digest(db: &Path, log_dir: &Path) -> Digest {
    let mut opts = rocksdb::Options::default();
    opts.set_db_log_dir(log_dir);
    let mut cfs = rocksdb::DB::list_cf(&opts, db)
        .unwrap_or_else(|e| panic!("listing the column families of {db:?}: {e}"));
    cfs.sort();
    let handle = rocksdb::DB::open_cf_for_read_only(&opts, db, &cfs, false)
        .unwrap_or_else(|e| panic!("opening {db:?} read-only: {e}"));
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut entries = 0;
    for name in &cfs {
        let cf = handle
            .cf_handle(name)
            .unwrap_or_else(|| panic!("{db:?}: column family {name} listed but not opened"));
        hasher.update(name.as_bytes());
        for item in handle.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item.unwrap_or_else(|e| panic!("reading {db:?} ({name}): {e}"));
            entries += u64::from(name == CF_ENTRIES);
            for bytes in [&k[..], &v[..]] {
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
        }
    }
    Digest {
        entries,
        hash: hasher.digest(),
    }
}
