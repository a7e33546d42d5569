//! What `compare` found, and its text: counts, up to five examples of each
//! kind, and last one line in the external oracle's format
//! (`E expected, M matched, 0 missing, 0 unexpected, 0 differing, 0 duplicates,
//! 0 tolerated, 0 late-accepted`), so either tool's report reads the same.

use std::fmt::Write as _;

use crate::contract::Counts;

/// How strict the comparison is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Forbid the interleaving-dependent outcomes (`tolerance`): for aligned
    /// runs, which must reproduce the expected output exactly.
    pub strict: bool,
    /// Allow identical copies of an entry (at-least-once delivery).
    pub at_least_once: bool,
}

/// The counts of a comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub expected: u64,
    pub matched: u64,
    pub missing: u64,
    pub unexpected: u64,
    pub differing: u64,
    pub duplicates: u64,
    pub identical_duplicates: u64,
    pub tolerated: u64,
    pub late_accepted: u64,
    /// Mismatching keys that are accepted outcomes (counted in strict mode too).
    pub would_tolerate: u64,
    pub extra_fields: u64,
    /// Distinct (key, window_start) in the output.
    pub actual: u64,
    pub lines: u64,
    pub files: u64,
}

const EXAMPLES: usize = 5;
const KINDS: [&str; 6] = [
    "missing",
    "unexpected",
    "differing",
    "duplicates",
    "tolerated",
    "extra_fields",
];

#[derive(Clone, Debug)]
pub struct Report {
    pub n: Tally,
    pub options: Options,
    /// The input counters of the data set, computed on the way.
    pub counts: Counts,
    examples: Vec<Vec<String>>,
}

impl Report {
    pub fn new(options: Options) -> Report {
        Report {
            n: Tally::default(),
            options,
            counts: Counts::default(),
            examples: vec![Vec::new(); KINDS.len()],
        }
    }

    pub fn example(&mut self, kind: &str, text: String) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind)
            && self.examples[i].len() < EXAMPLES
        {
            self.examples[i].push(text);
        }
    }

    /// Duplicates that are errors: copies that differ always, identical ones
    /// unless at-least-once.
    pub fn duplicate_errors(&self) -> u64 {
        let conflicting = self.n.duplicates - self.n.identical_duplicates;
        conflicting
            + if self.options.at_least_once {
                0
            } else {
                self.n.identical_duplicates
            }
    }

    /// Nothing missing, unexpected, differing, nor a duplicate that is an error.
    pub fn ok(&self) -> bool {
        let n = &self.n;
        n.missing == 0 && n.unexpected == 0 && n.differing == 0 && self.duplicate_errors() == 0
    }

    /// The last line: `reference: E expected, M matched, ...`.
    pub fn summary_line(&self) -> String {
        let n = &self.n;
        format!(
            "reference: {} expected, {} matched, {} missing, {} unexpected, {} differing, {} duplicates, {} tolerated, {} late-accepted{}",
            n.expected,
            n.matched,
            n.missing,
            n.unexpected,
            n.differing,
            n.duplicates,
            n.tolerated,
            n.late_accepted,
            if self.ok() { "" } else { " -- MISMATCH" }
        )
    }

    pub fn render(&self) -> String {
        let n = &self.n;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "compare: {} expected entries; {} actual lines in {} file(s), {} distinct (key, window_start)",
            n.expected, n.lines, n.files, n.actual
        );
        let _ = writeln!(s, "  matched       {}", n.matched);
        let _ = writeln!(s, "  missing       {}", n.missing);
        let _ = writeln!(s, "  unexpected    {}", n.unexpected);
        let _ = writeln!(s, "  differing     {}", n.differing);
        let _ = writeln!(
            s,
            "  duplicates    {} ({} identical, {} not; identical ones allowed only with --at-least-once)",
            n.duplicates,
            n.identical_duplicates,
            n.duplicates - n.identical_duplicates
        );
        let _ = writeln!(
            s,
            "  tolerated     {} expected entries merged differently, {} late events accepted (interleaving-dependent; {})",
            n.tolerated,
            n.late_accepted,
            if self.options.strict {
                "forbidden by --strict"
            } else {
                "allowed, --strict forbids"
            }
        );
        if self.options.strict && n.would_tolerate > 0 {
            let _ = writeln!(
                s,
                "  note: {} of the mismatching keys are outcomes the contract allows for some interleaving",
                n.would_tolerate
            );
        }
        if n.extra_fields > 0 {
            let _ = writeln!(
                s,
                "  extra fields  {} entries carry fields beyond the contract (ignored)",
                n.extra_fields
            );
        }
        for (kind, items) in KINDS.iter().zip(&self.examples) {
            if !items.is_empty() {
                let _ = writeln!(s, "{kind} (first {}):", items.len());
                for item in items {
                    let _ = writeln!(s, "  {item}");
                }
            }
        }
        let _ = writeln!(s, "{}", self.summary_line());
        s
    }
}
