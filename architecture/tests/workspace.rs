//! The layout rules checked on this repository.

use std::path::{Path, PathBuf};

use streamjoin_architecture::workspace::collect_sources;
use streamjoin_architecture::{MAX_FUNCTION_LINES, Report, check};

fn workspace() -> Report {
    // Cargo sets it when running the test too; read at run time, it names this
    // checkout even when the binary was built from another one sharing the target dir.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let root: PathBuf = Path::new(&manifest_dir).join("..");
    match check(&root) {
        Ok(report) => report,
        Err(e) => panic!("checking the workspace at {}: {e}", root.display()),
    }
}

#[test]
fn every_member_is_checked() {
    let report = workspace();
    for name in [
        "streamjoin-api (lib)",
        "streamjoin-operator (lib)",
        "streamjoin-architecture (lib)",
    ] {
        assert!(
            report.crates.iter().any(|c| c.name == name && c.files > 0),
            "{name} missing from the report:\n{report}"
        );
    }
}

#[test]
fn no_import_cycle_between_files_of_a_crate() {
    let report = workspace();
    assert_eq!(
        report.cycle_count(),
        0,
        "import cycles:\n{}",
        report.cycles_text()
    );
}

#[test]
fn no_function_over_150_lines_outside_tests() {
    let report = workspace();
    assert_eq!(MAX_FUNCTION_LINES, 150);
    assert!(
        report.long_functions.is_empty(),
        "{}",
        report.functions_text()
    );
}

/// A test binary may be reused from the shared target directory after it was
/// compiled in another checkout (CI builds in its own clone): a path baked in
/// with `env!("CARGO_MANIFEST_DIR")` then names that checkout, which may be gone.
/// So the compile-time value is only ever the fallback of the runner's
/// `std::env::var("CARGO_MANIFEST_DIR")`, on the same line or the line before.
#[test]
fn the_manifest_dir_is_read_at_run_time_with_the_compile_time_value_as_fallback() {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let root = Path::new(&manifest_dir).join("..");
    let mut files = std::collections::BTreeMap::new();
    if let Err(e) = collect_sources(&root, Path::new(""), &mut files) {
        panic!("reading the sources under {}: {e}", root.display());
    }
    let baked = concat!("env!(\"", "CARGO_MANIFEST_DIR", "\")");
    let at_run_time = concat!("var(\"", "CARGO_MANIFEST_DIR", "\")");
    let mut offending = Vec::new();
    for (file, text) in &files {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let guarded = line.contains(at_run_time)
                || i.checked_sub(1)
                    .is_some_and(|j| lines[j].contains(at_run_time));
            let comment = line.trim_start().starts_with("//");
            if line.contains(baked) && !guarded && !comment {
                offending.push(format!("{}:{}", file.display(), i + 1));
            }
        }
    }
    assert!(
        files.len() > 100,
        "only {} files found under {}",
        files.len(),
        root.display()
    );
    assert!(
        offending.is_empty(),
        "a compile-time CARGO_MANIFEST_DIR without the run-time value first:\n{}",
        offending.join("\n")
    );
}
