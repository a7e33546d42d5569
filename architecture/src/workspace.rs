//! Reads the workspace from disk: the members of the root `Cargo.toml`, each
//! member's package name and the `.rs` files under its `src/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::package::Package;
use crate::report::Report;

/// Checks every member of the workspace at `root`.
pub fn check(root: &Path) -> Result<Report, String> {
    let manifest = root.join("Cargo.toml");
    let text = read(&manifest)?;
    let mut report = Report::default();
    for member in members(root, &text)? {
        let package = load(root, &member)?;
        let (crates, long) = package.check();
        report.crates.extend(crates);
        report.long_functions.extend(long);
    }
    Ok(report)
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The `members = [...]` of the `[workspace]` table (a trailing `/*` lists the
/// directories under it).
pub fn members(root: &Path, manifest: &str) -> Result<Vec<String>, String> {
    let workspace = manifest
        .split("\n[")
        .find(|table| table.trim_start_matches('[').starts_with("workspace]"))
        .ok_or("the root Cargo.toml has no [workspace] table")?;
    let start = workspace
        .find("members")
        .and_then(|at| workspace[at..].find('[').map(|open| at + open + 1))
        .ok_or("the [workspace] table has no members list")?;
    let end = workspace[start..]
        .find(']')
        .ok_or("the members list is not closed")?
        + start;
    let mut members = Vec::new();
    for quoted in workspace[start..end].split('"').skip(1).step_by(2) {
        match quoted.strip_suffix("/*") {
            Some(parent) => members.extend(subdirectories(root, parent)?),
            None => members.push(quoted.to_string()),
        }
    }
    Ok(members)
}

fn subdirectories(root: &Path, parent: &str) -> Result<Vec<String>, String> {
    let dir = root.join(parent);
    let entries = fs::read_dir(&dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
        if entry.path().join("Cargo.toml").is_file() {
            found.push(format!("{parent}/{}", entry.file_name().to_string_lossy()));
        }
    }
    found.sort();
    Ok(found)
}

/// A member's package name and sources.
fn load(root: &Path, member: &str) -> Result<Package, String> {
    let dir = root.join(member);
    let manifest = dir.join("Cargo.toml");
    let name = package_name(&read(&manifest)?)
        .ok_or_else(|| format!("{} has no [package] name", manifest.display()))?;
    let mut sources = BTreeMap::new();
    collect_sources(&dir, Path::new("src"), &mut sources)?;
    Ok(Package {
        name,
        dir: PathBuf::from(member),
        sources,
    })
}

fn package_name(manifest: &str) -> Option<String> {
    let package = manifest
        .split("\n[")
        .find(|t| t.trim_start_matches('[').starts_with("package]"))?;
    package.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Every `.rs` file under `dir/relative`, keyed by its path relative to `dir`.
pub fn collect_sources(
    dir: &Path,
    relative: &Path,
    out: &mut BTreeMap<PathBuf, String>,
) -> Result<(), String> {
    let full = dir.join(relative);
    let entries = match fs::read_dir(&full) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("listing {}: {e}", full.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", full.display()))?;
        let child = relative.join(entry.file_name());
        let file_type = entry
            .file_type()
            .map_err(|e| format!("reading {}: {e}", child.display()))?;
        if file_type.is_dir() {
            collect_sources(dir, &child, out)?;
        } else if child.extension().is_some_and(|e| e == "rs") {
            out.insert(child.clone(), read(&dir.join(&child))?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_package_names_are_read_from_manifests() {
        let root = "[workspace]\nresolver = \"3\"\nmembers = [\n  \"api\",\n  \"operator\",\n]\n\n[workspace.package]\nversion = \"0.1.0\"\n";
        assert_eq!(
            members(Path::new("."), root),
            Ok(vec!["api".to_string(), "operator".to_string()])
        );
        let member = "[package]\nname = \"streamjoin-api\"\nversion.workspace = true\n";
        assert_eq!(package_name(member).as_deref(), Some("streamjoin-api"));
    }
}
