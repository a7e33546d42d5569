//! A small Rust tokenizer: identifiers, punctuation (`::` as one token), literals and
//! lifetimes, with line numbers. Comments are dropped and string/char literals become
//! one opaque token, so nothing inside them is read as a path or a brace.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ident,
    Punct,
    Literal,
    Lifetime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    pub line: usize,
}

impl Token {
    pub fn is(&self, text: &str) -> bool {
        self.text == text && self.kind != Kind::Literal
    }

    pub fn is_ident(&self) -> bool {
        self.kind == Kind::Ident
    }
}

/// Tokens of `src`, in order.
pub fn tokenize(src: &str) -> Vec<Token> {
    let mut lexer = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        line: 1,
        out: Vec::new(),
    };
    lexer.run();
    lexer.out
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    out: Vec<Token>,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) {
        if self.peek(0) == Some('\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn push(&mut self, kind: Kind, text: String, line: usize) {
        self.out.push(Token { kind, text, line });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match (c, self.peek(1)) {
                (c, _) if c.is_whitespace() => self.bump(),
                ('/', Some('/')) => self.line_comment(),
                ('/', Some('*')) => self.block_comment(),
                ('"', _) => {
                    let text = self.quoted_string();
                    self.push(Kind::Literal, text, line);
                }
                ('\'', _) => self.quote(line),
                (c, _) if c.is_alphabetic() || c == '_' => self.word(line),
                (c, _) if c.is_ascii_digit() => self.number(line),
                (':', Some(':')) => {
                    self.bump();
                    self.bump();
                    self.push(Kind::Punct, "::".into(), line);
                }
                (c, _) => {
                    self.bump();
                    self.push(Kind::Punct, c.to_string(), line);
                }
            }
        }
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                return;
            }
            self.bump();
        }
    }

    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == '/' && self.peek(1) == Some('*') {
                depth += 1;
                self.bump();
            } else if c == '*' && self.peek(1) == Some('/') {
                depth -= 1;
                self.bump();
                if depth == 0 {
                    self.bump();
                    return;
                }
            }
            self.bump();
        }
    }

    /// A `"…"` string with escapes, the cursor on the opening quote; returns its raw
    /// content (attributes name functions in strings: `schema_with = "crate::f"`).
    fn quoted_string(&mut self) -> String {
        self.bump();
        let mut content = String::new();
        while let Some(c) = self.peek(0) {
            self.bump();
            match c {
                '\\' => {
                    content.push(c);
                    content.extend(self.peek(0));
                    self.bump();
                }
                '"' => break,
                _ => content.push(c),
            }
        }
        content
    }

    /// A raw string `#…#"…"#…#`; the cursor is on the first `#` or the quote.
    fn raw_string(&mut self) {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            hashes += 1;
            self.bump();
        }
        self.bump();
        while let Some(c) = self.peek(0) {
            self.bump();
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                (0..hashes).for_each(|_| self.bump());
                return;
            }
        }
    }

    fn starts_raw_string(&self) -> bool {
        let mut k = 0;
        while self.peek(k) == Some('#') {
            k += 1;
        }
        self.peek(k) == Some('"')
    }

    /// A char literal (`'a'`, `'\n'`, `'\u{1F600}'`) or a lifetime/label (`'a`).
    fn quote(&mut self, line: usize) {
        let is_char = self.peek(1) == Some('\\') || self.peek(2) == Some('\'');
        self.bump();
        if is_char {
            while let Some(c) = self.peek(0) {
                self.bump();
                match c {
                    '\\' => self.bump(),
                    '\'' => break,
                    _ => {}
                }
            }
            self.push(Kind::Literal, "''".into(), line);
        } else {
            let name = self.take_word();
            self.push(Kind::Lifetime, format!("'{name}"), line);
        }
    }

    fn take_word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek(0) {
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            word.push(c);
            self.bump();
        }
        word
    }

    /// An identifier or keyword, or a prefixed literal (`b"…"`, `r#"…"#`, `b'x'`, `c"…"`)
    /// or a raw identifier (`r#match`).
    fn word(&mut self, line: usize) {
        let word = self.take_word();
        let next = self.peek(0);
        let string_prefix = matches!(word.as_str(), "b" | "c" | "r" | "br" | "cr");
        if string_prefix && word.ends_with('r') && self.starts_raw_string() {
            self.raw_string();
            self.push(Kind::Literal, "\"\"".into(), line);
        } else if string_prefix && next == Some('"') {
            self.quoted_string();
            self.push(Kind::Literal, "\"\"".into(), line);
        } else if word == "b" && next == Some('\'') {
            self.quote(line);
        } else if word == "r" && next == Some('#') {
            self.bump();
            let raw = self.take_word();
            self.push(Kind::Ident, raw, line);
        } else {
            self.push(Kind::Ident, word, line);
        }
    }

    fn number(&mut self, line: usize) {
        let mut text = self.take_word();
        // A fractional part, but not a range (`0..n`) or a method call (`1.max(x)`).
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            text.push('.');
            text.push_str(&self.take_word());
        }
        self.push(Kind::Literal, text, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokenize(src).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn comments_and_chars_are_hidden_and_strings_are_one_token() {
        let src = "// use crate::a;\n/* { /* nested */ } */ let s = \"a \\\" {\"; let c = '{'; let r = r#\"}\"#;";
        let expected = [
            "let", "s", "=", "a \\\" {", ";", "let", "c", "=", "''", ";", "let", "r", "=", "\"\"",
            ";",
        ];
        assert_eq!(texts(src), expected);
        let string = tokenize("\"crate::b\"").remove(0);
        assert_eq!(
            (string.kind, string.text.as_str()),
            (Kind::Literal, "crate::b")
        );
    }

    #[test]
    fn lifetimes_path_separators_and_lines() {
        let tokens = tokenize("fn f<'a>(x: &'a str)\n  -> crate::X {}");
        assert!(
            tokens
                .iter()
                .any(|t| t.kind == Kind::Lifetime && t.text == "'a")
        );
        let sep = tokens.iter().find(|t| t.text == "::").map(|t| t.line);
        assert_eq!(sep, Some(2));
    }
}
