//! What the S3 store holds, listed from the server.

use std::collections::BTreeSet;

use object_store::ObjectStore;

use crate::s3::S3Env;
pub use crate::s3::keys;

/// The bucket of the example's `savepoints.location`.
pub const BUCKET: &str = "streamjoin-savepoints";

/// Creates `bucket` unless it exists (a store kept running between runs has it).
pub async fn ensure_bucket(s3: &S3Env, bucket: &str) {
    if s3.store(bucket).list_with_delimiter(None).await.is_err() {
        tokio::task::block_in_place(|| s3.create_bucket(bucket));
    }
}

/// The savepoint ids with any object under `prefix` (`<prefix>/<id>/…`),
/// complete or not.
pub async fn savepoint_ids(s3: &S3Env, bucket: &str, prefix: &str) -> BTreeSet<String> {
    let base = format!("{}/", prefix.trim_end_matches('/'));
    keys(s3, bucket, prefix)
        .await
        .iter()
        .filter_map(|k| k.strip_prefix(&base)?.split('/').next().map(str::to_owned))
        .collect()
}
