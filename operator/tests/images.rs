//! The Dockerfiles: multi-stage, a small final image, a non-root user that
//! matches the uid the pods run as, and the binaries the manifests start.

mod common;

use common::*;
use streamjoin_operator::build::statefulset::RUNTIME_UID;

struct Stage {
    from: String,
    lines: Vec<String>,
}

/// Instructions (continuation lines joined, comments dropped) grouped by stage.
fn stages(text: &str) -> Vec<Stage> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body.trim_end());
            cur.push(' ');
        } else {
            cur.push_str(t);
            joined.push(std::mem::take(&mut cur));
        }
    }
    let mut out: Vec<Stage> = Vec::new();
    for ins in joined {
        if let Some(from) = ins.strip_prefix("FROM ") {
            out.push(Stage {
                from: from.to_owned(),
                lines: Vec::new(),
            });
        } else if let Some(stage) = out.last_mut() {
            stage.lines.push(ins);
        }
    }
    out
}

fn check(file: &str, binary: &str) {
    let s = stages(&read(file));
    assert!(s.len() >= 2, "{file}: not multi-stage");
    let build = &s[0];
    assert!(build.from.contains(" AS build"), "{file}: {}", build.from);
    assert!(
        build
            .lines
            .iter()
            .any(|l| l.contains("cargo build --release --locked") && l.contains(binary)),
        "{file}: does not build {binary}"
    );
    let last = s.last().expect("final stage");
    assert!(
        last.from.starts_with("gcr.io/distroless/"),
        "{file}: final image {} is not distroless",
        last.from
    );
    assert!(
        last.lines
            .iter()
            .any(|l| l.starts_with("COPY --from=build") && l.contains(binary)),
        "{file}: the binary is not copied from the build stage"
    );
    let user = last
        .lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap_or_else(|| panic!("{file}: no USER in the final stage"));
    let uid: i64 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("{file}: USER {user} is not numeric"));
    assert_eq!(uid, RUNTIME_UID, "{file}: runs as {uid}");
    assert!(
        last.lines
            .iter()
            .any(|l| l.starts_with("ENTRYPOINT") && l.contains(&format!("/usr/local/bin/{binary}"))),
        "{file}: entrypoint"
    );
}

#[test]
fn operator_image_is_multi_stage_distroless_and_non_root() {
    check("docker/operator.Dockerfile", "streamjoin-operator");
    // The chart runs the operator as the image's user.
    let values = yaml(&read("charts/streamjoin-operator/values.yaml"));
    assert_eq!(values["securityContext"]["runAsUser"], RUNTIME_UID);
}

#[test]
fn runtime_image_is_multi_stage_distroless_and_non_root() {
    check("docker/runtime.Dockerfile", "streamjoin-runtime");
    let text = read("docker/runtime.Dockerfile");
    for pkg in ["libclang-dev", "g++", "zlib1g-dev", "libssl-dev"] {
        assert!(text.contains(pkg), "runtime build stage lacks {pkg}");
    }
}

#[test]
fn dockerfile_parser_sees_a_root_final_stage() {
    let s = stages("FROM rust AS build\nRUN cargo \\\n  build\nFROM debian\nUSER root\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].lines, ["RUN cargo build"]);
    assert_eq!(s[1].lines, ["USER root"]);
}
