//! Starting containers: image lookup, environment, command line, mounts, user, and
//! the process itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::ctr::Proc;
use super::status::State;
use super::worker::{Ev, Worker};
use crate::container::command;
use crate::container::env;
use crate::container::namespace::{ContainerSpec, MountSpec, Process};
use crate::container::spawn::spawn_container;
use crate::images::ResolvedImage;
use crate::probes::{Kind, ProbeState};

/// uid, gid and supplementary groups of a container process.
type Identity = (Option<u32>, Option<u32>, Vec<u32>);

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Worker {
    /// Init containers one after the other, then every main container that is due.
    pub async fn start_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.ctrs.len() {
            let c = &self.ctrs[i];
            let idle = c.proc_.is_none() && !c.done;
            if c.init {
                if c.done && c.facts.succeeded() {
                    continue;
                }
                if idle && c.next_start <= now {
                    self.start(i).await;
                }
                return;
            }
            if idle && c.next_start <= now {
                self.start(i).await;
            }
        }
    }

    fn image_missing(&mut self, i: usize, image: &str) {
        let c = &mut self.ctrs[i];
        c.image_failures += 1;
        let delay = self.k.backoff.delay(c.image_failures + 1);
        c.next_start = Instant::now() + delay;
        c.pull_backoff_at = Some(Instant::now() + delay.min(Duration::from_secs(1)));
        let msg = format!(
            "image {image:?} is not in the local kubelet's image map ({})",
            self.k.images_file
        );
        c.set_waiting("ErrImagePull", Some(msg.clone()));
        let name = c.spec.name.clone();
        self.event(
            Some(&name),
            true,
            "Failed",
            format!("Failed to pull image {image:?}: {msg}"),
        );
    }

    /// `ErrImagePull` turns into `ImagePullBackOff` while waiting for the next try.
    pub fn image_backoff_states(&mut self) {
        let now = Instant::now();
        for c in &mut self.ctrs {
            let pulling =
                matches!(&c.facts.state, State::Waiting { reason, .. } if reason == "ErrImagePull");
            if pulling && c.pull_backoff_at.is_some_and(|t| t <= now) {
                c.pull_backoff_at = None;
                let image = c.spec.image.clone().unwrap_or_default();
                c.set_waiting(
                    "ImagePullBackOff",
                    Some(format!("Back-off pulling image {image:?}")),
                );
            }
        }
    }

    async fn start(&mut self, i: usize) {
        let spec = self.ctrs[i].spec.clone();
        let image = spec.image.clone().unwrap_or_default();
        let Some(img) = self.k.images.lookup(&image) else {
            self.image_missing(i, &image);
            return;
        };
        self.ctrs[i].image_failures = 0;
        let name = spec.name.clone();
        if self.ctrs[i].facts.restart_count == 0 && !self.ctrs[i].ever_started {
            self.event(
                Some(&name),
                false,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
        }
        let cspec = match self.container_spec(&spec, &img).await {
            Ok(s) => s,
            Err(msg) => {
                let c = &mut self.ctrs[i];
                c.set_waiting("CreateContainerConfigError", Some(msg.clone()));
                c.next_start = Instant::now() + Duration::from_secs(2);
                self.event(Some(&name), true, "Failed", format!("Error: {msg}"));
                return;
            }
        };
        let restart_count = {
            let c = &self.ctrs[i];
            c.facts.restart_count + i32::from(c.ever_started)
        };
        let log = self
            .pod_dir
            .join(&name)
            .join(format!("{restart_count}.log"));
        let spawned = spawn_container(&self.k.exe, &cspec, &log);
        let now = Timestamp::now();
        let c = &mut self.ctrs[i];
        c.ever_started = true;
        c.facts.restart_count = restart_count;
        c.facts.image_id = img.image_id.clone();
        if let State::Terminated(t) = &c.facts.state {
            c.facts.last = Some(t.clone());
        }
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(container = %name, "start failed: {msg}");
                c.epoch += 1;
                let epoch = c.epoch;
                c.proc_ = Some(placeholder(epoch, log, cspec.process));
                let err = std::io::Error::other(msg);
                self.on_exit(i, epoch, Err(err), now);
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        c.epoch += 1;
        let epoch = c.epoch;
        let started = Instant::now();
        c.proc_ = Some(Proc {
            pid,
            epoch,
            started,
            started_at: now,
            process: cspec.process.clone(),
            log,
            stop_deadline: None,
            killed: false,
        });
        c.facts.container_id = Some(format!("local://{pid}"));
        c.facts.state = State::Running { started_at: now };
        c.facts.started = spec.startup_probe.is_none();
        c.facts.ready = c.facts.started && spec.readiness_probe.is_none();
        c.probes = [
            (Kind::Startup, &spec.startup_probe),
            (Kind::Liveness, &spec.liveness_probe),
            (Kind::Readiness, &spec.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.as_ref().map(|p| ProbeState::new(k, p, started)))
        .collect();
        tracing::info!(pod = %format!("{}/{}", self.ns, self.name), container = %name, pid, restart_count, "container started");
        self.event(
            Some(&name),
            false,
            "Created",
            format!("Created container: {name}"),
        );
        self.event(
            Some(&name),
            false,
            "Started",
            format!("Started container {name}"),
        );
        let tx = self.tx.clone();
        let mut child = child;
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Ev::Exited {
                idx: i,
                epoch,
                status,
                finished: Timestamp::now(),
            });
        });
    }

    /// Everything the shim needs; an error is a `CreateContainerConfigError`.
    async fn container_spec(
        &self,
        spec: &Container,
        img: &ResolvedImage,
    ) -> Result<ContainerSpec, String> {
        let sources = crate::sources::env_sources(&self.k.client, &self.ns, spec)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let mut vars = env::resolve(spec, &self.pod, &self.addrs(), &sources, &img.env)?;
        if !vars.iter().any(|(k, _)| k == "PATH") {
            vars.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        if !vars.iter().any(|(k, _)| k == "HOSTNAME") {
            vars.push(("HOSTNAME".into(), self.name.clone()));
        }
        let map: HashMap<String, String> = vars.iter().cloned().collect();
        let argv = command::argv(
            spec.command.as_deref(),
            spec.args.as_deref(),
            &img.entrypoint,
            &img.cmd,
            &map,
        );
        let mut mounts = Vec::new();
        if let (Some(bin), Some(entry)) = (&img.binary, img.entrypoint.first()) {
            mounts.push(MountSpec {
                source: bin.clone(),
                target: PathBuf::from(entry),
                read_only: true,
            });
        }
        mounts.extend(self.volume_mounts(spec, &map)?);
        let (uid, gid, groups) = self.user(spec, img)?;
        let working_dir = spec
            .working_dir
            .clone()
            .or_else(|| img.working_dir.clone())
            .unwrap_or_else(|| "/".into());
        Ok(ContainerSpec {
            scratch: self.pod_dir.join(".scratch").join(&spec.name),
            mounts,
            process: Process {
                uid,
                gid,
                groups,
                working_dir,
                argv,
                env: vars,
                parent_pid: self.k.pid,
            },
        })
    }

    fn volume_mounts(
        &self,
        spec: &Container,
        env: &HashMap<String, String>,
    ) -> Result<Vec<MountSpec>, String> {
        let Some(paths) = &self.volumes else {
            return Err("volumes are not ready".into());
        };
        let mut out = Vec::new();
        for m in spec.volume_mounts.iter().flatten() {
            let base = paths
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => Some(command::expand(e, env)),
                _ => None,
            };
            let source = match sub {
                Some(s) if s.split('/').any(|p| p == "..") || s.starts_with('/') => {
                    return Err(format!(
                        "subPath {s:?} must be a relative path without '..'"
                    ));
                }
                Some(s) => {
                    let p = base.join(&s);
                    if !p.exists() {
                        std::fs::create_dir_all(&p)
                            .map_err(|e| format!("creating subPath {}: {e}", p.display()))?;
                    }
                    p
                }
                None => base.clone(),
            };
            out.push(MountSpec {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        Ok(out)
    }

    /// uid, gid and supplementary groups (fsGroup and supplementalGroups).
    fn user(&self, spec: &Container, img: &ResolvedImage) -> Result<Identity, String> {
        let psc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        let csc = spec.security_context.as_ref();
        let id = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        let uid = id(csc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|s| s.run_as_user)))
        .or(img.uid);
        let gid = id(csc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|s| s.run_as_group)))
        .or(img.gid);
        let non_root = csc
            .and_then(|s| s.run_as_non_root)
            .or(psc.and_then(|s| s.run_as_non_root));
        if non_root == Some(true) && uid.unwrap_or(0) == 0 {
            return Err("container has runAsNonRoot and image will run as root".into());
        }
        let mut groups: Vec<u32> = psc
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| u32::try_from(g).ok())
            .collect();
        if let Some(g) = id(psc.and_then(|s| s.fs_group)) {
            groups.push(g);
        }
        groups.extend(gid);
        groups.sort_unstable();
        groups.dedup();
        Ok((uid, gid, groups))
    }
}

/// A process record for a start that failed before a process existed; its exit is
/// reported at once.
fn placeholder(epoch: u64, log: PathBuf, process: Process) -> Proc {
    Proc {
        pid: 0,
        epoch,
        started: Instant::now(),
        started_at: Timestamp::now(),
        process,
        log,
        stop_deadline: None,
        killed: false,
    }
}
