//! The container set-up shim on this machine, without a cluster: mounts stay inside
//! the container's mount namespace and the process runs as the given user.
//! Needs root (skips otherwise, fails under CI=true).

use std::process::Command;

use serde_json::json;

fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the shim tests need root under CI"
    );
    eprintln!("SKIPPED: the shim needs root");
    false
}

#[test]
fn a_container_sees_its_binary_and_volumes_where_the_pod_says_and_the_host_does_not() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(&vol).expect("volume");
    std::fs::write(vol.join("job.yaml"), "name: j\n").expect("file");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::os::unix::fs::chown(&data, Some(65532), Some(65532)).expect("chown");
    // A volume on /tmp, where the other sources live too: they must still be found.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp volume");
    std::fs::write(tmp.join("marker"), "").expect("marker");
    let spec = json!({
        "scratch": dir.path().join("scratch"),
        "mounts": [
            {"source": "/bin/sh", "target": "/opt/streamjoin-shim-test/bin/sh", "read_only": true},
            {"source": vol, "target": "/etc/streamjoin-shim-test", "read_only": true},
            {"source": data, "target": "/var/lib/streamjoin-shim-test", "read_only": false},
            {"source": tmp, "target": "/tmp", "read_only": false}
        ],
        "process": {
            "uid": 65532, "gid": 65532, "groups": [65532],
            "working_dir": "/var/lib/streamjoin-shim-test",
            "argv": ["/opt/streamjoin-shim-test/bin/sh", "-c",
                     "id -u; id -g; pwd; cat /etc/streamjoin-shim-test/job.yaml; touch written && echo wrote; \
                      touch /etc/streamjoin-shim-test/x 2>/dev/null || echo read-only; echo $GREETING; ls /tmp"],
            "env": [["PATH", "/usr/bin:/bin"], ["GREETING", "hello"]],
            "parent_pid": std::process::id()
        }
    });
    std::fs::create_dir_all(dir.path().join("scratch")).expect("scratch");
    let out = Command::new(env!("CARGO_BIN_EXE_streamjoin-local-kubelet"))
        .arg("__container")
        .arg(spec.to_string())
        .env_clear()
        .output()
        .expect("run the shim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "65532",
            "65532",
            "/var/lib/streamjoin-shim-test",
            "name: j",
            "wrote",
            "read-only",
            "hello",
            "marker"
        ]
    );
    assert!(data.join("written").exists(), "writes reach the volume");
    for host in [
        "/opt/streamjoin-shim-test",
        "/etc/streamjoin-shim-test",
        "/var/lib/streamjoin-shim-test",
    ] {
        assert!(
            !std::path::Path::new(host).exists(),
            "{host} leaked onto the host"
        );
    }
}

#[test]
fn a_container_that_cannot_start_exits_128_with_the_reason() {
    if !root_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = json!({
        "scratch": dir.path(),
        "mounts": [],
        "process": {"uid": null, "gid": null, "groups": [], "working_dir": "/",
                    "argv": ["/nonexistent/program"], "env": [], "parent_pid": std::process::id()}
    });
    let out = Command::new(env!("CARGO_BIN_EXE_streamjoin-local-kubelet"))
        .arg("__container")
        .arg(spec.to_string())
        .output()
        .expect("run the shim");
    assert_eq!(out.status.code(), Some(128));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exec /nonexistent/program"), "{stderr}");
}
