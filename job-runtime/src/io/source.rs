//! Sources deliver one input partition's records in order. The engine asks for
//! the next record when alignment allows it; a source says whether it has one,
//! is caught up for now, or has ended (bounded input).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::time::watermark::UnreadProbe;

/// A record as delivered by a source.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub payload: &'a [u8],
    /// Position in the partition (Kafka offset, or line number from 0).
    pub offset: i64,
}

#[derive(Debug)]
pub enum Next<'a> {
    Record(RecordRef<'a>),
    /// Nothing to read right now.
    CaughtUp,
    /// Bounded input: nothing more will come.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("source {name} failed: {reason}")]
    Other { name: String, reason: String },
}

/// One input partition.
pub trait PartitionSource: Send {
    fn next(&mut self) -> Result<Next<'_>, SourceError>;
    /// For logs and errors.
    fn describe(&self) -> String;
    /// The next offset to read, for checkpoints (`None`: not resumable or nothing read).
    fn position(&self) -> Option<i64> {
        None
    }
    /// How to tell from another thread whether records wait to be read (`None`:
    /// it cannot tell, and an idle partition counts again only once read).
    fn unread_probe(&self) -> Option<UnreadProbe> {
        None
    }
    /// Since when (processing-time ms) the source has been able to tell that it
    /// is caught up, without a break; `None` while it cannot (its broker is
    /// unreachable). A local source always can.
    fn in_contact_since(&self) -> Option<i64> {
        Some(i64::MIN)
    }
    /// Asks the source to call `waker` when records arrive while it is caught
    /// up; `false` when it cannot (its reader must then poll).
    fn wake_on_arrival(&mut self, _waker: &Arc<InputWaker>) -> bool {
        false
    }
}

/// Wakes the thread that reads a set of sources when one of them receives
/// records, so that a caught-up reader can park instead of polling: polling
/// took CPU from the threads that fetch and produce on a busy machine.
#[derive(Debug)]
pub struct InputWaker {
    thread: std::thread::Thread,
}

impl InputWaker {
    /// A waker for the calling thread.
    pub fn for_current_thread() -> Arc<Self> {
        Arc::new(Self {
            thread: std::thread::current(),
        })
    }

    pub fn wake(&self) {
        self.thread.unpark();
    }
}

/// A generator-layout file (`impressions-<p>.jsonl`), one record per line.
pub struct FileSource {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    line: i64,
}

impl FileSource {
    pub const CHUNK: usize = 1 << 20;

    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            buf: vec![0; Self::CHUNK],
            pos: 0,
            len: 0,
            eof: false,
            line: 0,
        })
    }

    fn fill(&mut self) -> Result<(), SourceError> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.len == self.buf.len() {
            // A line longer than the buffer: grow it.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self
            .file
            .read(&mut self.buf[self.len..])
            .map_err(|source| SourceError::File {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            self.eof = true;
        }
        self.len += n;
        Ok(())
    }
}

impl PartitionSource for FileSource {
    fn next(&mut self) -> Result<Next<'_>, SourceError> {
        let (start, end) = loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[self.pos..self.len]) {
                let start = self.pos;
                self.pos += nl + 1;
                break (start, start + nl);
            }
            if self.eof {
                if self.pos < self.len {
                    // The last line has no newline.
                    let start = self.pos;
                    self.pos = self.len;
                    break (start, self.len);
                }
                return Ok(Next::End);
            }
            self.fill()?;
        };
        let offset = self.line;
        self.line += 1;
        Ok(Next::Record(RecordRef {
            payload: &self.buf[start..end],
            offset,
        }))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// An in-memory feed that a test (or an embedding program) appends to.
#[derive(Debug)]
pub struct Feed {
    records: VecDeque<Vec<u8>>,
    closed: bool,
    /// What [`PartitionSource::in_contact_since`] answers (`None`: the feed
    /// plays an unreachable broker).
    contact: Option<i64>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            closed: false,
            contact: Some(i64::MIN),
        }
    }
}

