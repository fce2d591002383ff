//! Stream record to CloudEvent.

use bytes::Bytes;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use cloudevents::{AttributesWriter, Event, EventBuilder, EventBuilderV10};
use dynamodb_source_api::{EVENT_TYPE, EventName, PayloadFormat, StreamArn, TableArn};
use dynamodb_source_stream::{MalformedRecord, StreamRecord};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::binary::{self, EncodeError, Values, value_at};
use crate::format::{self, FormatError};
use crate::key;
use crate::overrides::CeOverrides;

/// Extension carrying the kind of change, as TriggerMesh named it.
pub const EXT_OPERATION: &str = "dynamodboperation";
/// CloudEvents sequence extension: the record's sequence number.
pub const EXT_SEQUENCE: &str = "sequence";
/// CloudEvents partitioning extension: the item key.
pub const EXT_PARTITION_KEY: &str = "partitionkey";

static OPERATION: HeaderName = HeaderName::from_static("ce-dynamodboperation");
static SEQUENCE: HeaderName = HeaderName::from_static("ce-sequence");
static PARTITION_KEY: HeaderName = HeaderName::from_static("ce-partitionkey");
static EVENT_TYPE_VALUE: HeaderValue = HeaderValue::from_static(EVENT_TYPE);

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("record {event_id}")]
    Format {
        event_id: String,
        #[source]
        source: FormatError,
    },
    #[error("record {event_id}: writing the CloudEvent's headers")]
    Encode {
        event_id: String,
        #[source]
        source: EncodeError,
    },
    #[error("record {event_id}: building the CloudEvent")]
    Build {
        event_id: String,
        #[source]
        source: cloudevents::event::EventBuilderError,
    },
}

/// A record's event, ready to be written as a request: the values that
/// differ per event, as header values that share one buffer, and its body.
#[derive(Debug)]
pub struct RecordEvent {
    id: HeaderValue,
    sequence: HeaderValue,
    /// The item key, for `subject` and `partitionkey`; `None` for a record
    /// without one.
    key: Option<HeaderValue>,
    time: Option<HeaderValue>,
    operation: EventName,
    body: Bytes,
}

impl RecordEvent {
    /// The event's id, for logs.
    pub fn id(&self) -> &str {
        self.id.to_str().unwrap_or_default()
    }

    /// The item key as its request carries it.
    pub fn subject(&self) -> Option<&[u8]> {
        self.key.as_ref().map(HeaderValue::as_bytes)
    }

