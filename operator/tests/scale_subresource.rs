//! `kubectl scale sjj/NAME --replicas=N`: the scale subresource writes N at the
//! CRD's `specReplicasPath` and reads `statusReplicasPath` and `labelSelectorPath`
//! back. This plays the API server's part with the paths of the generated CRD, so
//! the test fails if the CRD points at fields the operator does not read or write.
//! (The rescale flow itself, and its refusal above the partitions, are in
//! `lifecycle.rs`; here: what the scale subresource sees during and after it.)

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use streamjoin_api::{ChangeClass, LifecycleState};
use support::fake_api::job_path;
use support::flows::{arg, condition, record, rolled_out, running, sts};
use support::{Harness, NS, job_json};

struct ScalePaths {
    spec_replicas: String,
    status_replicas: String,
    selector: String,
}

/// `.spec.parallelism` → `/spec/parallelism`.
fn pointer(path: &str) -> String {
    path.replace('.', "/")
}

fn paths() -> ScalePaths {
    let crd = streamjoin_operator::crd::crd().expect("crd");
    let scale = crd.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.clone())
        .expect("scale subresource");
    ScalePaths {
        spec_replicas: pointer(&scale.spec_replicas_path),
        status_replicas: pointer(&scale.status_replicas_path),
        selector: pointer(scale.label_selector_path.as_deref().expect("selector path")),
    }
}

/// `GET .../streamjoinjobs/NAME/scale`: (spec.replicas, status.replicas, status.selector).
fn get_scale(h: &Harness, name: &str) -> (Option<i64>, Option<i64>, Option<String>) {
    let p = paths();
    let job = h.fake.get(&job_path(NS, name)).expect("job");
    (
        job.pointer(&p.spec_replicas).and_then(Value::as_i64),
        job.pointer(&p.status_replicas).and_then(Value::as_i64),
        job.pointer(&p.selector)
            .and_then(Value::as_str)
            .map(str::to_owned),
    )
}

/// `kubectl scale --replicas=n`: only the spec replicas path changes; the generation grows.
fn kubectl_scale(h: &Harness, name: &str, n: i64) {
    let path = job_path(NS, name);
    let mut job = h.fake.get(&path).expect("job");
    *job.pointer_mut(&paths().spec_replicas)
        .expect("spec replicas path exists") = json!(n);
    let generation = job["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
    job["metadata"]["generation"] = json!(generation);
    h.fake.put(&path, job);
}

/// The selector string as a label map (`a=b,c=d`).
fn labels(selector: &str) -> BTreeMap<String, String> {
    selector
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn kubectl_scale_rescales_through_a_savepoint_and_the_scale_subresource_shows_the_running_pods()
 {
    let mut h = Harness::new();
    let mut m = job_json("clicks");
    m["spec"]["parallelism"] = json!(2);
    h.create_job(m);
    running(&mut h, "clicks", 2).await;

    let (spec, status, selector) = get_scale(&h, "clicks");
    assert_eq!((spec, status), (Some(2), Some(2)));
    // The selector counts exactly the job's pods: the StatefulSet's selector and pods.
    let selector = labels(&selector.expect("status.selector written"));
    let s = sts(&h, "clicks");
    assert_eq!(Some(&selector), s.spec.selector.match_labels.as_ref());
    let pod_labels = s
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));

    kubectl_scale(&h, "clicks", 3);
    h.reconcile("clicks").await.expect("savepoint");
    let r = record(&h, "clicks");
    assert_eq!(r.state, LifecycleState::Savepointing);
    assert_eq!(
        r.last_change.map(|c| (c.class, c.fields)),
        Some((ChangeClass::Scale, vec!["parallelism".to_owned()]))
    );
    let t = h.runtime.triggered();
    assert_eq!(t.len(), 2);
    assert!(t.iter().all(|t| t.stop));
    // Asked for 3; 2 pods run until the savepoint completes.
    assert_eq!(get_scale(&h, "clicks").0, Some(3));
    assert_eq!(get_scale(&h, "clicks").1, Some(2));

    h.reconcile("clicks").await.expect("deploy");
    let s = sts(&h, "clicks");
    assert_eq!(s.spec.replicas, Some(3));
    assert!(arg(&s, "--restore-from").is_some_and(|p| p.ends_with(&t[0].id)));
    rolled_out(&mut h, "clicks", 3).await;
    assert_eq!(record(&h, "clicks").state, LifecycleState::Running);
    let (spec, status, selector) = get_scale(&h, "clicks");
    assert_eq!((spec, status), (Some(3), Some(3)));
    assert!(selector.is_some());

    // Above the 4 partitions: refused; the scale subresource shows the gap.
    kubectl_scale(&h, "clicks", 5);
    h.reconcile("clicks").await.expect("refused");
    let (st, reason, _) = condition(&h.job("clicks"), "Degraded");
    assert_eq!(
        (st.as_str(), reason.as_str()),
        ("True", "ParallelismAbovePartitions")
    );
    assert_eq!(get_scale(&h, "clicks").0, Some(5));
    assert_eq!(get_scale(&h, "clicks").1, Some(3));
    assert_eq!(sts(&h, "clicks").spec.replicas, Some(3));
    assert_eq!(
        h.runtime.triggered().len(),
        2,
        "no savepoint for a refused scale"
    );
}
