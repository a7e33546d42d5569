//! Functions and their length in lines, from the `fn` line to the closing brace of
//! the body (declarations without a body are skipped; nested functions count on
//! their own, and inside the function around them).

use crate::lex::Token;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub line: usize,
    pub lines: usize,
}

/// Every function with a body in `tokens`, in source order.
pub fn functions(tokens: &[Token]) -> Vec<Function> {
    let mut found = Vec::new();
    for i in 0..tokens.len().saturating_sub(1) {
        if !(tokens[i].is("fn") && tokens[i + 1].is_ident()) {
            continue;
        }
        let Some(open) = body_start(tokens, i + 2) else {
            continue;
        };
        let Some(close) = matching_brace(tokens, open) else {
            continue;
        };
        found.push(Function {
            name: tokens[i + 1].text.clone(),
            line: tokens[i].line,
            lines: tokens[close].line - tokens[i].line + 1,
        });
    }
    found
}

/// The `{` opening the body of a function whose signature starts at `i`, or `None`
/// for a declaration ending in `;`.
fn body_start(tokens: &[Token], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while let Some(t) = tokens.get(i) {
        match t.text.as_str() {
            "(" | "[" if t.is(&t.text) => depth += 1,
            ")" | "]" if t.is(&t.text) => depth = depth.saturating_sub(1),
            "{" if depth == 0 && t.is("{") => return Some(i),
            ";" if depth == 0 && t.is(";") => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

fn matching_brace(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.is("{") {
            depth += 1;
        } else if t.is("}") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::tokenize;

    #[test]
    fn lengths_run_from_the_fn_line_to_the_closing_brace() {
        let src = "trait T {\n    fn declared(&self) -> [u8; 4];\n}\npub async fn outer(\n    x: u8,\n) -> u8 {\n    fn inner() {\n        let s = \"}\";\n    }\n    x\n}\n";
        let found = functions(&tokenize(src));
        let summary: Vec<(&str, usize, usize)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.lines))
            .collect();
        assert_eq!(summary, [("outer", 4, 8), ("inner", 7, 3)]);
    }
}
