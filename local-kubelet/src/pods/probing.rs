//! Running due probes and acting on their results.

use tokio::time::Instant;

use super::worker::{Ev, Worker};
use crate::probes::{self, Kind, Target};

impl Worker {
    pub fn run_due_probes(&mut self) {
        let now = Instant::now();
        let pod_ip = self.addrs().pod_ip;
        for (i, c) in self.ctrs.iter_mut().enumerate() {
            let Some(p) = &c.proc_ else { continue };
            if p.stop_deadline.is_some() {
                continue;
            }
            let started = c.facts.started;
            for (j, ps) in c.probes.iter_mut().enumerate() {
                if ps.done
                    || ps.in_flight
                    || ps.next > now
                    || (ps.kind != Kind::Startup && !started)
                {
                    continue;
                }
                ps.in_flight = true;
                ps.next = now + ps.period();
                let target = Target {
                    pod_ip: pod_ip.clone(),
                    ports: c.spec.ports.clone().unwrap_or_default(),
                    exe: self.k.exe.clone(),
                    pid: i32::try_from(p.pid).unwrap_or(0),
                    process: p.process.clone(),
                };
                let (probe, timeout, epoch, tx) =
                    (ps.probe.clone(), ps.timeout(), p.epoch, self.tx.clone());
                tokio::spawn(async move {
                    let result = probes::run(&probe, &target, timeout).await;
                    let _ = tx.send(Ev::Probe {
                        idx: i,
                        epoch,
                        probe: j,
                        result,
                    });
                });
            }
        }
    }

    pub fn on_probe(&mut self, i: usize, epoch: u64, j: usize, result: Result<(), String>) {
        let grace = self.spec_grace();
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        if c.proc_.as_ref().map(|p| p.epoch) != Some(epoch) {
            return;
        }
        let has_readiness = c.spec.readiness_probe.is_some();
        let name = c.spec.name.clone();
        let Some(ps) = c.probes.get_mut(j) else {
            return;
        };
        ps.in_flight = false;
        let kind = ps.kind;
        match result {
            Ok(()) => {
                ps.failures = 0;
                ps.successes += 1;
                match kind {
                    Kind::Startup => {
                        ps.done = true;
                        c.facts.started = true;
                        c.facts.ready = !has_readiness;
                    }
                    Kind::Readiness if ps.successes >= ps.success_threshold() => {
                        c.facts.ready = true
                    }
                    _ => {}
                }
            }
            Err(msg) => {
                ps.successes = 0;
                ps.failures += 1;
                let over = ps.failures >= ps.failure_threshold();
                let probe_grace = ps.probe.termination_grace_period_seconds;
                if over {
                    ps.failures = 0;
                }
                self.event(
                    Some(&name),
                    true,
                    "Unhealthy",
                    format!("{} probe failed: {msg}", kind.name()),
                );
                if !over {
                    return;
                }
                match kind {
                    Kind::Readiness => self.ctrs[i].facts.ready = false,
                    Kind::Liveness | Kind::Startup => {
                        let why = format!(
                            "Container {name} failed {} probe, will be restarted",
                            kind.name().to_lowercase()
                        );
                        self.stop_container(i, probe_grace.unwrap_or(grace), Some(why));
                    }
                }
            }
        }
    }
}
