//! Savepoint retention by count: keep the newest `maxRetained`, and never delete a
//! savepoint that a rollback (the restore point of the running pods) or a resume
//! (the savepoint a suspended job restores from) depends on.

use streamjoin_api::SavepointStatus;

/// Savepoints to delete from `history` (newest first). Pure.
pub fn expired(
    history: &[SavepointStatus],
    max_retained: u32,
    protected: &[&str],
) -> Vec<SavepointStatus> {
    history
        .iter()
        .skip(max_retained as usize)
        .filter(|s| !protected.contains(&s.location.as_str()))
        .cloned()
        .collect()
}

/// Deletes a savepoint's files. The operator needs to reach the location: a shared
/// filesystem path (or `file://`) mounted at the same path in the operator pod.
pub trait SavepointStore: Send + Sync {
    fn delete(&self, location: &str) -> std::io::Result<()>;
}

/// Filesystem locations; other schemes are reported as not deletable.
pub struct FsSavepointStore;

impl SavepointStore for FsSavepointStore {
    fn delete(&self, location: &str) -> std::io::Result<()> {
        for part in location.split(',') {
            let path = part.strip_prefix("file://").unwrap_or(part);
            if path.contains("://") {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    format!("cannot delete {part}: only filesystem locations are supported"),
                ));
            }
            match std::fs::remove_dir_all(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(n: u32) -> SavepointStatus {
        SavepointStatus {
            id: Some(format!("sp-{n}")),
            location: format!("/sp/{n}"),
            time: format!("2027-01-01T00:00:{n:02}Z"),
            trigger: None,
            parallelism: Some(2),
        }
    }

    #[test]
    fn keeps_the_newest_and_deletes_the_rest() {
        let h: Vec<_> = (0..5).rev().map(sp).collect(); // newest first: 4,3,2,1,0
        let gone: Vec<String> = expired(&h, 2, &[])
            .into_iter()
            .map(|s| s.location)
            .collect();
        assert_eq!(gone, vec!["/sp/2", "/sp/1", "/sp/0"]);
    }

    #[test]
    fn never_deletes_what_a_rollback_or_resume_needs() {
        let h: Vec<_> = (0..5).rev().map(sp).collect();
        let gone: Vec<String> = expired(&h, 1, &["/sp/0", "/sp/2"])
            .into_iter()
            .map(|s| s.location)
            .collect();
        assert_eq!(gone, vec!["/sp/3", "/sp/1"]);
    }

    #[test]
    fn filesystem_store_removes_the_directory_and_tolerates_a_missing_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("sp-1");
        std::fs::create_dir_all(p.join("shard-0")).expect("mkdir");
        FsSavepointStore
            .delete(p.to_str().expect("utf8"))
            .expect("deleted");
        assert!(!p.exists());
        FsSavepointStore
            .delete(p.to_str().expect("utf8"))
            .expect("missing is fine");
        assert!(FsSavepointStore.delete("s3://bucket/sp-1").is_err());
    }
}
