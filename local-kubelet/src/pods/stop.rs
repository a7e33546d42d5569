//! Container exits and restarts (restart policy, back-off), and stopping containers:
//! preStop, SIGTERM to the process group, SIGKILL after the grace period.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::status::{State, Terminated};
use super::worker::{Ending, Ev, Worker};
use crate::container::namespace::{ExecSpec, Process};
use crate::container::spawn::{signal_group, spawn_exec};

/// The last 2 KiB / 80 lines of a log (a `FallbackToLogsOnError` message).
fn tail(log: &Path) -> Option<String> {
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(2048))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(80);
    let out = lines[start..].join("\n");
    (!out.is_empty()).then_some(out)
}

/// Exit code, signal and reason as the kubelet reports them (128+n for a signal).
pub fn exit_facts(status: &std::io::Result<ExitStatus>) -> (i32, Option<i32>, &'static str) {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(0), _) => (0, None, "Completed"),
            (Some(c), _) => (c, None, "Error"),
            (None, Some(sig)) => (128 + sig, Some(sig), "Error"),
            (None, None) => (255, None, "Error"),
        },
        Err(_) => (128, None, "StartError"),
    }
}

impl Worker {
    pub fn on_exit(
        &mut self,
        i: usize,
        epoch: u64,
        status: std::io::Result<ExitStatus>,
        finished: Timestamp,
    ) {
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        if c.proc_.as_ref().map(|p| p.epoch) != Some(epoch) {
            return;
        }
        let Some(p) = c.proc_.take() else { return };
        // Whatever else the container started goes with it, as with a cgroup.
        signal_group(p.pid, libc::SIGKILL);
        let (code, signal, reason) = exit_facts(&status);
        let fallback =
            c.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        let message = match &status {
            Err(e) => Some(e.to_string()),
            Ok(_) if code != 0 && fallback => tail(&p.log),
            Ok(_) => None,
        };
        let t = Terminated {
            exit_code: code,
            signal,
            reason: reason.to_owned(),
            message,
            started_at: Some(p.started_at),
            finished_at: finished,
            container_id: c.facts.container_id.clone(),
        };
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), container = %c.spec.name, code, ?signal, "container exited");
        c.facts.state = State::Terminated(t);
        c.facts.ready = false;
        c.facts.started = false;
        c.probes.clear();
        let policy = self.restart_policy();
        let c = &mut self.ctrs[i];
        if self.ending.is_some() {
            c.done = true;
            return;
        }
        let restart = if c.init {
            code != 0 && policy != "Never"
        } else {
            match policy.as_str() {
                "Always" => true,
                "OnFailure" => code != 0,
                _ => false,
            }
        };
        if !restart {
            c.done = true;
            return;
        }
        c.exits = self.k.backoff.next_exits(c.exits, p.started.elapsed());
        let delay = self.k.backoff.delay(c.exits);
        c.next_start = Instant::now() + delay;
        if !delay.is_zero() {
            let name = c.spec.name.clone();
            let msg = format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                humantime::format_duration(delay),
                self.name,
                self.ns,
                self.uid
            );
            c.set_waiting("CrashLoopBackOff", Some(msg));
            self.event(
                Some(&name),
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    self.name, self.ns, self.uid
                ),
            );
        }
    }

    pub fn spec_grace(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
    }

    pub fn deletion_grace(&self) -> i64 {
        self.pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or_else(|| self.spec_grace())
    }

    /// Stops every container; none is started again.
    pub fn begin_ending(&mut self, ending: Ending, grace: i64) {
        if self.ending.is_some() && ending != Ending::Gone {
            return;
        }
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), ?ending, grace, "stopping the pod");
        self.ending = Some(ending);
        for i in 0..self.ctrs.len() {
            self.stop_container(i, grace, None);
        }
    }

    /// preStop (exec), then SIGTERM to the process group; SIGKILL at the deadline.
    pub fn stop_container(&mut self, i: usize, grace: i64, why: Option<String>) {
        let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        let deadline = Instant::now() + grace;
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        let name = c.spec.name.clone();
        let pre_stop = c
            .spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone());
        let Some(p) = c.proc_.as_mut() else { return };
        match p.stop_deadline {
            // Already stopping: a shorter grace (e.g. a forced delete) wins.
            Some(d) if d <= deadline => return,
            Some(_) => {
                p.stop_deadline = Some(deadline);
                return;
            }
            None => p.stop_deadline = Some(deadline),
        }
        let (pid, epoch) = (p.pid, p.epoch);
        let process = p.process.clone();
        let note = why.unwrap_or_else(|| format!("Stopping container {name}"));
        self.event(Some(&name), false, "Killing", note);
        match pre_stop {
            Some(argv) if !grace.is_zero() => {
                self.run_pre_stop(i, epoch, pid, process, argv, grace)
            }
            _ => signal_group(pid, libc::SIGTERM),
        }
    }

    fn run_pre_stop(
        &self,
        idx: usize,
        epoch: u64,
        pid: u32,
        process: Process,
        argv: Vec<String>,
        grace: Duration,
    ) {
        let spec = ExecSpec {
            target_pid: i32::try_from(pid).unwrap_or(0),
            process: Process { argv, ..process },
        };
        let exe = self.k.exe.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Ok(child) = spawn_exec(&exe, &spec) {
                let _ = tokio::time::timeout(grace, child.wait_with_output()).await;
            }
            let _ = tx.send(Ev::PreStopDone { idx, epoch });
        });
    }

    pub fn after_pre_stop(&mut self, idx: usize, epoch: u64) {
        if let Some(p) = self.ctrs.get(idx).and_then(|c| c.proc_.as_ref())
            && p.epoch == epoch
        {
            signal_group(p.pid, libc::SIGTERM);
        }
    }

    /// SIGKILL for every container past its grace period.
    pub fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        for c in &mut self.ctrs {
            if let Some(p) = c.proc_.as_mut()
                && !p.killed
                && p.stop_deadline.is_some_and(|d| d <= now)
            {
                tracing::info!(container = %c.spec.name, pid = p.pid, "grace period over: SIGKILL");
                signal_group(p.pid, libc::SIGKILL);
                p.killed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_map_to_codes_signals_and_reasons() {
        let ok = Ok(ExitStatus::from_raw(0));
        assert_eq!(exit_facts(&ok), (0, None, "Completed"));
        let three = Ok(ExitStatus::from_raw(3 << 8));
        assert_eq!(exit_facts(&three), (3, None, "Error"));
        let killed = Ok(ExitStatus::from_raw(9));
        assert_eq!(exit_facts(&killed), (137, Some(9), "Error"));
        let failed: std::io::Result<ExitStatus> = Err(std::io::Error::other("exec"));
        assert_eq!(exit_facts(&failed), (128, None, "StartError"));
    }
}
