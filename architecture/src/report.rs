//! What the check found, and how it is printed.

use std::fmt;
use std::path::PathBuf;

/// A function longer than this many lines (outside tests) is a violation.
pub const MAX_FUNCTION_LINES: usize = 150;

#[derive(Debug, Default)]
pub struct Report {
    pub crates: Vec<CrateReport>,
    pub long_functions: Vec<LongFunction>,
}

/// One crate (a package's lib or one of its bins).
#[derive(Debug)]
pub struct CrateReport {
    pub name: String,
    pub files: usize,
    pub cycles: Vec<Cycle>,
}

/// Files that import each other in a circle, and the imports between them.
#[derive(Debug, PartialEq, Eq)]
pub struct Cycle {
    pub files: Vec<PathBuf>,
    pub edges: Vec<CycleEdge>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct CycleEdge {
    pub from: PathBuf,
    pub line: usize,
    pub to: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFunction {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub lines: usize,
}

impl Report {
    pub fn cycle_count(&self) -> usize {
        self.crates.iter().map(|c| c.cycles.len()).sum()
    }

    pub fn is_clean(&self) -> bool {
        self.cycle_count() == 0 && self.long_functions.is_empty()
    }

    /// The cycles part of the report alone.
    pub fn cycles_text(&self) -> String {
        let mut out = String::new();
        for krate in &self.crates {
            out.push_str(&format!(
                "{}: {} files, {} import cycle(s)\n",
                krate.name,
                krate.files,
                krate.cycles.len()
            ));
            for (n, cycle) in krate.cycles.iter().enumerate() {
                let files: Vec<String> = cycle
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                out.push_str(&format!("  cycle {}: {}\n", n + 1, files.join(", ")));
                for e in &cycle.edges {
                    out.push_str(&format!(
                        "    {}:{} -> {}\n",
                        e.from.display(),
                        e.line,
                        e.to.display()
                    ));
                }
            }
        }
        out
    }

    /// The long-functions part of the report alone.
    pub fn functions_text(&self) -> String {
        let mut out = format!(
            "functions over {MAX_FUNCTION_LINES} lines outside tests: {}\n",
            self.long_functions.len()
        );
        for f in &self.long_functions {
            out.push_str(&format!(
                "  {}:{} {} ({} lines)\n",
                f.file.display(),
                f.line,
                f.name,
                f.lines
            ));
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.cycles_text(), self.functions_text())
    }
}