    /// The body: the event's data.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Builds the events of one source.
#[derive(Debug, Clone)]
pub struct EventFactory {
    source: String,
    /// `source` as a header value, made once.
    source_header: HeaderValue,
    format: PayloadFormat,
    overrides: CeOverrides,
    /// How many overrides are not of an extension every event has.
    overrides_added: usize,
    /// Whether an override replaces `partitionkey` (which only events of
    /// keyed records have).
    overrides_partition_key: bool,
}

impl EventFactory {
    pub fn new(table: &TableArn, format: PayloadFormat, overrides: CeOverrides) -> Self {
        let source = table.to_string();
        let overridden = |name: &HeaderName| overrides.headers().iter().any(|(n, _)| n == name);
        let overrides_added = overrides.headers().len()
            - usize::from(overridden(&OPERATION))
            - usize::from(overridden(&SEQUENCE));
        EventFactory {
            source_header: binary::text_value(&source),
            source,
            format,
            overrides_partition_key: overridden(&PARTITION_KEY),
            overrides_added,
            overrides,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The event for one record of `stream`.
    pub fn build(&self, record: &StreamRecord, stream: &StreamArn) -> Result<Event, EventError> {
        let data = self.data(record, stream)?;
        self.build_with(record, data)
    }

    /// The event's `data`: the record in the source's payload format.
    fn data(&self, record: &StreamRecord, stream: &StreamArn) -> Result<Vec<u8>, EventError> {
        format::render(self.format, record, stream).map_err(|source| EventError::Format {
            event_id: record.event_id.clone(),
            source,
        })
    }

    /// The event of `record` as [`EventFactory::build`] makes it, with its
    /// `data` already rendered (for a record whose [`RecordEvent`] has it).
    pub fn build_with(&self, record: &StreamRecord, data: Vec<u8>) -> Result<Event, EventError> {
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
        if let Some(time) = time_of(record) {
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

    /// The same event as [`EventFactory::build`], made straight from the
    /// record for its binary-mode request ([`EventFactory::headers`]; a test
    /// holds the two to each other).
    ///
    /// Every record takes this path to its request, so it skips what the
    /// SDK's `Event` costs per record: an allocation for every attribute and
    /// extension, a map of extensions, and formatting each value again to
    /// encode it. What differs per event (id, sequence, key, time) shares one
    /// buffer; the rest (type, source, operation, overrides) are header
    /// values made once.
    pub fn record_event(
        &self,
        record: &StreamRecord,
        stream: &StreamArn,
    ) -> Result<RecordEvent, EventError> {
        let data = self.data(record, stream)?;
        // Room for a key and a time beside the id and sequence number.
        let mut values = Values::with_capacity(
            record.event_id.len() + record.sequence_number.as_str().len() + 96,
        );
        let id = values.text(&record.event_id);
        let sequence = values.text(record.sequence_number.as_str());
        let key = record
            .keys
            .as_ref()
            .map(|keys| values.write(|out| key::render_into(keys, out)))
            .filter(|range| !range.is_empty());
        let time = time_of(record).map(|time| values.write(|out| rfc3339(time, out)));
        let values = values.finish();
        let encode = |range, name: &HeaderName| {
            value_at(&values, range, name).map_err(|source| EventError::Encode {
                event_id: record.event_id.clone(),
                source,
            })
        };
        Ok(RecordEvent {
            id: encode(id, &binary::ID)?,
            sequence: encode(sequence, &SEQUENCE)?,
            key: key.map(|key| encode(key, &binary::SUBJECT)).transpose()?,
            time: time.map(|time| encode(time, &binary::TIME)).transpose()?,
            operation: record.event_name,
            body: Bytes::from(data),
        })
    }

    /// The headers of `event`'s request (binary content mode), with room for
    /// `room` more: sized to exactly that, so the map is never grown.
    ///
    /// Made for each attempt rather than kept with the event: a header map
    /// of a dozen entries is about 1.4 KB, which every record in flight
    /// would hold, and an attempt would copy anyway (the request takes its
    /// headers).
    pub fn headers(&self, event: &RecordEvent, room: usize) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.header_count(event) + room);
        headers.insert(binary::SPEC_VERSION.clone(), binary::V1_0.clone());
        headers.insert(binary::ID.clone(), event.id.clone());
        headers.insert(binary::TYPE.clone(), EVENT_TYPE_VALUE.clone());
        headers.insert(binary::SOURCE.clone(), self.source_header.clone());
        headers.insert(CONTENT_TYPE, binary::JSON.clone());
        if let Some(key) = &event.key {
            headers.insert(binary::SUBJECT.clone(), key.clone());
            headers.insert(PARTITION_KEY.clone(), key.clone());
        }
        if let Some(time) = &event.time {
            headers.insert(binary::TIME.clone(), time.clone());
        }
        headers.insert(
            OPERATION.clone(),
            HeaderValue::from_static(event.operation.as_str()),
        );
        headers.insert(SEQUENCE.clone(), event.sequence.clone());
        // After this source's own, as the SDK path adds them: an override of
        // the same name replaces the source's value.
        for (name, value) in self.overrides.headers() {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    /// How many headers [`EventFactory::headers`] writes for `event`: the
    /// seven every event has (specversion, id, type, source, content type,
    /// operation, sequence), `subject` and `partitionkey` for a keyed record,
    /// `time`, and the overrides that are not of one of these.
    fn header_count(&self, event: &RecordEvent) -> usize {
        let keyed = event.key.is_some();
        let own = 7 + if keyed { 2 } else { 0 } + usize::from(event.time.is_some());
        let added = match keyed {
            // `overrides_partition_key` means `overrides_added` counts it.
            true if self.overrides_partition_key => self.overrides_added - 1,
            _ => self.overrides_added,
        };
        own + added
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

/// The event's `time`: when the record was written, if the API said.
fn time_of(record: &StreamRecord) -> Option<DateTime<Utc>> {
    let time = record.approximate_creation?;
    Utc.timestamp_opt(time.secs(), time.subsec_nanos()).single()
}

/// `time` as chrono's `to_rfc3339` writes it (what the SDK's `Event` puts in
/// `ce-time`: seconds with the shortest of 0, 3, 6 or 9 fraction digits,
/// `+00:00`), without the String it allocates.
fn rfc3339(time: DateTime<Utc>, out: &mut String) {
    fn digits(out: &mut String, value: u32, width: u32) {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
        }
    }
    let year = time.year();
    let nanos = time.nanosecond();
    let Ok(year) = u32::try_from(year) else {
        out.push_str(&time.to_rfc3339());
        return;
    };
    if year > 9999 || nanos >= 1_000_000_000 {
        // Years of five digits and leap seconds: rare enough for chrono's own.
        out.push_str(&time.to_rfc3339());
        return;
    }
    digits(out, year, 4);
    out.push('-');
    digits(out, time.month(), 2);
    out.push('-');
    digits(out, time.day(), 2);
    out.push('T');
    digits(out, time.hour(), 2);
    out.push(':');
    digits(out, time.minute(), 2);
    out.push(':');
    digits(out, time.second(), 2);
    if nanos != 0 {
        out.push('.');
        if nanos.is_multiple_of(1_000_000) {
            digits(out, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            digits(out, nanos / 1_000, 6);
        } else {
            digits(out, nanos, 9);
        }
    }
    out.push_str("+00:00");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use aws_smithy_types::DateTime as AwsTime;
    use dynamodb_source_stream::{AttributeValue, Image, Item, SequenceNumber};

    use super::*;
    use crate::binary::{ExtensionHeaders, encode};

    fn stream() -> StreamArn {
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-05-01T12:00:00.000"
            .parse()
            .expect("valid")
    }

    fn factory(format: PayloadFormat, overrides: &[(&str, &str)]) -> EventFactory {
        let source: dynamodb_source_api::SourceArn =
            "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
                .parse()
                .expect("valid");
        let overrides = CeOverrides::new(
            overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .expect("valid overrides");
        EventFactory::new(source.table(), format, overrides)
    }

    fn record(keys: Option<Item>, time: Option<AwsTime>, name: EventName) -> StreamRecord {
        let image = Item::from([
            ("pk".to_owned(), AttributeValue::S("a".to_owned())),
            ("n".to_owned(), AttributeValue::N("1".to_owned())),
        ]);
        StreamRecord {
            event_id: "c81e728d9d4c2f636f067f89cc14862c".to_owned(),
            event_name: name,
            event_version: Some("1.1".into()),
            event_source: Some("aws:dynamodb".into()),
            aws_region: Some("us-east-1".into()),
            approximate_creation: time,
            keys,
            new_image: Some(Image::from_item(&image)),
            old_image: None,
            sequence_number: SequenceNumber::parse("000000000000000000042").expect("digits"),
            size_bytes: Some(26),
            stream_view_type: Some("NEW_IMAGE".into()),
            user_identity: None,
        }
    }

    fn sorted(headers: &HeaderMap) -> BTreeMap<String, Vec<u8>> {
        headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The direct path must write what the SDK's `Event` path writes.
    #[test]
    fn binary_writes_what_the_built_event_encodes_to() {
        let keys = |pairs: &[(&str, AttributeValue)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect::<Item>(),
            )
        };
        let times = [
            None,
            Some(AwsTime::from_secs(1_700_000_000)),
            Some(AwsTime::from_secs_and_nanos(1_700_000_000, 120_000_000)),
            Some(AwsTime::from_secs_and_nanos(1_700_000_000, 1_000)),
            Some(AwsTime::from_secs_and_nanos(1_700_000_000, 7)),
            Some(AwsTime::from_secs(0)),
            Some(AwsTime::from_secs(-62_135_596_800)),
            Some(AwsTime::from_secs(-62_135_596_801)),
            Some(AwsTime::from_secs(253_402_300_800)),
        ];
        let all_keys = [
            None,
            keys(&[]),
            keys(&[("pk", AttributeValue::S("user#1".to_owned()))]),
            keys(&[
                ("sk", AttributeValue::N("42".to_owned())),
                ("pk", AttributeValue::S("a,b=c% d".to_owned())),
            ]),
            keys(&[("pk", AttributeValue::S("東京\u{7}é".to_owned()))]),
            keys(&[("bin", AttributeValue::B(vec![0, 1, 255]))]),
        ];
        let overrides: [&[(&str, &str)]; 3] = [
            &[],
            &[("team", "orders"), ("env", "prod")],
            &[
                ("sequence", "mine"),
                ("partitionkey", "ü"),
                ("dynamodboperation", "X"),
            ],
        ];
        let mut compared = 0;
        for format in [
            PayloadFormat::Aws,
            PayloadFormat::Plain,
            PayloadFormat::TriggerMesh,
        ] {
            for overrides in overrides {
                let factory = factory(format, overrides);
                for time in times {
                    for keys in &all_keys {
                        for name in [EventName::Insert, EventName::Modify, EventName::Remove] {
                            let record = record(keys.clone(), time, name);
                            let direct = factory.record_event(&record, &stream()).expect("direct");
                            let direct_headers = factory.headers(&direct, 0);
                            assert_eq!(direct_headers.len(), factory.header_count(&direct));
                            // Room for three more: adding them never grows the map.
                            let mut roomy = factory.headers(&direct, 3);
                            let capacity = roomy.capacity();
                            for extra in ["x-a", "x-b", "x-c"] {
                                roomy.insert(extra, HeaderValue::from_static("v"));
                            }
                            assert_eq!(roomy.capacity(), capacity);
                            let event = factory.build(&record, &stream()).expect("built");
                            let through_event =
                                encode(event, &ExtensionHeaders::default(), 0).expect("encoded");
                            assert_eq!(
                                sorted(&direct_headers),
                                sorted(&through_event.headers),
                                "{format:?} {overrides:?} {time:?} {keys:?} {name:?}"
                            );
                            assert_eq!(direct.body(), &through_event.body);
                            let exact =
                                HeaderMap::<HeaderValue>::with_capacity(direct_headers.len());
                            assert_eq!(direct_headers.capacity(), exact.capacity());
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 3 * 3 * 9 * 6 * 3);
    }

    #[test]
    fn times_are_written_as_chrono_writes_rfc3339() {
        for (secs, nanos) in [
            (1_700_000_000, 0),
            (1_700_000_000, 100_000_000),
            (1_700_000_000, 123_456_000),
            (1_700_000_000, 123_456_789),
            (-1, 999_999_999),
            (253_402_300_799, 0),
            (253_402_300_800, 5_000_000),
            (-62_167_219_200, 0),
            (-62_167_219_201, 0),
        ] {
            let time = Utc.timestamp_opt(secs, nanos).single().expect("in range");
            let mut out = String::new();
            rfc3339(time, &mut out);
            assert_eq!(out, time.to_rfc3339(), "{secs}.{nanos}");
        }
    }
}
