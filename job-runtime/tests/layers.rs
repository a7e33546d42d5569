//! The runtime's modules depend one way (docs/architecture.md): a file uses
//! only its own module and the modules below it. This reads the sources, so a
//! `use` that points upwards fails here with the file and the module it names.

use std::path::{Path, PathBuf};

/// The modules of `src/`, bottom first; a module may use those of lower rank.
const LAYERS: &[(&str, u32)] = &[
    ("config", 0),
    ("time", 0),
    ("model", 1),
    ("state", 2),
    ("durability", 3),
    ("io", 4),
    ("control", 5),
    ("engine", 6),
    ("job", 7),
    ("tools", 7),
];

fn rank(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code names as `crate::<module>`, leaving out
/// comments and the unit tests at the end of the file.
fn used_modules(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut used = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !used.contains(&name) {
                used.push(name);
            }
        }
    }
    used
}

#[test]
fn modules_use_only_their_own_and_the_modules_below_them() {
    // The runner's value: a test binary reused from a shared target directory
    // may have been compiled in another checkout.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let src = Path::new(&manifest_dir).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut upward = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap_or(path);
        let module = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs");
        // The crate root declares the modules; the binary is the command line.
        if module == "lib" || module == "main" {
            continue;
        }
        let own = rank(module).unwrap_or_else(|| {
            panic!(
                "{}: module {module} is not in LAYERS (add it, and to docs/architecture.md)",
                rel.display()
            )
        });
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for used in used_modules(&text) {
            checked += 1;
            let Some(r) = rank(&used) else {
                upward.push(format!(
                    "{} uses crate::{used}, not a module",
                    rel.display()
                ));
                continue;
            };
            if used != module && r >= own {
                upward.push(format!(
                    "{} ({module}) uses {used}, which is not below it",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        files.len() > 40 && checked > 60,
        "read {} files and {checked} module references under {}: the scan found too little",
        files.len(),
        src.display()
    );
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn a_use_of_a_higher_module_is_found_and_a_comment_or_test_is_not() {
    let text = "//! see crate::job\n\
                use crate::engine::shard::Shard;\n\
                use crate::model::record::Key; // not crate::tools\n\
                fn f() { crate::time::watermark::MIN_WM; }\n\
                #[cfg(test)]\nmod tests { use crate::tools::demo; }\n";
    assert_eq!(used_modules(text), ["engine", "model", "time"]);
}
