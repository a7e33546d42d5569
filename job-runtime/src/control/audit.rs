//! Audits of the output (the seed's data validation): per interval, the
//! malformed ratio, the late ratio and the join ratio (entries with plays per
//! entry) against the job's `audit` bounds. A breach is reported, never fatal.

use streamjoin_api::AuditSpec;

/// Running totals the audit takes differences of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AuditTotals {
    pub records: f64,
    pub malformed: f64,
    pub late: f64,
    pub entries: f64,
    pub entries_with_plays: f64,
}

/// One audited ratio over an interval; `None` when the interval had nothing to
/// divide by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub ratio: Option<f64>,
    pub breached: bool,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// The checks of the interval from `before` to `now`.
pub fn audit(before: &AuditTotals, now: &AuditTotals, spec: &AuditSpec) -> [Check; 3] {
    let records = now.records - before.records;
    let entries = now.entries - before.entries;
    let malformed = ratio(now.malformed - before.malformed, records);
    let late = ratio(now.late - before.late, records);
    let join = ratio(now.entries_with_plays - before.entries_with_plays, entries);
    let above = |r: Option<f64>, max: Option<f64>| matches!((r, max), (Some(r), Some(m)) if r > m);
    let below = |r: Option<f64>, min: Option<f64>| matches!((r, min), (Some(r), Some(m)) if r < m);
    [
        Check {
            name: "malformed",
            ratio: malformed,
            breached: above(malformed, spec.max_malformed_ratio),
        },
        Check {
            name: "late",
            ratio: late,
            breached: above(late, spec.max_late_ratio),
        },
        Check {
            name: "join",
            ratio: join,
            breached: above(join, spec.max_join_ratio) || below(join, spec.min_join_ratio),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(records: f64, malformed: f64, late: f64, entries: f64, plays: f64) -> AuditTotals {
        AuditTotals {
            records,
            malformed,
            late,
            entries,
            entries_with_plays: plays,
        }
    }

    #[test]
    fn ratios_are_taken_over_the_interval_only() {
        let spec = AuditSpec::default();
        let c = audit(
            &totals(100.0, 50.0, 0.0, 10.0, 0.0),
            &totals(1100.0, 51.0, 10.0, 110.0, 20.0),
            &spec,
        );
        assert_eq!(c[0].ratio, Some(0.001));
        assert_eq!(c[1].ratio, Some(0.01));
        assert_eq!(c[2].ratio, Some(0.2));
        assert!(c.iter().all(|c| !c.breached), "no bounds, no breach");
    }

    #[test]
    fn each_bound_is_breached_on_its_side() {
        let spec = AuditSpec {
            max_malformed_ratio: Some(0.0005),
            max_late_ratio: Some(0.02),
            min_join_ratio: Some(0.25),
            max_join_ratio: Some(0.5),
        };
        let c = audit(
            &AuditTotals::default(),
            &totals(1000.0, 1.0, 10.0, 100.0, 20.0),
            &spec,
        );
        assert!(c[0].breached, "0.001 > 0.0005");
        assert!(!c[1].breached, "0.01 <= 0.02");
        assert!(c[2].breached, "0.2 < 0.25");
        let c = audit(
            &AuditTotals::default(),
            &totals(1000.0, 0.0, 0.0, 100.0, 60.0),
            &spec,
        );
        assert!(c[2].breached, "0.6 > 0.5");
    }

    #[test]
    fn an_empty_interval_breaches_nothing() {
        let spec = AuditSpec {
            min_join_ratio: Some(0.5),
            ..AuditSpec::default()
        };
        let t = totals(10.0, 1.0, 1.0, 5.0, 1.0);
        let c = audit(&t, &t, &spec);
        assert!(c.iter().all(|c| c.ratio.is_none() && !c.breached));
    }
}
