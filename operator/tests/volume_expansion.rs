//! Checkpoint volume auto-expansion against the API double and the fake runtime:
//! a pod reports its volume past `autoExpand.thresholdPercent` in `GET /v1/status`,
//! the operator patches that pod's claim when its StorageClass allows expansion,
//! waits for the resize, stops at `maxSize`, and never patches a claim whose class
//! does not allow it (one Warning, not one per reconcile).

mod support;

use serde_json::{Value, json};
use support::fake_api::Call;
use support::flows::{any_event_write, events_of, running};
use support::{Harness, NS, job_json};

const GIB: u64 = 1 << 30;

fn pvc_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/{name}")
}

fn class_path(name: &str) -> String {
    format!("/apis/storage.k8s.io/v1/storageclasses/{name}")
}

/// A job whose volumes grow at 80 % up to `max`, in StorageClass `class`.
fn job(class: &str, max: &str) -> Value {
    let mut m = job_json("clicks");
    m["spec"]["checkpoints"] = json!({"volume": {
        "storageClassName": class, "size": "10Gi",
        "autoExpand": {"thresholdPercent": 80, "maxSize": max}
    }});
    m
}

fn storage_class(h: &Harness, name: &str, expandable: Option<bool>) {
    let mut sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name}, "provisioner": "ebs.csi.aws.com"
    });
    if let Some(e) = expandable {
        sc["allowVolumeExpansion"] = json!(e);
    }
    h.fake.put(&class_path(name), sc);
}

/// The claims the StatefulSet controller made from the volume claim template, bound.
fn claims(h: &Harness, class: &str, size: &str) {
    for i in 0..3 {
        let name = format!("data-clicks-{i}");
        h.fake.put(
            &pvc_path(&name),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                         "resources": {"requests": {"storage": size}}},
                "status": {"phase": "Bound", "capacity": {"storage": size}}
            }),
        );
    }
}

fn requested(h: &Harness, name: &str) -> String {
    h.fake.get(&pvc_path(name)).expect("claim")["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The resize finished: the claim's capacity is what it requests.
fn resized(h: &Harness, name: &str) {
    let mut pvc = h.fake.get(&pvc_path(name)).expect("claim");
    pvc["status"]["capacity"]["storage"] = pvc["spec"]["resources"]["requests"]["storage"].clone();
    h.fake.put(&pvc_path(name), pvc);
}

fn claim_calls(calls: &[Call], method: &str) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == method && c.path.contains("/persistentvolumeclaims/"))
        .map(|c| c.path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_full_volume_grows_by_half_waits_for_the_resize_and_stops_at_max_size() {
    let mut h = Harness::new();
    h.create_job(job("fast", "20Gi"));
    running(&mut h, "clicks", 3).await;
    storage_class(&h, "fast", Some(true));
    claims(&h, "fast", "10Gi");
    h.runtime.set(|r| {
        r.checkpoint_volume
            .insert("clicks-0".into(), (9 * GIB, 10 * GIB));
        r.checkpoint_volume
            .insert("clicks-1".into(), (2 * GIB, 10 * GIB));
    });
    h.fake.take_calls();

    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert_eq!(requested(&h, "data-clicks-0"), "15Gi");
    assert_eq!(requested(&h, "data-clicks-1"), "10Gi");
    assert_eq!(
        claim_calls(&calls, "GET"),
        ["data-clicks-0"],
        "volumes below the threshold cost no API call"
    );
    let ev = events_of(&calls, "CheckpointVolumeExpanding");
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].0, "Normal");
    assert!(
        ev[0].2.contains("data-clicks-0 grows 10Gi → 15Gi")
            && ev[0].2.contains("9Gi of 10Gi (90%)"),
        "{}",
        ev[0].2
    );

    // The resize is under way (requested 15Gi, provisioned 10Gi): no second patch.
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(claim_calls(&calls, "PATCH").is_empty());
    assert_eq!(requested(&h, "data-clicks-0"), "15Gi");

    // Resized and full again: 1.5 × 15Gi is above maxSize, so it grows to maxSize.
    resized(&h, "data-clicks-0");
    h.runtime.set(|r| {
        r.checkpoint_volume
            .insert("clicks-0".into(), (14 * GIB, 15 * GIB));
    });
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(requested(&h, "data-clicks-0"), "20Gi");

    // At maxSize: a Warning, once, and no patch.
    resized(&h, "data-clicks-0");
    h.runtime.set(|r| {
        r.checkpoint_volume
            .insert("clicks-0".into(), (19 * GIB, 20 * GIB));
    });
    h.fake.take_calls();
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(claim_calls(&calls, "PATCH").is_empty());
    let warn = events_of(&calls, "CheckpointVolumeAtMaxSize");
    assert_eq!(warn.len(), 1, "{:?}", support::flows::events(&calls));
    assert_eq!(warn[0].0, "Warning");
    assert!(warn[0].2.contains("maxSize 20Gi"), "{}", warn[0].2);
    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(
        !any_event_write(&calls),
        "said once: {:?}",
        calls.iter().filter(|c| c.is_event()).collect::<Vec<_>>()
    );
    assert_eq!(requested(&h, "data-clicks-0"), "20Gi");
}

#[tokio::test]
async fn a_storage_class_without_expansion_gets_one_warning_and_no_patch() {
    let mut h = Harness::new();
    h.create_job(job("standard", "100Gi"));
    running(&mut h, "clicks", 3).await;
    storage_class(&h, "standard", None);
    claims(&h, "standard", "10Gi");
    h.runtime.set(|r| {
        r.checkpoint_volume
            .insert("clicks-2".into(), (95 * GIB / 10, 10 * GIB));
    });
    h.fake.take_calls();

    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(claim_calls(&calls, "PATCH").is_empty());
    assert_eq!(requested(&h, "data-clicks-2"), "10Gi");
    let warn = events_of(&calls, "CheckpointVolumeNotExpandable");
    assert_eq!(warn.len(), 1);
    assert_eq!(warn[0].0, "Warning");
    assert!(
        warn[0]
            .2
            .contains("StorageClass standard does not allow volume expansion")
            && warn[0].2.contains("data-clicks-2"),
        "{}",
        warn[0].2
    );

    h.reconcile("clicks").await.expect("reconciles");
    let calls = h.fake.take_calls();
    assert!(claim_calls(&calls, "PATCH").is_empty());
    assert!(!any_event_write(&calls), "warned once, not per reconcile");
}

#[tokio::test]
async fn turning_auto_expand_on_rolls_no_pod() {
    let mut h = Harness::new();
    h.create_job(job_json("clicks"));
    running(&mut h, "clicks", 3).await;
    let before = support::flows::sts(&h, "clicks");
    h.edit_spec(
        "clicks",
        |s| {
            s["checkpoints"] =
                json!({"volume": {"autoExpand": {"thresholdPercent": 85, "maxSize": "50Gi"}}})
        },
    );
    h.reconcile("clicks").await.expect("reconciles");
    assert_eq!(support::flows::sts(&h, "clicks"), before);
    assert!(h.runtime.triggered().is_empty(), "no savepoint, no upgrade");
}
