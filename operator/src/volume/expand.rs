//! Carries the expansion decision out for every pod whose checkpoint volume the
//! runtime reports past `autoExpand.thresholdPercent`: reads the pod's claim
//! (`<template>-<statefulset>-<ordinal>`) and its StorageClass, patches
//! `spec.resources.requests.storage`, and returns the Events to publish. Nothing is
//! read from the API while every volume is below its threshold.
//!
//! A volume that cannot grow (at `maxSize`, a class without `allowVolumeExpansion`)
//! gets one Warning per claim and situation, not one per reconcile (remembered in
//! memory; a restarted operator says it once more). Failing API calls become Warning
//! Events naming the step and the claim: they never stop the reconcile.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use streamjoin_api::AutoExpandSpec;

use super::decide::{self, Claim, Decision, Expandable};
use crate::admin::{CheckpointVolume, RuntimeStatus};
use crate::build::{self, DATA_VOLUME, JobRef, MANAGER};
use crate::context::Context;
use crate::error::ObjectName;
use crate::lifecycle::machine::Note;
use crate::lifecycle::memory::Warned;

/// The claim of pod `ordinal` made from the StatefulSet's volume claim template.
pub fn claim_name(job: &str, ordinal: i32) -> String {
    format!("{DATA_VOLUME}-{}-{ordinal}", build::stateful_set_name(job))
}

fn claim_facts(pvc: &PersistentVolumeClaim, expandable: Expandable) -> Claim {
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let status = pvc.status.as_ref();
    let provisioned = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone());
    let resizing = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                (c.type_ == "Resizing" || c.type_ == "FileSystemResizePending")
                    && c.status == "True"
            })
        });
    Claim {
        requested,
        provisioned,
        resizing,
        expandable,
    }
}

async fn expandable(ctx: &Context, pvc: &PersistentVolumeClaim) -> Result<Expandable, String> {
    let Some(class) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .filter(|c| !c.is_empty())
    else {
        return Ok(Expandable::Unknown {
            why: "the claim names no StorageClass, so whether it can expand is unknown".into(),
        });
    };
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    match api.get_opt(&class).await {
        Ok(Some(sc)) if sc.allow_volume_expansion == Some(true) => Ok(Expandable::Yes),
        Ok(Some(_)) => Ok(Expandable::No { class }),
        Ok(None) => Ok(Expandable::Unknown {
            why: format!("StorageClass {class} does not exist"),
        }),
        Err(e) => Err(format!("reading StorageClass {class}: {e}")),
    }
}

/// What was done about one volume past its threshold.
struct Outcome {
    /// The metric's `result` label; `waiting` is not counted.
    result: &'static str,
    note: Option<Note>,
    /// For a Warning: the situation it is about (same situation, no second Warning).
    situation: String,
}

fn warn(result: &'static str, reason: &'static str, message: String, situation: String) -> Outcome {
    Outcome {
        result,
        note: Some(Note {
            warning: true,
            reason,
            message,
        }),
        situation,
    }
}

/// One pod's volume past its threshold: the decision, carried out.
async fn one(
    ctx: &Context,
    r: &JobRef<'_>,
    cfg: &AutoExpandSpec,
    ordinal: i32,
    usage: &CheckpointVolume,
) -> Outcome {
    let name = claim_name(r.name, ordinal);
    let object = ObjectName::new("PersistentVolumeClaim", r.namespace, &name);
    let failed = |step: &str, e: String| {
        let message = format!("checkpoint volume expansion: {step} {object}: {e}");
        warn(
            "failed",
            "CheckpointVolumeNotExpanded",
            message.clone(),
            message,
        )
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), r.namespace);
    let pvc = match api.get_opt(&name).await {
        Ok(Some(p)) => p,
        Ok(None) => return failed("reading", "not found".into()),
        Err(e) => return failed("reading", e.to_string()),
    };
    let exp = match expandable(ctx, &pvc).await {
        Ok(x) => x,
        Err(e) => return failed("checking the class of", e),
    };
    let full = format!(
        "pod {ordinal}'s checkpoint volume holds {}",
        decide::usage_words(usage)
    );
    match decide::decide(&claim_facts(&pvc, exp), cfg) {
        Decision::Expand { from, to } => {
            let patch = json!({"spec": {"resources": {"requests": {"storage": to}}}});
            let pp = PatchParams {
                field_manager: Some(MANAGER.to_owned()),
                ..PatchParams::default()
            };
            if let Err(e) = api.patch(&name, &pp, &Patch::Merge(&patch)).await {
                return failed("patching", e.to_string());
            }
            Outcome {
                result: "expanded",
                note: Some(Note {
                    warning: false,
                    reason: "CheckpointVolumeExpanding",
                    message: format!(
                        "{full}, past autoExpand.thresholdPercent {}: {object} grows {from} → {to} (maxSize {})",
                        cfg.threshold_percent, cfg.max_size
                    ),
                }),
                situation: String::new(),
            }
        }
        Decision::Wait { .. } => Outcome {
            result: "waiting",
            note: None,
            situation: String::new(),
        },
        Decision::AtMaxSize { size, max } => warn(
            "at_max_size",
            "CheckpointVolumeAtMaxSize",
            format!(
                "{full}, and {object} is at {size}, autoExpand.maxSize {max}: raise maxSize or free space"
            ),
            format!("at max size {size} {max}"),
        ),
        Decision::NotExpandable { why } => warn(
            "not_expandable",
            "CheckpointVolumeNotExpandable",
            format!("{full}, but {object} cannot grow: {why}"),
            why,
        ),
        Decision::Invalid { why } => warn(
            "invalid",
            "CheckpointVolumeNotExpanded",
            format!("{full}, but {object} cannot grow: {why}"),
            why,
        ),
    }
}

/// Checks every pod that reported its volume; `statuses[i]` is pod `i`'s answer.
/// `warned` keeps the Warnings already given (see the module doc).
pub async fn run(
    ctx: &Context,
    r: &JobRef<'_>,
    cfg: Option<&AutoExpandSpec>,
    statuses: &[Option<RuntimeStatus>],
    warned: &mut Warned,
) -> Vec<Note> {
    let mut notes = Vec::new();
    let Some(cfg) = cfg else {
        warned.clear();
        return notes;
    };
    for (i, s) in statuses.iter().enumerate() {
        let Some(usage) = s.as_ref().and_then(|s| s.checkpoint_volume.as_ref()) else {
            continue;
        };
        let ordinal = i32::try_from(i).unwrap_or(i32::MAX);
        let name = claim_name(r.name, ordinal);
        if !decide::over_threshold(usage, cfg.threshold_percent) {
            warned.remove(&name);
            continue;
        }
        let o = one(ctx, r, cfg, ordinal, usage).await;
        if o.result != "waiting" {
            ctx.metrics
                .volume_expansions
                .with_label_values(&[o.result])
                .inc();
        }
        let Some(note) = o.note else { continue };
        if note.warning {
            let situation = format!("{}|{}", note.reason, o.situation);
            if warned.get(&name) == Some(&situation) {
                continue;
            }
            warned.insert(name, situation);
        } else {
            warned.remove(&name);
        }
        notes.push(note);
    }
    notes
}
