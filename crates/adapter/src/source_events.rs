//! Kubernetes Events on the source, for what its owner must notice without
//! reading logs: records lost to the stream's retention.

use dynamodb_source_api::Report;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

/// Records Events on one `AWSDynamoDBSource`.
pub(crate) struct SourceEvents {
    recorder: Recorder,
    reference: ObjectReference,
}

impl SourceEvents {
    pub(crate) fn new(client: Client, namespace: &str, name: &str) -> Self {
        let reporter = Reporter {
            controller: "dynamodb-source-adapter".to_owned(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        SourceEvents {
            recorder: Recorder::new(client, reporter),
            reference: ObjectReference {
                api_version: Some("sources.triggermesh.io/v1alpha1".to_owned()),
                kind: Some("AWSDynamoDBSource".to_owned()),
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            },
        }
    }

    /// A Warning Event; failures to record it are logged, never fatal.
    pub(crate) async fn warn(&self, reason: &str, note: &str) {
        self.publish(EventType::Warning, reason, note).await;
    }

    /// A Normal Event, the same way.
    pub(crate) async fn normal(&self, reason: &str, note: &str) {
        self.publish(EventType::Normal, reason, note).await;
    }

    async fn publish(&self, type_: EventType, reason: &str, note: &str) {
        // The API refuses notes over 1 kB.
        let note = note[..note.floor_char_boundary(1000)].to_owned();
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "ReadStream".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &self.reference).await {
            warn!(error = %Report(&e), reason, "recording a Kubernetes Event failed");
        }
    }
}
