//! The runtime's savepoint store on a real S3 server (`scripts/s3.sh up`):
//! shards through `s3://` (small files and multipart-sized ones), the failures a
//! user meets (wrong credentials, a missing bucket, an unreachable endpoint) as
//! errors that name the location and carry the store's message but no secret,
//! and a savepoint whose writer is killed mid-upload that nothing lists or
//! restores. Each test works in a bucket of its own.

mod fixtures;
mod s3;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::shards::{process_manifest, staged_shard};
use object_store::ObjectStoreExt;
use s3::{S3Env, keys, noise, read_back, savepoint_keys};
use streamjoin_api::SavepointsSpec;
use streamjoin_runtime::durability::checkpoint::{self, DB_DIR};
use streamjoin_runtime::durability::location::{ENV_S3_ACCESS_KEY_ID, ENV_S3_SECRET_ACCESS_KEY};
use streamjoin_runtime::durability::restore;
use streamjoin_runtime::durability::savepoint::{
    self, SavepointError, SavepointStore, StagedShard, StoreSettings,
};

const MIB: usize = 1024 * 1024;

/// A published checkpoint of `shard` with one SST file of `sst_len` bytes.
fn staged(root: &Path, shard: u32, sst_len: usize) -> StagedShard {
    staged_shard(root, shard, &noise(shard.into(), sst_len))
}

/// The S3 test named `test` in a bucket of its own (`sj-<tag>-…`), with a local
/// directory; None when the store is missing outside CI.
fn s3_bucket(test: &str, tag: &str) -> Option<(S3Env, String, tempfile::TempDir)> {
    let s3 = S3Env::from_env(test)?;
    let bucket = s3.new_bucket(tag);
    Some((s3, bucket, tempfile::tempdir().expect("tmp")))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test]
async fn shards_round_trip_through_s3_in_one_request_and_in_parts() {
    let test = "shards_round_trip_through_s3_in_one_request_and_in_parts";
    let Some((s3, bucket, local)) = s3_bucket(test, "sp-round") else {
        return;
    };
    // Shard 0 below the multipart threshold, shard 1 in 5 parts and a short one.
    let shards = [
        staged(local.path(), 0, 100_000),
        staged(local.path(), 1, 5 * savepoint::PART_SIZE + 12_345),
    ];
    let root = SavepointStore::open(&format!("s3://{bucket}/jobs/a/"), &s3.savepoint_settings())
        .expect("open");
    assert_eq!(root.location(), format!("s3://{bucket}/jobs/a"));
    let sp = root.child("sp-1");
    for (i, shard) in shards.iter().enumerate() {
        let started = Instant::now();
        let bytes = sp.upload_shard(shard).await.expect("upload");
        eprintln!(
            "shard {i}: {:.1} MiB up in {:.2} s",
            mib(bytes),
            started.elapsed().as_secs_f64()
        );
    }
    assert!(
        root.list_complete().await.expect("list").is_empty(),
        "no process manifest yet"
    );
    sp.write_process_manifest(&process_manifest(0, 1, 2, &[0, 1]))
        .await
        .expect("process manifest");
    assert_eq!(root.list_complete().await.expect("list"), ["sp-1"]);

    // What a restart with --restore-from s3://… sees.
    let restore_from =
        savepoint::parse_restore_from(sp.location(), &s3.savepoint_settings()).expect("parse");
    let back = local.path().join("back");
    let (plans, _) = tokio::task::spawn_blocking({
        let back = back.clone();
        let empty = local.path().join("no-checkpoints");
        move || restore::plan(&[0, 1], &empty, &restore_from, None, &back, None)
    })
    .await
    .expect("join")
    .expect("restore plan");
    assert_eq!(plans.len(), 2);
    for (i, shard) in shards.iter().enumerate() {
        let started = Instant::now();
        let dest = local.path().join(format!("down-{i}"));
        let m = sp.download_shard(i as u32, &dest).await.expect("download");
        let sst = dest.join(DB_DIR).join("000009.sst");
        eprintln!(
            "shard {i}: {:.1} MiB down in {:.2} s",
            mib(std::fs::metadata(&sst).expect("sst").len()),
            started.elapsed().as_secs_f64()
        );
        assert_eq!(m, shard.manifest);
        assert!(
            std::fs::read(&sst).expect("sst")
                == std::fs::read(shard.dir.join(DB_DIR).join("000009.sst")).expect("sst"),
            "shard {i}'s SST differs after the round trip"
        );
        assert!(
            back.join(format!("shard-{i}"))
                .join(checkpoint::MANIFEST)
                .exists()
        );
    }
    let raw = s3.store(&bucket);
    let part_object = object_store::path::Path::from("jobs/a/sp-1/shard-1/db/000009.sst");
    let e_tag = raw
        .head(&part_object)
        .await
        .expect("head")
        .e_tag
        .unwrap_or_default();
    assert!(
        e_tag.trim_matches('"').ends_with("-6"),
        "a 6-part upload: ETag {e_tag}"
    );
    assert!(
        read_back(&raw, &part_object).await == noise(1, 5 * savepoint::PART_SIZE + 12_345),
        "the object in the bucket is the file, byte for byte"
    );
}

