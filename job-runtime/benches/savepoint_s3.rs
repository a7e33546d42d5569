//! A savepoint of 1,500,000 live entries on 4 shards to the local S3 store and
//! its restore (`cargo bench --bench savepoint_s3`; needs `scripts/s3.sh up` and
//! `eval "$(scripts/s3.sh env)"`; figures on stdout, the last line JSON).
//!
//! The shards are built as the runtime builds them: 4 input partitions, 2
//! worker threads, RocksDB behind the entry cache, a manual clock. Each key is
//! an impression and a play within 30 minutes of event time, so every entry is
//! open (its 4-hour window far from over); one later event per input moves the
//! watermark past all of them, and stays in the reorder buffer.
//!
//! A savepoint is asked of the admin API (`POST /v1/savepoints`, as the
//! operator does) into `s3://<bucket>/bench`; every worker then steps on a
//! thread of its own and writes its shards' checkpoints into the staging
//! directory (the *staging* time); `GET /v1/savepoints/<id>` is polled until
//! completed (the admin task uploads each shard, files from 8 MiB in parts, then
//! the process manifest, and removes the staging: the *upload* time). The
//! objects are listed from S3. The restore is the runtime's start-up path:
//! `restore::plan` (completeness check, download of every shard into a fresh
//! directory) then `Engine::new` (each shard's RocksDB opened from its
//! download). The restored RocksDB content (every column family, key and
//! value) must equal that of the local checkpoint the savepoint was made of,
//! with every entry, or the benchmark exits non-zero.
//!
//! The first savepoint (`cold`) finds no checkpoint before it, so its staging
//! writes every entry into RocksDB; the measured rounds follow it
//! (`STREAMJOIN_BENCH_ROUNDS`, default 3, medians reported), as a savepoint of
//! a job that checkpoints does. `STREAMJOIN_BENCH_ENTRIES` changes the number
//! of entries.

#[path = "savepoint_s3/admin.rs"]
mod admin;
#[path = "savepoint_s3/digest.rs"]
mod digest;
#[path = "savepoint_s3/objects.rs"]
mod objects;
#[path = "savepoint_s3/report.rs"]
mod report;
#[path = "../tests/s3/mod.rs"]
mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin::{Admin, TOKEN};
use digest::{Digest, digest};
use objects::{delete, list, sizes};
use report::{HEADER, Row, loadavg, medians, ms, print_row};
use streamjoin_runtime::config::EngineConfig;
use streamjoin_runtime::control::admin::{AdminServer, RuntimeHooks};
use streamjoin_runtime::control::metrics::Metrics;
use streamjoin_runtime::control::requests::Control;
use streamjoin_runtime::durability::checkpoint::{self, CheckpointManifest};
use streamjoin_runtime::durability::restore::{self, Plan};
use streamjoin_runtime::durability::savepoint::{self, SavepointStore, StoreSettings};
use streamjoin_runtime::engine::runner::{Engine, EngineOptions, ShardIo};
use streamjoin_runtime::engine::shard::ShardSinks;
use streamjoin_runtime::engine::worker::CheckpointPlan;
use streamjoin_runtime::io::sink::NullSink;
use streamjoin_runtime::io::source::FeedHandle;
use streamjoin_runtime::time::watermark::ManualClock;

// The runtime binary's allocator, so the figures are the runtime's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: i64 = 1_700_000_000_000;
const SHARDS: u32 = 4;
/// Worker threads, as the runtime picks them on this 2-core machine.
const WORKERS: usize = 2;
/// Keys pushed between two runs of the engine while loading.
const CHUNK: i64 = 100_000;
/// Where the savepoints go inside the bucket.
const PREFIX: &str = "bench";

fn imp(id: i64, t: i64, profile: i64) -> String {
    format!(
        r#"{{"type":"impression","event_id":"i{id}","event_time":{t},"profile_id":{profile},"title_id":7,"row":1,"rank":2,"device":"tv"}}"#
    )
}

fn play(id: i64, t: i64, profile: i64) -> String {
    format!(
        r#"{{"type":"play","event_id":"p{id}","event_time":{t},"profile_id":{profile},"title_id":7,"device":"tv","duration_ms":60000}}"#
    )
}

fn sinks() -> ShardSinks {
    ShardSinks {
        entries: Box::new(NullSink),
        late: Box::new(NullSink),
        dead_letter: Box::new(NullSink),
        commit: None,
    }
}

fn config() -> EngineConfig {
    // Nothing here is slow on purpose: no partition may be paused or idled.
    EngineConfig {
        alignment_max_drift_ms: None,
        inactivity_timeout_ms: None,
        ..EngineConfig::default()
    }
}

