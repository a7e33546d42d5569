//! Edges file → file of one crate: from `use` declarations (grouped trees included)
//! and from qualified paths in code (`crate::a::f()`, `super::X`, `self::m::Y`, and
//! `m::f()` where `m` is a child module or a module brought in by a `use`; also a
//! string that is exactly such a path, as in `#[serde(with = "crate::m")]`). A path
//! resolves to the deepest module of the crate it names; the edge goes to that
//! module's file. `mod x;` declarations are not edges.

use std::collections::BTreeMap;

use crate::lex::{Kind, Token};
use crate::modules::{CrateTree, ModPath};

/// `from` uses something of `to` first at line `line` of `from` (indices into
/// `CrateTree::files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub line: usize,
}

/// One path of a `use` tree and the name it brings into scope.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UsePath {
    segments: Vec<String>,
    name: Option<String>,
    line: usize,
}

/// Every distinct edge of the crate, with the first line that makes it.
pub fn edges(tree: &CrateTree) -> Vec<Edge> {
    let mut first: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for file in 0..tree.files.len() {
        for (to, line) in file_targets(tree, file) {
            if to != file {
                let entry = first.entry((file, to)).or_insert(line);
                *entry = (*entry).min(line);
            }
        }
    }
    first
        .into_iter()
        .map(|((from, to), line)| Edge { from, to, line })
        .collect()
}

