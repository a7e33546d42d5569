//! `docs/spec-reference.md` is generated from the committed CRD's schema; this
//! test regenerates it and fails when the committed file is stale. Rewrite it
//! with `STREAMJOIN_BLESS=1 cargo nextest run --workspace --release -E 'binary(spec_reference)'`.

mod common;

use common::*;
use serde_json::Value;

const OUT: &str = "docs/spec-reference.md";

fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn code(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    format!("`{}`", s.replace('|', "\\|"))
}

fn type_of(s: &Value) -> String {
    if s["x-kubernetes-int-or-string"] == true {
        return "int or string".to_owned();
    }
    let base = match s["type"].as_str() {
        Some("array") => format!("[]{}", type_of(&s["items"])),
        Some("object") if s.get("additionalProperties").is_some() => {
            format!("map[string]{}", type_of(&s["additionalProperties"]))
        }
        Some(t) => match s["format"].as_str() {
            Some(f) => format!("{t} ({f})"),
            None => t.to_owned(),
        },
        None if s["x-kubernetes-preserve-unknown-fields"] == true => "any".to_owned(),
        None => "any".to_owned(),
    };
    if s["nullable"] == true {
        format!("{base}, nullable")
    } else {
        base
    }
}

fn constraints(s: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = s["enum"].as_array() {
        let vals: Vec<String> = e.iter().filter(|v| !v.is_null()).map(code).collect();
        out.push(format!("one of {}", vals.join(", ")));
    }
    for (key, label) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ] {
        if let Some(v) = s.get(key) {
            out.push(format!("{label} {v}"));
        }
    }
    if let Some(p) = s["pattern"].as_str() {
        out.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    for r in s["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let msg = r["message"].as_str().unwrap_or_default();
        out.push(format!("rule: {}", cell(msg)));
    }
    out
}

/// The object schema a field leads to (itself, or the items of an array).
fn nested(s: &Value) -> Option<&Value> {
    if s.get("properties").is_some() {
        Some(s)
    } else if s["type"] == "array" && s["items"].get("properties").is_some() {
        Some(&s["items"])
    } else if s["additionalProperties"].get("properties").is_some() {
        Some(&s["additionalProperties"])
    } else {
        None
    }
}

