//! Item-level views of a token stream: removing `#[cfg(test)]` items, the inline
//! module each token sits in, and the `mod x;` declarations of a file.

use crate::lex::{Kind, Token};

/// The tokens without any item under `#[cfg(test)]` (a `mod tests { … }` block, a
/// `mod tests;` declaration, a test-only `fn` or `use`). A file with `#![cfg(test)]`
/// has no tokens left.
pub fn strip_test_items(tokens: &[Token]) -> Vec<Token> {
    if tokens.len() >= 8 && tokens[0].is("#") && tokens[1].is("!") && is_cfg_test(&tokens[1..]) {
        return Vec::new();
    }
    let mut kept = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].is("#") && is_cfg_test(&tokens[i..]) {
            i = item_end(tokens, i + 7);
        } else {
            kept.push(tokens[i].clone());
            i += 1;
        }
    }
    kept
}

/// `#[cfg(test)]` (or `![cfg(test)]`) starts at `tokens[0]`.
fn is_cfg_test(tokens: &[Token]) -> bool {
    let pattern = ["[", "cfg", "(", "test", ")", "]"];
    tokens.len() > pattern.len() && pattern.iter().zip(&tokens[1..]).all(|(p, t)| t.is(p))
}

/// The index just past the item starting at `start` (its further attributes, then up
/// to its `;` or the brace closing its body).
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.kind == Kind::Punct {
            match t.text.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i + 1;
                    }
                }
                ";" if depth == 0 => return i + 1,
                _ => {}
            }
        }
        i += 1;
    }
    tokens.len()
}

/// For each token, the path of inline modules (`mod a { mod b { … } }`) it sits in,
/// relative to its file's module.
pub fn inline_scopes(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut scopes = Vec::with_capacity(tokens.len());
    let mut current: Vec<String> = Vec::new();
    // Brace depth at which each open inline module's body started.
    let mut opened: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        if t.is("{") {
            depth += 1;
            if i >= 2 && tokens[i - 2].is("mod") && tokens[i - 1].is_ident() {
                current.push(tokens[i - 1].text.clone());
                opened.push(depth);
            }
        }
        scopes.push(current.clone());
        if t.is("}") {
            if opened.last() == Some(&depth) {
                opened.pop();
                current.pop();
            }
            depth = depth.saturating_sub(1);
        }
    }
    scopes
}

/// A `mod name;` declaration: the child module's name and the inline module it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModDecl {
    pub inline: Vec<String>,
    pub name: String,
}

pub fn mod_declarations(tokens: &[Token], scopes: &[Vec<String>]) -> Vec<ModDecl> {
    let mut decls = Vec::new();
    for i in 0..tokens.len().saturating_sub(2) {
        if tokens[i].is("mod") && tokens[i + 1].is_ident() && tokens[i + 2].is(";") {
            decls.push(ModDecl {
                inline: scopes[i].clone(),
                name: tokens[i + 1].text.clone(),
            });
        }
    }
    decls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::tokenize;

    #[test]
    fn a_test_module_and_a_test_only_declaration_are_removed() {
        let src = "mod a;\n#[cfg(test)]\nmod tests { use crate::b; fn f() {} }\n#[cfg(test)]\n#[allow(x)]\nmod more;\nfn g() {}";
        let kept = strip_test_items(&tokenize(src));
        let texts: Vec<&str> = kept.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["mod", "a", ";", "fn", "g", "(", ")", "{", "}"]);
    }

    #[test]
    fn inline_modules_scope_their_tokens() {
        let tokens = tokenize("mod a { mod b { fn x() {} } fn y() {} } fn z() {}");
        let scopes = inline_scopes(&tokens);
        let at = |name: &str| {
            let i = tokens.iter().position(|t| t.text == name).unwrap_or(0);
            scopes[i].join("::")
        };
        assert_eq!(
            (at("x").as_str(), at("y").as_str(), at("z").as_str()),
            ("a::b", "a", "")
        );
    }
}
