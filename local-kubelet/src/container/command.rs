//! Kubernetes command-line semantics: `$(VAR)` expansion and how `command`/`args`
//! combine with the image's entrypoint and cmd.

use std::collections::HashMap;

/// Expands `$(NAME)` from `env`; `$$` is a literal `$`; an undefined `$(NAME)` and any
/// other `$` stay as written (Kubernetes' `expansion.Expand`).
pub fn expand(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The argv: `command` replaces the entrypoint (and drops the image's cmd), `args`
/// replace the cmd. Only the pod's own strings are expanded.
pub fn argv(
    command: Option<&[String]>,
    args: Option<&[String]>,
    entrypoint: &[String],
    cmd: &[String],
    env: &HashMap<String, String>,
) -> Vec<String> {
    let exp = |v: &[String]| v.iter().map(|s| expand(s, env)).collect::<Vec<_>>();
    match (command, args) {
        (Some(c), Some(a)) => [exp(c), exp(a)].concat(),
        (Some(c), None) => exp(c),
        (None, Some(a)) => [entrypoint.to_vec(), exp(a)].concat(),
        (None, None) => [entrypoint, cmd].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("POD_IP".to_owned(), "127.0.0.5".to_owned()),
            ("A".to_owned(), "x".to_owned()),
        ])
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn variables_expand_and_dollar_dollar_escapes() {
        let e = env();
        assert_eq!(
            expand("--listen $(POD_IP):9249", &e),
            "--listen 127.0.0.5:9249"
        );
        assert_eq!(expand("$$(POD_IP)", &e), "$(POD_IP)");
        assert_eq!(expand("$(MISSING)-$(A)", &e), "$(MISSING)-x");
        assert_eq!(expand("cost $5 $", &e), "cost $5 $");
        assert_eq!(expand("$(unclosed", &e), "$(unclosed");
        assert_eq!(expand("$$$$", &e), "$$");
    }

    #[test]
    fn command_overrides_the_entrypoint_and_args_override_cmd() {
        let e = env();
        let ep = s(&["/entry"]);
        let cmd = s(&["default"]);
        assert_eq!(argv(None, None, &ep, &cmd, &e), s(&["/entry", "default"]));
        let a = s(&["run", "$(A)"]);
        assert_eq!(
            argv(None, Some(&a), &ep, &cmd, &e),
            s(&["/entry", "run", "x"])
        );
        let c = s(&["/bin/sh", "-c"]);
        assert_eq!(argv(Some(&c), None, &ep, &cmd, &e), s(&["/bin/sh", "-c"]));
        assert_eq!(
            argv(Some(&c), Some(&a), &ep, &cmd, &e),
            s(&["/bin/sh", "-c", "run", "x"])
        );
    }
}
