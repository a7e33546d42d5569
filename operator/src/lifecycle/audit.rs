//! `status.audit` from the pods' output audits (`GET /v1/status` → `audit`): each
//! check's ratio averaged over the pods that measured it, and a bound breached
//! when any pod breached it, named as in `spec.audit`.

use k8s_openapi::jiff::Timestamp;
use streamjoin_api::{AuditSpec, AuditStatus};

use super::pods::ts_string;
use crate::admin::RuntimeStatus;

/// The job's audit, or `None` when no pod reported one.
pub(super) fn from_pods(
    heard: &[&RuntimeStatus],
    spec: &AuditSpec,
    now: Timestamp,
) -> Option<AuditStatus> {
    if heard.iter().all(|s| s.audit.is_empty()) {
        return None;
    }
    let mut out = AuditStatus {
        time: Some(ts_string(now)),
        ..AuditStatus::default()
    };
    for check in ["malformed", "late", "join"] {
        let reports: Vec<_> = heard
            .iter()
            .flat_map(|s| s.audit.iter())
            .filter(|a| a.check == check)
            .collect();
        let ratios: Vec<f64> = reports.iter().filter_map(|a| a.ratio).collect();
        let ratio = (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64);
        match check {
            "malformed" => out.malformed_ratio = ratio,
            "late" => out.late_ratio = ratio,
            _ => out.join_ratio = ratio,
        }
        if let Some(a) = reports.iter().find(|a| a.breached) {
            out.breaches.push(bound(check, a.ratio, spec).to_owned());
        }
    }
    Some(out)
}

/// The `spec.audit` bound a breached check went past.
fn bound(check: &str, ratio: Option<f64>, spec: &AuditSpec) -> &'static str {
    match check {
        "malformed" => "maxMalformedRatio",
        "late" => "maxLateRatio",
        _ if spec
            .min_join_ratio
            .zip(ratio)
            .is_some_and(|(min, r)| r < min) =>
        {
            "minJoinRatio"
        }
        _ => "maxJoinRatio",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::RuntimeAudit;

    fn pod(malformed: f64, join: f64, join_breached: bool) -> RuntimeStatus {
        let a = |check: &str, ratio: f64, breached: bool| RuntimeAudit {
            check: check.into(),
            ratio: Some(ratio),
            breached,
        };
        RuntimeStatus {
            audit: vec![
                a("malformed", malformed, false),
                a("late", 0.0, false),
                a("join", join, join_breached),
            ],
            ..RuntimeStatus::default()
        }
    }

    #[test]
    fn ratios_are_averaged_and_a_breach_in_one_pod_names_its_bound() {
        let spec = AuditSpec {
            min_join_ratio: Some(0.5),
            ..AuditSpec::default()
        };
        let (a, b) = (pod(0.01, 0.6, false), pod(0.03, 0.2, true));
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().expect("time");
        let st = from_pods(&[&a, &b], &spec, now).expect("audit");
        assert!((st.malformed_ratio.expect("ratio") - 0.02).abs() < 1e-9);
        assert!((st.join_ratio.expect("ratio") - 0.4).abs() < 1e-9);
        assert_eq!(st.breaches, ["minJoinRatio"]);
        assert_eq!(st.time.as_deref(), Some("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn no_report_leaves_the_audit_as_it_was() {
        let quiet = RuntimeStatus::default();
        let now = Timestamp::UNIX_EPOCH;
        assert!(from_pods(&[&quiet], &AuditSpec::default(), now).is_none());
    }
}
