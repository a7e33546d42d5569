//! The module tree of one crate (one target: the lib, or a bin), found by following
//! `mod x;` declarations from its root file; each module path maps to the file
//! holding it (an inline module maps to its file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::items::{inline_scopes, mod_declarations, strip_test_items};
use crate::lex::{Token, tokenize};

/// Module path inside a crate: `[]` is the crate root, `["volume", "expand"]` is
/// `crate::volume::expand`.
pub type ModPath = Vec<String>;

/// One source file of the crate, tokenized, test items removed.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub module: ModPath,
    pub tokens: Vec<Token>,
    pub scopes: Vec<Vec<String>>,
}

#[derive(Debug, Default)]
pub struct CrateTree {
    pub files: Vec<SourceFile>,
    /// Every module (file or inline) → index into `files`.
    pub modules: BTreeMap<ModPath, usize>,
}

impl CrateTree {
    /// Follows `mod` declarations from `root` through `sources` (paths relative to the
    /// package, e.g. `src/lib.rs`). A declared file missing from `sources` is skipped.
    pub fn build(sources: &BTreeMap<PathBuf, String>, root: &Path) -> CrateTree {
        let mut tree = CrateTree::default();
        let mut pending = vec![(root.to_path_buf(), ModPath::new(), true)];
        while let Some((path, module, is_root)) = pending.pop() {
            let Some(text) = sources.get(&path) else {
                continue;
            };
            let tokens = strip_test_items(&tokenize(text));
            let scopes = inline_scopes(&tokens);
            let index = tree.files.len();
            tree.modules.insert(module.clone(), index);
            for scope in &scopes {
                let mut inline = module.clone();
                inline.extend(scope.iter().cloned());
                tree.modules.entry(inline).or_insert(index);
            }
            let dir = children_dir(&path, is_root);
            for decl in mod_declarations(&tokens, &scopes) {
                let mut child_dir = dir.clone();
                child_dir.extend(&decl.inline);
                let mut child_module = module.clone();
                child_module.extend(decl.inline.iter().cloned());
                child_module.push(decl.name.clone());
                if let Some(child) = child_file(sources, &child_dir, &decl.name) {
                    pending.push((child, child_module, false));
                }
            }
            tree.files.push(SourceFile {
                path,
                module,
                tokens,
                scopes,
            });
        }
        tree
    }

    /// The module path of `file`'s code at token `i` (its file's module plus the
    /// inline modules around the token).
    pub fn module_at(&self, file: usize, i: usize) -> ModPath {
        let f = &self.files[file];
        let mut module = f.module.clone();
        module.extend(f.scopes[i].iter().cloned());
        module
    }
}

/// Where the files of `path`'s child modules live: next to a crate root or `mod.rs`,
/// in `foo/` for `foo.rs`.
fn children_dir(path: &Path, is_root: bool) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if is_root || name == "mod.rs" {
        return parent;
    }
    match path.file_stem() {
        Some(stem) => parent.join(stem),
        None => parent,
    }
}

fn child_file(sources: &BTreeMap<PathBuf, String>, dir: &Path, name: &str) -> Option<PathBuf> {
    let flat = dir.join(format!("{name}.rs"));
    let nested = dir.join(name).join("mod.rs");
    [flat, nested].into_iter().find(|p| sources.contains_key(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_map_to_module_paths() {
        let sources: BTreeMap<PathBuf, String> = [
            (
                "src/lib.rs",
                "pub mod a;\npub mod b;\nmod inner { pub mod c; }",
            ),
            ("src/a.rs", "mod deep;"),
            ("src/a/deep.rs", ""),
            ("src/b/mod.rs", ""),
            ("src/inner/c.rs", ""),
            ("src/orphan.rs", ""),
        ]
        .into_iter()
        .map(|(p, s)| (PathBuf::from(p), s.to_string()))
        .collect();
        let tree = CrateTree::build(&sources, Path::new("src/lib.rs"));
        let mut found: Vec<(String, String)> = tree
            .files
            .iter()
            .map(|f| (f.module.join("::"), f.path.display().to_string()))
            .collect();
        found.sort();
        let expected = [
            ("", "src/lib.rs"),
            ("a", "src/a.rs"),
            ("a::deep", "src/a/deep.rs"),
            ("b", "src/b/mod.rs"),
            ("inner::c", "src/inner/c.rs"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(tree.modules.get(&vec!["inner".to_string()]), Some(&0));
    }
}