/// Periodic checkpoints that never come due: only the ones asked for are taken.
fn checkpoint_plan(root: PathBuf) -> CheckpointPlan {
    CheckpointPlan {
        root,
        interval_ms: i64::MAX,
        retained: 2,
        metrics: None,
    }
}

/// The 4 shards of one process under `dir`, fed by `feeds` (impressions, then
/// plays, per partition) or restored from `restore`.
fn engine(
    dir: &Path,
    clock: Arc<ManualClock>,
    control: Option<Arc<Control>>,
    restore: Vec<Option<(PathBuf, CheckpointManifest)>>,
) -> (Engine, Vec<[FeedHandle; 2]>) {
    let feeds: Vec<[FeedHandle; 2]> = (0..SHARDS).map(|_| Default::default()).collect();
    let last_id = restore.iter().flatten().map(|r| r.1.id).max().unwrap_or(0);
    let io = feeds
        .iter()
        .zip(restore)
        .enumerate()
        .map(|(p, (f, restore))| ShardIo {
            partition: p as u32,
            sources: [
                Box::new(f[0].source(format!("impressions-{p}"))),
                Box::new(f[1].source(format!("plays-{p}"))),
            ],
            sinks: sinks(),
            restore,
        })
        .collect();
    let mut opts = EngineOptions::new(dir.join("state"));
    opts.threads = WORKERS;
    opts.clock = clock;
    opts.control = control;
    opts.checkpoints = Some((checkpoint_plan(dir.join("checkpoints")), last_id));
    let e = Engine::new(config(), io, opts).unwrap_or_else(|e| panic!("engine in {dir:?}: {e}"));
    (e, feeds)
}

/// Opens `keys` entries over the shards (key k on partition k mod 4), then
/// moves the watermark past all of them without closing any.
fn load(e: &mut Engine, feeds: &[[FeedHandle; 2]], keys: i64) {
    let span = 30 * 60_000;
    let mut k = 0;
    while k < keys {
        for k in k..(k + CHUNK).min(keys) {
            let t = T0 + k * span / keys;
            let f = &feeds[(k % i64::from(SHARDS)) as usize];
            f[0].push(imp(k, t, k));
            f[1].push(play(k, t + 1_000, k));
        }
        e.run_until_blocked()
            .unwrap_or_else(|e| panic!("loading keys from {k}: {e}"));
        k += CHUNK;
    }
    // Ahead of every key by more than the out-of-orderness bound, far within the window.
    let fence = T0 + span + config().max_out_of_orderness_ms + 60_000;
    for (p, f) in feeds.iter().enumerate() {
        let id = keys + p as i64;
        f[0].push(imp(id, fence, id));
        f[1].push(play(id, fence, id + i64::from(SHARDS)));
    }
    e.run_until_blocked()
        .unwrap_or_else(|e| panic!("moving the watermark: {e}"));
}

/// Asks for savepoint `id` and lets every worker write its part on a thread of
/// its own, as the runtime runs them; waits until it is uploaded. Returns the
/// staging time, the time until it was reported completed, and the duration
/// the runtime itself recorded (ms).
fn take_savepoint(admin: &Admin, e: &mut Engine, id: &str) -> (Duration, Duration, f64) {
    let started = Instant::now();
    admin.request(id);
    std::thread::scope(|s| {
        for w in e.workers.iter_mut() {
            s.spawn(move || {
                w.step()
                    .unwrap_or_else(|e| panic!("worker step with savepoint {id}: {e}"))
            });
        }
    });
    let staging = started.elapsed();
    let info = admin.wait(id);
    let total = started.elapsed();
    assert_eq!(info["state"], "completed", "savepoint {id}: {info}");
    let recorded = info["duration_ms"].as_f64().unwrap_or(f64::NAN);
    (staging, total, recorded)
}

/// A restored process: how long the download and the opening took, and what
/// its shards hold.
struct Restored {
    download: Duration,
    open: Duration,
    live: u64,
    pending: u64,
    /// Entries in each shard's RocksDB as the restored engine counts them.
    counts: Vec<u64>,
    digests: Vec<Digest>,
}

