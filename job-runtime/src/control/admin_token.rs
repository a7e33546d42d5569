//! The bearer token of the admin API's mutating calls. Given as a file
//! (`--admin-token-file`, a Secret volume in Kubernetes), it is read again at each
//! mutating call: when the Secret changes (re-created by the operator, a rotated
//! key) the kubelet rewrites the file and the next call uses the new token, with
//! no restart. Mutating calls are rare (savepoints, watermark advances), so one
//! small read each costs nothing; a read that fails or finds the file empty (the
//! kubelet swapping it) keeps the last good token.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A fixed token, or the last good contents of a token file.
pub struct AdminToken {
    file: Option<PathBuf>,
    last: Mutex<Arc<str>>,
}

impl AdminToken {
    /// A token that never changes.
    pub fn fixed(token: &str) -> Self {
        Self {
            file: None,
            last: Mutex::new(Arc::from(token)),
        }
    }

    /// The token in `file`, whose contents at start were `initial`.
    pub fn file(file: PathBuf, initial: &str) -> Self {
        Self {
            file: Some(file),
            last: Mutex::new(Arc::from(initial)),
        }
    }

    /// The token now: the file's trimmed contents, else the last good token.
    pub fn current(&self) -> Arc<str> {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(path) = &self.file else {
            return last.clone();
        };
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                let now = text.trim();
                if now != &**last {
                    tracing::info!(file = %path.display(), "the admin token file changed; using the new token");
                    *last = Arc::from(now);
                }
            }
            Ok(_) => {
                tracing::warn!(file = %path.display(), "the admin token file is empty; keeping the last token");
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the admin token file; keeping the last token");
            }
        }
        last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_token_file_is_used_at_the_next_call_and_a_missing_one_keeps_the_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").expect("write");
        let t = AdminToken::file(path.clone(), "first");
        assert_eq!(&*t.current(), "first");
        std::fs::write(&path, "second\n").expect("write");
        assert_eq!(&*t.current(), "second");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(&*t.current(), "second", "a file being swapped");
        std::fs::write(&path, "  \n").expect("write");
        assert_eq!(&*t.current(), "second", "an empty file");
        std::fs::write(&path, "third").expect("write");
        assert_eq!(&*t.current(), "third");
        assert_eq!(&*AdminToken::fixed("x").current(), "x");
    }
}
