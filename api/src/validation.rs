//! Cross-field rules of a StreamJoinJob spec, in two forms with one message each:
//! CEL rules that the API server enforces (`x-kubernetes-validations` in the CRD),
//! and [`StreamJoinJobSpec::validate`], the same checks in Rust. The Rust twin lets
//! the operator report an invalid spec that reached it anyway (a CRD installed
//! without the rules, an older API server) and lets the runtime check a manifest
//! read from a file.

use crate::duration::HumanDuration;
use crate::job::StreamJoinJobSpec;
// The rules and messages are defined next to the schema's use of them; they stay
// reachable here, where callers have always found them.
pub use crate::rules::*;
use crate::spec::{OnMissingCheckpoint, PodTemplate, SavepointsSpec, SecurityProtocol, TopicRef};

/// One failed rule: the field path (from `spec`) and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.{}: {}", self.field, self.message)
    }
}

/// Every rule that failed, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct SpecViolations(pub Vec<Violation>);

fn render(list: &[Violation]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_zero(d: &HumanDuration) -> bool {
    d.as_duration().is_zero()
}

fn topic(t: &TopicRef) -> Option<&str> {
    (!t.topic.is_empty()).then_some(t.topic.as_str())
}

/// The scheme of an object-store location (`s3`, `gs`, `az`) with a bucket and no
/// credentials in it; None for anything else.
fn cloud_scheme(location: &str) -> Option<&str> {
    let (scheme, rest) = location.split_once("://")?;
    let bucket = rest.split('/').next().unwrap_or_default();
    let ok = ["s3", "gs", "az"].contains(&scheme)
        && !bucket.is_empty()
        && !bucket.contains([':', '@'])
        && !location.contains('@');
    ok.then_some(scheme)
}

/// The rules of the savepoint store's settings (twins of the CEL rules of `spec.savepoints`).
fn savepoint_store_violations(s: &SavepointsSpec) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let location = s.location.as_deref();
    let scheme = location.and_then(cloud_scheme);
    if let Some(l) = location
        && scheme.is_none()
        && !((l.starts_with('/') || l.starts_with("file:///")) && !l.contains('@'))
    {
        out.push(("savepoints", MSG_SAVEPOINT_SCHEME));
    }
    let s3_settings = s.endpoint.is_some() || s.region.is_some() || s.path_style == Some(true);
    if s3_settings && scheme != Some("s3") {
        out.push(("savepoints", MSG_SAVEPOINT_S3_ONLY));
    }
    if s.credentials.is_some() && scheme.is_none() {
        out.push(("savepoints", MSG_SAVEPOINT_CREDENTIALS));
    }
    out
}

/// The rules of the pod template's volumes and mounts (twins of its CEL rules).
fn pod_template_violations(pt: &PodTemplate) -> Vec<&'static str> {
    let mut out = Vec::new();
    let names = pt
        .volumes
        .iter()
        .map(|v| v.name.as_str())
        .chain(pt.volume_mounts.iter().map(|m| m.name.as_str()));
    if names.into_iter().any(|n| OPERATOR_VOLUMES.contains(&n)) {
        out.push(MSG_POD_VOLUME_NAMES);
    }
    let shadows = |path: &str| {
        OPERATOR_MOUNT_PATHS
            .iter()
            .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    };
    if pt.volume_mounts.iter().any(|m| shadows(&m.mount_path)) {
        out.push(MSG_POD_MOUNT_PATHS);
    }
    if pt
        .volume_mounts
        .iter()
        .any(|m| !pt.volumes.iter().any(|v| v.name == m.name))
    {
        out.push(MSG_POD_MOUNT_VOLUME);
    }
    out
}

