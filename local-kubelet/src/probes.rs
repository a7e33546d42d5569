//! Readiness, liveness and startup probes: httpGet and tcpSocket against the pod's
//! address, exec inside the container's mount namespace.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::container::namespace::{ExecSpec, Process};
use crate::container::spawn::{signal_group, spawn_exec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// Schedule and counters of one probe of a running container.
#[derive(Clone, Debug)]
pub struct ProbeState {
    pub kind: Kind,
    pub probe: Probe,
    pub next: Instant,
    pub successes: i32,
    pub failures: i32,
    pub in_flight: bool,
    /// A startup probe that passed is not run again.
    pub done: bool,
}

impl ProbeState {
    pub fn new(kind: Kind, probe: &Probe, started: Instant) -> Self {
        let delay = u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0);
        Self {
            kind,
            probe: probe.clone(),
            next: started + Duration::from_secs(delay),
            successes: 0,
            failures: 0,
            in_flight: false,
            done: false,
        }
    }

    pub fn period(&self) -> Duration {
        Duration::from_secs(
            u64::try_from(self.probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10),
        )
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(
            u64::try_from(self.probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1),
        )
    }

    pub fn success_threshold(&self) -> i32 {
        self.probe.success_threshold.unwrap_or(1).max(1)
    }

    pub fn failure_threshold(&self) -> i32 {
        self.probe.failure_threshold.unwrap_or(3).max(1)
    }
}

/// Where a probe goes.
#[derive(Clone, Debug)]
pub struct Target {
    pub pod_ip: String,
    pub ports: Vec<ContainerPort>,
    pub exe: PathBuf,
    pub pid: i32,
    pub process: Process,
}

/// A named port resolved from the container's ports.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("named port {name:?} is not a port of the container"))?,
        },
    };
    u16::try_from(n).map_err(|_| format!("port {n} is out of range"))
}

/// Status code of an HTTP/1.1 response's first line.
pub fn status_code(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|p| p.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

async fn http_get(
    probe: &k8s_openapi::api::core::v1::HTTPGetAction,
    t: &Target,
) -> Result<(), String> {
    if probe
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        return Err("HTTPS probes are not supported by the local kubelet".into());
    }
    let host = probe.host.clone().unwrap_or_else(|| t.pod_ip.clone());
    let port = resolve_port(&probe.port, &t.ports)?;
    let path = probe.path.clone().unwrap_or_else(|| "/".into());
    let mut stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in probe.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending the probe: {e}"))?;
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        let read = stream
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if read == 0 || buf[..n + read].windows(2).any(|w| w == b"\r\n") {
            n += read;
            break;
        }
        n += read;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    match status_code(&head) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
        None => Err("malformed HTTP response".into()),
    }
}

async fn exec(command: &[String], t: &Target) -> Result<(), String> {
    let spec = ExecSpec {
        target_pid: t.pid,
        process: Process {
            argv: command.to_vec(),
            ..t.process.clone()
        },
    };
    let child = spawn_exec(&t.exe, &spec).map_err(|e| format!("{e:#}"))?;
    let pid = child.id();
    let out = child.wait_with_output().await.map_err(|e| {
        if let Some(p) = pid {
            signal_group(p, libc::SIGKILL);
        }
        format!("waiting for the probe command: {e}")
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(if out.stdout.is_empty() {
            &out.stderr
        } else {
            &out.stdout
        });
        Err(format!(
            "command {command:?} exited with {}: {}",
            out.status,
            text.trim()
        ))
    }
}

/// Runs one probe; `Err` carries the failure message (as in `Unhealthy` events).
pub async fn run(probe: &Probe, t: &Target, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        if let Some(h) = &probe.http_get {
            http_get(h, t).await
        } else if let Some(s) = &probe.tcp_socket {
            let host = s.host.clone().unwrap_or_else(|| t.pod_ip.clone());
            let port = resolve_port(&s.port, &t.ports)?;
            tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"))
        } else if let Some(e) = &probe.exec {
            exec(e.command.as_deref().unwrap_or_default(), t).await
        } else if probe.grpc.is_some() {
            Err("gRPC probes are not supported by the local kubelet".into())
        } else {
            Err("the probe has no handler".into())
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("probe timed out after {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_resolve_from_the_container() {
        let ports = vec![ContainerPort {
            name: Some("admin".into()),
            container_port: 9249,
            ..ContainerPort::default()
        }];
        assert_eq!(
            resolve_port(&IntOrString::String("admin".into()), &ports),
            Ok(9249)
        );
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("8080".into()), &ports),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("web".into()), &ports).is_err());
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code("HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code("garbage"), None);
    }

    #[tokio::test]
    async fn http_and_tcp_probes_reach_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ");
                let line: &[u8] = if ok {
                    b"HTTP/1.1 200 OK\r\n\r\n"
                } else {
                    b"HTTP/1.1 500 Nope\r\n\r\n"
                };
                let _ = s.write_all(line).await;
            }
        });
        let target = Target {
            pod_ip: "127.0.0.1".into(),
            ports: vec![],
            exe: PathBuf::from("/nonexistent"),
            pid: 0,
            process: Process::default(),
        };
        let probe = |path: &str| Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            ..Probe::default()
        };
        let t = Duration::from_secs(2);
        assert_eq!(run(&probe("/ok"), &target, t).await, Ok(()));
        let err = run(&probe("/bad"), &target, t).await.expect_err("500");
        assert!(err.contains("statuscode: 500"), "{err}");
        let tcp = Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Probe::default()
        };
        assert_eq!(run(&tcp, &target, t).await, Ok(()));
    }
}
