//! Spec-change classes: every spec field belongs to one class (ignore, scale,
//! upgrade, redeploy); the largest class among the changed fields decides the action.

use serde_json::Value;
use streamjoin_api::{ChangeClass, StreamJoinJobSpec};

/// Fields read by the operator only: changing them touches no pod. `state` is
/// handled by suspend/resume, not by the classifier.
const IGNORE: [&str; 11] = [
    "savepoints.interval",
    "savepoints.maxRetained",
    "savepoints.onDelete",
    "savepoints.triggerNonce",
    "autoscaler",
    "checkpoints.volume.autoExpand",
    "watermarks.forceAdvanceNonce",
    "upgradeMode",
    "initialSavepoint",
    "allowNonRestoredState",
    "state",
];
/// Fields whose change makes the old state meaningless for the new job.
const REDEPLOY: [&str; 4] = [
    "inputs",
    "join.keyFields",
    "join.window",
    "kafka.bootstrapServers",
];
const SCALE: [&str; 1] = ["parallelism"];

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The class of one changed field (a dotted spec path).
pub fn class_of(path: &str) -> ChangeClass {
    if IGNORE.iter().any(|p| under(path, p)) {
        ChangeClass::Ignore
    } else if SCALE.iter().any(|p| under(path, p)) {
        ChangeClass::Scale
    } else if REDEPLOY.iter().any(|p| under(path, p)) {
        ChangeClass::Redeploy
    } else {
        ChangeClass::Upgrade
    }
}

fn diff(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let null = Value::Null;
                diff(
                    &path,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(prefix.to_owned()),
        _ => {}
    }
}

/// What an edit from `old` to `new` changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The largest class; `None` when nothing changed.
    pub class: Option<ChangeClass>,
    pub fields: Vec<String>,
}

/// Changed fields (dotted spec paths) and the largest class among them. Pure.
pub fn classify(old: &StreamJoinJobSpec, new: &StreamJoinJobSpec) -> Change {
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        // Unreachable for these types; treat as the safest (largest stateful) class.
        return Change {
            class: Some(ChangeClass::Upgrade),
            fields: vec!["<spec>".into()],
        };
    };
    let mut fields = Vec::new();
    diff("", &a, &b, &mut fields);
    let class = fields.iter().map(|f| class_of(f)).max();
    Change { class, fields }
}

/// The spec as the runtime pods see it: ignore-class fields at their defaults, so
/// that editing them never rolls a pod.
pub fn runtime_view(spec: &StreamJoinJobSpec) -> StreamJoinJobSpec {
    let d = StreamJoinJobSpec::local_default();
    let mut s = spec.clone();
    s.savepoints.interval = d.savepoints.interval;
    s.savepoints.max_retained = d.savepoints.max_retained;
    s.savepoints.on_delete = d.savepoints.on_delete;
    s.savepoints.trigger_nonce = d.savepoints.trigger_nonce;
    s.autoscaler = d.autoscaler;
    s.checkpoints.volume.auto_expand = d.checkpoints.volume.auto_expand;
    s.watermarks.force_advance_nonce = d.watermarks.force_advance_nonce;
    s.upgrade_mode = d.upgrade_mode;
    s.initial_savepoint = d.initial_savepoint;
    s.allow_non_restored_state = d.allow_non_restored_state;
    s.state = d.state;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamjoin_api::{JobState, TopicRef, UpgradeMode};

    fn base() -> StreamJoinJobSpec {
        let mut s = StreamJoinJobSpec::local_default();
        s.kafka.bootstrap_servers = "kafka:9092".into();
        s.inputs.impressions.topic = "impressions".into();
        s.inputs.plays.topic = "plays".into();
        s.parallelism = 2;
        s
    }

    #[test]
    fn no_edit_is_no_change() {
        assert_eq!(classify(&base(), &base()).class, None);
    }

    #[test]
    fn operator_only_fields_are_ignored() {
        let mut n = base();
        n.savepoints.max_retained = 9;
        n.savepoints.trigger_nonce = Some(3);
        n.autoscaler.enabled = true;
        n.checkpoints.volume.auto_expand = Some(streamjoin_api::AutoExpandSpec {
            threshold_percent: 80,
            max_size: "100Gi".into(),
        });
        n.watermarks.force_advance_nonce = Some(1);
        n.upgrade_mode = UpgradeMode::LastState;
        n.state = JobState::Suspended;
        let c = classify(&base(), &n);
        assert_eq!(c.class, Some(ChangeClass::Ignore), "{:?}", c.fields);
        assert!(c.fields.contains(&"savepoints.maxRetained".to_owned()));
        assert!(
            c.fields
                .iter()
                .any(|f| f.starts_with("checkpoints.volume.autoExpand"))
        );
        assert_eq!(
            runtime_view(&n).checkpoints,
            runtime_view(&base()).checkpoints
        );
    }

    #[test]
    fn parallelism_alone_is_a_scale() {
        let mut n = base();
        n.parallelism = 3;
        let c = classify(&base(), &n);
        assert_eq!(c.class, Some(ChangeClass::Scale));
        assert_eq!(c.fields, vec!["parallelism"]);
    }

    #[test]
    fn image_or_config_is_an_upgrade_and_wins_over_scale() {
        let mut n = base();
        n.parallelism = 3;
        n.image = "runtime:2".into();
        n.kafka
            .consumer_properties
            .insert("fetch.min.bytes".into(), "1".into());
        let c = classify(&base(), &n);
        assert_eq!(c.class, Some(ChangeClass::Upgrade));
        assert!(
            c.fields
                .iter()
                .any(|f| f.starts_with("kafka.consumerProperties"))
        );
        assert!(c.fields.contains(&"image".to_owned()));
    }

    #[test]
    fn new_inputs_keys_or_window_are_a_redeploy_and_the_largest_class_wins() {
        for edit in [
            (|s: &mut StreamJoinJobSpec| s.inputs.plays = TopicRef { topic: "p2".into() })
                as fn(&mut StreamJoinJobSpec),
            |s| s.join.key_fields = vec!["a".into(), "b".into()],
            |s| s.join.window = streamjoin_api::HumanDuration::from_secs(60),
            |s| s.kafka.bootstrap_servers = "other:9092".into(),
        ] {
            let mut n = base();
            n.image = "runtime:2".into();
            n.parallelism = 5;
            edit(&mut n);
            assert_eq!(classify(&base(), &n).class, Some(ChangeClass::Redeploy));
        }
    }

    #[test]
    fn savepoint_store_settings_and_credentials_are_an_upgrade() {
        for field in [
            "savepoints.location",
            "savepoints.endpoint",
            "savepoints.region",
            "savepoints.pathStyle",
            "savepoints.credentials.secretRef.name",
        ] {
            assert_eq!(class_of(field), ChangeClass::Upgrade, "{field}");
        }
        let mut n = base();
        n.savepoints.region = Some("eu-west-1".into());
        assert_ne!(runtime_view(&n), runtime_view(&base()));
    }

    #[test]
    fn the_runtime_view_hides_ignored_fields_only() {
        let mut n = base();
        n.savepoints.trigger_nonce = Some(7);
        n.autoscaler.enabled = true;
        n.state = JobState::Suspended;
        assert_eq!(runtime_view(&n), runtime_view(&base()));
        n.image = "runtime:2".into();
        assert_ne!(runtime_view(&n), runtime_view(&base()));
    }
}
