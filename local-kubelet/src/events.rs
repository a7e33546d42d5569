//! Events of pods, reported as component `kubelet` (best effort).

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, node: &str) -> Self {
        let reporter = Reporter {
            controller: "kubelet".to_owned(),
            instance: Some(node.to_owned()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes an event on the pod (on one of its containers when `container` is
    /// given). Failures are logged at debug level only: events are a convenience.
    pub async fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warn: bool,
        reason: &str,
        note: String,
    ) {
        let mut reference: ObjectReference = pod.object_ref(&());
        if let Some(c) = container {
            reference.field_path = Some(format!("spec.containers{{{c}}}"));
        }
        let ev = Event {
            type_: if warn {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::debug!("event {reason} not published: {e}");
        }
    }
}
