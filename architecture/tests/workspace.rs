//! The layout rules checked on this repository.

use std::path::{Path, PathBuf};

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
