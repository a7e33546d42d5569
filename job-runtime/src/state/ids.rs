//! Event ids of hot entries kept in RocksDB instead of memory: the `ids` column
//! family maps `key bytes ++ id hash` (32 bytes, so one entry's ids are one
//! contiguous range) to the event's content fingerprint. An entry whose
//! in-memory id set grows past the store's threshold writes it here and keeps
//! only the ids seen since; a lookup of an id missing from memory is a point
//! read (bloom-filtered, so absent ids rarely touch a file). The ids of an
//! entry are deleted as one range when it fires.

use rocksdb::{ColumnFamily, DB, IteratorMode, ReadOptions, WriteBatch};

use crate::model::record::Key;

fn id_key(key: Key, id: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&key.to_bytes());
    out[16..].copy_from_slice(&id.to_be_bytes());
    out
}

/// Past every id key of `key`: the key's bytes, sixteen 0xFF bytes and one more
/// byte (a range end is exclusive; the next key's range starts higher).
fn range_end(key: Key) -> [u8; 33] {
    let mut out = [0xFF; 33];
    out[..16].copy_from_slice(&key.to_bytes());
    out
}

/// A failed lookup: RocksDB's error, or a stored value of the wrong length.
#[derive(Debug)]
pub enum LookupError {
    Rocks(rocksdb::Error),
    BadValue { len: usize },
}

/// Adds `ids` (id hash, fingerprint) of `key`'s entry to `batch`, sorted
/// (RocksDB inserts keys in order faster).
pub fn put_all(
    batch: &mut WriteBatch,
    cf: &ColumnFamily,
    key: Key,
    ids: impl Iterator<Item = (u128, u64)>,
) {
    let mut pairs: Vec<(u128, u64)> = ids.collect();
    pairs.sort_unstable_by_key(|p| p.0);
    for (id, content) in pairs {
        batch.put_cf(cf, id_key(key, id), content.to_le_bytes());
    }
}

/// The fingerprint stored for `id` of `key`'s entry.
pub fn lookup(db: &DB, cf: &ColumnFamily, key: Key, id: u128) -> Result<Option<u64>, LookupError> {
    match db.get_pinned_cf(cf, id_key(key, id)) {
        Ok(None) => Ok(None),
        Ok(Some(v)) => <[u8; 8]>::try_from(&v[..])
            .map(|b| Some(u64::from_le_bytes(b)))
            .map_err(|_| LookupError::BadValue { len: v.len() }),
        Err(e) => Err(LookupError::Rocks(e)),
    }
}

/// Adds the deletion of every id of `key`'s entry to `batch`.
pub fn delete_all(batch: &mut WriteBatch, cf: &ColumnFamily, key: Key) {
    batch.delete_range_cf(cf, &key.to_bytes()[..], &range_end(key)[..]);
}

/// Ids held for `key`'s entry (for tests and checks): a scan of its range.
pub fn count(db: &DB, cf: &ColumnFamily, key: Key) -> Result<u64, rocksdb::Error> {
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(key.to_bytes().to_vec());
    ro.set_iterate_upper_bound(range_end(key).to_vec());
    let mut n = 0;
    for item in db.iterator_cf_opt(cf, ro, IteratorMode::Start) {
        item?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entrys_id_range_covers_its_ids_and_no_other_keys() {
        let a = Key {
            profile: 5,
            title: 9,
        };
        let b = Key {
            profile: 5,
            title: 10,
        };
        let end = range_end(a);
        for id in [0, 1, u128::MAX] {
            let k = id_key(a, id);
            assert!(k.as_slice() >= a.to_bytes().as_slice() && k.as_slice() < end.as_slice());
            assert!(id_key(b, id).as_slice() >= end.as_slice());
        }
    }
}
