//! The CRD on a real API server (the local cluster of `scripts/cluster.sh`): applied
//! server-side as a user applies it, every CEL rule enforced with its message,
//! the documented defaults filled in, and the printer columns of `kubectl get sjj`.

use crate::cluster;
use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use streamjoin_api::validation as v;
use streamjoin_api::{StreamJoinJob, StreamJoinJobSpec};

use cluster::testbed::{CRD_NAME, Testbed, testbed};

fn jobs(t: &Testbed) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("streamjoin.dev", "v1alpha1", "StreamJoinJob");
    Api::namespaced_with(t.client.clone(), &t.ns.name, &ApiResource::from_gvk(&gvk))
}

/// The smallest job the CRD accepts: what has no default.
fn minimal(name: &str, ns: &str) -> Value {
    json!({
        "apiVersion": "streamjoin.dev/v1alpha1",
        "kind": "StreamJoinJob",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "kafka": { "bootstrapServers": "127.0.0.1:9092" },
            "inputs": { "impressions": { "topic": "impressions" }, "plays": { "topic": "plays" } },
            "output": { "topic": "entries" },
            "deadLetter": { "topic": "dead-letter" }
        }
    })
}

fn crd_schema() -> Value {
    let text = std::fs::read_to_string(cluster::operator::repo_path("crds/streamjoinjob.yaml"))
        .expect("reading crds/streamjoinjob.yaml");
    let crd: Value = serde_norway::from_str(&text).expect("CRD YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every `x-kubernetes-validations` rule of the schema: (path of its node, message).
fn cel_rules(node: &Value, path: &str, out: &mut BTreeSet<(String, String)>) {
    for r in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let message = r["message"].as_str().unwrap_or_default().to_owned();
        out.insert((path.to_owned(), message));
    }
    for (k, child) in node["properties"].as_object().into_iter().flatten() {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        cel_rules(child, &p, out);
    }
    if node.get("items").is_some() {
        cel_rules(&node["items"], &format!("{path}[]"), out);
    }
}

/// One manifest that breaks one rule: where the rule is, its message, the change.
struct Case {
    path: &'static str,
    message: &'static str,
    breaks: fn(&mut Value),
}

const NAME_RULE: &str =
    "the name of a StreamJoinJob must be at most 52 characters: it names its StatefulSet and pods";

fn cases() -> Vec<Case> {
    let pos = v::POSITIVE_DURATION.message;
    vec![
        Case {
            path: "",
            message: NAME_RULE,
            breaks: |j| j["metadata"]["name"] = json!(format!("j{}", "x".repeat(52))),
        },
        Case {
            path: "spec",
            message: v::MSG_OUTPUT_TOPIC,
            breaks: |j| j["spec"]["output"]["topic"] = json!("plays"),
        },
        Case {
            path: "spec",
            message: v::MSG_DEAD_LETTER_TOPIC,
            breaks: |j| j["spec"]["deadLetter"]["topic"] = json!("entries"),
        },
        Case {
            path: "spec",
            message: v::MSG_LATE_TOPIC,
            breaks: |j| j["spec"]["lateOutput"] = json!({ "topic": "dead-letter" }),
        },
        Case {
            path: "spec.audit",
            message: v::MSG_JOIN_RATIO,
            breaks: |j| j["spec"]["audit"] = json!({ "minJoinRatio": 0.6, "maxJoinRatio": 0.2 }),
        },
        Case {
            path: "spec.autoscaler",
            message: v::MSG_AUTOSCALER_BOUNDS,
            breaks: |j| {
                j["spec"]["autoscaler"] = json!({ "minParallelism": 5, "maxParallelism": 2 })
            },
        },
        Case {
            path: "spec.autoscaler",
            message: v::MSG_AUTOSCALER_ENABLED,
            breaks: |j| j["spec"]["autoscaler"] = json!({ "enabled": true }),
        },
        Case {
            path: "spec.autoscaler.catchUpDuration",
            message: pos,
            breaks: |j| j["spec"]["autoscaler"] = json!({ "catchUpDuration": "0s" }),
        },
        Case {
            path: "spec.checkpoints.interval",
            message: pos,
            breaks: |j| j["spec"]["checkpoints"] = json!({ "interval": "0s" }),
        },
        Case {
            path: "spec.inputs",
            message: v::MSG_INPUT_TOPICS,
            breaks: |j| j["spec"]["inputs"]["plays"]["topic"] = json!("impressions"),
        },
        Case {
            path: "spec.join",
            message: v::MSG_KEY_FIELDS,
            breaks: |j| j["spec"]["join"] = json!({ "keyFields": ["profile_id", "profile_id"] }),
        },
        Case {
            path: "spec.join.window",
            message: pos,
            breaks: |j| j["spec"]["join"] = json!({ "window": "0h" }),
        },
        Case {
            path: "spec.kafka",
            message: v::MSG_SASL,
            breaks: |j| j["spec"]["kafka"]["securityProtocol"] = json!("SASL_SSL"),
        },
        Case {
            path: "spec.kafka",
            message: v::MSG_TLS,
            breaks: |j| j["spec"]["kafka"]["tls"] = json!({ "secretRef": { "name": "kafka-ca" } }),
        },
        Case {
            path: "spec.recovery",
            message: v::MSG_RECOVERY_TIMESTAMP,
            breaks: |j| j["spec"]["recovery"] = json!({ "onMissingCheckpoint": "timestamp" }),
        },
        Case {
            path: "spec.savepoints",
            message: v::MSG_SAVEPOINT_LOCATION,
            breaks: |j| j["spec"]["savepoints"] = json!({ "interval": "1h" }),
        },
        Case {
            path: "spec.savepoints",
            message: v::MSG_SAVEPOINT_SCHEME,
            breaks: |j| {
                j["spec"]["savepoints"] = json!({ "location": "s3://key:secret@bucket/sp" })
            },
        },
        Case {
            path: "spec.savepoints",
            message: v::MSG_SAVEPOINT_S3_ONLY,
            breaks: |j| {
                j["spec"]["savepoints"] =
                    json!({ "location": "gs://bucket/sp", "endpoint": "http://127.0.0.1:9000" })
            },
        },
        Case {
            path: "spec.savepoints",
            message: v::MSG_SAVEPOINT_CREDENTIALS,
            breaks: |j| j["spec"]["savepoints"] = json!({ "location": "/savepoints", "credentials": { "secretRef": { "name": "keys" } } }),
        },
        Case {
            path: "spec.podTemplate",
            message: v::MSG_POD_VOLUME_NAMES,
            breaks: |j| {
                j["spec"]["podTemplate"] =
                    json!({ "volumes": [{ "name": "data", "emptyDir": {} }] })
            },
        },
        Case {
            path: "spec.podTemplate",
            message: v::MSG_POD_MOUNT_PATHS,
            breaks: |j| {
                j["spec"]["podTemplate"] = json!({
                    "volumes": [{ "name": "extra", "emptyDir": {} }],
                    "volumeMounts": [{ "name": "extra", "mountPath": "/var/lib/streamjoin/x" }]
                })
            },
        },
        Case {
            path: "spec.podTemplate",
            message: v::MSG_POD_MOUNT_VOLUME,
            breaks: |j| {
                j["spec"]["podTemplate"] =
                    json!({ "volumeMounts": [{ "name": "extra", "mountPath": "/extra" }] })
            },
        },
        Case {
            path: "spec.savepoints.interval",
            message: pos,
            breaks: |j| {
                j["spec"]["savepoints"] = json!({ "location": "/savepoints", "interval": "0s" })
            },
        },
        Case {
            path: "spec.watermarks.alignmentMaxDrift",
            message: pos,
            breaks: |j| j["spec"]["watermarks"] = json!({ "alignmentMaxDrift": "0m" }),
        },
        Case {
            path: "spec.watermarks.idleTimeout",
            message: pos,
            breaks: |j| j["spec"]["watermarks"] = json!({ "idleTimeout": "0s" }),
        },
        Case {
            path: "spec.watermarks.inactivityTimeout",
            message: pos,
            breaks: |j| j["spec"]["watermarks"] = json!({ "inactivityTimeout": "0s" }),
        },
    ]
}

#[tokio::test]
async fn crd_applied_server_side_is_established_and_owned_by_kubectl() {
    let Some(t) = testbed("crd_applied_server_side_is_established_and_owned_by_kubectl").await
    else {
        return;
    };
    // Applying again as a user would is a no-op, not a conflict.
    let out = cluster::testbed::install_crd(&t.client, &t.kubectl).await;
    assert!(out.contains("serverside-applied"), "{out}");
    let crd = Api::<CustomResourceDefinition>::all(t.client.clone())
        .get(CRD_NAME)
        .await
        .expect("reading the CRD");
    let applied_by_kubectl = crd.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some("kubectl") && m.operation.as_deref() == Some("Apply")
    });
    assert!(applied_by_kubectl, "{:?}", crd.metadata.managed_fields);
    let names = crd
        .status
        .and_then(|s| s.accepted_names)
        .expect("accepted names");
    assert_eq!(names.short_names, Some(vec!["sjj".to_owned()]));
}

