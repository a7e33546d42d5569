//! The Grafana dashboard and the Prometheus alerts: they parse (promtool parses
//! every PromQL expression), cover what operators watch, have runbooks, and use
//! only metrics that the runtime and the operator export.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const DASHBOARD: &str = "dashboards/streamjoin-job.json";
const RULES: &str = "charts/streamjoin-operator/files/prometheus-rules.yaml";
const DEPLOY_RULES: &str = "deploy/monitoring/prometheusrule.yaml";

fn is_name_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'
}

/// Metric names in string literals (`"streamjoin_..."`) of the Rust sources under `dir`.
fn exported_in(dir: &Path, out: &mut BTreeSet<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            exported_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let bytes = text.as_bytes();
            for (i, _) in text.match_indices("\"streamjoin_") {
                let start = i + 1;
                let end = start
                    + bytes[start..]
                        .iter()
                        .take_while(|c| is_name_char(**c))
                        .count();
                if bytes.get(end) == Some(&b'"') && end > start + "streamjoin_".len() {
                    out.insert(text[start..end].to_owned());
                }
            }
        }
    }
}

fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    exported_in(&repo_file("job-runtime/src"), &mut names);
    exported_in(&repo_file("operator/src"), &mut names);
    names
}

/// Metric names a text refers to, with histogram suffixes removed.
fn referenced(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("streamjoin_") {
        if i > 0 && (is_name_char(bytes[i - 1]) || bytes[i - 1].is_ascii_uppercase()) {
            continue;
        }
        let end = i + bytes[i..].iter().take_while(|c| is_name_char(**c)).count();
        let mut name = &text[i..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                name = base;
            }
        }
        if name.len() > "streamjoin_".len() {
            out.insert(name.to_owned());
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("dashboard JSON")
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

fn rules() -> Value {
    yaml(&read(RULES))
}

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let exported = exported();
    assert!(exported.contains("streamjoin_watermark_seconds"));
    assert!(exported.contains("streamjoin_operator_leader"));
    let mut missing = Vec::new();
    for file in [DASHBOARD, RULES, DEPLOY_RULES, "docs/runbooks.md"] {
        for name in referenced(&read(file)) {
            if !exported.contains(&name) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used but not exported by job-runtime/src or operator/src:\n{}",
        missing.join("\n")
    );
}

#[test]
fn metric_name_extraction_ignores_labels_and_histogram_suffixes() {
    let r = referenced(
        r#"histogram_quantile(0.99, rate(streamjoin_checkpoint_duration_seconds_bucket{streamjoinjob="a"}[5m])) / streamjoin_records_in_total"#,
    );
    assert_eq!(
        r,
        BTreeSet::from([
            "streamjoin_checkpoint_duration_seconds".to_owned(),
            "streamjoin_records_in_total".to_owned()
        ])
    );
    // A name the code does not export is caught.
    assert!(!exported().contains("streamjoin_no_such_metric_total"));
}

#[test]
fn dashboard_parses_and_shows_what_the_issue_lists() {
    let d = dashboard();
    assert_eq!(d["uid"], "streamjoin-job");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["datasource", "namespace", "job"]);
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_i64().expect("id")),
            "duplicate panel id"
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        if p["type"] != "row" {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{}", p["title"]);
            for t in targets {
                let e = t["expr"].as_str().expect("expr");
                // Every runtime query is scoped to the selected job.
                if e.contains("streamjoin_") && !e.contains("streamjoin_operator_") {
                    assert!(e.contains(r#"streamjoinjob=~"$job""#), "{e}");
                }
            }
        }
    }
    let used = referenced(&read(DASHBOARD));
    for m in [
        "streamjoin_watermark_seconds",
        "streamjoin_watermark_lag_seconds",
        "streamjoin_idle_partitions",
        "streamjoin_watermark_forced_advances_total",
        "streamjoin_entries_inserted_total",
        "streamjoin_entries_evicted_total",
        "streamjoin_live_entries",
        "streamjoin_state_bytes",
        "streamjoin_checkpoint_duration_seconds",
        "streamjoin_checkpoint_size_bytes",
        "streamjoin_checkpoint_failures_total",
        "streamjoin_consumer_lag_records",
        "streamjoin_records_in_total",
        "streamjoin_output_records_total",
        "streamjoin_malformed_records_total",
        "streamjoin_late_records_total",
        "streamjoin_duplicate_records_total",
        "streamjoin_audit_breached",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
    assert_copy(
        DASHBOARD,
        "charts/streamjoin-operator/files/dashboards/streamjoin-job.json",
    );
}

/// Runs promtool on a rules file written to a temporary directory.
fn promtool_check(rules_yaml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules_yaml).expect("write rules");
    run(Command::new(promtool()).args(["check", "rules"]).arg(&path))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let mut all = Vec::new();
    exprs(&dashboard(), &mut all);
    assert!(all.len() > 30, "{} queries", all.len());
    // Grafana's variables replaced by what they expand to, each query a recording rule.
    let mut doc = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in all.iter().enumerate() {
        let q = e
            .replace("$__rate_interval", "5m")
            .replace("$namespace", ".*")
            .replace("$job", ".*");
        doc.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&q).expect("json string")
        ));
    }
    promtool_check(&doc);
}

