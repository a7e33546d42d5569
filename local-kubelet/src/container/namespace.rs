//! The container set-up shim. The kubelet re-executes its own binary as
//! `streamjoin-local-kubelet __container SPEC`; the shim enters a new mount namespace,
//! makes `/` private, mounts the image's binary and the pod's volumes, drops to the
//! container's user and execs the container's command. Single-threaded plain code, so
//! no async-signal-safety concerns of a `pre_exec` hook.
//!
//! A mount point that does not exist on the host is created inside an overlay of its
//! nearest existing ancestor (upper layer on a tmpfs private to the namespace), so the
//! host's directories are never written. `__exec SPEC` enters the mount namespace of a
//! running container instead (exec probes).

use std::convert::Infallible;
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub const CONTAINER_MODE: &str = "__container";
pub const EXEC_MODE: &str = "__exec";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountSpec {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Who runs the command, where, with what.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Process {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    pub working_dir: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The kubelet's pid: the shim exits if its parent is already gone.
    pub parent_pid: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// A kubelet-made directory; a tmpfs private to the namespace is mounted on it
    /// for the overlays' upper layers.
    pub scratch: PathBuf,
    pub mounts: Vec<MountSpec>,
    pub process: Process,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    /// A process of the container whose mount namespace the command joins.
    pub target_pid: i32,
    pub process: Process,
}

/// Entry point of both shim modes; never returns.
pub fn shim_main(mode: &str, spec: &str) -> ! {
    let result = match mode {
        CONTAINER_MODE => serde_json::from_str::<ContainerSpec>(spec)
            .context("decoding the container spec")
            .and_then(setup_container),
        _ => serde_json::from_str::<ExecSpec>(spec)
            .context("decoding the exec spec")
            .and_then(enter_container),
    };
    let Err(e) = result;
    eprintln!("streamjoin-local-kubelet: starting the container process: {e:#}");
    // runc's exit code for a container that could not be started.
    std::process::exit(128)
}

fn c_path(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("path {}", p.display()))
}

fn check(rc: libc::c_int, what: impl FnOnce() -> String) -> anyhow::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error()).with_context(what)
    }
}

fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> anyhow::Result<()> {
    let src = CString::new(source)?;
    let tgt = c_path(target)?;
    let fs = fstype.map(CString::new).transpose()?;
    let data = data.map(CString::new).transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings or null for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>()),
        )
    };
    check(rc, || format!("mounting {source} on {}", target.display()))
}

fn bind(source: &Path, target: &Path, read_only: bool) -> anyhow::Result<()> {
    let src = source.to_string_lossy();
    mount(&src, target, None, libc::MS_BIND | libc::MS_REC, None)?;
    if read_only {
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        mount("none", target, None, flags, None)?;
    }
    Ok(())
}

/// `a` is `b` or lies below it.
fn within(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// The directories to overlay so that every missing mount target can be created
/// without touching the host: the nearest existing ancestor of each missing target
/// that is not itself below another target (those are created inside that target's
/// volume), outermost ones only. `/` is never overlaid (a missing top-level directory
/// is created on the host).
pub fn overlay_roots(targets: &[PathBuf], exists: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for t in targets {
        let nested = targets.iter().any(|o| o != t && within(t, o));
        if nested || exists(t) {
            continue;
        }
        let Some(anc) = t.ancestors().skip(1).find(|a| exists(a)) else {
            continue;
        };
        if anc != Path::new("/") && !roots.iter().any(|r| r == anc) {
            roots.push(anc.to_path_buf());
        }
    }
    let all = roots.clone();
    roots.retain(|r| !all.iter().any(|o| o != r && within(r, o)));
    roots.sort();
    roots
}

/// Mount points of the current namespace strictly below `dir` (from mountinfo).
fn submounts(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m != dir && within(m, dir))
        .collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|m| !all.iter().any(|o| o != m && within(m, o)));
    out
}

