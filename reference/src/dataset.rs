//! A data-set directory: `manifest.json`, `impressions-<p>.jsonl` and
//! `plays-<p>.jsonl` for `p` in `0..P`, one record per line in arrival order
//! (the layout the runtime's `generate` and `replay` and the external
//! generator use). The manifest's `params` give W, D and P.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::record::Stream;

/// The contract's defaults: W = 4 hours, D = 2 minutes.
pub const DEFAULT_WINDOW_MS: i64 = 4 * 3_600_000;
pub const DEFAULT_MAX_DISORDER_MS: i64 = 120_000;

/// What the batch computation needs to know about a data set.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub dir: PathBuf,
    /// W, `spec.join.window`.
    pub window_ms: i64,
    /// D, `spec.watermarks.maxOutOfOrderness`.
    pub max_disorder_ms: i64,
    /// Number of input partitions.
    pub partitions: u32,
}

/// Values given on the command line instead of the manifest's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub window_ms: Option<i64>,
    pub max_disorder_ms: Option<i64>,
}

impl Dataset {
    pub fn open(dir: &Path, overrides: Overrides) -> anyhow::Result<Dataset> {
        let params = read_params(dir)?;
        let param = |name: &str| {
            params
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(Value::as_i64)
        };
        let found = partitions_in(dir)?;
        let Some(max_found) = found.iter().max().copied() else {
            bail!(
                "no impressions-<p>.jsonl / plays-<p>.jsonl in {}",
                dir.display()
            );
        };
        let partitions = match param("partitions") {
            Some(p) => u32::try_from(p).with_context(|| format!("manifest partitions {p}"))?,
            None => max_found + 1,
        };
        if max_found >= partitions {
            bail!(
                "{} has files of partition {max_found}, but its manifest says {partitions} partitions",
                dir.display()
            );
        }
        Ok(Dataset {
            dir: dir.to_path_buf(),
            window_ms: overrides
                .window_ms
                .or(param("window_ms"))
                .unwrap_or(DEFAULT_WINDOW_MS),
            max_disorder_ms: overrides
                .max_disorder_ms
                .or(param("max_disorder_ms"))
                .unwrap_or(DEFAULT_MAX_DISORDER_MS),
            partitions,
        })
    }

    /// The file of one input of partition `p`.
    pub fn file(&self, stream: Stream, p: u32) -> PathBuf {
        self.dir.join(format!("{}-{p}.jsonl", stream.file_prefix()))
    }

    /// Calls `f` with each line of one input file in file order, without its
    /// line end (nothing when the file does not exist: a partition may lack a
    /// stream). One line is in memory at a time.
    pub fn each_line(
        &self,
        stream: Stream,
        p: u32,
        mut f: impl FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let path = self.file(stream, p);
        if !path.exists() {
            return Ok(());
        }
        let file =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("read {}", path.display()))?;
            if n == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            f(&line)?;
        }
    }
}

/// `params` of `manifest.json`, if the directory has one.
fn read_params(dir: &Path) -> anyhow::Result<Option<serde_json::Map<String, Value>>> {
    let path = dir.join("manifest.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let manifest: Value =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", path.display()))?;
    Ok(manifest.get("params").and_then(Value::as_object).cloned())
}

/// The partition numbers of the input files present.
fn partitions_in(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let read = std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))?;
    let mut found = Vec::new();
    for item in read {
        let name = item
            .with_context(|| format!("list {}", dir.display()))?
            .file_name();
        let name = name.to_string_lossy();
        for stream in Stream::BOTH {
            let p = name
                .strip_prefix(stream.file_prefix())
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.strip_suffix(".jsonl"))
                .and_then(|r| r.parse::<u32>().ok());
            found.extend(p);
        }
    }
    Ok(found)
}

/// FNV-1a 64 of the ASCII text `"<profile_id>:<title_id>"`, mod `partitions`:
/// the partition of a key in the data-set layout (both streams use it).
pub fn partition_of(profile_id: i64, title_id: i64, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{profile_id}:{title_id}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_of_a_key_is_fnv1a_of_its_text() {
        // FNV-1a 64 of "" is the offset basis; of "a" the published test vector.
        assert_eq!(partition_of(0, 0, 1), 0);
        let fnv = |s: &str| {
            s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            })
        };
        assert_eq!(fnv("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(u64::from(partition_of(123, 456, 7)), fnv("123:456") % 7);
        assert_eq!(u64::from(partition_of(-5, 2, 1000)), fnv("-5:2") % 1000);
    }

    #[test]
    fn params_come_from_the_manifest_and_overrides_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("impressions-0.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("plays-2.jsonl"), "").unwrap();
        let d = Dataset::open(dir.path(), Overrides::default()).unwrap();
        assert_eq!(
            (d.window_ms, d.max_disorder_ms, d.partitions),
            (DEFAULT_WINDOW_MS, 120_000, 3)
        );
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"params":{"window_ms":1000,"max_disorder_ms":10,"partitions":4}}"#,
        )
        .unwrap();
        let over = Overrides {
            window_ms: Some(2000),
            max_disorder_ms: None,
        };
        let d = Dataset::open(dir.path(), over).unwrap();
        assert_eq!(
            (d.window_ms, d.max_disorder_ms, d.partitions),
            (2000, 10, 4)
        );
        let mut n = 0;
        d.each_line(Stream::Plays, 0, |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn lines_are_split_at_newlines_and_a_last_line_without_one_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plays-0.jsonl"), "a\n\nb\nc").unwrap();
        let d = Dataset::open(dir.path(), Overrides::default()).unwrap();
        let mut lines = Vec::new();
        d.each_line(Stream::Plays, 0, |l| {
            lines.push(l.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(lines, [b"a".to_vec(), vec![], b"b".to_vec(), b"c".to_vec()]);
    }
}
