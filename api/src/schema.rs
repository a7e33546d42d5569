//! Schema overrides that keep the CRD small: embedded core types (tolerations,
//! affinity, env) are accepted as free-form objects and validated by the API
//! server when the operator copies them into the pod template.

use schemars::{Schema, SchemaGenerator, json_schema};

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
