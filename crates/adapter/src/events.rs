//! Kubernetes Events on the source, for what its owner must notice without
//! reading logs: records lost to the stream's retention.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

/// Records Events on one `AWSDynamoDBSource`.
pub struct SourceEvents {
    recorder: Recorder,
    reference: ObjectReference,
}

impl SourceEvents {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
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
    pub async fn warn(&self, reason: &str, note: &str) {
        let mut note = note.to_owned();
        // The API refuses notes over 1 kB.
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: "ReadStream".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &self.reference).await {
            warn!(error = %e, reason, "recording a Kubernetes Event failed");
        }
    }
}