/// The files `file` uses, with the line of each use.
fn file_targets(tree: &CrateTree, file: usize) -> Vec<(usize, usize)> {
    let tokens = &tree.files[file].tokens;
    let mut aliases: BTreeMap<String, ModPath> = BTreeMap::new();
    let mut targets = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let here = tree.module_at(file, i);
        if is_use_declaration(tokens, i) {
            let mut paths = Vec::new();
            let mut j = i + 1;
            parse_use_tree(tokens, &mut j, &[], &mut paths);
            for path in paths {
                let Some((module, whole)) = resolve(tree, &here, &aliases, &path.segments) else {
                    continue;
                };
                targets.push((tree.modules[&module], path.line));
                if let (true, Some(name)) = (whole, path.name) {
                    aliases.insert(name, module);
                }
            }
            i = skip_past_semicolon(tokens, j);
        } else if let Some(segments) = string_path(tree, &tokens[i], &here, &aliases) {
            if let Some((module, _)) = resolve(tree, &here, &aliases, &segments) {
                targets.push((tree.modules[&module], tokens[i].line));
            }
            i += 1;
        } else if let Some((segments, line, end)) = code_path(tree, tokens, i, &here, &aliases) {
            if let Some((module, _)) = resolve(tree, &here, &aliases, &segments) {
                targets.push((tree.modules[&module], line));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    targets
}

/// `use` starting a declaration (not `+ use<'a>` precise capturing).
fn is_use_declaration(tokens: &[Token], i: usize) -> bool {
    tokens[i].is("use")
        && tokens
            .get(i + 1)
            .is_some_and(|t| t.is_ident() || t.is("::") || t.is("{"))
}

fn skip_past_semicolon(tokens: &[Token], mut i: usize) -> usize {
    while i < tokens.len() && !tokens[i].is(";") {
        i += 1;
    }
    i + 1
}

/// Parses one use tree at `*i` (after `use`, or inside a group), appending its paths.
fn parse_use_tree(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<UsePath>) {
    let mut segments = prefix.to_vec();
    while let Some(t) = tokens.get(*i) {
        if t.is("::") {
            *i += 1;
        } else if t.is("{") {
            *i += 1;
            parse_group(tokens, i, &segments, out);
            return;
        } else if t.is("*") {
            *i += 1;
            out.push(UsePath {
                segments,
                name: None,
                line: t.line,
            });
            return;
        } else if t.is_ident() {
            segments.push(t.text.clone());
            *i += 1;
            if tokens.get(*i).is_some_and(|n| n.is("::")) {
                continue;
            }
            let name = use_name(tokens, i, &segments);
            out.push(UsePath {
                segments,
                name,
                line: t.line,
            });
            return;
        } else {
            return;
        }
    }
}

/// The members of `{ a, b::c, … }` up to and past the closing brace.
fn parse_group(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<UsePath>) {
    while let Some(t) = tokens.get(*i) {
        if t.is("}") {
            *i += 1;
            return;
        }
        let before = *i;
        parse_use_tree(tokens, i, prefix, out);
        if tokens.get(*i).is_some_and(|n| n.is(",")) || *i == before {
            *i += 1;
        }
    }
}

/// The name a use path brings into scope: its alias after `as`, else its last
/// segment (the one before a trailing `self`).
fn use_name(tokens: &[Token], i: &mut usize, segments: &[String]) -> Option<String> {
    if tokens.get(*i).is_some_and(|t| t.is("as")) {
        let alias = tokens.get(*i + 1).map(|t| t.text.clone());
        *i += 2;
        return alias.filter(|a| a != "_");
    }
    match segments {
        [.., parent, last] if last == "self" => Some(parent.clone()),
        [.., last] => Some(last.clone()),
        [] => None,
    }
}

/// A qualified path in code starting at `i` (`crate::…`, `super::…`, `self::…`, or
/// `m::…` with `m` a known module name): its segments, line and the index past it.
fn code_path(
    tree: &CrateTree,
    tokens: &[Token],
    i: usize,
    here: &ModPath,
    aliases: &BTreeMap<String, ModPath>,
) -> Option<(Vec<String>, usize, usize)> {
    let t = &tokens[i];
    if !t.is_ident() || !tokens.get(i + 1).is_some_and(|n| n.is("::")) {
        return None;
    }
    // Part of a longer path, `$crate::` in a macro, `pub(in crate::x)`, or a method
    // call with a turbofish (`.status::<T>()`).
    if i > 0 && ["::", "$", "in", "."].iter().any(|p| tokens[i - 1].is(p)) {
        return None;
    }
    let keyword = matches!(t.text.as_str(), "crate" | "super" | "self");
    if !keyword && !aliases.contains_key(&t.text) && !is_child(tree, here, &t.text) {
        return None;
    }
    let mut segments = vec![t.text.clone()];
    let mut j = i + 1;
    while tokens.get(j).is_some_and(|s| s.is("::"))
        && tokens.get(j + 1).is_some_and(|s| s.is_ident())
    {
        segments.push(tokens[j + 1].text.clone());
        j += 2;
    }
    Some((segments, t.line, j))
}

/// A string literal that is a path of the crate (`"crate::schema::f"`, `"schema::f"`).
fn string_path(
    tree: &CrateTree,
    token: &Token,
    here: &ModPath,
    aliases: &BTreeMap<String, ModPath>,
) -> Option<Vec<String>> {
    if token.kind != Kind::Literal || !token.text.contains("::") {
        return None;
    }
    let segments: Vec<String> = token.text.split("::").map(str::to_string).collect();
    let is_ident = |s: &String| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let first = segments.first()?;
    let known = matches!(first.as_str(), "crate" | "super" | "self")
        || aliases.contains_key(first)
        || is_child(tree, here, first);
    (known && segments.iter().all(is_ident)).then_some(segments)
}

fn is_child(tree: &CrateTree, here: &ModPath, name: &str) -> bool {
    let mut child = here.clone();
    child.push(name.to_string());
    tree.modules.contains_key(&child)
}

/// The deepest module of the crate `segments` names from module `here`, and whether
/// every segment was a module. `None` for a path outside the crate.
fn resolve(
    tree: &CrateTree,
    here: &ModPath,
    aliases: &BTreeMap<String, ModPath>,
    segments: &[String],
) -> Option<(ModPath, bool)> {
    let first = segments.first()?;
    let (mut module, mut rest) = match first.as_str() {
        "crate" => (ModPath::new(), &segments[1..]),
        "self" => (here.clone(), &segments[1..]),
        "super" => {
            let supers = segments.iter().take_while(|s| *s == "super").count();
            let keep = here.len().checked_sub(supers)?;
            (here[..keep].to_vec(), &segments[supers..])
        }
        name if is_child(tree, here, name) => (here.clone(), segments),
        name => (aliases.get(name)?.clone(), &segments[1..]),
    };
    let mut whole = true;
    while let Some((segment, tail)) = rest.split_first() {
        rest = tail;
        if segment == "self" {
            continue;
        }
        let mut next = module.clone();
        next.push(segment.clone());
        if !tree.modules.contains_key(&next) {
            whole = false;
            break;
        }
        module = next;
    }
    tree.modules
        .contains_key(&module)
        .then_some((module, whole))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::tokenize;

    fn paths(src: &str) -> Vec<(String, Option<String>)> {
        let tokens = tokenize(src);
        let mut out = Vec::new();
        let mut i = 1;
        parse_use_tree(&tokens, &mut i, &[], &mut out);
        out.into_iter()
            .map(|p| (p.segments.join("::"), p.name))
            .collect()
    }

    #[test]
    fn grouped_use_trees_expand_to_each_path() {
        let found = paths("use crate::{a::X, b::{self, Y as Z}, c::*};");
        let expected = [
            ("crate::a::X", Some("X")),
            ("crate::b::self", Some("b")),
            ("crate::b::Y", Some("Z")),
            ("crate::c", None),
        ];
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(p, n)| (p.to_string(), n.map(str::to_string)))
            .collect();
        assert_eq!(found, expected);
    }
}
