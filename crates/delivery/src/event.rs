//! Stream record to CloudEvent.

use chrono::{TimeZone, Utc};
use cloudevents::{AttributesWriter, Event, EventBuilder, EventBuilderV10};
use dynamodb_source_api::{EVENT_TYPE, PayloadFormat, StreamArn, TableArn};
use dynamodb_source_stream::{MalformedRecord, StreamRecord};

use crate::format::{self, FormatError};
use crate::key;
use crate::overrides::CeOverrides;

/// Extension carrying the kind of change, as TriggerMesh named it.
pub const EXT_OPERATION: &str = "dynamodboperation";
/// CloudEvents sequence extension: the record's sequence number.
pub const EXT_SEQUENCE: &str = "sequence";
/// CloudEvents partitioning extension: the item key.
pub const EXT_PARTITION_KEY: &str = "partitionkey";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("record {event_id}")]
    Format {
        event_id: String,
        #[source]
        source: FormatError,
    },
    #[error("record {event_id}: building the CloudEvent")]
    Build {
        event_id: String,
        #[source]
        source: cloudevents::event::EventBuilderError,
    },
}

/// Builds the events of one source.
#[derive(Debug, Clone)]
pub struct EventFactory {
    source: String,
    format: PayloadFormat,
    overrides: CeOverrides,
}

impl EventFactory {
    pub fn new(table: &TableArn, format: PayloadFormat, overrides: CeOverrides) -> Self {
        EventFactory {
            source: table.to_string(),
            format,
            overrides,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The event for one record of `stream`.
    pub fn build(&self, record: &StreamRecord, stream: &StreamArn) -> Result<Event, EventError> {
        let data =
            format::render(self.format, record, stream).map_err(|source| EventError::Format {
                event_id: record.event_id.clone(),
                source,
            })?;
        let key = record.keys.as_ref().map(key::render).unwrap_or_default();
        let mut builder = EventBuilderV10::new()
            .id(record.event_id.as_str())
            .source(self.source.as_str())
            .ty(EVENT_TYPE)
            .extension(EXT_OPERATION, record.event_name.as_str())
            .extension(EXT_SEQUENCE, record.sequence_number.as_str())
            .data("application/json", data);
        if !key.is_empty() {
            builder = builder
                .subject(key.as_str())
                .extension(EXT_PARTITION_KEY, key.as_str());
        }
        if let Some(time) = record
            .approximate_creation
            .and_then(|t| Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single())
        {
            builder = builder.time(time);
        }
        for (name, value) in self.overrides.extensions() {
            builder = builder.extension(name, value);
        }
        builder.build().map_err(|e| EventError::Build {
            event_id: record.event_id.clone(),
            source: e,
        })
    }

    /// The event sent to the dead-letter sink for a record that could not be
    /// turned into an event: what could be read of it, and why it failed.
    pub fn malformed(&self, id: &str, reason: &str, raw: &str) -> Event {
        let data = serde_json::json!({ "error": reason, "record": raw });
        let mut event = Event::default();
        event.set_id(id);
        event.set_source(self.source.as_str());
        event.set_type(EVENT_TYPE);
        event.set_extension("dynamodbmalformed", "true");
        event.set_data("application/json", data);
        event
    }

    /// The dead-letter event for a malformed record.
    pub fn from_malformed(&self, malformed: &MalformedRecord) -> Event {
        let id = malformed
            .event_id
            .clone()
            .or_else(|| {
                malformed
                    .sequence_number
                    .as_ref()
                    .map(|s| format!("malformed-{s}"))
            })
            .or_else(|| malformed.place.as_ref().map(|p| format!("malformed-{p}")))
            .unwrap_or_else(|| "malformed".to_owned());
        self.malformed(&id, &malformed.reason, &malformed.raw)
    }
}
