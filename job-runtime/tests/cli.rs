//! The command line as scripts use it.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_streamjoin-runtime");

#[test]
fn demo_runs_and_prints_a_readable_summary() {
    let out = tempfile::tempdir().expect("tempdir");
    let res = Command::new(BIN)
        .args([
            "demo",
            "--events",
            "30000",
            "--admin-addr",
            "127.0.0.1:0",
            "--output",
        ])
        .arg(out.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    for needle in [
        "records in",
        "malformed",
        "late",
        "duplicates",
        "entries emitted",
        "take fraction",
        "events/s",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("_summary.json")).expect("summary written"),
    )
    .expect("json");
    assert!(summary["entries"].as_u64().unwrap_or(0) > 5_000);
    assert_eq!(summary["live_entries_at_end"], 0);
    // The generator injects late records at 0.1%; on-time records must never be late.
    let late = summary["late"].as_u64().unwrap_or(u64::MAX);
    assert!(late <= 30_000 / 500, "{late} late records");
}

/// The `data-values` of every plotted series, by series name.
fn plotted_series(html: &str) -> Vec<(String, Vec<f64>)> {
    html.split("data-series=\"")
        .skip(1)
        .map(|rest| {
            let name = rest.split('"').next().unwrap_or_default().to_string();
            let values = rest
                .split("data-values=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or_default()
                .split(',')
                .filter(|v| !v.is_empty())
                .map(|v| v.parse().expect("numeric value"))
                .collect();
            (name, values)
        })
        .collect()
}

#[test]
fn demo_writes_an_html_report_with_four_plots_next_to_its_output() {
    let out = tempfile::tempdir().expect("tempdir");
    // Rate-limited to about a second, so the run spans several engine ticks.
    let res = Command::new(BIN)
        .args([
            "demo",
            "--events",
            "60000",
            "--rate",
            "60000",
            "--admin-addr",
            "127.0.0.1:0",
            "--output",
        ])
        .arg(out.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let report = out.path().join("_report.html");
    assert!(
        stdout.contains(&format!("report with plots   {}", report.display())),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg ").count(), 4, "one svg per plot");
    for title in [
        "Watermark progression",
        "Live entries",
        "Entries inserted vs evicted per interval",
        "Throughput",
    ] {
        assert!(html.contains(&format!("<figcaption>{title}</figcaption>")));
    }
    let series = plotted_series(&html);
    let names: Vec<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "job watermark",
            "live entries",
            "inserted",
            "evicted",
            "records read",
            "run average"
        ]
    );
    for (name, values) in &series {
        assert!(values.len() >= 2, "{name}: {values:?}");
    }
    let get = |name: &str| &series.iter().find(|(n, _)| n == name).expect(name).1;
    // Event time only moves forward; the state filled up and was emptied at the end.
    let wm = get("job watermark");
    assert!(wm.windows(2).all(|w| w[0] <= w[1]), "{wm:?}");
    assert!(wm.iter().all(|t| *t > 1.0e12), "{wm:?}");
    assert!(get("live entries").iter().any(|n| *n > 0.0));
    assert_eq!(get("live entries").last(), Some(&0.0));
    assert!(get("inserted").iter().any(|n| *n > 0.0));
    assert!(get("evicted").iter().any(|n| *n > 0.0));
    assert!(get("records read").iter().any(|n| *n > 0.0));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

#[test]
fn replay_reads_the_job_manifest_and_writes_all_outputs() {
    let input = tempfile::tempdir().expect("tempdir");
    let t = 1_700_000_000_000i64;
    write(
        &input.path().join("impressions-0.jsonl"),
        &format!(
            "{}\n{}\nnot json\n",
            format_args!(
                r#"{{"type":"impression","event_id":"a","event_time":{t},"member":1,"show":2,"row":1,"rank":1,"device":"tv"}}"#
            ),
            format_args!(
                r#"{{"type":"impression","event_id":"b","event_time":{},"member":1,"show":2,"row":1,"rank":1,"device":"tv"}}"#,
                t + 3_600_000
            ),
        ),
    );
    write(&input.path().join("plays-0.jsonl"), "");
    let job = input.path().join("job.yaml");
    write(
        &job,
        "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata:\n  name: replay\nspec:\n  join:\n    keyFields: [member, show]\n    window: 30m\n  watermarks:\n    inactivityTimeout: null\n",
    );
    let out = tempfile::tempdir().expect("tempdir");
    let res = Command::new(BIN)
        .args(["replay", "--input"])
        .arg(input.path())
        .arg("--output")
        .arg(out.path())
        .arg("--job")
        .arg(&job)
        .output()
        .expect("runs");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let entries = std::fs::read_to_string(out.path().join("entries-0.jsonl")).expect("entries");
    // A 30-minute window splits the two impressions an hour apart into two entries.
    assert_eq!(entries.lines().count(), 2, "{entries}");
    assert!(
        entries.starts_with(r#"{"member":1,"show":2,"window_start":"#),
        "{entries}"
    );
    let dead =
        std::fs::read_to_string(out.path().join("_dead-letter.jsonl")).expect("dead letters");
    assert!(dead.contains("invalid_json"));
    assert!(out.path().join("_late.jsonl").exists());
    assert!(out.path().join("_summary.json").exists());
    let report = std::fs::read_to_string(out.path().join("_report.html")).expect("report");
    assert_eq!(report.matches("<svg ").count(), 4);
}

#[test]
fn replay_of_a_missing_directory_fails_with_a_clear_error() {
    let out = tempfile::tempdir().expect("tempdir");
    let res = Command::new(BIN)
        .args(["replay", "--input", "/nonexistent-input", "--output"])
        .arg(out.path())
        .output()
        .expect("runs");
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("/nonexistent-input"), "{stderr}");
}

#[test]
fn invalid_manifest_is_rejected_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = dir.path().join("bad.yaml");
    write(
        &job,
        "apiVersion: streamjoin.dev/v1alpha1\nkind: StreamJoinJob\nmetadata: {name: bad}\nspec:\n  join:\n    window: four hours\n",
    );
    write(&dir.path().join("impressions-0.jsonl"), "");
    write(&dir.path().join("plays-0.jsonl"), "");
    let res = Command::new(BIN)
        .args(["replay", "--input"])
        .arg(dir.path())
        .arg("--output")
        .arg(dir.path().join("out"))
        .arg("--job")
        .arg(&job)
        .output()
        .expect("runs");
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("bad.yaml") && stderr.contains("four hours"),
        "{stderr}"
    );
}

#[test]
fn a_missing_input_directory_is_named_once_with_the_os_error_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("no-such-input");
    let res = Command::new(BIN)
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .expect("runs");
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    let shown = input.display().to_string();
    assert_eq!(stderr.matches(&shown).count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read input directory"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists(), "nothing was created");
}