#[test]
fn alerts_parse_and_each_has_severity_and_runbook() {
    promtool_check(&read(RULES));
    let r = rules();
    let runbooks = read("docs/runbooks.md").to_lowercase();
    let mut names = BTreeSet::new();
    for a in alerts(&r) {
        let name = a["alert"].as_str().expect("alert name");
        assert!(names.insert(name.to_owned()), "duplicate {name}");
        assert!(
            ["warning", "critical"].contains(&a["labels"]["severity"].as_str().unwrap_or("")),
            "{name}"
        );
        let ann = &a["annotations"];
        for key in ["summary", "description", "runbook", "runbook_url"] {
            assert!(
                ann[key].as_str().is_some_and(|s| s.len() > 10),
                "{name}: {key}"
            );
        }
        let anchor = ann["runbook_url"]
            .as_str()
            .and_then(|u| u.split_once("docs/runbooks.md#"))
            .map(|(_, a)| a.to_owned())
            .unwrap_or_else(|| panic!("{name}: runbook_url is not into docs/runbooks.md"));
        assert_eq!(anchor, name.to_lowercase());
        assert!(
            runbooks.contains(&format!("\n## {anchor}\n")),
            "docs/runbooks.md has no section {name}"
        );
    }
    for want in [
        "StreamJoinWatermarkStalled",
        "StreamJoinCheckpointsFailing",
        "StreamJoinCheckpointTooOld",
        "StreamJoinStateGrowingWithoutBound",
        "StreamJoinConsumerLagGrowing",
        "StreamJoinAuditBreached",
        "StreamJoinJobDegraded",
        "StreamJoinOperatorDown",
    ] {
        assert!(names.contains(want), "no alert {want}");
    }
}

#[test]
fn deploy_and_chart_carry_the_same_alerts() {
    let deploy = yaml(&read(DEPLOY_RULES));
    assert_eq!(deploy["kind"], "PrometheusRule");
    assert_eq!(deploy["spec"], rules());
    let objs = render(&["prometheusRule.enabled=true"]);
    assert_eq!(one(&objs, "PrometheusRule")["spec"], rules());
    // The one value the chart substitutes.
    let objs = render(&[
        "prometheusRule.enabled=true",
        r#"prometheusRule.operatorJobSelector=job="ops/streamjoin""#,
    ]);
    let text = serde_json::to_string(&one(&objs, "PrometheusRule")["spec"]).expect("json");
    assert!(text.contains(r#"up{job=\"ops/streamjoin\"}"#), "{text}");
    assert!(!text.contains(r#"up{job=\"streamjoin-operator\"}"#));
}

/// The alerts evaluated by promtool on synthetic series: each fires on the
/// situation it describes and stays quiet on a healthy job.
#[test]
fn alerts_fire_on_their_situation_and_not_on_a_healthy_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    // promtool compares annotations too; the tests compare labels only.
    let mut r = rules();
    for group in r["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if let Some(rule) = rule.as_object_mut() {
                rule.remove("annotations");
            }
        }
    }
    // JSON is YAML.
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string(&r).expect("json"),
    )
    .expect("write rules");
    std::fs::write(
        dir.path().join("tests.yaml"),
        read("operator/tests/data/alerts_test.yaml"),
    )
    .expect("write tests");
    run(Command::new(promtool())
        .current_dir(dir.path())
        .args(["test", "rules", "tests.yaml"]))
    .unwrap_or_else(|e| panic!("{e}"));
}