fn make_mount_point(target: &Path, is_dir: bool) -> anyhow::Result<()> {
    if is_dir {
        std::fs::create_dir_all(target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
    } else if !target.exists() {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
        std::fs::File::create(target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
    }
    Ok(())
}

/// Overlays `root` (upper layer in `scratch/<n>`), keeping the mounts below it.
fn overlay(root: &Path, scratch: &Path, n: usize) -> anyhow::Result<()> {
    let canon = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let base = scratch.join(n.to_string());
    let (upper, work, keep) = (base.join("u"), base.join("w"), base.join("k"));
    for d in [&upper, &work, &keep] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let kept: Vec<(PathBuf, PathBuf)> = submounts(&canon)
        .into_iter()
        .enumerate()
        .map(|(i, m)| (m, keep.join(i.to_string())))
        .collect();
    for (m, k) in &kept {
        make_mount_point(k, m.is_dir())?;
        bind(m, k, false)?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        canon.display(),
        upper.display(),
        work.display()
    );
    mount("overlay", &canon, Some("overlay"), 0, Some(&opts))?;
    for (m, k) in &kept {
        make_mount_point(m, k.is_dir())?;
        bind(k, m, false)?;
    }
    Ok(())
}

/// An `O_PATH` descriptor of a mount source, and whether it is a directory.
fn open_path(p: &Path) -> anyhow::Result<(std::fs::File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(p)
        .with_context(|| format!("opening mount source {}", p.display()))?;
    let is_dir = file
        .metadata()
        .with_context(|| format!("reading mount source {}", p.display()))?
        .is_dir();
    Ok((file, is_dir))
}

fn setup_container(spec: ContainerSpec) -> anyhow::Result<Infallible> {
    // SAFETY: plain syscalls on a single-threaded process.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) }, || {
        "unshare(CLONE_NEWNS)".into()
    })?;
    mount(
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount("tmpfs", &spec.scratch, Some("tmpfs"), 0, Some("mode=0700"))?;
    let mut mounts = spec.mounts.clone();
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let targets: Vec<PathBuf> = mounts.iter().map(|m| m.target.clone()).collect();
    for (n, root) in overlay_roots(&targets, &|p: &Path| p.exists())
        .iter()
        .enumerate()
    {
        overlay(root, &spec.scratch, n)?;
    }
    // Sources are opened before anything is mounted: a mount on, say, /tmp would
    // hide sources that live below it.
    let sources = mounts
        .iter()
        .map(|m| open_path(&m.source))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (m, (fd, is_dir)) in mounts.iter().zip(&sources) {
        make_mount_point(&m.target, *is_dir)?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        bind(&source, &m.target, m.read_only).with_context(|| {
            format!("mounting {} at {}", m.source.display(), m.target.display())
        })?;
    }
    drop(sources);
    become_process(&spec.process)
}

fn enter_container(spec: ExecSpec) -> anyhow::Result<Infallible> {
    let ns = format!("/proc/{}/ns/mnt", spec.target_pid);
    let file = std::fs::File::open(&ns).with_context(|| format!("opening {ns}"))?;
    // SAFETY: a valid descriptor of a mount namespace; the process is single-threaded.
    check(
        unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNS) },
        || format!("setns({ns})"),
    )?;
    become_process(&spec.process)
}

/// Drops to the container's user, changes directory and execs (searching the
/// container's PATH).
fn become_process(p: &Process) -> anyhow::Result<Infallible> {
    let gid = p.gid.or(p.uid);
    // SAFETY: plain credential syscalls on a single-threaded process.
    unsafe {
        if p.uid.is_some() || !p.groups.is_empty() {
            let groups: Vec<libc::gid_t> = p.groups.clone();
            check(libc::setgroups(groups.len(), groups.as_ptr()), || {
                format!("setgroups({:?})", p.groups)
            })?;
        }
        if let Some(g) = gid {
            check(libc::setgid(g), || format!("setgid({g})"))?;
        }
        if let Some(u) = p.uid {
            check(libc::setuid(u), || format!("setuid({u})"))?;
        }
    }
    let wd = if p.working_dir.is_empty() {
        "/"
    } else {
        &p.working_dir
    };
    std::env::set_current_dir(wd).with_context(|| format!("changing directory to {wd}"))?;
    // The death signal is cleared by credential changes, so it is set here, last.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != p.parent_pid {
            bail!("the kubelet exited while the container was starting");
        }
    }
    exec(p)
}

fn find_in_path(prog: &str, env: &[(String, String)]) -> PathBuf {
    if prog.contains('/') {
        return PathBuf::from(prog);
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v,
    );
    path.split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|c| c.is_file())
        .unwrap_or_else(|| PathBuf::from(prog))
}

fn exec(p: &Process) -> anyhow::Result<Infallible> {
    let Some(prog) = p.argv.first() else {
        bail!("no command: neither the pod nor the image map gives one");
    };
    let path = find_in_path(prog, &p.env);
    let c_prog = c_path(&path)?;
    let argv: Vec<CString> = p
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = p
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(c_prog.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    Err(io::Error::last_os_error()).with_context(|| format!("exec {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn missing_targets_overlay_their_nearest_existing_ancestor_once() {
        let existing = [
            "/",
            "/usr",
            "/usr/local",
            "/usr/local/bin",
            "/var",
            "/var/run",
            "/etc",
        ];
        let exists = |x: &Path| existing.iter().any(|e| Path::new(e) == x);
        let targets = [
            p("/usr/local/bin/streamjoin-runtime"),
            p("/var/lib/streamjoin"),
            p("/var/run/secrets/streamjoin/admin"),
            p("/etc/streamjoin"),
            p("/etc/streamjoin/extra"),
            p("/data"),
        ];
        assert_eq!(
            overlay_roots(&targets, &exists),
            [p("/etc"), p("/usr/local/bin"), p("/var")],
            "/var/run is below /var; /etc/streamjoin/extra lives in its parent's volume; \
             /data's ancestor is / which is never overlaid"
        );
    }

    #[test]
    fn existing_targets_need_no_overlay() {
        let exists = |_: &Path| true;
        assert!(overlay_roots(&[p("/tmp"), p("/bin/sh")], &exists).is_empty());
    }

    #[test]
    fn programs_are_found_on_the_container_path() {
        let env = vec![("PATH".to_owned(), "/nonexistent:/bin".to_owned())];
        assert_eq!(find_in_path("sh", &env), p("/bin/sh"));
        assert_eq!(find_in_path("/x/y", &env), p("/x/y"));
    }
}