/// Every rendering of an error a user or an operator could see.
fn renderings(e: &SavepointError) -> String {
    format!("{e}\n{e:?}\n{:?}", std::error::Error::source(e))
}

#[tokio::test]
async fn wrong_credentials_fail_naming_the_location_without_the_secret() {
    let test = "wrong_credentials_fail_naming_the_location_without_the_secret";
    let Some((s3, bucket, local)) = s3_bucket(test, "sp-creds") else {
        return;
    };
    let shard = staged(local.path(), 0, 1000);
    let secret = "wrong-secret-5f1c9a0e77d2b4c8";
    let location = format!("s3://{bucket}/sp");
    for (id, says) in [
        (s3.access_key_id.as_str(), "SignatureDoesNotMatch"),
        ("AKIAUNKNOWNKEY000000", "InvalidAccessKeyId"),
    ] {
        let sp = SavepointStore::open(
            &location,
            &s3.savepoint_settings_with(savepoint_keys(id, secret)),
        )
        .expect("opening makes no request")
        .child("sp-1");
        let errors = [
            sp.upload_shard(&shard).await.expect_err("upload refused"),
            sp.process_manifests().await.expect_err("list refused"),
            sp.download_shard(0, &local.path().join("d"))
                .await
                .expect_err("download refused"),
        ];
        for e in &errors {
            let text = renderings(e);
            assert!(text.contains(&location), "names the location: {text}");
            assert!(text.contains(says), "the store's message: {text}");
            assert!(!text.contains(secret), "the secret leaked: {text}");
        }
    }
}

#[tokio::test]
async fn a_missing_bucket_fails_with_the_stores_message() {
    let Some(s3) = S3Env::from_env("a_missing_bucket_fails_with_the_stores_message") else {
        return;
    };
    let local = tempfile::tempdir().expect("tmp");
    let location = format!("s3://sj-no-such-bucket-{}/sp", std::process::id());
    let sp = SavepointStore::open(&location, &s3.savepoint_settings()).expect("open");
    let up = renderings(
        &sp.upload_shard(&staged(local.path(), 0, 1000))
            .await
            .expect_err("upload into a missing bucket"),
    );
    assert!(
        up.contains(&location) && up.contains("NoSuchBucket"),
        "{up}"
    );
    let list = renderings(
        &sp.list_complete()
            .await
            .expect_err("listing a missing bucket"),
    );
    assert!(
        list.contains(&location) && list.contains("NoSuchBucket"),
        "{list}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_with_an_error_naming_the_location() {
    // Not the S3 server: a port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let local = tempfile::tempdir().expect("tmp");
    let spec = SavepointsSpec {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        path_style: Some(true),
        ..SavepointsSpec::default()
    };
    let settings = StoreSettings::from_spec(&spec).with_env(|name| {
        (name == ENV_S3_ACCESS_KEY_ID || name == ENV_S3_SECRET_ACCESS_KEY).then(|| "k".to_owned())
    });
    let sp = SavepointStore::open("s3://bucket/sp", &settings).expect("open");
    let e = renderings(
        &sp.upload_shard(&staged(local.path(), 0, 1000))
            .await
            .expect_err("nothing answers"),
    );
    assert!(e.contains("s3://bucket/sp"), "{e}");
    assert!(
        e.to_lowercase().contains("connect"),
        "the client's reason: {e}"
    );
}

const CHILD_ENV: &str = "STREAMJOIN_TEST_UPLOAD_CHILD";

/// Not a test of its own: the writer that
/// `a_savepoint_killed_mid_upload_is_neither_listed_nor_restored` starts in a
/// child process (this test binary, `--exact` this name) and kills. With
/// `STREAMJOIN_TEST_UPLOAD_CHILD=<location>|<staging dir>` it uploads shard 0,
/// then shard 1, then its process manifest; without it, it does nothing.
#[tokio::test]
async fn upload_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (location, staging) = spec.split_once('|').expect("<location>|<staging dir>");
    let endpoint = std::env::var("STREAMJOIN_S3_ENDPOINT").expect("endpoint");
    // Credentials from the process environment, as a pod gets them.
    let settings = StoreSettings::from_spec(&SavepointsSpec {
        endpoint: Some(endpoint),
        path_style: Some(true),
        ..SavepointsSpec::default()
    });
    let sp = SavepointStore::open(location, &settings).expect("open");
    for shard in [0, 1] {
        let (dir, manifest) = checkpoint::newest_valid(Path::new(staging), shard)
            .expect("staged")
            .0
            .expect("a staged checkpoint");
        sp.upload_shard(&StagedShard { dir, manifest })
            .await
            .expect("upload");
    }
    sp.write_process_manifest(&process_manifest(0, 1, 2, &[0, 1]))
        .await
        .expect("process manifest");
}

