//! What of the S3 API the savepoint store relies on, shown against a real
//! S3-compatible server (`scripts/s3.sh up`) through object_store's S3 client.
//! Each test works in a bucket of its own.

mod s3;

use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    Error, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion,
};
use s3::{S3Env, noise, read_back};

const MIB: usize = 1024 * 1024;

/// Bytes that differ from part to part, so a part stored twice or out of order shows.
fn part_bytes(part: usize, len: usize) -> Vec<u8> {
    noise(part as u64, len)
}

#[tokio::test]
async fn a_multipart_upload_of_many_parts_reads_back_whole() {
    let Some(s3) = S3Env::from_env("a_multipart_upload_of_many_parts_reads_back_whole") else {
        return;
    };
    let store = s3.store(&s3.new_bucket("multipart"));
    let path = Path::from("savepoints/job-1/shard-0.sst");
    // Three parts at S3's 5 MiB minimum and a short last one.
    let sizes = [5 * MIB, 5 * MIB, 5 * MIB, MIB + 123];
    let mut upload = store
        .put_multipart(&path)
        .await
        .expect("starting the multipart upload");
    let mut whole = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let bytes = part_bytes(i, len);
        whole.extend_from_slice(&bytes);
        upload
            .put_part(PutPayload::from(bytes))
            .await
            .expect("uploading a part");
    }
    let done = upload
        .complete()
        .await
        .expect("completing the multipart upload");

    let meta = store
        .head(&path)
        .await
        .expect("head of the completed object");
    assert_eq!(meta.size, whole.len() as u64);
    assert_eq!(meta.e_tag, done.e_tag);
    // S3 marks a multipart object's ETag with its part count.
    let e_tag = meta.e_tag.unwrap_or_default();
    assert!(
        e_tag.trim_matches('"').ends_with("-4"),
        "ETag of a 4-part object: {e_tag}"
    );
    let read = read_back(&store, &path).await;
    assert!(
        read == whole,
        "the object read back differs from the parts uploaded"
    );
    let middle = store
        .get_range(&path, (5 * MIB - 10) as u64..(5 * MIB + 10) as u64)
        .await
        .expect("a range across the first part boundary");
    assert_eq!(&middle[..], &whole[5 * MIB - 10..5 * MIB + 10]);
}

#[tokio::test]
async fn an_aborted_multipart_upload_leaves_no_object() {
    let Some(s3) = S3Env::from_env("an_aborted_multipart_upload_leaves_no_object") else {
        return;
    };
    let store = s3.store(&s3.new_bucket("abort"));
    let path = Path::from("savepoints/job-1/abandoned");
    let mut upload = store
        .put_multipart(&path)
        .await
        .expect("starting the multipart upload");
    upload
        .put_part(PutPayload::from(part_bytes(0, 5 * MIB)))
        .await
        .expect("uploading a part");
    upload.abort().await.expect("aborting the upload");
    let head = store.head(&path).await;
    assert!(
        matches!(head, Err(Error::NotFound { .. })),
        "after abort: {head:?}"
    );
    let listed: Vec<_> = store
        .list(None)
        .try_collect()
        .await
        .expect("listing the bucket");
    assert!(listed.is_empty(), "objects after abort: {listed:?}");
}