fn anchor(path: &str) -> String {
    path.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// One section per object, depth first, in schema order.
fn section(path: &str, s: &Value, out: &mut String) {
    let level = if path.contains('.') { "###" } else { "##" };
    out.push_str(&format!("\n{level} `{path}`\n\n"));
    if let Some(d) = s["description"].as_str() {
        out.push_str(&format!("{}\n\n", cell(d)));
    }
    let rules = s["x-kubernetes-validations"].as_array();
    if let Some(rules) = rules {
        out.push_str("Rules:\n\n");
        for r in rules {
            out.push_str(&format!(
                "- {} (`{}`)\n",
                cell(r["message"].as_str().unwrap_or_default()),
                r["rule"].as_str().unwrap_or_default().replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(props) = s["properties"].as_object() else {
        return;
    };
    out.push_str("| Field | Type | Required | Default | Description |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    let mut children = Vec::new();
    for (name, p) in props {
        let child = format!("{path}.{name}");
        let (type_cell, item_rules) = match nested(p) {
            Some(n) => {
                children.push((child.clone(), n));
                let t = format!("[{}](#{})", type_of(p), anchor(&child));
                (t, Vec::new())
            }
            None => (type_of(p), constraints(p)),
        };
        let mut desc = cell(p["description"].as_str().unwrap_or_default());
        let mut extra = item_rules;
        if p["type"] == "array" && nested(p).is_none() {
            extra.extend(
                constraints(&p["items"])
                    .into_iter()
                    .map(|c| format!("items: {c}")),
            );
        }
        if nested(p).is_some() {
            extra.extend(
                constraints(p)
                    .into_iter()
                    .filter(|c| !c.starts_with("rule:")),
            );
        }
        if !extra.is_empty() {
            if !desc.is_empty() {
                desc.push(' ');
            }
            desc.push_str(&format!("({})", extra.join("; ")));
        }
        let default = p.get("default").map(code).unwrap_or_default();
        let req = if required.contains(&name.as_str()) {
            "yes"
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{name}` | {type_cell} | {req} | {default} | {desc} |\n"
        ));
    }
    for (child, n) in children {
        section(&child, n, out);
    }
}

fn generate(crd: &Value) -> String {
    let names = &crd["spec"]["names"];
    let mut out = String::new();
    out.push_str("# StreamJoinJob reference\n\n");
    out.push_str(
        "<!-- Generated from crds/streamjoinjob.yaml by operator/tests/spec_reference.rs; do not edit.\n     Regenerate: STREAMJOIN_BLESS=1 cargo nextest run --workspace --release -E 'binary(spec_reference)' -->\n\n",
    );
    for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
        let version = v["name"].as_str().unwrap_or_default();
        out.push_str(&format!(
            "`apiVersion: {}/{version}`, `kind: {}` (plural `{}`, short name{} {}; scope {}).\n",
            crd["spec"]["group"].as_str().unwrap_or_default(),
            names["kind"].as_str().unwrap_or_default(),
            names["plural"].as_str().unwrap_or_default(),
            if names["shortNames"].as_array().is_some_and(|a| a.len() > 1) {
                "s"
            } else {
                ""
            },
            names["shortNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            crd["spec"]["scope"].as_str().unwrap_or_default(),
        ));
        let root = &v["schema"]["openAPIV3Schema"];
        if let Some(d) = root["description"].as_str() {
            out.push_str(&format!("\n{}\n", cell(d)));
        }
        let sub = &v["subresources"];
        if sub.get("status").is_some() || sub.get("scale").is_some() {
            out.push_str("\nSubresources: ");
            let mut parts = Vec::new();
            if sub.get("status").is_some() {
                parts.push("`status`".to_owned());
            }
            if let Some(scale) = sub.get("scale") {
                parts.push(format!(
                    "`scale` (replicas `{}`, selector `{}`)",
                    scale["specReplicasPath"].as_str().unwrap_or_default(),
                    scale["labelSelectorPath"].as_str().unwrap_or_default()
                ));
            }
            out.push_str(&format!("{}.\n", parts.join(", ")));
        }
        if let Some(cols) = v["additionalPrinterColumns"].as_array() {
            out.push_str(
                "\n`kubectl get` columns:\n\n| Column | Type | Path |\n| --- | --- | --- |\n",
            );
            for c in cols {
                out.push_str(&format!(
                    "| {} | {} | `{}` |\n",
                    c["name"].as_str().unwrap_or_default(),
                    c["type"].as_str().unwrap_or_default(),
                    c["jsonPath"].as_str().unwrap_or_default()
                ));
            }
        }
        if let Some(rules) = root["x-kubernetes-validations"].as_array() {
            out.push_str("\nObject rules:\n\n");
            for r in rules {
                out.push_str(&format!(
                    "- {} (`{}`)\n",
                    cell(r["message"].as_str().unwrap_or_default()),
                    r["rule"].as_str().unwrap_or_default()
                ));
            }
        }
        for top in ["spec", "status"] {
            if let Some(s) = root["properties"].get(top) {
                section(top, s, &mut out);
            }
        }
    }
    out
}

#[test]
fn spec_reference_is_generated_from_the_committed_crd() {
    let generated = generate(&committed_crd());
    if bless() {
        std::fs::write(repo_file(OUT), &generated).unwrap_or_else(|e| panic!("writing {OUT}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(repo_file(OUT)).unwrap_or_default();
    assert!(
        committed == generated,
        "{OUT} is stale: regenerate it with STREAMJOIN_BLESS=1 cargo nextest run --workspace --release -E 'binary(spec_reference)'"
    );
}

#[test]
fn spec_reference_documents_every_spec_field() {
    let doc = generate(&committed_crd());
    fn walk(path: &str, s: &Value, doc: &str) {
        for (name, p) in s["properties"].as_object().into_iter().flatten() {
            assert!(
                doc.contains(&format!("# `{path}`\n")) && doc.contains(&format!("| `{name}` |")),
                "{path}.{name} is not documented"
            );
            if let Some(n) = nested(p) {
                walk(&format!("{path}.{name}"), n, doc);
            }
        }
    }
    let crd = committed_crd();
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    walk("spec", &root["properties"]["spec"], &doc);
    walk("status", &root["properties"]["status"], &doc);
    // A change to the schema changes the document.
    let mut changed = crd.clone();
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["parallelism"]["description"] = Value::String("changed".into());
    assert_ne!(generate(&changed), doc);
}
