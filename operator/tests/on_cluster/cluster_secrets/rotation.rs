//! A running job's admin-token Secret deleted, then replaced by a hand-written
//! one: the operator (as the chart's ServiceAccount, which cannot read the Secret)
//! creates it again with the token it derives, the local kubelet's volume sync
//! brings the file to the pods and the runtime reads it at the next mutating call.
//! The mutating call is `watermarks.forceAdvanceNonce` (POST /v1/watermark/advance
//! on every pod); the pods are the same processes throughout.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::json;
use streamjoin_api::StreamJoinJob;
use streamjoin_operator::admin_key::AdminKey;

use super::KEY_SECRET;
use crate::broker::Broker;
use crate::cluster::example::{JOB, local_example, placed};
use crate::cluster::kubelet::NodeForTest;
use crate::cluster::operator::OperatorProcess;
use crate::cluster::testbed::{Testbed, testbed};
use crate::cluster::wait::poll;
use crate::data::dataset;

const PARTITIONS: u32 = 4;
const TOPICS: [&str; 5] = [
    "impressions",
    "plays",
    "impression-plays",
    "impression-plays-dead-letter",
    "impression-plays-late",
];
/// What the runtime logs when a force-advance was authorised.
const ADVANCED: &str = "watermark force-advanced on request";
const LIMIT: Duration = Duration::from_secs(120);

fn load(broker: &Broker, data: &Path) {
    for topic in TOPICS {
        broker.create_topic(topic, PARTITIONS);
    }
    for p in 0..PARTITIONS {
        let file = |s: &str| data.join(format!("{s}-{p}.jsonl"));
        broker.produce_lines("impressions", p as i32, &file("impressions"));
        broker.produce_lines("plays", p as i32, &file("plays"));
    }
}

/// (name, uid, restart count) of each runtime pod, by name.
async fn pods(client: &Client, ns: &str) -> Vec<(String, String, i32)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("streamjoin.dev/job={JOB}"));
    let mut out: Vec<_> = api
        .list(&lp)
        .await
        .unwrap_or_else(|e| panic!("listing the pods: {e}"))
        .items
        .into_iter()
        .map(|p| {
            let restarts = p
                .status
                .and_then(|s| s.container_statuses)
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or_default();
            (
                p.metadata.name.unwrap_or_default(),
                p.metadata.uid.unwrap_or_default(),
                restarts,
            )
        })
        .collect();
    out.sort();
    out
}

fn token_of(s: &Secret) -> String {
    let bytes = s
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|b| b.0.clone());
    String::from_utf8(bytes.unwrap_or_default()).unwrap_or_default()
}

/// Polls until the token Secret exists with another uid than `old_uid`; returns it.
async fn recreated(api: &Api<Secret>, old_uid: &str) -> Secret {
    let name = format!("{JOB}-admin-token");
    poll(&format!("Secret {name} created again"), LIMIT, || async {
        match api.get_opt(&name).await.map_err(|e| e.to_string())? {
            Some(s) if s.metadata.uid.as_deref() != Some(old_uid) => Ok(s),
            Some(_) => Err("still the old Secret".to_owned()),
            None => Err("no Secret yet".to_owned()),
        }
    })
    .await
}

/// Polls until every pod's mounted token file reads `want`.
async fn pods_read(node: &NodeForTest, ns: &str, pods: &[(String, String, i32)], want: &str) {
    poll(
        &format!("every pod's token file is {want:.8}…"),
        LIMIT,
        || async {
            for (name, uid, _) in pods {
                let got = node.pod_volume_file(ns, name, uid, "admin-token", "token");
                if got.as_deref() != Some(want) {
                    return Err(format!("{name}: {:.8?}", got));
                }
            }
            Ok(())
        },
    )
    .await;
}

/// How many authorised force-advances each pod logged.
fn advances(node: &NodeForTest, ns: &str, pods: &[(String, String, i32)]) -> Vec<usize> {
    pods.iter()
        .map(|(name, _, _)| node.pod_logs(ns, name).matches(ADVANCED).count())
        .collect()
}

fn set_nonce(t: &Testbed, nonce: i64) {
    let patch = json!({ "spec": { "watermarks": { "forceAdvanceNonce": nonce } } }).to_string();
    t.kubectl.run(&[
        "patch", "sjj", JOB, "-n", &t.ns.name, "--type", "merge", "-p", &patch,
    ]);
}

/// Sets the nonce and polls until every pod logged one more authorised advance.
async fn advance_succeeds(
    t: &Testbed,
    node: &NodeForTest,
    pods: &[(String, String, i32)],
    nonce: i64,
) {
    let before = advances(node, &t.ns.name, pods);
    set_nonce(t, nonce);
    poll(
        &format!("forceAdvanceNonce {nonce} accepted by every pod"),
        LIMIT,
        || async {
            let now = advances(node, &t.ns.name, pods);
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                Ok(())
            } else {
                Err(format!("advances logged {now:?}, before {before:?}"))
            }
        },
    )
    .await;
}