#[tokio::test]
async fn a_savepoint_killed_mid_upload_is_neither_listed_nor_restored() {
    let test = "a_savepoint_killed_mid_upload_is_neither_listed_nor_restored";
    let Some((s3, bucket, local)) = s3_bucket(test, "sp-kill") else {
        return;
    };
    let staging = local.path().join("staging");
    staged(&staging, 0, 1000);
    // Large enough that its upload is still under way when the child is killed.
    staged(&staging, 1, 96 * MIB);
    let root_location = format!("s3://{bucket}/sp");
    let location = format!("{root_location}/sp-killed");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "upload_child_process", "--nocapture"])
        .env(CHILD_ENV, format!("{location}|{}", staging.display()))
        .envs(s3.savepoint_env())
        .env("AWS_REGION", &s3.region)
        .spawn()
        .expect("the writer starts");
    // Shard 0 is written whole (its manifest last) before shard 1 starts.
    let raw = s3.store(&bucket);
    let shard0 = object_store::path::Path::from("sp/sp-killed/shard-0/MANIFEST.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while raw.head(&shard0).await.is_err() {
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the writer ended before shard 0 was up"
        );
        assert!(Instant::now() < deadline, "shard 0 never appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaped");
    assert!(
        !status.success(),
        "the writer finished before it was killed"
    );
    let process0 = object_store::path::Path::from("sp/sp-killed/_process-0.json");
    assert!(
        raw.head(&process0).await.is_err(),
        "the writer wrote its manifest"
    );

    let s = s3.savepoint_settings();
    let root = SavepointStore::open(&root_location, &s).expect("open");
    assert!(root.list_complete().await.expect("list").is_empty());
    let sp = SavepointStore::open(&location, &s).expect("open");
    assert!(
        !sp.has_shard(0).await.expect("has"),
        "shard 0 is not listed by a process"
    );
    let restore_from = savepoint::parse_restore_from(&location, &s).expect("parse");
    let download = local.path().join("download");
    let planned = tokio::task::spawn_blocking({
        let download = download.clone();
        let empty = local.path().join("no-checkpoints");
        move || restore::plan(&[0, 1], &empty, &restore_from, None, &download, None)
    })
    .await
    .expect("join");
    let e = planned
        .expect_err("an incomplete savepoint is refused")
        .to_string();
    assert!(e.contains("incomplete") && e.contains(&location), "{e}");
    assert!(!download.exists(), "nothing of it was downloaded");
}

/// Writes a complete savepoint `id` of two small shards under `root`.
async fn complete_savepoint(root: &SavepointStore, local: &Path, id: &str) {
    let sp = root.child(id);
    for shard in [0, 1] {
        let staged = staged(&local.join(id), shard, 20_000);
        sp.upload_shard(&staged).await.expect("upload");
    }
    sp.write_process_manifest(&process_manifest(0, 1, 2, &[0, 1]))
        .await
        .expect("process manifest");
}

