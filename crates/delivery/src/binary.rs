//! CloudEvents binary content mode over HTTP: the event's attributes as
//! `ce-` headers, `datacontenttype` as `Content-Type`, its data as the body.
//!
//! The official SDK's HTTP binding writes the same headers (a test holds the
//! two to each other) but allocates a name and a value for every header, and
//! its request is copied for every attempt. Here all values of an event share
//! one buffer ([`Values`]), so building them costs one allocation and copying
//! them for an attempt none, and header names are made once per source
//! (BENCHMARKS.md has what that saved). A stream record's event is written
//! straight from the record ([`crate::EventFactory::record_event`]);
//! [`encode`] writes any other [`Event`] (dead letters, malformed records).
//!
//! Values the SDK cannot write at all, those with characters outside
//! printable ASCII (an item key in another script, say), are percent-encoded
//! as UTF-8 as the HTTP binding (3.1.3.2) asks, instead of failing the event.
//! Printable ASCII is written as it is, as the SDK and Go's SDK (which the
//! original source used) write it, so receivers see unchanged headers.

use std::collections::HashMap;
use std::fmt::{Display, Write};
use std::ops::Range;
use std::sync::RwLock;

use bytes::Bytes;
use cloudevents::Event;
use cloudevents::event::Data;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

pub(crate) static SPEC_VERSION: HeaderName = HeaderName::from_static("ce-specversion");
pub(crate) static ID: HeaderName = HeaderName::from_static("ce-id");
pub(crate) static TYPE: HeaderName = HeaderName::from_static("ce-type");
pub(crate) static SOURCE: HeaderName = HeaderName::from_static("ce-source");
static DATA_SCHEMA: HeaderName = HeaderName::from_static("ce-dataschema");
pub(crate) static SUBJECT: HeaderName = HeaderName::from_static("ce-subject");
pub(crate) static TIME: HeaderName = HeaderName::from_static("ce-time");

/// The value of `ce-specversion`: this product writes CloudEvents 1.0.
pub(crate) static V1_0: HeaderValue = HeaderValue::from_static("1.0");
/// The `Content-Type` of every event made from a record.
pub(crate) static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The header of an extension attribute, e.g. `ce-sequence`.
pub(crate) fn extension_header(
    extension: &str,
) -> Result<HeaderName, http::header::InvalidHeaderName> {
    HeaderName::try_from(format!("ce-{extension}"))
}

/// A header value of text known before any event (a source, an override),
/// written as [`Values::text`] writes it.
pub(crate) fn text_value(text: &str) -> HeaderValue {
    let mut values = Values::with_capacity(text.len());
    let range = values.text(text);
    let bytes = values.finish();
    // `Values` holds printable ASCII only, which every header value may hold.
    HeaderValue::from_maybe_shared(bytes.slice(range))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The values of one event's headers, written one after another into one
/// buffer, each checked as it is written: anything outside printable ASCII is
/// percent-encoded, so every value it holds can be a header value.
pub(crate) struct Values(String);

impl Values {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Values(String::with_capacity(capacity))
    }

    /// Appends `text`; returns where it went.
    pub(crate) fn text(&mut self, text: &str) -> Range<usize> {
        self.write(|out| out.push_str(text))
    }

    /// Appends what `write` writes; returns where it went.
    pub(crate) fn write(&mut self, write: impl FnOnce(&mut String)) -> Range<usize> {
        let start = self.0.len();
        write(&mut self.0);
        if !self.0.as_bytes()[start..]
            .iter()
            .all(|&byte| printable(byte))
        {
            let written = self.0.split_off(start);
            for byte in written.bytes() {
                if printable(byte) {
                    self.0.push(char::from(byte));
                } else {
                    // Writing to a String cannot fail.
                    let _ = write!(self.0, "%{byte:02X}");
                }
            }
        }
        start..self.0.len()
    }

    /// Appends `value` as the SDK renders it as text.
    fn display(&mut self, value: &dyn Display) -> Range<usize> {
        // Writing to a String cannot fail.
        self.write(|out| {
            let _ = write!(out, "{value}");
        })
    }

    pub(crate) fn finish(self) -> Bytes {
        Bytes::from(self.0)
    }
}

/// The header value of `range` of `values` (written by [`Values`]).
pub(crate) fn value_at(
    values: &Bytes,
    range: Range<usize>,
    name: &HeaderName,
) -> Result<HeaderValue, EncodeError> {
    HeaderValue::from_maybe_shared(values.slice(range)).map_err(|source| EncodeError::HeaderValue {
        name: name.clone(),
        source,
    })
}

/// Headers of extension attributes, made on first use: a source's events
/// carry the same few extensions.
#[derive(Debug, Default)]
pub(crate) struct ExtensionHeaders(RwLock<HashMap<String, HeaderName>>);

impl ExtensionHeaders {
    fn get(&self, extension: &str) -> Result<HeaderName, EncodeError> {
        let known = self.0.read().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = known.get(extension) {
            return Ok(name.clone());
        }
        drop(known);
        let name = extension_header(extension).map_err(|source| EncodeError::ExtensionName {
            extension: extension.to_owned(),
            source,
        })?;
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(extension.to_owned(), name.clone());
        Ok(name)
    }
}

/// The header of a context attribute (not an extension).
fn attribute_header(name: &str) -> Option<&'static HeaderName> {
    Some(match name {
        "specversion" => &SPEC_VERSION,
        "id" => &ID,
        "type" => &TYPE,
        "source" => &SOURCE,
        "datacontenttype" => &CONTENT_TYPE,
        "dataschema" => &DATA_SCHEMA,
        "subject" => &SUBJECT,
        "time" => &TIME,
        _ => return None,
    })
}