#[tokio::test]
async fn every_cel_rule_refuses_a_manifest_that_breaks_it_with_its_message() {
    let mut in_crd = BTreeSet::new();
    cel_rules(&crd_schema(), "", &mut in_crd);
    let table = cases();
    let in_table: BTreeSet<(String, String)> = table
        .iter()
        .map(|c| (c.path.to_owned(), c.message.to_owned()))
        .collect();
    let missing: Vec<_> = in_crd.difference(&in_table).collect();
    assert!(
        missing.is_empty(),
        "CEL rules of the CRD without a case here: {missing:?}"
    );
    let stale: Vec<_> = in_table.difference(&in_crd).collect();
    assert!(
        stale.is_empty(),
        "cases for rules the CRD no longer has: {stale:?}"
    );

    let Some(t) =
        testbed("every_cel_rule_refuses_a_manifest_that_breaks_it_with_its_message").await
    else {
        return;
    };
    let api = jobs(&t);
    let mut failures = Vec::new();
    for (i, case) in table.iter().enumerate() {
        let mut manifest = minimal(&format!("rule-{i}"), &t.ns.name);
        (case.breaks)(&mut manifest);
        // The Rust twin (api/src/validation.rs) reports the same message.
        if !case.path.is_empty() {
            let spec: StreamJoinJobSpec =
                serde_json::from_value(manifest["spec"].clone()).expect("the spec deserializes");
            let twin = spec
                .validate()
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default();
            if !twin.contains(case.message) {
                failures.push(format!("{}: Rust twin said {twin:?}", case.path));
            }
        }
        let obj: DynamicObject = serde_json::from_value(manifest).expect("object");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{} ({}): accepted", case.path, case.message)),
            Err(kube::Error::Api(e)) => {
                let field_ok =
                    case.path.is_empty() || e.message.contains(&format!("{}:", case.path));
                if e.code != 422 || !e.message.contains(case.message) || !field_ok {
                    failures.push(format!("{}: HTTP {}: {}", case.path, e.code, e.message));
                }
            }
            Err(e) => panic!("creating the case for {}: {e}", case.path),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The cases differ from a valid job only in what they break.
    let ok: DynamicObject = serde_json::from_value(minimal("valid", &t.ns.name)).expect("object");
    api.create(&PostParams::default(), &ok)
        .await
        .expect("the minimal job is accepted");
}

/// Paths of every leaf of a JSON value, with the value.
fn leaves(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(x, &format!("{path}.{k}"), out);
            }
        }
        other => out.push((path.to_owned(), other.clone())),
    }
}

