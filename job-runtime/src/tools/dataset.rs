//! `generate`: the built-in generator's records written as a data-set
//! directory, the layout `replay` reads and the reference implementation
//! (`streamjoin-reference`) computes the expected output of:
//! `impressions-<p>.jsonl` and `plays-<p>.jsonl` in arrival order, and
//! `manifest.json` whose `params` carry W, D and the partition count.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::io::source::{Next, PartitionSource, SourceError};
use crate::tools::generator::{GenSource, GenSpec, partition_sources};

/// 2023-11-14T22:13:20Z, the start of the external workload's data sets.
pub const DEFAULT_START_MS: i64 = 1_700_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot write data set file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating partition {partition}: {source}")]
    Generator { partition: u32, source: SourceError },
    #[error("a generator thread for {0} panicked")]
    Panicked(PathBuf),
}

/// The options of `streamjoin-runtime generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Output directory (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Records over all partitions (approximate: whole sessions are kept).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Event time of the first session, ms since the epoch.
    #[arg(long, default_value_t = DEFAULT_START_MS)]
    pub start_ms: i64,
    #[arg(long)]
    pub hours: Option<f64>,
    /// Copies of an on-time record, per record.
    #[arg(long)]
    pub dup_rate: Option<f64>,
    /// Late records (far behind their file) added, per record.
    #[arg(long)]
    pub late_rate: Option<f64>,
    /// Malformed records (truncated lines) added, per record.
    #[arg(long)]
    pub malformed_rate: Option<f64>,
    /// Sessions with plays.
    #[arg(long)]
    pub play_rate: Option<f64>,
    /// W, the join window (written to the manifest).
    #[arg(long)]
    pub window_ms: Option<i64>,
    /// D, the largest disorder of an on-time record (written to the manifest).
    #[arg(long)]
    pub max_disorder_ms: Option<i64>,
}

impl GenerateArgs {
    pub fn spec(&self) -> GenSpec {
        let mut s = GenSpec::new(self.events, self.partitions.max(1), self.start_ms);
        s.seed = self.seed;
        s.hours = self.hours.unwrap_or(s.hours);
        s.dup_rate = self.dup_rate.unwrap_or(s.dup_rate);
        s.late_rate = self.late_rate.unwrap_or(s.late_rate);
        s.malformed_rate = self.malformed_rate.unwrap_or(s.malformed_rate);
        s.play_rate = self.play_rate.unwrap_or(s.play_rate);
        s.window_ms = self.window_ms.unwrap_or(s.window_ms);
        s.max_disorder_ms = self.max_disorder_ms.unwrap_or(s.max_disorder_ms);
        s
    }
}

/// Records written per file name.
pub type FileCounts = Vec<(String, u64)>;

/// Writes the data set of `spec` into `dir` (one thread per partition); returns
/// the records written per file.
pub fn write_dataset(spec: &GenSpec, dir: &Path) -> Result<FileCounts, DatasetError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let results: Vec<Result<FileCounts, DatasetError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.partitions)
            .map(|p| s.spawn(move || write_partition(spec, p, dir)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DatasetError::Panicked(dir.into())))
            })
            .collect()
    });
    let mut counts = FileCounts::new();
    for r in results {
        counts.extend(r?);
    }
    counts.sort();
    let manifest = manifest(spec, &counts);
    let path = dir.join("manifest.json");
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(counts)
}

/// Both files of partition `p`: all impressions, then all plays (the
/// generator queues the plays produced meanwhile).
fn write_partition(spec: &GenSpec, p: u32, dir: &Path) -> Result<FileCounts, DatasetError> {
    let [mut impressions, mut plays] = partition_sources(spec, p);
    let mut counts = FileCounts::new();
    for (name, src) in [("impressions", &mut impressions), ("plays", &mut plays)] {
        let file = format!("{name}-{p}.jsonl");
        let n = write_file(src, p, &dir.join(&file))?;
        counts.push((file, n));
    }
    Ok(counts)
}

