//! A runtime's reported counters (`_summary.json`, `/v1/status`) checked
//! against the data set's: `compare --counters FILE`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::contract::Counts;

/// The outcome: a line per reported counter and the number that differ.
#[derive(Debug)]
pub struct CounterCheck {
    pub text: String,
    pub differing: u64,
}

/// Checks every counter of `reported` (a JSON object) that the reference
/// knows; others are listed and not checked. `malformed_by_reason` is compared
/// as a map in which an absent reason counts 0.
pub fn check(counts: &Counts, reported: &Value) -> anyhow::Result<CounterCheck> {
    let Value::Object(reported) = reported else {
        anyhow::bail!("the counters are not a JSON object");
    };
    let mine = counts.to_json();
    let mut text = String::new();
    let mut differing = 0;
    let mut names: Vec<&String> = reported.keys().collect();
    names.sort();
    for name in names {
        let value = &reported[name.as_str()];
        let Some(expected) = mine.get(name.as_str()) else {
            let _ = writeln!(
                text,
                "counts: {name} = {value}: not known to the reference, not checked"
            );
            continue;
        };
        let same = if name == "malformed_by_reason" {
            without_zeros(value) == without_zeros(expected)
        } else {
            value == expected
        };
        if same {
            let _ = writeln!(text, "counts: {name} = {value}: ok");
        } else {
            differing += 1;
            let _ = writeln!(text, "counts: {name} = {value}, expected {expected}");
        }
    }
    let _ = writeln!(
        text,
        "reference counts: {} reported, {differing} differing",
        reported.len()
    );
    Ok(CounterCheck { text, differing })
}

fn without_zeros(v: &Value) -> Option<serde_json::Map<String, Value>> {
    let mut m = v.as_object()?.clone();
    m.retain(|_, n| n.as_u64() != Some(0));
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> Counts {
        let mut c = Counts {
            records: 10,
            malformed: 1,
            late: 2,
            entries: 3,
            ..Counts::default()
        };
        c.malformed_by_reason.insert("invalid_json", 1);
        c
    }

    #[test]
    fn equal_counters_pass_and_unknown_ones_are_listed() {
        let reported = serde_json::json!({"records": 10, "late": 2, "malformed_by_reason": {"invalid_json": 1, "bad_value": 0}, "elapsed_seconds": 1.5});
        let c = check(&counts(), &reported).unwrap();
        assert_eq!(c.differing, 0, "{}", c.text);
        assert!(
            c.text.contains("elapsed_seconds = 1.5: not known"),
            "{}",
            c.text
        );
    }

    #[test]
    fn a_differing_counter_is_reported_with_the_expected_value() {
        let reported = serde_json::json!({"entries": 4, "malformed_by_reason": {"wrong_type": 1}});
        let c = check(&counts(), &reported).unwrap();
        assert_eq!(c.differing, 2, "{}", c.text);
        assert!(
            c.text.contains("counts: entries = 4, expected 3"),
            "{}",
            c.text
        );
    }
}
