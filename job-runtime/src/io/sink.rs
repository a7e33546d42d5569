//! Sinks receive emitted entries, late records and dead letters. Each shard has
//! its own sink instances, so the per-event path takes no lock; the rare side
//! outputs of all shards may share one file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::model::record::{Input, Key};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sink {name} failed: {reason}")]
    Other { name: String, reason: String },
}

/// Receives emitted entries (canonical JSON) with their Kafka message key.
pub trait EntrySink: Send {
    fn emit(&mut self, key: Key, record: &[u8]) -> Result<(), SinkError>;
    /// Sends what the sink holds back to send together (see
    /// `KafkaEntrySink`); a shard calls it at the end of every drain, so no
    /// entry waits for more input.
    fn send_pending(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Sends everything emitted so far and waits until it is stored.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// Why a record went to a side output.
#[derive(Debug, Clone, Copy)]
pub enum SideKind<'a> {
    DeadLetter {
        reason: &'static str,
        detail: &'a str,
    },
    Late {
        event_time: i64,
        watermark: i64,
    },
}

/// A record for the dead-letter or late output, with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct SideRecord<'a> {
    pub input: Input,
    pub partition: u32,
    pub offset: i64,
    pub payload: &'a [u8],
    pub kind: SideKind<'a>,
}

pub trait SideSink: Send {
    fn send(&mut self, rec: &SideRecord<'_>) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// Exactly-once: makes the output sent since the previous call visible together
/// with the input offsets of checkpoint `checkpoint_id` (impressions, plays).
pub trait EpochCommit: Send {
    fn commit(&mut self, checkpoint_id: u64, offsets: [Option<i64>; 2]) -> Result<(), SinkError>;
}

/// Entries of one shard to `entries-<p>.jsonl`.
pub struct FileEntrySink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl FileEntrySink {
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    fn err(&self, source: std::io::Error) -> SinkError {
        SinkError::File {
            path: self.path.clone(),
            source,
        }
    }
}

impl EntrySink for FileEntrySink {
    fn emit(&mut self, _key: Key, record: &[u8]) -> Result<(), SinkError> {
        self.out
            .write_all(record)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.err(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.err(e))
    }
}

/// One JSON line per side record; the original record is kept whole (as a JSON
/// value when it is JSON, as text otherwise, base64 when it is not UTF-8).
pub fn side_record_json(rec: &SideRecord<'_>, out: &mut Vec<u8>) {
    #[derive(Serialize)]
    struct Line<'a> {
        input: &'static str,
        partition: u32,
        offset: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_time: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        watermark: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        record: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        record_text: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        record_base64: Option<String>,
    }
    let text = std::str::from_utf8(rec.payload).ok();
    let json = text.and_then(|t| serde_json::from_str::<&RawValue>(t).ok());
    let (reason, detail, event_time, watermark) = match rec.kind {
        SideKind::DeadLetter { reason, detail } => (Some(reason), Some(detail), None, None),
        SideKind::Late {
            event_time,
            watermark,
        } => (None, None, Some(event_time), Some(watermark)),
    };
    let line = Line {
        input: rec.input.name(),
        partition: rec.partition,
        offset: rec.offset,
        reason,
        detail,
        event_time,
        watermark,
        record: json,
        record_text: if json.is_none() { text } else { None },
        record_base64: text
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(rec.payload)),
    };
    if let Err(e) = serde_json::to_writer(&mut *out, &line) {
        unreachable!("serialising a side record into memory failed: {e}");
    }
    out.push(b'\n');
}

/// A side output file shared by shards; each shard buffers its lines and appends
/// them under a lock only when its buffer fills or on flush.
#[derive(Clone)]
pub struct SharedFile {
    path: PathBuf,
    file: Arc<Mutex<BufWriter<File>>>,
}

impl SharedFile {
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(BufWriter::new(file))),
        })
    }

    pub fn sink(&self) -> SharedFileSink {
        SharedFileSink {
            shared: self.clone(),
            buf: Vec::new(),
        }
    }

    fn append(&self, bytes: &[u8], flush: bool) -> Result<(), SinkError> {
        let err = |source| SinkError::File {
            path: self.path.clone(),
            source,
        };
        let mut f = self.file.lock().map_err(|_| SinkError::Other {
            name: self.path.display().to_string(),
            reason: "writer lock poisoned".into(),
        })?;
        f.write_all(bytes).map_err(err)?;
        if flush {
            f.flush().map_err(err)?;
        }
        Ok(())
    }
}

pub struct SharedFileSink {
    shared: SharedFile,
    buf: Vec<u8>,
}

impl SideSink for SharedFileSink {
    fn send(&mut self, rec: &SideRecord<'_>) -> Result<(), SinkError> {
        side_record_json(rec, &mut self.buf);
        if self.buf.len() >= 64 * 1024 {
            self.shared.append(&self.buf, false)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.shared.append(&self.buf, true)?;
        self.buf.clear();
        Ok(())
    }
}

/// Collects output in memory, for tests and the demo's statistics.
#[derive(Clone, Default)]
pub struct MemorySink {
    pub lines: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|mut l| {
                l.drain(..)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn push(&self, bytes: Vec<u8>) -> Result<(), SinkError> {
        self.lines
            .lock()
            .map_err(|_| SinkError::Other {
                name: "memory".into(),
                reason: "lock poisoned".into(),
            })?
            .push(bytes);
        Ok(())
    }
}

impl EntrySink for MemorySink {
    fn emit(&mut self, _key: Key, record: &[u8]) -> Result<(), SinkError> {
        self.push(record.to_vec())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl SideSink for MemorySink {
    fn send(&mut self, rec: &SideRecord<'_>) -> Result<(), SinkError> {
        let mut buf = Vec::new();
        side_record_json(rec, &mut buf);
        buf.pop();
        self.push(buf)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Discards everything (a side output that is only counted).
pub struct NullSink;

impl EntrySink for NullSink {
    fn emit(&mut self, _key: Key, _record: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl SideSink for NullSink {
    fn send(&mut self, _rec: &SideRecord<'_>) -> Result<(), SinkError> {
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_keeps_the_record_and_the_reason() {
        let mut out = Vec::new();
        let rec = SideRecord {
            input: Input::Plays,
            partition: 3,
            offset: 41,
            payload: br#"{"type":"play","profi"#,
            kind: SideKind::DeadLetter {
                reason: "invalid_json",
                detail: "EOF while parsing",
            },
        };
        side_record_json(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json line");
        assert_eq!(v["reason"], "invalid_json");
        assert_eq!(v["record_text"], r#"{"type":"play","profi"#);
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 41);
    }

    #[test]
    fn non_utf8_records_are_kept_as_base64() {
        let mut out = Vec::new();
        let rec = SideRecord {
            input: Input::Impressions,
            partition: 0,
            offset: 0,
            payload: &[0xff, 0xfe],
            kind: SideKind::DeadLetter {
                reason: "invalid_json",
                detail: "",
            },
        };
        side_record_json(&rec, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json line");
        assert_eq!(v["record_base64"], "//4=");
    }
}
