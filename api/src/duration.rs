//! Durations in manifests are human strings (`90s`, `2m`, `4h`, `1h30m`), as in
//! Flink and Kubernetes tooling, and are parsed once when the spec is read.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the CRD schema enforces; `humantime` accepts a superset of it.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// A duration written as `<number><unit>` groups: `ms`, `s`, `m`, `h`, `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub fn as_millis_i64(&self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn as_duration(&self) -> Duration {
        self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 500ms, 30s, 2m, 4h, 1h30m)")]
pub struct DurationError {
    input: String,
    reason: String,
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| DurationError {
                input: s.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The compact form the CRD pattern accepts (`1d2h`, `1h30m`, `500ms`); humantime's
        // own formatting writes `1day` or `1month`, which the pattern rejects. Precision
        // below a millisecond is dropped (the pattern has no smaller unit).
        const UNITS: [(u128, &str); 5] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
            (1, "ms"),
        ];
        let mut rest = self.0.as_millis();
        if rest == 0 {
            return f.write_str("0s");
        }
        for (size, unit) in UNITS {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 500ms, 30s, 2m, 4h or 1h30m."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_units_round_trip() {
        for text in [
            "500ms", "30s", "2m", "4h", "1h30m", "1d", "2d3h", "0s", "1m500ms",
        ] {
            let d: HumanDuration = text.parse().expect("valid duration");
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn display_always_matches_the_schema_pattern() {
        let re_ok = |t: &str| {
            // DURATION_PATTERN without a regex engine: digit runs each followed by a unit.
            let mut chars = t.chars().peekable();
            let mut groups = 0;
            while chars.peek().is_some() {
                let mut digits = 0;
                while chars.peek().is_some_and(|c| c.is_ascii_digit()) {
                    chars.next();
                    digits += 1;
                }
                let unit: String =
                    std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphabetic())).collect();
                if digits == 0 || !["ms", "s", "m", "h", "d"].contains(&unit.as_str()) {
                    return false;
                }
                groups += 1;
            }
            groups > 0
        };
        for secs in [0, 1, 59, 61, 3600, 86_400, 40 * 86_400, 400 * 86_400 + 7] {
            let text = HumanDuration::from_secs(secs).to_string();
            assert!(re_ok(&text), "{text}");
            assert_eq!(
                text.parse::<HumanDuration>().expect("parses"),
                HumanDuration::from_secs(secs)
            );
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_input_in_the_message() {
        let err = "four hours".parse::<HumanDuration>().unwrap_err();
        assert!(err.to_string().contains("four hours"));
    }
}
