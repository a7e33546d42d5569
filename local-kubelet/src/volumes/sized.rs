//! Sized volumes (StorageClass `local-kubelet-sized`): a tmpfs of the claim's
//! size mounted on the volume's host directory, so that the file system a pod
//! sees (`statvfs`) has the size the claim was granted, and a write past it
//! fails with ENOSPC. An expansion remounts it larger; tmpfs keeps its files and
//! a pod already running sees the new size at once (its bind mount shares the
//! superblock). Memory is used only by what is written, up to the size.
//!
//! The mount is made by the kubelet that runs a pod of the claim (as a CSI node
//! plugin stages a volume), at the volume's capacity; the provisioner grows and
//! unmounts it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, anyhow};

/// On a PersistentVolume: the medium of a sized volume (`tmpfs`).
pub const MEDIUM_ANNOTATION: &str = "streamjoin.dev/local-kubelet-medium";
/// The StorageClass parameter naming the medium.
pub const MEDIUM_PARAMETER: &str = "medium";
pub const TMPFS: &str = "tmpfs";

const FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

fn c_path(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("{} has a NUL", p.display()))
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
pub fn is_mountpoint(dir: &Path) -> anyhow::Result<bool> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let parent = dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", dir.display()))?;
    let up = std::fs::metadata(parent).with_context(|| format!("reading {}", parent.display()))?;
    Ok(meta.dev() != up.dev())
}

/// The size of the file system holding `dir`, in bytes.
pub fn size_bytes(dir: &Path) -> anyhow::Result<u128> {
    let path = c_path(dir)?;
    // SAFETY: a zeroed statvfs is a valid out-parameter.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `s` outlives the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", dir.display()));
    }
    Ok(u128::from(s.f_blocks) * u128::from(s.f_frsize))
}

fn mount_call(dir: &Path, flags: libc::c_ulong, bytes: u128, what: &str) -> anyhow::Result<()> {
    let (src, fs, target) = (CString::new(TMPFS)?, CString::new(TMPFS)?, c_path(dir)?);
    // Files of any pod user; fsGroup narrows the root at mount, as for directories.
    let data = CString::new(format!("size={bytes},mode=0777"))?;
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            flags,
            data.as_ptr().cast::<libc::c_void>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("{what} a tmpfs of {bytes} bytes on {}", dir.display()));
    }
    Ok(())
}

/// Mounts a tmpfs of `bytes` on `dir` (created if missing) unless one is
/// there; one smaller than `bytes` (an expansion this kubelet missed) grows.
pub fn ensure_mounted(dir: &Path, bytes: u128) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !is_mountpoint(dir)? {
        mount_call(dir, FLAGS, bytes, "mounting")?;
        tracing::info!(dir = %dir.display(), bytes, "mounted a sized volume");
        return Ok(());
    }
    if size_bytes(dir)? < bytes {
        resize(dir, bytes)?;
    }
    Ok(())
}

/// Grows (or shrinks, as far as its files allow) the tmpfs on `dir`.
pub fn resize(dir: &Path, bytes: u128) -> anyhow::Result<()> {
    mount_call(dir, FLAGS | libc::MS_REMOUNT, bytes, "resizing to")?;
    tracing::info!(dir = %dir.display(), bytes, "resized a sized volume");
    Ok(())
}

/// Unmounts the tmpfs on `dir`, when there is one (its files go with it).
pub fn unmount(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() || !is_mountpoint(dir)? {
        return Ok(());
    }
    let target = c_path(dir)?;
    // SAFETY: `target` is NUL-terminated. Detached: a pod still holding a file
    // open does not keep the directory from being removed.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("unmounting {}", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u128 = 1 << 20;

    /// Mounts need root (as the kubelet itself); CI runs as root.
    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the sized-volume tests need root under CI"
            );
            eprintln!("SKIPPED: mounting a tmpfs needs root");
        }
        root
    }

    #[test]
    fn a_sized_volume_has_its_size_keeps_its_files_when_grown_and_refuses_more() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pvc-1");
        ensure_mounted(&dir, 4 * MIB).expect("mounted");
        assert!(is_mountpoint(&dir).expect("stat"));
        assert_eq!(size_bytes(&dir).expect("statvfs"), 4 * MIB);
        let too_big = vec![7u8; 5 * MIB as usize];
        let full = std::fs::write(dir.join("big"), &too_big);
        assert!(full.is_err(), "a write past the size fails");
        std::fs::remove_file(dir.join("big")).expect("the partial file removed");
        std::fs::write(dir.join("kept"), b"state").expect("a small file");

        // Mounted already: a second call changes nothing, a larger size grows it.
        ensure_mounted(&dir, 4 * MIB).expect("idempotent");
        ensure_mounted(&dir, 6 * MIB).expect("grown");
        assert_eq!(size_bytes(&dir).expect("statvfs"), 6 * MIB);
        assert_eq!(std::fs::read(dir.join("kept")).expect("kept"), b"state");
        std::fs::write(dir.join("big"), &too_big).expect("fits now");

        unmount(&dir).expect("unmounted");
        assert!(!is_mountpoint(&dir).expect("stat"));
        assert!(!dir.join("kept").exists(), "the files went with it");
        unmount(&dir).expect("nothing to unmount is fine");
    }
}
