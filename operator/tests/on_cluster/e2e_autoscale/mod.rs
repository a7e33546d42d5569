//! What the autoscaler flows need beside the `s3_job` harness: input sent at a
//! rate that follows a schedule ([`load`]), and the job's autoscaler status.

#![allow(dead_code)]

pub mod load;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use streamjoin_api::AutoscalerStatus;

use crate::cluster::example::JOB;
use crate::s3_job::S3Job;

/// `status.autoscaler`, or the default when there is none yet.
pub async fn autoscaler_status(job: &S3Job) -> AutoscalerStatus {
    job.job()
        .await
        .status
        .and_then(|s| s.autoscaler)
        .unwrap_or_default()
}

/// How often the operator reported `reason` about the job, and the notes: the
/// event recorder folds repeats with the same reason into one Event with a
/// series, whatever their notes say, so the count is the series' count.
pub async fn occurrences(job: &S3Job, reason: &str) -> (i32, Vec<String>) {
    let api: Api<Event> = Api::namespaced(job.t.client.clone(), job.ns());
    let list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing the Events of {}: {e}", job.ns()));
    let mine: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(JOB)
        })
        .collect();
    let count = mine
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    (count, mine.into_iter().filter_map(|e| e.note).collect())
}
