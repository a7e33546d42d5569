//! What a savepoint left in the store.

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

/// The objects under `prefix`.
pub fn list(
    rt: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    prefix: &str,
) -> Vec<object_store::ObjectMeta> {
    let prefix = StorePath::from(prefix);
    rt.block_on(store.list(Some(&prefix)).try_collect())
        .unwrap_or_else(|e| panic!("listing {prefix}: {e}"))
}

/// Objects, their bytes, how many went up in parts and the parts of those (an
/// S3 multipart upload's ETag ends in `-<parts>`).
pub fn sizes(objects: &[object_store::ObjectMeta]) -> (u64, u64, u64, u64) {
    let parts: Vec<u64> = objects
        .iter()
        .filter_map(|m| {
            let tag = m.e_tag.as_deref()?.trim_matches('"');
            tag.rsplit_once('-')?.1.parse().ok()
        })
        .collect();
    let bytes = objects.iter().map(|m| m.size).sum();
    (
        objects.len() as u64,
        bytes,
        parts.len() as u64,
        parts.iter().sum(),
    )
}

pub fn delete(
    rt: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    objects: &[object_store::ObjectMeta],
) {
    for m in objects {
        rt.block_on(store.delete(&m.location))
            .unwrap_or_else(|e| panic!("deleting {}: {e}", m.location));
    }
}