/// The writer's handle of a [`MemorySource`].
#[derive(Debug, Clone, Default)]
pub struct FeedHandle(Arc<Mutex<Feed>>);

impl FeedHandle {
    pub fn push(&self, record: impl Into<Vec<u8>>) {
        if let Ok(mut f) = self.0.lock() {
            f.records.push_back(record.into());
        }
    }

    /// No more records will come: the partition ends (bounded input).
    pub fn close(&self) {
        if let Ok(mut f) = self.0.lock() {
            f.closed = true;
        }
    }

    /// Plays a broker that cannot be reached (`None`), or one reached again
    /// since `Some(ms)` of processing time.
    pub fn set_contact(&self, since: Option<i64>) {
        if let Ok(mut f) = self.0.lock() {
            f.contact = since;
        }
    }

    pub fn source(&self, name: impl Into<String>) -> MemorySource {
        MemorySource {
            feed: self.clone(),
            name: name.into(),
            current: Vec::new(),
            offset: 0,
        }
    }
}

/// A source reading a [`FeedHandle`].
pub struct MemorySource {
    feed: FeedHandle,
    name: String,
    current: Vec<u8>,
    offset: i64,
}

impl MemorySource {
    /// A bounded source over fixed records.
    pub fn bounded<I, R>(name: &str, records: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<Vec<u8>>,
    {
        let feed = FeedHandle::default();
        for r in records {
            feed.push(r);
        }
        feed.close();
        feed.source(name)
    }
}

impl PartitionSource for MemorySource {
    fn next(&mut self) -> Result<Next<'_>, SourceError> {
        let mut feed = self.feed.0.lock().map_err(|_| SourceError::Other {
            name: self.name.clone(),
            reason: "feed lock poisoned".into(),
        })?;
        match feed.records.pop_front() {
            Some(r) => {
                drop(feed);
                self.current = r;
                let offset = self.offset;
                self.offset += 1;
                Ok(Next::Record(RecordRef {
                    payload: &self.current,
                    offset,
                }))
            }
            None if feed.closed => Ok(Next::End),
            None => Ok(Next::CaughtUp),
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn in_contact_since(&self) -> Option<i64> {
        self.feed.0.lock().ok().and_then(|f| f.contact)
    }

    fn unread_probe(&self) -> Option<UnreadProbe> {
        let feed = self.feed.clone();
        Some(Arc::new(move || {
            feed.0.lock().is_ok_and(|f| !f.records.is_empty())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(src: &mut dyn PartitionSource) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        while let Ok(Next::Record(r)) = src.next() {
            out.push((String::from_utf8_lossy(r.payload).into_owned(), r.offset));
        }
        out
    }

    #[test]
    fn file_source_reads_lines_across_chunk_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("impressions-0.jsonl");
        let mut f = File::create(&path).expect("create");
        let long = "x".repeat(FileSource::CHUNK + 10);
        write!(f, "a\n\n{long}\nlast").expect("write");
        drop(f);
        let mut src = FileSource::open(&path).expect("open");
        let lines = collect(&mut src);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], ("a".into(), 0));
        assert_eq!(lines[1], ("".into(), 1));
        assert_eq!(lines[2].0.len(), long.len());
        assert_eq!(lines[3], ("last".into(), 3));
        assert!(matches!(src.next(), Ok(Next::End)));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = FileSource::open(Path::new("/nonexistent/plays-0.jsonl"))
            .err()
            .expect("error");
        assert!(err.to_string().contains("/nonexistent/plays-0.jsonl"));
    }

    #[test]
    fn memory_source_is_caught_up_until_closed() {
        let feed = FeedHandle::default();
        let mut src = feed.source("t");
        assert!(matches!(src.next(), Ok(Next::CaughtUp)));
        feed.push("r");
        assert!(matches!(src.next(), Ok(Next::Record(_))));
        feed.close();
        assert!(matches!(src.next(), Ok(Next::End)));
    }
}
