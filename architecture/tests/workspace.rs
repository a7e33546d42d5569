//! The layout rules checked on this repository.

use std::path::{Path, PathBuf};

use streamjoin_architecture::{MAX_FUNCTION_LINES, Report, check};

fn workspace() -> Report {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
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