#[tokio::test]
async fn deleting_a_savepoint_removes_all_its_objects_and_none_of_its_neighbours() {
    let test = "deleting_a_savepoint_removes_all_its_objects_and_none_of_its_neighbours";
    let Some((s3, bucket, local)) = s3_bucket(test, "sp-delete") else {
        return;
    };
    let root = SavepointStore::open(&format!("s3://{bucket}/jobs/a"), &s3.savepoint_settings())
        .expect("open");
    // `sp-1` and `sp-10`: a prefix of one is no prefix of the other's objects.
    for id in ["sp-1", "sp-10", "sp-2"] {
        complete_savepoint(&root, local.path(), id).await;
    }
    let before = keys(&s3, &bucket, "jobs/a/sp-1").await.len();
    assert!(before >= 5, "two shards and a process manifest: {before}");

    let deleted = root.child("sp-1").delete().await.expect("delete");
    assert_eq!(deleted, before, "every object of sp-1");
    assert!(keys(&s3, &bucket, "jobs/a/sp-1").await.is_empty());
    assert_eq!(root.list_complete().await.expect("list"), ["sp-10", "sp-2"]);
    assert_eq!(
        root.child("sp-1").delete().await.expect("a second delete"),
        0,
        "deleting what is gone is no error"
    );
}

#[tokio::test]
async fn a_deletion_with_wrong_credentials_fails_naming_the_location() {
    let test = "a_deletion_with_wrong_credentials_fails_naming_the_location";
    let Some((s3, bucket, local)) = s3_bucket(test, "sp-delete-creds") else {
        return;
    };
    let location = format!("s3://{bucket}/sp");
    let root = SavepointStore::open(&location, &s3.savepoint_settings()).expect("open");
    complete_savepoint(&root, local.path(), "sp-1").await;
    let wrong = s3.savepoint_settings_with(savepoint_keys(&s3.access_key_id, "not-the-secret"));
    let e = SavepointStore::open(&format!("{location}/sp-1"), &wrong)
        .expect("open")
        .delete()
        .await
        .expect_err("refused");
    let shown = renderings(&e);
    assert!(shown.contains(&format!("{location}/sp-1")), "{shown}");
    assert!(!shown.contains("not-the-secret"), "{shown}");
    assert_eq!(root.list_complete().await.expect("list"), ["sp-1"], "kept");
}

#[tokio::test]
async fn the_delete_command_removes_each_listed_savepoint_with_the_jobs_store_settings() {
    let test = "the_delete_command_removes_each_listed_savepoint_with_the_jobs_store_settings";
    let Some((s3, bucket, local)) = s3_bucket(test, "sp-delete-cli") else {
        return;
    };
    let location = format!("s3://{bucket}/jobs/b");
    let root = SavepointStore::open(&location, &s3.savepoint_settings()).expect("open");
    for id in ["sp-1", "sp-2", "sp-3"] {
        complete_savepoint(&root, local.path(), id).await;
    }
    let manifest = local.path().join("job.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata: {{name: b}}\nspec:\n  savepoints:\n    location: {location}\n    endpoint: {}\n    pathStyle: true\n    region: {}\n",
            s3.endpoint, s3.region
        ),
    )
    .expect("manifest");
    let out = Command::new(env!("CARGO_BIN_EXE_streamjoin-runtime"))
        .args(["savepoints", "delete", "--job"])
        .arg(&manifest)
        .args([format!("{location}/sp-1"), format!("{location}/sp-3")])
        .envs(s3.savepoint_env())
        .output()
        .expect("the command runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("deleted {location}/sp-1")),
        "{stdout}"
    );
    assert_eq!(root.list_complete().await.expect("list"), ["sp-2"]);
    assert!(keys(&s3, &bucket, "jobs/b/sp-3").await.is_empty());

    // With a wrong secret the store refuses; the command names the location and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_streamjoin-runtime"))
        .args(["savepoints", "delete", "--job"])
        .arg(&manifest)
        .arg(format!("{location}/sp-2"))
        .envs(savepoint_keys(&s3.access_key_id, "not-the-secret"))
        .output()
        .expect("the command runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{location}/sp-2")), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    assert_eq!(root.list_complete().await.expect("list"), ["sp-2"]);
}