#[tokio::test]
async fn api_server_defaulting_fills_the_documented_defaults() {
    let Some(t) = testbed("api_server_defaulting_fills_the_documented_defaults").await else {
        return;
    };
    let manifest = minimal("defaults", &t.ns.name);
    let obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("object");
    let stored = jobs(&t)
        .create(&PostParams::default(), &obj)
        .await
        .expect("created");
    let server = stored.data["spec"].clone();

    // The CRD's (and so the spec reference's) defaults, filled by the API server.
    let schema = crd_schema();
    let spec_schema = &schema["properties"]["spec"]["properties"];
    let mut documented = 0;
    for (field, s) in spec_schema.as_object().expect("spec properties") {
        if let Some(default) = s.get("default") {
            documented += 1;
            assert_eq!(
                &server[field], default,
                "spec.{field}: the API server's default"
            );
        }
    }
    assert!(documented >= 10, "only {documented} defaulted fields found");

    // The same defaults as the Rust types the operator and the runtime read.
    let rust: StreamJoinJobSpec =
        serde_json::from_value(manifest["spec"].clone()).expect("spec deserializes");
    let rust = serde_json::to_value(&rust).expect("spec serializes");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    leaves(&server, "spec", &mut a);
    leaves(&rust, "spec", &mut b);
    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (
        a.into_iter().map(|(p, v)| format!("{p} = {v}")).collect(),
        b.into_iter().map(|(p, v)| format!("{p} = {v}")).collect(),
    );
    let only_server: Vec<_> = a.difference(&b).collect();
    let only_rust: Vec<_> = b.difference(&a).collect();
    assert!(
        only_server.is_empty() && only_rust.is_empty(),
        "API-server defaults differ from the Rust defaults:\n only the API server: {only_server:#?}\n only Rust: {only_rust:#?}"
    );
    // And the stored object reads back as a job.
    let _: StreamJoinJob = serde_json::from_value(serde_json::to_value(&stored).expect("json"))
        .expect("the stored object deserializes as a StreamJoinJob");
}

