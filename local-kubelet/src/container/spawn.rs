//! Starting processes through the set-up shim: each in its own process group, killed
//! with the kubelet (parent-death signal), output appended to a log file.

use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::process::{Child, Command};

use super::namespace::{CONTAINER_MODE, ContainerSpec, EXEC_MODE, ExecSpec};

fn shim_command(exe: &Path, mode: &str, spec: String) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(mode).arg(spec).env_clear().stdin(Stdio::null());
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe. It also covers the window before the shim
    // sets it again after changing credentials.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    cmd
}

/// Starts a container process; its stdout and stderr go to `log` (created, appended).
pub fn spawn_container(exe: &Path, spec: &ContainerSpec, log: &Path) -> anyhow::Result<Child> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone().context("duplicating the log descriptor")?;
    std::fs::create_dir_all(&spec.scratch)
        .with_context(|| format!("creating {}", spec.scratch.display()))?;
    let json = serde_json::to_string(spec).context("encoding the container spec")?;
    let mut cmd = shim_command(exe, CONTAINER_MODE, json);
    cmd.stdout(out).stderr(err).kill_on_drop(false);
    cmd.spawn().context("starting the container shim")
}

/// Runs a command inside a running container's mount namespace (exec probes);
/// output captured.
pub fn spawn_exec(exe: &Path, spec: &ExecSpec) -> anyhow::Result<Child> {
    let json = serde_json::to_string(spec).context("encoding the exec spec")?;
    let mut cmd = shim_command(exe, EXEC_MODE, json);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().context("starting the exec shim")
}

/// Signals a whole process group; a group already gone is not an error.
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill with a negative pid signals the group; no memory involved.
        unsafe { libc::kill(-pgid, signal) };
    }
}