async fn wait_ready(t: &Testbed) {
    let api: Api<StreamJoinJob> = Api::namespaced(t.client.clone(), &t.ns.name);
    poll("the job Ready", Duration::from_secs(300), || async {
        let job = api.get(JOB).await.map_err(|e| e.to_string())?;
        let st = job.status.unwrap_or_default();
        let ready = st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            Ok(())
        } else {
            Err(format!("phase {:?}", st.phase))
        }
    })
    .await;
}

/// The job's token as the operator derives it, from the key Secret it created.
async fn derived_token(t: &Testbed) -> String {
    let key: Secret = Api::namespaced(t.client.clone(), &t.ns.name)
        .get(KEY_SECRET)
        .await
        .unwrap_or_else(|e| panic!("the key Secret {KEY_SECRET}: {e}"));
    let labels = key.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("streamjoin-operator")
    );
    let job: StreamJoinJob = Api::namespaced(t.client.clone(), &t.ns.name)
        .get(JOB)
        .await
        .unwrap_or_else(|e| panic!("the job: {e}"));
    let uid = job.metadata.uid.unwrap_or_default();
    AdminKey::from_secret(&key)
        .unwrap_or_else(|e| panic!("the key Secret: {e}"))
        .token(&t.ns.name, JOB, &uid)
}

async fn refused_with_hint(t: &Testbed) {
    let events: Api<Event> = Api::namespaced(t.client.clone(), &t.ns.name);
    poll(
        "a ForceAdvanceFailed Event naming HTTP 401 and the fix",
        LIMIT,
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("ForceAdvanceFailed"))
                .filter_map(|e| e.note.clone())
                .find(|n| n.contains("HTTP 401") && n.contains("delete the Secret"))
                .map(|_| ())
                .ok_or_else(|| "no such Event yet".to_owned())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_hand_written_admin_token_secret_ends_with_operator_and_pods_agreeing_without_restarts()
 {
    const TEST: &str = "a_deleted_or_hand_written_admin_token_secret";
    let Some(t) = testbed(TEST).await else { return };
    let Some(broker) = Broker::start() else {
        return;
    };
    let node = NodeForTest::get(&t.client, &t.kubectl, "admin-token").await;
    let data = dataset(4_000, PARTITIONS, 17);
    tokio::task::block_in_place(|| load(&broker, &data));
    let op = OperatorProcess::in_namespace(&t).await;
    let manifest = local_example(
        &t.kubectl,
        &placed(&t.ns.name, &broker.bootstrap, Some(&node.name)),
    );
    t.kubectl
        .try_run(&["apply", "--server-side", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&t).await;

    let ns = t.ns.name.clone();
    let before = pods(&t.client, &ns).await;
    assert_eq!(before.len(), 2, "{before:?}");
    let secrets: Api<Secret> = Api::namespaced(t.client.clone(), &ns);
    let name = format!("{JOB}-admin-token");
    let first = secrets
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let token = token_of(&first);
    assert_eq!(
        token,
        derived_token(&t).await,
        "HMAC of the key and the job's identity"
    );
    pods_read(&node, &ns, &before, &token).await;
    advance_succeeds(&t, &node, &before, 1).await;

    // Deleted: created again at the job's next reconcile (here its edit), same token.
    t.kubectl.run(&["delete", "secret", &name, "-n", &ns]);
    advance_succeeds(&t, &node, &before, 2).await;
    let again = recreated(&secrets, first.metadata.uid.as_deref().unwrap_or_default()).await;
    assert_eq!(token_of(&again), token);
    let owner = &again.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.block_owner_deletion),
        ("StreamJoinJob", Some(true))
    );

    // Written by hand with another token: the pods read it, the operator's calls
    // are refused with the fix in the Event; the fix (delete it) ends it.
    t.kubectl.run(&["delete", "secret", &name, "-n", &ns]);
    t.kubectl.run(&[
        "create",
        "secret",
        "generic",
        &name,
        "-n",
        &ns,
        "--from-literal=token=hand-written",
    ]);
    pods_read(&node, &ns, &before, "hand-written").await;
    set_nonce(&t, 3);
    refused_with_hint(&t).await;
    let hand = secrets
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    t.kubectl.run(&["delete", "secret", &name, "-n", &ns]);
    set_nonce(&t, 4);
    let fixed = recreated(&secrets, hand.metadata.uid.as_deref().unwrap_or_default()).await;
    assert_eq!(token_of(&fixed), token);
    pods_read(&node, &ns, &before, &token).await;
    advance_succeeds(&t, &node, &before, 5).await;

    assert_eq!(
        pods(&t.client, &ns).await,
        before,
        "the same pods, no restart"
    );
    assert!(
        op.refusals().is_empty(),
        "RBAC refused the operator: {:#?}",
        op.refusals()
    );
}
