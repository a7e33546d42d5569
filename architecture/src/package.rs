//! The check of one package: the import cycles of each of its crates (the lib and
//! every bin are separate crates: a bin using the lib through `streamjoin_x::` is no
//! edge inside the lib) and its long functions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::functions::functions;
use crate::graph::cycles;
use crate::imports::edges;
use crate::modules::CrateTree;
use crate::report::{CrateReport, Cycle, CycleEdge, LongFunction, MAX_FUNCTION_LINES};

/// A package's sources (paths relative to the package directory, like `src/lib.rs`).
#[derive(Debug)]
pub struct Package {
    pub name: String,
    /// The package directory relative to the workspace root, prefixed to reported paths.
    pub dir: PathBuf,
    pub sources: BTreeMap<PathBuf, String>,
}

impl Package {
    /// The crate roots: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, `src/bin/*/main.rs`.
    pub fn roots(&self) -> Vec<(String, PathBuf)> {
        let mut roots = Vec::new();
        for path in self.sources.keys() {
            let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
            let target = match parts.as_slice() {
                ["src", "lib.rs"] => "lib".to_string(),
                ["src", "main.rs"] => "bin".to_string(),
                ["src", "bin", file] if file.ends_with(".rs") => {
                    format!("bin {}", file.trim_end_matches(".rs"))
                }
                ["src", "bin", dir, "main.rs"] => format!("bin {dir}"),
                _ => continue,
            };
            roots.push((format!("{} ({target})", self.name), path.clone()));
        }
        roots
    }

    /// The import cycles of each crate and the functions over the limit.
    pub fn check(&self) -> (Vec<CrateReport>, Vec<LongFunction>) {
        let mut crates = Vec::new();
        let mut long = Vec::new();
        let mut seen = BTreeSet::new();
        for (name, root) in self.roots() {
            let tree = CrateTree::build(&self.sources, &root);
            crates.push(CrateReport {
                name,
                files: tree.files.len(),
                cycles: self.cycles(&tree),
            });
            for file in tree.files.iter().filter(|f| seen.insert(f.path.clone())) {
                long.extend(self.long_functions(&file.path, &file.tokens));
            }
        }
        (crates, long)
    }

    fn cycles(&self, tree: &CrateTree) -> Vec<Cycle> {
        let all = edges(tree);
        let pairs: Vec<(usize, usize)> = all.iter().map(|e| (e.from, e.to)).collect();
        let path = |file: usize| self.dir.join(&tree.files[file].path);
        cycles(tree.files.len(), &pairs)
            .into_iter()
            .map(|component| {
                let mut files: Vec<PathBuf> = component.iter().map(|&f| path(f)).collect();
                files.sort();
                let mut closing: Vec<CycleEdge> = all
                    .iter()
                    .filter(|e| component.contains(&e.from) && component.contains(&e.to))
                    .map(|e| CycleEdge {
                        from: path(e.from),
                        line: e.line,
                        to: path(e.to),
                    })
                    .collect();
                closing.sort_by(|a, b| (&a.from, a.line).cmp(&(&b.from, b.line)));
                Cycle {
                    files,
                    edges: closing,
                }
            })
            .collect()
    }

