//! Volumes made of files (configMap, secret, downwardAPI, projected): which files, with
//! which modes, writing them into the volume's directory, and bringing a running
//! pod's volume up to date with its source (the kubelet's periodic sync).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use anyhow::Context;
use k8s_openapi::api::core::v1::KeyToPath;

/// One file of a volume: path relative to the volume, content, mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

pub const DEFAULT_MODE: i32 = 0o644;

/// The files of a configMap or secret source: every key, or only `items` (each key
/// must exist unless the source is optional).
pub fn select(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Vec<VolumeFile>, String> {
    let mode = |m: Option<i32>| u32::try_from(m.unwrap_or(default_mode) & 0o7777).unwrap_or(0o644);
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data
            .iter()
            .map(|(k, v)| VolumeFile {
                path: k.clone(),
                data: v.clone(),
                mode: mode(None),
            })
            .collect());
    };
    let mut out = Vec::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => out.push(VolumeFile {
                path: item.path.clone(),
                data: v.clone(),
                mode: mode(item.mode),
            }),
            None if optional => {}
            None => return Err(format!("{what} references non-existent key: {}", item.key)),
        }
    }
    Ok(out)
}

fn safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Replaces the contents of `dir` with `files`. With an fsGroup the files and their
/// directories are group-owned by it, as the kubelet does.
pub fn write_all(dir: &Path, files: &[VolumeFile], fs_group: Option<u32>) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, 0o755, fs_group)?;
    for f in files {
        if !safe_relative(&f.path) {
            anyhow::bail!(
                "volume file path {:?} must be relative without '..'",
                f.path
            );
        }
        let target = dir.join(&f.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            set_mode(parent, 0o755, fs_group)?;
        }
        std::fs::write(&target, &f.data)
            .with_context(|| format!("writing {}", target.display()))?;
        set_mode(&target, f.mode, fs_group)?;
    }
    Ok(())
}

/// Brings `dir` to exactly `files`, as the kubelet's sync does for a running pod's
/// configMap and secret volumes: a changed file is written aside and renamed over
/// the old one, so a reader sees the old or the new contents, never a missing or
/// partial file; files no longer in the source are removed. Returns whether
/// anything changed.
pub fn sync_dir(dir: &Path, files: &[VolumeFile], fs_group: Option<u32>) -> anyhow::Result<bool> {
    let mut changed = false;
    let mut wanted = HashSet::new();
    for f in files {
        if !safe_relative(&f.path) {
            anyhow::bail!(
                "volume file path {:?} must be relative without '..'",
                f.path
            );
        }
        let target = dir.join(&f.path);
        wanted.insert(target.clone());
        if std::fs::read(&target).is_ok_and(|old| old == f.data) {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
        let aside = target.with_file_name(format!(".{}.sync", name.unwrap_or_default()));
        std::fs::write(&aside, &f.data).with_context(|| format!("writing {}", aside.display()))?;
        set_mode(&aside, f.mode, fs_group)?;
        std::fs::rename(&aside, &target)
            .with_context(|| format!("renaming {} to {}", aside.display(), target.display()))?;
        changed = true;
    }
    changed |= remove_unwanted(dir, &wanted)?;
    Ok(changed)
}

/// Removes the regular files under `dir` that are not in `wanted`.
fn remove_unwanted(dir: &Path, wanted: &HashSet<std::path::PathBuf>) -> anyhow::Result<bool> {
    let mut removed = false;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            removed |= remove_unwanted(&path, wanted)?;
        } else if !wanted.contains(&path) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed = true;
        }
    }
    Ok(removed)
}

pub fn set_mode(path: &Path, mode: u32, group: Option<u32>) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(path, None, Some(g))
            .with_context(|| format!("chgrp {g} {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn data() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("token".to_owned(), b"s3cret".to_vec()),
            ("ca.crt".to_owned(), b"CA".to_vec()),
        ])
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
            ..KeyToPath::default()
        }
    }

    #[test]
    fn all_keys_become_files_with_the_default_mode() {
        let files = select("secret s", &data(), None, 0o440, false).expect("files");
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.mode == 0o440));
    }

    #[test]
    fn items_pick_keys_paths_and_modes() {
        let items = [
            item("token", "sub/tok", Some(0o400)),
            item("ca.crt", "ca", None),
        ];
        let files = select("secret s", &data(), Some(&items), 0o644, false).expect("files");
        assert_eq!(
            files,
            [
                VolumeFile {
                    path: "sub/tok".into(),
                    data: b"s3cret".to_vec(),
                    mode: 0o400
                },
                VolumeFile {
                    path: "ca".into(),
                    data: b"CA".to_vec(),
                    mode: 0o644
                },
            ]
        );
        let missing = [item("nope", "x", None)];
        assert!(select("secret s", &data(), Some(&missing), 0o644, false).is_err());
        let files = select("secret s", &data(), Some(&missing), 0o644, true).expect("optional");
        assert!(files.is_empty());
    }

    #[test]
    fn files_are_written_with_modes_and_escapes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        let files = [VolumeFile {
            path: "a/b".into(),
            data: b"x".to_vec(),
            mode: 0o440,
        }];
        write_all(&vol, &files, None).expect("writes");
        let meta = std::fs::metadata(vol.join("a/b")).expect("file");
        assert_eq!(meta.mode() & 0o7777, 0o440);
        assert_eq!(std::fs::read(vol.join("a/b")).expect("read"), b"x");
        let evil = [VolumeFile {
            path: "../x".into(),
            data: vec![],
            mode: 0o644,
        }];
        assert!(write_all(&vol, &evil, None).is_err());
    }

    fn file(path: &str, data: &[u8]) -> VolumeFile {
        VolumeFile {
            path: path.into(),
            data: data.to_vec(),
            mode: 0o440,
        }
    }

    #[test]
    fn a_sync_rewrites_changed_files_in_place_removes_stale_ones_and_keeps_equal_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        write_all(&vol, &[file("token", b"old"), file("sub/ca", b"CA")], None).expect("writes");
        let ino = |p: &str| std::fs::metadata(vol.join(p)).expect("file").ino();
        let ca_ino = ino("sub/ca");
        let same = [file("token", b"old"), file("sub/ca", b"CA")];
        assert!(
            !sync_dir(&vol, &same, None).expect("sync"),
            "nothing changed"
        );
        let new = [file("token", b"new"), file("sub/ca", b"CA")];
        assert!(sync_dir(&vol, &new, None).expect("sync"));
        assert_eq!(std::fs::read(vol.join("token")).expect("read"), b"new");
        let meta = std::fs::metadata(vol.join("token")).expect("file");
        assert_eq!(meta.mode() & 0o7777, 0o440);
        assert_eq!(ino("sub/ca"), ca_ino, "an unchanged file is not rewritten");
        assert!(sync_dir(&vol, &[file("token", b"new")], None).expect("sync"));
        assert!(!vol.join("sub/ca").exists(), "a key gone from the source");
        let names: Vec<_> = std::fs::read_dir(&vol)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.to_string_lossy().ends_with(".sync")),
            "{names:?}"
        );
        assert!(sync_dir(&vol, &[file("../x", b"")], None).is_err());
    }
}
