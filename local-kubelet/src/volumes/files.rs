//! Volumes made of files (configMap, secret, downwardAPI, projected): which files, with
//! which modes, and writing them into the volume's directory.

use std::collections::BTreeMap;
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
}