#[tokio::test]
async fn list_with_delimiter_pages_through_more_than_a_thousand_keys() {
    let Some(s3) = S3Env::from_env("list_with_delimiter_pages_through_more_than_a_thousand_keys")
    else {
        return;
    };
    let store = s3.store(&s3.new_bucket("list"));
    let flat: Vec<Path> = (0..1_050)
        .map(|i| Path::from(format!("chk/{i:05}")))
        .collect();
    let nested = [
        Path::from("chk/sub-a/x"),
        Path::from("chk/sub-b/y"),
        Path::from("other/z"),
    ];
    futures::stream::iter(flat.iter().chain(&nested))
        .map(|path| {
            let store = &store;
            async move { store.put(path, PutPayload::from(path.to_string())).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("putting the keys");

    let listed = store
        .list_with_delimiter(Some(&Path::from("chk")))
        .await
        .expect("list_with_delimiter");
    let mut names: Vec<Path> = listed.objects.into_iter().map(|m| m.location).collect();
    names.sort();
    assert_eq!(names, flat, "objects directly under chk/");
    let mut prefixes = listed.common_prefixes;
    prefixes.sort();
    assert_eq!(prefixes, [Path::from("chk/sub-a"), Path::from("chk/sub-b")]);

    // The server caps a ListObjectsV2 page at 1,000 keys and hands out a continuation token.
    let first = store
        .list_paginated(Some("chk/"), PaginatedListOptions::default())
        .await
        .expect("the first page");
    assert_eq!(first.result.objects.len(), 1_000);
    let token = first
        .page_token
        .expect("a continuation token after a full page");
    let options = PaginatedListOptions {
        page_token: Some(token),
        ..Default::default()
    };
    let second = store
        .list_paginated(Some("chk/"), options)
        .await
        .expect("the second page");
    assert_eq!(
        first.result.objects.len() + second.result.objects.len(),
        flat.len() + 2
    );
    assert!(
        second.page_token.is_none(),
        "a third page after {} keys",
        flat.len() + 2
    );
}

#[tokio::test]
async fn put_if_not_exists_refuses_an_existing_key() {
    let Some(s3) = S3Env::from_env("put_if_not_exists_refuses_an_existing_key") else {
        return;
    };
    let store = s3.store(&s3.new_bucket("create"));
    let path = Path::from("savepoints/job-1/_COMMITTED");
    store
        .put_opts(
            &path,
            PutPayload::from_static(b"first"),
            PutMode::Create.into(),
        )
        .await
        .expect("the first create");
    let second = store
        .put_opts(
            &path,
            PutPayload::from_static(b"second"),
            PutMode::Create.into(),
        )
        .await;
    assert!(
        matches!(second, Err(Error::AlreadyExists { .. })),
        "a second create: {second:?}"
    );
    let read = read_back(&store, &path).await;
    assert_eq!(&read[..], b"first");
}

/// Only one of many writers racing to create the same key wins, and the object
/// holds the winner's bytes (a commit marker must not be written twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_key_have_a_single_winner() {
    let Some(s3) = S3Env::from_env("concurrent_creates_of_one_key_have_a_single_winner") else {
        return;
    };
    let store = std::sync::Arc::new(s3.store(&s3.new_bucket("race")));
    for round in 0..5 {
        let path = Path::from(format!("savepoints/job-1/{round}/_COMMITTED"));
        let writers: Vec<_> = (0..16)
            .map(|writer| {
                let (store, path) = (store.clone(), path.clone());
                // Large enough that the writes overlap on the server.
                let body = vec![writer as u8; 256 * 1024];
                tokio::spawn(async move {
                    let put = store
                        .put_opts(&path, body.into(), PutMode::Create.into())
                        .await;
                    (writer, put)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for writer in writers {
            match writer.await.expect("a writer task") {
                (w, Ok(_)) => winners.push(w),
                (_, Err(Error::AlreadyExists { .. })) => {}
                (w, Err(e)) => panic!("round {round}, writer {w}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let read = read_back(&store, &path).await;
        assert!(
            read.len() == 256 * 1024 && read.iter().all(|&b| b == winners[0] as u8),
            "round {round}: the object is not the winner's ({} bytes)",
            read.len()
        );
    }
}

#[tokio::test]
async fn a_conditional_update_with_a_stale_etag_is_refused() {
    let Some(s3) = S3Env::from_env("a_conditional_update_with_a_stale_etag_is_refused") else {
        return;
    };
    let store = s3.store(&s3.new_bucket("update"));
    let path = Path::from("savepoints/job-1/LATEST");
    let v1 = store
        .put(&path, PutPayload::from_static(b"v1"))
        .await
        .expect("put v1");
    let stale = UpdateVersion {
        e_tag: v1.e_tag.clone(),
        version: None,
    };
    let v2 = store
        .put_opts(
            &path,
            PutPayload::from_static(b"v2"),
            PutMode::Update(stale.clone()).into(),
        )
        .await
        .expect("an update against the current ETag");
    assert_ne!(v1.e_tag, v2.e_tag);
    let refused = store
        .put_opts(
            &path,
            PutPayload::from_static(b"v3"),
            PutMode::Update(stale).into(),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Precondition { .. })),
        "an update against a stale ETag: {refused:?}"
    );
    let read = read_back(&store, &path).await;
    assert_eq!(&read[..], b"v2");
}

#[tokio::test]
async fn get_if_match_with_a_stale_etag_is_refused() {
    let Some(s3) = S3Env::from_env("get_if_match_with_a_stale_etag_is_refused") else {
        return;
    };
    let store = s3.store(&s3.new_bucket("ifmatch"));
    let path = Path::from("savepoints/job-1/manifest.json");
    let v1 = store
        .put(&path, PutPayload::from_static(b"v1"))
        .await
        .expect("put v1");
    let v2 = store
        .put(&path, PutPayload::from_static(b"v2"))
        .await
        .expect("put v2");
    let stale = store
        .get_opts(&path, GetOptions::new().with_if_match(v1.e_tag))
        .await;
    assert!(
        matches!(stale, Err(Error::Precondition { .. })),
        "If-Match with the old ETag: {stale:?}"
    );
    let current = store
        .get_opts(&path, GetOptions::new().with_if_match(v2.e_tag.clone()))
        .await
        .expect("If-Match with the current ETag");
    assert_eq!(&current.bytes().await.expect("body")[..], b"v2");
    let unchanged = store
        .get_opts(
            &path,
            GetOptions {
                if_none_match: v2.e_tag,
                ..GetOptions::new()
            },
        )
        .await;
    assert!(
        matches!(unchanged, Err(Error::NotModified { .. })),
        "If-None-Match with the current ETag: {unchanged:?}"
    );
}

#[tokio::test]
async fn a_missing_bucket_is_reported_as_not_found() {
    let Some(s3) = S3Env::from_env("a_missing_bucket_is_reported_as_not_found") else {
        return;
    };
    let store = s3.store("sj-never-created-bucket");
    let path = Path::from("savepoints/job-1/manifest.json");
    let get = store.get(&path).await;
    assert!(matches!(get, Err(Error::NotFound { .. })), "get: {get:?}");
    let put = store.put(&path, PutPayload::from_static(b"x")).await;
    assert!(matches!(put, Err(Error::NotFound { .. })), "put: {put:?}");
    // object_store reports every failed list as Generic; the server's answer is in it.
    let list = format!("{:?}", store.list_with_delimiter(None).await);
    assert!(
        list.contains("status: 404") && list.contains("NoSuchBucket"),
        "list: {list}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let Some(s3) = S3Env::from_env("wrong_credentials_are_refused") else {
        return;
    };
    let bucket = s3.new_bucket("creds");
    let path = Path::from("savepoints/job-1/manifest.json");
    s3.store(&bucket)
        .put(&path, PutPayload::from_static(b"x"))
        .await
        .expect("put with the right key");

    let wrong_secret = s3
        .builder(&bucket)
        .with_secret_access_key("not-the-secret")
        .build()
        .expect("client");
    let unknown_key = s3
        .builder(&bucket)
        .with_access_key_id("nobody")
        .build()
        .expect("client");
    for (what, store) in [
        ("a wrong secret", wrong_secret),
        ("an unknown key", unknown_key),
    ] {
        let get = store.get(&path).await;
        assert!(
            matches!(get, Err(Error::PermissionDenied { .. })),
            "get with {what}: {get:?}"
        );
        let put = store.put(&path, PutPayload::from_static(b"y")).await;
        assert!(
            matches!(put, Err(Error::PermissionDenied { .. })),
            "put with {what}: {put:?}"
        );
    }
    let read = read_back(&s3.store(&bucket), &path).await;
    assert_eq!(&read[..], b"x", "a refused put changed the object");
}