    fn long_functions(&self, file: &Path, tokens: &[crate::lex::Token]) -> Vec<LongFunction> {
        functions(tokens)
            .into_iter()
            .filter(|f| f.lines > MAX_FUNCTION_LINES)
            .map(|f| LongFunction {
                file: self.dir.join(file),
                line: f.line,
                name: f.name,
                lines: f.lines,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(files: &[(&str, &str)]) -> Package {
        Package {
            name: "p".into(),
            dir: PathBuf::from("p"),
            sources: files
                .iter()
                .map(|(p, s)| (PathBuf::from(p), s.to_string()))
                .collect(),
        }
    }

    fn cycle_files(p: &Package) -> Vec<Vec<String>> {
        let (crates, _) = p.check();
        crates
            .iter()
            .flat_map(|c| &c.cycles)
            .map(|c| c.files.iter().map(|f| f.display().to_string()).collect())
            .collect()
    }

    fn long_function(name: &str, body_lines: usize) -> String {
        let body = "    let _ = 1;\n".repeat(body_lines);
        format!("pub fn {name}() {{\n{body}}}\n")
    }

    #[test]
    fn a_cycle_through_use_declarations_is_found_with_its_edges() {
        let p = package(&[
            ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("src/a.rs", "use crate::b::B;\npub struct A;\n"),
            ("src/b.rs", "use super::c::C;\npub struct B;\n"),
            ("src/c.rs", "\n\nuse crate::a::A;\npub struct C;\n"),
        ]);
        let (crates, _) = p.check();
        let cycle = &crates[0].cycles[0];
        let edges: Vec<String> = cycle
            .edges
            .iter()
            .map(|e| format!("{}:{} -> {}", e.from.display(), e.line, e.to.display()))
            .collect();
        assert_eq!(
            edges,
            [
                "p/src/a.rs:1 -> p/src/b.rs",
                "p/src/b.rs:1 -> p/src/c.rs",
                "p/src/c.rs:3 -> p/src/a.rs"
            ]
        );
    }

    #[test]
    fn a_cycle_through_a_grouped_use_is_found() {
        let p = package(&[
            ("src/lib.rs", "mod a;\nmod m;\n"),
            ("src/m/mod.rs", "mod x;\nmod y;\n"),
            ("src/m/x.rs", "use crate::{a::A, m::{y::{Y, Z}}};\n"),
            ("src/m/y.rs", "pub struct Y;\n"),
            (
                "src/a.rs",
                "pub struct A;\npub fn f() { crate::m::x::g(); }\n",
            ),
        ]);
        assert_eq!(cycle_files(&p), [["p/src/a.rs", "p/src/m/x.rs"]]);
    }

    #[test]
    fn a_cycle_through_qualified_paths_and_module_aliases_is_found() {
        let p = package(&[
            ("src/lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("src/a.rs", "fn f() { super::b::g() }\n"),
            ("src/b.rs", "use crate::c;\nfn g() { c::h() }\n"),
            ("src/c.rs", "fn h() { crate::a::f() }\n"),
        ]);
        assert_eq!(
            cycle_files(&p),
            [["p/src/a.rs", "p/src/b.rs", "p/src/c.rs"]]
        );
    }

    #[test]
    fn a_cycle_through_a_path_in_an_attribute_string_is_found() {
        let p = package(&[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            (
                "src/a.rs",
                "#[serde(with = \"crate::b::f\")]\npub struct A;\n",
            ),
            (
                "src/b.rs",
                "use crate::a::A;\npub fn f() {}\nconst S: &str = \"a::b has no path\";\n",
            ),
        ]);
        assert_eq!(cycle_files(&p), [["p/src/a.rs", "p/src/b.rs"]]);
    }

    #[test]
    fn a_test_module_and_a_mod_declaration_make_no_edge() {
        let p = package(&[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            ("src/a.rs", "mod inner;\npub fn f() { crate::b::g() }\n"),
            ("src/a/inner.rs", "use super::f;\n"),
            (
                "src/b.rs",
                "pub fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::f;\n}\n",
            ),
        ]);
        assert!(cycle_files(&p).is_empty());
    }

    #[test]
    fn a_bin_using_the_lib_is_its_own_crate() {
        let p = package(&[
            ("src/lib.rs", "pub mod a;\npub fn run() { a::f() }\n"),
            ("src/a.rs", "pub fn f() {}\n"),
            (
                "src/main.rs",
                "use p::a;\nfn main() { p::run(); a::f(); }\n",
            ),
        ]);
        let (crates, _) = p.check();
        let names: Vec<(&str, usize, usize)> = crates
            .iter()
            .map(|c| (c.name.as_str(), c.files, c.cycles.len()))
            .collect();
        assert_eq!(names, [("p (lib)", 2, 0), ("p (bin)", 1, 0)]);
    }

    #[test]
    fn a_long_function_is_found_and_one_in_tests_is_not() {
        let lib = format!(
            "{}{}#[cfg(test)]\nmod tests {{\n{}}}\n",
            long_function("short", 148),
            long_function("long", 149),
            long_function("long_test", 300)
        );
        let p = package(&[("src/lib.rs", lib.as_str())]);
        let (_, long) = p.check();
        let found: Vec<(&str, usize, usize)> = long
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.lines))
            .collect();
        assert_eq!(found, [("long", 151, 151)]);
    }

    #[test]
    fn a_nested_function_counts_on_its_own() {
        let inner = long_function("inner", 160).replace('\n', "\n    ");
        let lib = format!("fn outer() {{\n    {inner}\n}}\n");
        let p = package(&[("src/lib.rs", lib.as_str())]);
        let (_, long) = p.check();
        let found: Vec<(&str, usize)> = long.iter().map(|f| (f.name.as_str(), f.lines)).collect();
        assert_eq!(found, [("outer", 165), ("inner", 162)]);
    }
}