fn write_file(src: &mut GenSource, p: u32, path: &Path) -> Result<u64, DatasetError> {
    let err = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(err)?);
    let mut n = 0;
    loop {
        match src.next() {
            Ok(Next::Record(r)) => {
                out.write_all(r.payload).map_err(err)?;
                out.write_all(b"\n").map_err(err)?;
                n += 1;
            }
            // Without a rate the generator never waits; End is the only other answer.
            Ok(Next::CaughtUp) => continue,
            Ok(Next::End) => break,
            Err(source) => {
                return Err(DatasetError::Generator {
                    partition: p,
                    source,
                });
            }
        }
    }
    out.flush().map_err(err)?;
    Ok(n)
}

/// The manifest: the parameters (W, D and P are what the reference reads) and
/// the records written.
fn manifest(spec: &GenSpec, counts: &FileCounts) -> serde_json::Value {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let files: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(f, n)| (f.clone(), serde_json::json!({ "records": n })))
        .collect();
    serde_json::json!({
        "format": "impression-play-join-workload/1",
        "generator": "streamjoin-runtime generate",
        "params": {
            "seed": spec.seed,
            "events": spec.events,
            "partitions": spec.partitions,
            "start_ms": spec.start_ms,
            "hours": spec.hours,
            "profiles": spec.profiles,
            "titles": spec.titles,
            "play_rate": spec.play_rate,
            "dup_rate": spec.dup_rate,
            "late_rate": spec.late_rate,
            "malformed_rate": spec.malformed_rate,
            "max_disorder_ms": spec.max_disorder_ms,
            "window_ms": spec.window_ms,
        },
        "partition_hash": "FNV-1a 64 of the ASCII string '<profile_id>:<title_id>', mod partitions",
        "counts": { "records": total },
        "files": files,
    })
}

/// `streamjoin-runtime generate`: writes the data set and says what it wrote.
pub fn generate(args: &GenerateArgs) -> Result<(), DatasetError> {
    let started = std::time::Instant::now();
    let counts = write_dataset(&args.spec(), &args.out)?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    eprintln!(
        "generate: {total} records in {} files in {:.1} s -> {}",
        counts.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::generator::partition_of;

    #[test]
    fn a_data_set_has_both_files_of_every_partition_and_a_manifest_with_w_d_and_p() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = GenSpec::new(5_000, 3, DEFAULT_START_MS);
        spec.late_rate = 0.01;
        let counts = write_dataset(&spec, dir.path()).expect("write");
        assert_eq!(counts.len(), 6);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("read"))
                .expect("json");
        assert_eq!(manifest["params"]["partitions"], 3);
        assert_eq!(manifest["params"]["window_ms"], spec.window_ms);
        assert_eq!(manifest["params"]["max_disorder_ms"], spec.max_disorder_ms);
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        assert_eq!(manifest["counts"]["records"], total);
        // Every parsable record, late ones included, is in its key's partition.
        for p in 0..3 {
            for stream in ["impressions", "plays"] {
                let text = std::fs::read_to_string(dir.path().join(format!("{stream}-{p}.jsonl")))
                    .expect("read");
                for line in text.lines() {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let (Some(pid), Some(tid)) = (v["profile_id"].as_i64(), v["title_id"].as_i64())
                    else {
                        continue;
                    };
                    assert_eq!(partition_of(pid, tid, 3), p, "{line}");
                }
            }
        }
    }

    #[test]
    fn the_same_spec_writes_the_same_bytes() {
        let spec = GenSpec::new(3_000, 2, DEFAULT_START_MS);
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        write_dataset(&spec, a.path()).expect("a");
        write_dataset(&spec, b.path()).expect("b");
        for f in ["impressions-0.jsonl", "plays-1.jsonl", "manifest.json"] {
            let read = |d: &Path| std::fs::read(d.join(f)).expect("read");
            assert_eq!(read(a.path()), read(b.path()), "{f}");
        }
    }
}