/// Restores savepoint `location` into `work` as the runtime starts: the plan
/// (completeness check, download of every shard), then the engine.
fn restore_from(
    location: &str,
    settings: &StoreSettings,
    work: &Path,
    clock: Arc<ManualClock>,
) -> Restored {
    let shards: Vec<u32> = (0..SHARDS).collect();
    let started = Instant::now();
    let from = savepoint::parse_restore_from(location, settings)
        .unwrap_or_else(|e| panic!("--restore-from {location}: {e}"));
    let (plans, _) = restore::plan(
        &shards,
        &work.join("no-checkpoints"),
        &from,
        None,
        &work.join("download"),
        None,
    )
    .unwrap_or_else(|e| panic!("restoring {location}: {e}"));
    let download = started.elapsed();
    let restore = plans
        .into_iter()
        .map(|(p, plan)| match plan {
            Plan::Restore { dir, manifest, .. } => Some((dir, *manifest)),
            Plan::Fresh => panic!("{location}: shard {p} would start afresh"),
        })
        .collect();
    let opened = Instant::now();
    let (e, _feeds) = engine(&work.join("run"), clock, None, restore);
    let open = opened.elapsed();
    let mut by_shard: Vec<_> = e.shards().collect();
    by_shard.sort_by_key(|s| s.partition);
    let counts = by_shard
        .iter()
        .map(|s| {
            s.store()
                .db_entry_count()
                .unwrap_or_else(|e| panic!("counting shard {}: {e}", s.partition))
        })
        .collect();
    let live = e.live_entries();
    let pending = e.shards().map(|s| s.pending_events()).sum();
    drop(by_shard);
    drop(e);
    let logs = work.join("rocksdb-logs");
    std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{logs:?}: {e}"));
    let digests = (0..SHARDS)
        .map(|p| digest(&work.join("run/state").join(format!("shard-{p}")), &logs))
        .collect();
    Restored {
        download,
        open,
        live,
        pending,
        counts,
        digests,
    }
}

/// What differs between the restored state and the saved one.
fn differences(r: &Restored, truth: &[Digest], keys: u64, pending: u64) -> Vec<String> {
    let mut out = Vec::new();
    if r.live != keys {
        out.push(format!("{} live entries restored, {keys} saved", r.live));
    }
    if r.pending != pending {
        out.push(format!(
            "{} reordered events restored, {pending} saved",
            r.pending
        ));
    }
    for (p, t) in truth.iter().enumerate() {
        if r.counts[p] != t.entries {
            out.push(format!(
                "shard {p}: {} entries in RocksDB, {} saved",
                r.counts[p], t.entries
            ));
        }
        if r.digests[p] != *t {
            out.push(format!(
                "shard {p}: restored {:?}, saved {t:?}",
                r.digests[p]
            ));
        }
    }
    out
}

/// The saved process: its engine and inputs, and the reordered events it holds.
struct Source {
    engine: Engine,
    _feeds: Vec<[FeedHandle; 2]>,
    pending: u64,
    /// Where its local checkpoints (a savepoint's part is one too) are.
    checkpoints: PathBuf,
    logs: PathBuf,
    /// What the first savepoint saved.
    first_saved: Option<Vec<Digest>>,
}

/// Loads `keys` entries into a process under `dir`.
fn prepare(dir: &Path, keys: u64, clock: Arc<ManualClock>, control: Arc<Control>) -> Source {
    let (mut e, feeds) = engine(
        dir,
        clock,
        Some(control),
        (0..SHARDS).map(|_| None).collect(),
    );
    let started = Instant::now();
    load(&mut e, &feeds, keys as i64);
    let live = e.live_entries();
    let pending = e.shards().map(|s| s.pending_events()).sum();
    println!(
        "loaded {live} live entries on {SHARDS} shards ({WORKERS} workers) in {:.1} s; {pending} events in the reorder buffers; {} emitted",
        started.elapsed().as_secs_f64(),
        e.counters().entries_emitted
    );
    assert_eq!(live, keys, "every key is a live entry");
    let logs = dir.join("rocksdb-logs");
    std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{logs:?}: {e}"));
    Source {
        engine: e,
        _feeds: feeds,
        pending,
        checkpoints: dir.join("checkpoints"),
        logs,
        first_saved: None,
    }
}

/// What was saved: the RocksDB content of each shard's newest local
/// checkpoint (the savepoint's part, as its worker wrote it).
fn saved(src: &Source) -> Vec<Digest> {
    (0..SHARDS)
        .map(|p| {
            let (found, _) = checkpoint::newest_valid(&src.checkpoints, p)
                .unwrap_or_else(|e| panic!("checkpoints of shard {p}: {e}"));
            let (dir, _) = found.unwrap_or_else(|| panic!("no checkpoint of shard {p}"));
            digest(&dir.join(checkpoint::DB_DIR), &src.logs)
        })
        .collect()
}

/// Where the rounds save to and restore from.
struct Target {
    location: String,
    settings: StoreSettings,
    raw: object_store::aws::AmazonS3,
    rt: tokio::runtime::Runtime,
}

