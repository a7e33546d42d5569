//! Schema overrides. They keep the CRD small (embedded core types such as
//! tolerations, affinity and env are accepted as free-form objects and validated
//! by the API server when the operator copies them into the pod template), and
//! they carry the CEL rules (`x-kubernetes-validations`) for what the structural
//! schema alone cannot say (defined in [`crate::rules`]). Every rule has a Rust twin in [`crate::validation`],
//! with the same message, so the operator and the runtime report the same text.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::duration::DURATION_PATTERN;
use crate::rules::{self as v, CelRule};

pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

pub fn preserve_unknown_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// core/v1 Volumes: the name declared (the CEL rules read it), the rest preserved;
/// bounded so the rules' cost is bounded.
pub fn volume_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "maxLength": 63, "description": "Volume name." }
            }
        }
    })
}

/// core/v1 VolumeMounts: the name and mountPath declared, the rest preserved.
pub fn volume_mount_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "required": ["name", "mountPath"],
            "properties": {
                "name": {
                    "type": "string", "maxLength": 63,
                    "description": "Name of a volume of podTemplate.volumes."
                },
                "mountPath": {
                    "type": "string", "maxLength": 1024,
                    "description": "Where the volume is mounted in the runtime container."
                }
            }
        }
    })
}

fn rules_json(rules: &[CelRule]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| json!({ "rule": r.rule, "message": r.message }))
            .collect(),
    )
}

/// Appends CEL rules to a schema.
pub fn add_rules(schema: &mut Schema, rules: &[CelRule]) {
    if rules.is_empty() {
        return;
    }
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let entry = obj
        .entry("x-kubernetes-validations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let (Value::Array(list), Value::Array(new)) = (entry, rules_json(rules)) {
        list.extend(new);
    }
}

fn duration_schema(description: &str, positive: bool, nullable: bool) -> Schema {
    let mut schema = json_schema!({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "maxLength": 32,
        "description": description,
    });
    if nullable && let Some(obj) = schema.as_object_mut() {
        obj.insert("nullable".into(), Value::Bool(true));
    }
    if positive {
        add_rules(&mut schema, &[v::POSITIVE_DURATION]);
    }
    schema
}

/// A duration that must be greater than zero.
pub fn positive_duration(_: &mut SchemaGenerator) -> Schema {
    duration_schema(
        "A positive duration such as 30s, 2m, 4h or 1h30m.",
        true,
        false,
    )
}

/// An optional duration that must be greater than zero when set; null disables the feature.
pub fn positive_duration_nullable(_: &mut SchemaGenerator) -> Schema {
    duration_schema(
        "A positive duration such as 30s, 2m, 4h or 1h30m; null disables it.",
        true,
        true,
    )
}

/// A Kafka topic name.
pub fn topic_name(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": 249,
        "pattern": "^[a-zA-Z0-9._-]+$",
        "description": "Kafka topic name: 1 to 249 of [a-zA-Z0-9._-]."
    })
}

/// The standard `metav1.Condition` list, merged by `type` under server-side apply.
/// Written by hand: smaller than the generated schema, and it carries the list-map keys.
pub fn conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": { "type": "string", "description": "Ready, Progressing or Degraded." },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "observedGeneration": {
                    "type": "integer", "format": "int64",
                    "description": "Generation of the spec the condition was computed from."
                },
                "lastTransitionTime": {
                    "type": "string", "format": "date-time",
                    "description": "When the status last changed."
                },
                "reason": { "type": "string", "description": "CamelCase reason of the status." },
                "message": { "type": "string", "description": "Human-readable details." }
            }
        }
    })
}

/// Applied to `StreamJoinJobSpec`: the connection and topics have no sensible cluster
/// default, so they are required in the CRD (the runtime still defaults them for local
/// runs), and the cross-field rules are attached.
pub fn spec_transform(schema: &mut Schema) {
    const REQUIRED: [&str; 4] = ["kafka", "inputs", "output", "deadLetter"];
    if let Some(obj) = schema.as_object_mut() {
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for name in REQUIRED {
                if let Some(Value::Object(p)) = props.get_mut(name) {
                    p.remove("default");
                }
            }
        }
        let required = obj
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = required {
            for name in REQUIRED {
                if !list.iter().any(|v| v == name) {
                    list.push(Value::String(name.into()));
                }
            }
        }
    }
    add_rules(schema, v::SPEC_RULES);
}

pub fn join_transform(schema: &mut Schema) {
    add_rules(schema, v::JOIN_RULES);
}

pub fn kafka_transform(schema: &mut Schema) {
    add_rules(schema, v::KAFKA_RULES);
}

pub fn inputs_transform(schema: &mut Schema) {
    add_rules(schema, v::INPUTS_RULES);
}

pub fn autoscaler_transform(schema: &mut Schema) {
    add_rules(schema, v::AUTOSCALER_RULES);
}

pub fn audit_transform(schema: &mut Schema) {
    add_rules(schema, v::AUDIT_RULES);
}

pub fn recovery_transform(schema: &mut Schema) {
    add_rules(schema, v::RECOVERY_RULES);
}

pub fn pod_template_transform(schema: &mut Schema) {
    add_rules(schema, v::POD_TEMPLATE_RULES);
}

pub fn savepoints_transform(schema: &mut Schema) {
    add_rules(schema, v::SAVEPOINTS_RULES);
}