impl StreamJoinJobSpec {
    /// Checks the cross-field rules (the Rust twin of the CRD's CEL rules). Empty topics
    /// are allowed here (a local run reads files), so topic rules compare set topics only.
    pub fn validate(&self) -> Result<(), SpecViolations> {
        let mut out = Vec::new();
        let mut fail = |field: &str, message: &str| {
            out.push(Violation {
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };

        let impressions = topic(&self.inputs.impressions);
        let plays = topic(&self.inputs.plays);
        let output = topic(&self.output);
        let dead = topic(&self.dead_letter);
        let late = self.late_output.as_ref().and_then(topic);
        let clash = |a: Option<&str>, others: &[Option<&str>]| a.is_some() && others.contains(&a);
        if clash(impressions, &[plays]) {
            fail("inputs", MSG_INPUT_TOPICS);
        }
        if clash(output, &[impressions, plays]) {
            fail("output.topic", MSG_OUTPUT_TOPIC);
        }
        if clash(dead, &[impressions, plays, output]) {
            fail("deadLetter.topic", MSG_DEAD_LETTER_TOPIC);
        }
        if clash(late, &[impressions, plays, output, dead]) {
            fail("lateOutput.topic", MSG_LATE_TOPIC);
        }

        let keys = &self.join.key_fields;
        if keys.len() != 2 || keys[0] == keys[1] {
            fail("join.keyFields", MSG_KEY_FIELDS);
        }
        if is_zero(&self.join.window) {
            fail("join.window", POSITIVE_DURATION.message);
        }
        if is_zero(&self.watermarks.idle_timeout) {
            fail("watermarks.idleTimeout", POSITIVE_DURATION.message);
        }
        if self
            .watermarks
            .inactivity_timeout
            .as_ref()
            .is_some_and(is_zero)
        {
            fail("watermarks.inactivityTimeout", POSITIVE_DURATION.message);
        }
        if self
            .watermarks
            .alignment_max_drift
            .as_ref()
            .is_some_and(is_zero)
        {
            fail("watermarks.alignmentMaxDrift", POSITIVE_DURATION.message);
        }
        if is_zero(&self.checkpoints.interval) {
            fail("checkpoints.interval", POSITIVE_DURATION.message);
        }
        if self.savepoints.interval.as_ref().is_some_and(is_zero) {
            fail("savepoints.interval", POSITIVE_DURATION.message);
        }
        if self.savepoints.location.is_none()
            && (self.savepoints.interval.is_some() || self.savepoints.trigger_nonce.is_some())
        {
            fail("savepoints", MSG_SAVEPOINT_LOCATION);
        }
        for (field, message) in savepoint_store_violations(&self.savepoints) {
            fail(field, message);
        }
        for message in pod_template_violations(&self.pod_template) {
            fail("podTemplate", message);
        }

        let kafka = &self.kafka;
        if matches!(
            kafka.security_protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        ) && kafka.sasl.is_none()
        {
            fail("kafka.sasl", MSG_SASL);
        }
        if kafka.tls.is_some()
            && !matches!(
                kafka.security_protocol,
                SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
            )
        {
            fail("kafka.tls", MSG_TLS);
        }

        let a = &self.autoscaler;
        if let (Some(min), Some(max)) = (a.min_parallelism, a.max_parallelism)
            && min > max
        {
            fail("autoscaler", MSG_AUTOSCALER_BOUNDS);
        }
        if a.enabled && (a.min_parallelism.is_none() || a.max_parallelism.is_none()) {
            fail("autoscaler", MSG_AUTOSCALER_ENABLED);
        }
        if is_zero(&a.catch_up_duration) {
            fail("autoscaler.catchUpDuration", POSITIVE_DURATION.message);
        }
        if let (Some(min), Some(max)) = (self.audit.min_join_ratio, self.audit.max_join_ratio)
            && min > max
        {
            fail("audit", MSG_JOIN_RATIO);
        }
        if self.recovery.on_missing_checkpoint == OnMissingCheckpoint::Timestamp
            && self.recovery.from_timestamp.is_none()
        {
            fail("recovery", MSG_RECOVERY_TIMESTAMP);
        }

        if out.is_empty() {
            Ok(())
        } else {
            Err(SpecViolations(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{LocalSecretRef, SavepointCredentials};

    fn valid() -> StreamJoinJobSpec {
        let mut s = StreamJoinJobSpec::local_default();
        s.inputs.impressions.topic = "impressions".into();
        s.inputs.plays.topic = "plays".into();
        s.output.topic = "joined".into();
        s.dead_letter.topic = "dlq".into();
        s
    }

    #[test]
    fn local_default_and_a_typical_spec_are_valid() {
        assert_eq!(StreamJoinJobSpec::local_default().validate(), Ok(()));
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn output_equal_to_an_input_is_rejected_with_the_cel_message() {
        let mut s = valid();
        s.output.topic = "plays".into();
        let err = s.validate().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].message, MSG_OUTPUT_TOPIC);
        assert!(err.to_string().starts_with("spec.output.topic: "));
    }

    #[test]
    fn cross_field_rules_each_report_their_field() {
        let mut s = valid();
        s.dead_letter.topic = "joined".into();
        s.late_output = Some(TopicRef {
            topic: "impressions".into(),
        });
        s.join.key_fields = vec!["profile_id".into(), "profile_id".into()];
        s.join.window = HumanDuration::from_secs(0);
        s.watermarks.inactivity_timeout = Some(HumanDuration::from_secs(0));
        s.autoscaler.min_parallelism = Some(5);
        s.autoscaler.max_parallelism = Some(2);
        s.recovery.on_missing_checkpoint = OnMissingCheckpoint::Timestamp;
        s.kafka.security_protocol = SecurityProtocol::SaslSsl;
        s.savepoints.trigger_nonce = Some(1);
        let fields: Vec<String> = s
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|v| v.field)
            .collect();
        for f in [
            "deadLetter.topic",
            "lateOutput.topic",
            "join.keyFields",
            "join.window",
            "watermarks.inactivityTimeout",
            "autoscaler",
            "recovery",
            "kafka.sasl",
            "savepoints",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn savepoint_store_settings_are_checked_against_the_location_scheme() {
        let with = |location: Option<&str>, f: fn(&mut SavepointsSpec)| {
            let mut s = valid();
            s.savepoints.location = location.map(str::to_owned);
            f(&mut s.savepoints);
            s.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let none = |_: &mut SavepointsSpec| {};
        for ok in [
            "/savepoints",
            "file:///mnt/sp",
            "s3://bucket",
            "s3://bucket/a/b",
            "gs://b/p",
            "az://container/p",
        ] {
            assert_eq!(with(Some(ok), none), "", "{ok}");
        }
        for bad in [
            "relative",
            "http://host/x",
            "s3://",
            "s3:///x",
            "s3://key:secret@bucket/x",
            "file://host/x",
        ] {
            assert!(
                with(Some(bad), none).contains(MSG_SAVEPOINT_SCHEME),
                "{bad}"
            );
        }
        let s3_settings = |s: &mut SavepointsSpec| {
            s.endpoint = Some("http://127.0.0.1:9000".into());
            s.region = Some("eu-west-1".into());
            s.path_style = Some(true);
            s.credentials = Some(SavepointCredentials {
                secret_ref: LocalSecretRef {
                    name: "s3-keys".into(),
                },
            });
        };
        assert_eq!(with(Some("s3://bucket/p"), s3_settings), "");
        let gs = with(Some("gs://bucket/p"), s3_settings);
        assert!(gs.contains(MSG_SAVEPOINT_S3_ONLY), "{gs}");
        assert!(!gs.contains(MSG_SAVEPOINT_CREDENTIALS), "{gs}");
        let local = with(Some("/savepoints"), s3_settings);
        assert!(local.contains(MSG_SAVEPOINT_CREDENTIALS), "{local}");
        // pathStyle: false says nothing.
        assert_eq!(with(None, |s| s.path_style = Some(false)), "");
    }

    #[test]
    fn pod_template_volumes_must_not_clash_with_or_shadow_the_operators() {
        use k8s_openapi::api::core::v1::{Volume, VolumeMount};
        let check = |volumes: &[&str], mounts: &[(&str, &str)]| {
            let mut s = valid();
            s.pod_template.volumes = volumes
                .iter()
                .map(|n| Volume {
                    name: (*n).into(),
                    ..Volume::default()
                })
                .collect();
            s.pod_template.volume_mounts = mounts
                .iter()
                .map(|(n, p)| VolumeMount {
                    name: (*n).into(),
                    mount_path: (*p).into(),
                    ..VolumeMount::default()
                })
                .collect();
            s.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(check(&["sp"], &[("sp", "/savepoints")]), "");
        assert_eq!(check(&["sp"], &[("sp", "/var/lib/streamjoin-extra")]), "");
        assert!(check(&["data"], &[]).contains(MSG_POD_VOLUME_NAMES));
        assert!(check(&["sp", "tmp"], &[("tmp", "/x")]).contains(MSG_POD_VOLUME_NAMES));
        for shadow in [
            "/var/lib/streamjoin",
            "/var/lib/streamjoin/",
            "/tmp/x",
            "/etc/streamjoin/a",
        ] {
            let e = check(&["sp"], &[("sp", shadow)]);
            assert!(e.contains(MSG_POD_MOUNT_PATHS), "{shadow}: {e}");
            assert!(e.starts_with("spec.podTemplate: "), "{e}");
        }
        assert!(check(&[], &[("sp", "/savepoints")]).contains(MSG_POD_MOUNT_VOLUME));
    }

    #[test]
    fn the_pod_template_rules_name_the_operators_volumes_and_paths() {
        for name in OPERATOR_VOLUMES {
            assert!(POD_TEMPLATE_RULES[0].rule.contains(&format!("'{name}'")));
            assert!(MSG_POD_VOLUME_NAMES.contains(name));
        }
        for path in OPERATOR_MOUNT_PATHS {
            assert!(POD_TEMPLATE_RULES[1].rule.contains(&format!("'{path}'")));
            assert!(MSG_POD_MOUNT_PATHS.contains(path));
        }
    }

    #[test]
    fn null_inactivity_timeout_disables_it_and_is_valid() {
        let mut s = valid();
        s.watermarks.inactivity_timeout = None;
        assert_eq!(s.validate(), Ok(()));
    }
}
