//! Shared by the packaging tests: repository paths, the external tools (helm,
//! kubectl, lua5.1, promtool; installed by `scripts/tools.sh`), multi-document
//! YAML and the committed CRD.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

pub fn repo_file(rel: &str) -> PathBuf {
    // The runner's value: a test binary reused from a shared target directory
    // may have been compiled in another checkout.
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
    .join(rel)
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Whether generated files should be rewritten instead of compared.
pub fn bless() -> bool {
    std::env::var("STREAMJOIN_BLESS").is_ok_and(|v| v == "1")
}

/// Compares a committed copy with its source; with `STREAMJOIN_BLESS=1`, rewrites it.
pub fn assert_copy(source: &str, copy: &str) {
    let want = read(source);
    if bless() {
        std::fs::write(repo_file(copy), &want).unwrap_or_else(|e| panic!("writing {copy}: {e}"));
        return;
    }
    assert!(
        read(copy) == want,
        "{copy} differs from {source}: run the tests with STREAMJOIN_BLESS=1 to copy it again"
    );
}

/// Every non-empty document of a multi-document YAML stream.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("YAML: {e}\n{text}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("YAML: {e}"))
}

/// A tool given by an environment variable, else by one of the names on PATH or
/// in the tool cache.
fn tool(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(var)
        && !p.is_empty()
        && Path::new(&p).is_file()
    {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = PathBuf::from(home).join(".cache/streamjoin/tools");
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    if let Ok(entries) = std::fs::read_dir(&cache) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn required(var: &str, names: &[&str]) -> PathBuf {
    tool(var, names).unwrap_or_else(|| {
        panic!(
            "{} not found: run `bash scripts/test.sh` (or `source scripts/tools.sh`), which installs it, or set {var}",
            names[0]
        )
    })
}

pub fn helm() -> PathBuf {
    required("STREAMJOIN_HELM", &["helm"])
}

pub fn lua() -> PathBuf {
    required("STREAMJOIN_LUA", &["lua5.1"])
}

pub fn promtool() -> PathBuf {
    required("STREAMJOIN_PROMTOOL", &["promtool"])
}

pub fn kubectl() -> Option<PathBuf> {
    tool("STREAMJOIN_KUBECTL", &["kubectl"])
}

/// Runs a command, returning stdout on success and stderr on failure.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub const CHART: &str = "charts/streamjoin-operator";
pub const RELEASE_NAMESPACE: &str = "streamjoin-system";

/// `helm template` of the chart with the release name the plain manifests use
/// (so that names match) and `--set`-style arguments; Err with helm's message.
pub fn try_render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(helm());
    cmd.arg("template")
        .arg("streamjoin-operator")
        .arg(repo_file(CHART))
        .args(["--namespace", RELEASE_NAMESPACE]);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    run(&mut cmd).map(|text| yaml_docs(&text))
}

pub fn render(sets: &[&str]) -> Vec<Value> {
    try_render(sets).unwrap_or_else(|e| panic!("{e}"))
}

/// `kubectl kustomize DIR`, or None (with a message) when kubectl is absent.
pub fn kustomize(dir: &str) -> Option<Vec<Value>> {
    let Some(kubectl) = kubectl() else {
        println!("kubectl not found: skipping the rendering of {dir}");
        return None;
    };
    let text = run(Command::new(kubectl).arg("kustomize").arg(repo_file(dir)))
        .unwrap_or_else(|e| panic!("{e}"));
    Some(yaml_docs(&text))
}

pub fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn of_kind<'a>(objs: &'a [Value], k: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| kind(o) == k).collect()
}

pub fn one<'a>(objs: &'a [Value], k: &str) -> &'a Value {
    let found = of_kind(objs, k);
    assert_eq!(found.len(), 1, "expected one {k}, found {}", found.len());
    found[0]
}

/// The committed CRD, parsed.
pub fn committed_crd() -> Value {
    yaml(&read("crds/streamjoinjob.yaml"))
}

/// An object without the metadata an installer adds (labels, annotations).
pub fn without_added_metadata(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v["metadata"].as_object_mut() {
        meta.remove("labels");
        meta.remove("annotations");
    }
    v
}

/// The value with every number as a float: kustomize rewrites `1.0` as `1`, which
/// the API server reads the same.
pub fn numbers_as_floats(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n.clone()), Value::Number),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), numbers_as_floats(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}
