use std::path::PathBuf;
use std::process::ExitCode;

/// Prints the layout report of the workspace (the argument, or the current
/// directory); exits 1 on an import cycle or a long function, 2 if it cannot read it.
fn main() -> ExitCode {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    match streamjoin_architecture::check(&root) {
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("streamjoin-architecture: {e}");
            ExitCode::from(2)
        }
    }
}