/// One savepoint and its restore; the differences found go to `failures`.
fn round(
    t: &Target,
    admin: &Admin,
    src: &mut Source,
    clock: &Arc<ManualClock>,
    id: &str,
    failures: &mut Vec<String>,
) -> Row {
    clock.advance(1_000);
    let (staging, total, recorded) = take_savepoint(admin, &mut src.engine, id);
    let truth = saved(src);
    // Nothing changes between the rounds: each saves the same state.
    if let Some(first) = &src.first_saved
        && *first != truth
    {
        failures.push(format!(
            "{id}: saved {truth:?}, the first savepoint {first:?}"
        ));
    }
    src.first_saved.get_or_insert_with(|| truth.clone());
    let keys = src.engine.live_entries();
    let saved_entries: u64 = truth.iter().map(|d| d.entries).sum();
    if saved_entries != keys {
        failures.push(format!(
            "{id}: {saved_entries} entries saved of {keys} live"
        ));
    }
    let objects = list(&t.rt, &t.raw, &format!("{PREFIX}/{id}"));
    let (count, bytes, multipart, parts) = sizes(&objects);
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let location = format!("{}/{id}", t.location);
    let r = restore_from(&location, &t.settings, work.path(), clock.clone());
    for d in differences(&r, &truth, keys, src.pending) {
        failures.push(format!("{id}: {d}"));
    }
    drop(work);
    delete(&t.rt, &t.raw, &objects);
    Row {
        staging: ms(staging),
        upload: ms(total - staging),
        savepoint: ms(total),
        recorded,
        objects: count,
        multipart,
        parts,
        mib: bytes as f64 / (1024.0 * 1024.0),
        download: ms(r.download),
        open: ms(r.open),
        restore: ms(r.download + r.open),
    }
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we ignore.
    let env_u64 = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let keys = env_u64("STREAMJOIN_BENCH_ENTRIES", 1_500_000);
    let rounds = env_u64("STREAMJOIN_BENCH_ROUNDS", 3).max(1);
    // Outside CI a missing store skips the benchmark; under CI=true it fails it.
    let Some(s3) = s3::S3Env::from_env("savepoint_s3") else {
        return;
    };
    println!("load average at start: {}", loadavg());
    let bucket = s3.new_bucket("spbench");
    let target = Target {
        location: format!("s3://{bucket}/{PREFIX}"),
        settings: s3.savepoint_settings(),
        raw: s3.store(&bucket),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}")),
    };
    let store = SavepointStore::open(&target.location, &target.settings)
        .unwrap_or_else(|e| panic!("opening {}: {e}", target.location));

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let clock = ManualClock::new(T0);
    let control = Control::new(WORKERS, dir.path().join("savepoint-staging"), true);
    let mut src = prepare(dir.path(), keys, clock.clone(), control.clone());
    let server = AdminServer::start_with_token("127.0.0.1:0", Metrics::new(), Some(TOKEN.into()))
        .unwrap_or_else(|e| panic!("admin server: {e}"));
    server.install(RuntimeHooks {
        status: Box::new(|| serde_json::Value::Null),
        control,
        savepoints: Some(store),
        ordinal: 0,
        replicas: 1,
        partitions: SHARDS,
        board: src.engine.board.clone(),
        clock: clock.clone(),
    });
    let admin = Admin::new(&server);

    let mut failures = Vec::new();
    println!("{HEADER}");
    // No checkpoint yet: staging writes every entry from the cache into RocksDB.
    let cold = round(&target, &admin, &mut src, &clock, "sp-0", &mut failures);
    print_row("cold", &cold);
    // Right after a checkpoint, as in a job that checkpoints: only links and the reorder buffer.
    let rows: Vec<Row> = (1..=rounds)
        .map(|r| {
            let id = format!("sp-{r}");
            let row = round(&target, &admin, &mut src, &clock, &id, &mut failures);
            print_row(&id, &row);
            row
        })
        .collect();
    let m = medians(&rows);
    print_row("median", &m);
    println!("(median of sp-1..sp-{rounds}; cold: the first savepoint, no checkpoint before it)");
    println!("load average at end: {}", loadavg());
    println!(
        "{{\"live_entries\":{keys},\"shards\":{SHARDS},\"rounds\":{rounds},\"cold_staging_ms\":{:.0},\"cold_savepoint_ms\":{:.0},\"staging_ms\":{:.0},\"upload_ms\":{:.0},\"savepoint_ms\":{:.0},\"objects\":{},\"multipart_objects\":{},\"parts\":{},\"stored_bytes\":{:.0},\"download_ms\":{:.0},\"open_ms\":{:.0},\"restore_ms\":{:.0}}}",
        cold.staging,
        cold.savepoint,
        m.staging,
        m.upload,
        m.savepoint,
        m.objects,
        m.multipart,
        m.parts,
        m.mib * 1024.0 * 1024.0,
        m.download,
        m.open,
        m.restore
    );
    drop(server);
    drop(src);
    drop(dir);
    if !failures.is_empty() {
        for f in &failures {
            println!("RESTORED STATE DIFFERS: {f}");
        }
        std::process::exit(1);
    }
    println!("every restore held the {keys} saved entries, byte for byte");
}
