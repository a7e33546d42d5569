//! Events (`events.k8s.io/v1`) about jobs. kube-runtime's `Recorder` folds every
//! event with the same type, reason, action and object into one series for six
//! minutes and keeps the first note: a second `SavepointCompleted` showed the
//! first savepoint's location, a second claim's expansion only a count. Here an
//! event repeats (a series, as kubectl shows `x2`) only when its note is the same
//! too; another note is an event of its own.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, ResourceExt};

/// How long a published event can still repeat as a series (as kube-runtime).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);

/// What makes two events the same occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    warning: bool,
    reason: String,
    action: String,
    note: Option<String>,
    regarding: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
}

impl Key {
    fn of(ev: &Event, regarding: &ObjectReference) -> Self {
        Self {
            warning: matches!(ev.type_, EventType::Warning),
            reason: ev.reason.clone(),
            action: ev.action.clone(),
            note: ev.note.clone(),
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
        }
    }
}

pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    published: Mutex<HashMap<Key, K8sEvent>>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the event, or counts one more of the same event (same note)
    /// published within the last six minutes.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key::of(ev, regarding);
        let repeat = self.repeat_of(&key, now);
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &ns);
        let event = match repeat {
            Some(event) => {
                let pp = PatchParams::default();
                api.patch(&event.name_any(), &pp, &Patch::Merge(&event))
                    .await?
            }
            None => {
                let event = self.new_event(ev, regarding, now);
                api.create(&PostParams::default(), &event).await?
            }
        };
        if let Ok(mut published) = self.published.lock() {
            published.insert(key, event);
        }
        Ok(())
    }

    /// The cached event for `key` with its series counted one more, if it is
    /// recent enough; forgets expired ones.
    fn repeat_of(&self, key: &Key, now: Timestamp) -> Option<K8sEvent> {
        let mut published = self.published.lock().ok()?;
        published.retain(|_, e| last_seen(e).is_some_and(|t| t + SERIES_TTL > now));
        let mut event = published.get(key)?.clone();
        let count = event.series.as_ref().map_or(2, |s| s.count + 1);
        event.series = Some(EventSeries {
            count,
            last_observed_time: MicroTime(now),
        });
        Some(event)
    }

    fn new_event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        let subject = regarding.name.as_deref().unwrap_or(controller);
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!("{subject}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(match ev.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..K8sEvent::default()
        }
    }
}

fn last_seen(e: &K8sEvent) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, note: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn job() -> ObjectReference {
        ObjectReference {
            kind: Some("StreamJoinJob".into()),
            namespace: Some("ns".into()),
            name: Some("clicks".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn the_same_reason_with_another_note_is_another_occurrence() {
        let a = Key::of(&event("SavepointCompleted", "s3://b/1"), &job());
        let b = Key::of(&event("SavepointCompleted", "s3://b/2"), &job());
        assert_ne!(a, b);
        assert_eq!(a, Key::of(&event("SavepointCompleted", "s3://b/1"), &job()));
    }
}