#[tokio::test]
async fn kubectl_get_sjj_shows_the_printer_columns() {
    let Some(t) = testbed("kubectl_get_sjj_shows_the_printer_columns").await else {
        return;
    };
    let mut manifest = minimal("columns", &t.ns.name);
    manifest["spec"]["parallelism"] = json!(3);
    let obj: DynamicObject = serde_json::from_value(manifest).expect("object");
    let api = jobs(&t);
    api.create(&PostParams::default(), &obj)
        .await
        .expect("created");
    // What the operator would report (no operator runs in this test).
    let status = json!({ "status": {
        "phase": "Running",
        "readyReplicas": 2,
        "watermark": { "lagSeconds": 12.5 },
        "lastSavepoint": { "location": "/savepoints/sp-1", "time": "2026-01-15T08:00:00Z" }
    }});
    api.patch_status("columns", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status written");
    let out = t.kubectl.run(&["get", "sjj", "-n", &t.ns.name]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PHASE",
            "PARALLELISM",
            "READY",
            "WATERMARK",
            "LAG",
            "LAST",
            "SAVEPOINT",
            "AGE"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), 7, "{out}");
    assert_eq!(row[..5], ["columns", "Running", "3", "2", "12.5"], "{out}");
    // Date columns print as ages: the savepoint's in days, the new job's in seconds.
    assert!(row[5].ends_with('d') || row[5].contains('y'), "{out}");
    assert!(row[6].ends_with('s') || row[6].ends_with('m'), "{out}");
    // The category and the short name reach it as well.
    let by_category = t
        .kubectl
        .run(&["get", "streaming", "-n", &t.ns.name, "-o", "name"]);
    assert!(
        by_category.contains("streamjoinjob.streamjoin.dev/columns"),
        "{by_category}"
    );
}