/// Bytes a header value may hold as they are: printable ASCII, space and tab.
fn printable(byte: u8) -> bool {
    byte == b'\t' || (0x20..0x7f).contains(&byte)
}

/// Why an event cannot be written as an HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown context attribute {0:?}")]
    UnknownAttribute(String),
    #[error("extension {extension:?} cannot be a header name")]
    ExtensionName {
        extension: String,
        #[source]
        source: http::header::InvalidHeaderName,
    },
    #[error("header {name} cannot hold its value")]
    HeaderValue {
        name: HeaderName,
        #[source]
        source: http::header::InvalidHeaderValue,
    },
    #[error("the event's JSON data cannot be serialised")]
    Data(#[source] serde_json::Error),
}

/// An event in binary content mode: its headers and its body.
#[derive(Debug)]
pub(crate) struct BinaryEvent {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Encodes `event` as binary-mode headers and body, with room for `room`
/// more headers.
pub(crate) fn encode(
    mut event: Event,
    extensions: &ExtensionHeaders,
    room: usize,
) -> Result<BinaryEvent, EncodeError> {
    let mut values = Values::with_capacity(512);
    let mut fields: Vec<(HeaderName, Range<usize>)> = Vec::with_capacity(12);
    for (name, value) in event.iter_attributes() {
        let header =
            attribute_header(name).ok_or_else(|| EncodeError::UnknownAttribute(name.to_owned()))?;
        fields.push((header.clone(), values.display(&value)));
    }
    for (name, value) in event.iter_extensions() {
        fields.push((extensions.get(name)?, values.display(value)));
    }
    let values = values.finish();
    let mut headers = HeaderMap::with_capacity(fields.len() + room);
    for (name, range) in fields {
        let value = value_at(&values, range, &name)?;
        headers.insert(name, value);
    }
    let body = match event.take_data().2 {
        Some(Data::Binary(bytes)) => Bytes::from(bytes),
        Some(Data::String(text)) => Bytes::from(text),
        Some(Data::Json(json)) => {
            Bytes::from(serde_json::to_vec(&json).map_err(EncodeError::Data)?)
        }
        None => Bytes::new(),
    };
    Ok(BinaryEvent { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use cloudevents::{EventBuilder, EventBuilderV10};

    /// What the official SDK's HTTP binding writes for `event`.
    fn sdk(event: Event) -> (Vec<(String, Vec<u8>)>, Bytes) {
        let request = http::Request::<Option<Bytes>>::try_from(event).expect("the SDK encodes it");
        let (parts, body) = request.into_parts();
        (sorted(&parts.headers), body.unwrap_or_default())
    }

    fn ours(event: Event) -> (Vec<(String, Vec<u8>)>, Bytes) {
        let BinaryEvent { headers, body } =
            encode(event, &ExtensionHeaders::default(), 0).expect("encoded");
        (sorted(&headers), body)
    }

    fn sorted(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        all.sort();
        all
    }

    fn events() -> Vec<Event> {
        let time = Utc
            .timestamp_opt(1_700_000_000, 123_000_000)
            .single()
            .expect("time");
        vec![
            EventBuilderV10::new()
                .id("1")
                .source("arn:aws:dynamodb:eu-west-1:123456789012:table/orders")
                .ty("com.amazon.dynamodb.stream_record")
                .build()
                .expect("minimal"),
            EventBuilderV10::new()
                .id("a1b2c3")
                .source("arn:aws:dynamodb:eu-west-1:123456789012:table/orders")
                .ty("com.amazon.dynamodb.stream_record")
                .subject("pk=user%2C1,sk=42")
                .time(time)
                .extension("partitionkey", "pk=user%2C1,sk=42")
                .extension("sequence", "000000000000000000042")
                .extension("dynamodboperation", "MODIFY")
                .extension("flag", true)
                .extension("count", 7i64)
                .data("application/json", br#"{"a":1}"#.to_vec())
                .build()
                .expect("full"),
            EventBuilderV10::new()
                .id("x")
                .source("/s")
                .ty("t")
                .data_with_schema(
                    "application/json",
                    "https://example.com/schema.json",
                    serde_json::json!({"text": "quoted \"value\" with spaces"}),
                )
                .subject("a b \"c\" 100%")
                .build()
                .expect("schema and JSON data"),
            EventBuilderV10::new()
                .id("y")
                .source("/s")
                .ty("t")
                .data("text/plain", "plain text".to_owned())
                .build()
                .expect("string data"),
        ]
    }

    #[test]
    fn writes_what_the_official_sdk_writes() {
        for event in events() {
            assert_eq!(ours(event.clone()), sdk(event));
        }
    }

    #[test]
    fn text_outside_printable_ascii_is_percent_encoded_not_refused() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("pk=José")
            .extension("partitionkey", "pk=東京\u{7}")
            .build()
            .expect("event");
        assert!(
            http::Request::<Option<Bytes>>::try_from(event.clone()).is_err(),
            "the SDK cannot send it"
        );
        let headers = encode(event, &ExtensionHeaders::default(), 0)
            .expect("encoded")
            .headers;
        assert_eq!(headers["ce-subject"], "pk=Jos%C3%A9");
        assert_eq!(headers["ce-partitionkey"], "pk=%E6%9D%B1%E4%BA%AC%07");
    }

    #[test]
    fn extension_names_that_are_not_header_names_are_an_error() {
        let mut event = Event::default();
        event.set_extension("bad name", "x");
        let error = encode(event, &ExtensionHeaders::default(), 0).expect_err("refused");
        assert!(error.to_string().contains("bad name"), "{error}");
    }
}
