//! CloudEvents binary content mode over HTTP: the event's attributes as
//! `ce-` headers, `datacontenttype` as `Content-Type`, its data as the body.
//!
//! The official SDK's HTTP binding writes the same headers (a test holds the
//! two to each other) but allocates a name and a value for every header, and
//! its request is copied for every attempt. Here all values of an event share
//! one buffer, so building them costs one allocation and copying them for an
//! attempt none, and header names are made once per source (BENCHMARKS.md
//! has what that saved).
//!
//! Values the SDK cannot write at all, those with characters outside
//! printable ASCII (an item key in another script, say), are percent-encoded
//! as UTF-8 as the HTTP binding (3.1.3.2) asks, instead of failing the event.
//! Printable ASCII is written as it is, as the SDK and Go's SDK (which the
//! original source used) write it, so receivers see unchanged headers.

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write;
use std::ops::Range;
use std::sync::RwLock;

use bytes::Bytes;
use cloudevents::Event;
use cloudevents::event::Data;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

static SPEC_VERSION: HeaderName = HeaderName::from_static("ce-specversion");
static ID: HeaderName = HeaderName::from_static("ce-id");
static TYPE: HeaderName = HeaderName::from_static("ce-type");
static SOURCE: HeaderName = HeaderName::from_static("ce-source");
static DATA_SCHEMA: HeaderName = HeaderName::from_static("ce-dataschema");
static SUBJECT: HeaderName = HeaderName::from_static("ce-subject");
static TIME: HeaderName = HeaderName::from_static("ce-time");

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
        let name = HeaderName::try_from(format!("ce-{extension}")).map_err(|source| {
            EncodeError::ExtensionName {
                extension: extension.to_owned(),
                source,
            }
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

/// Appends `value` as the SDK renders it as text, any byte outside
/// [`printable`] percent-encoded; returns where it went.
fn push(out: &mut Vec<u8>, value: &dyn Display) -> Range<usize> {
    let start = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{value}");
    if !out[start..].iter().all(|&byte| printable(byte)) {
        for byte in out.split_off(start) {
            if printable(byte) {
                out.push(byte);
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    start..out.len()
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

/// Encodes `event` as binary-mode headers and body.
pub(crate) fn encode(
    mut event: Event,
    extensions: &ExtensionHeaders,
) -> Result<(HeaderMap, Bytes), EncodeError> {
    let mut values = Vec::with_capacity(512);
    let mut fields: Vec<(HeaderName, Range<usize>)> = Vec::with_capacity(12);
    for (name, value) in event.iter_attributes() {
        let header =
            attribute_header(name).ok_or_else(|| EncodeError::UnknownAttribute(name.to_owned()))?;
        fields.push((header.clone(), push(&mut values, &value)));
    }
    for (name, value) in event.iter_extensions() {
        fields.push((extensions.get(name)?, push(&mut values, value)));
    }
    let values = Bytes::from(values);
    let mut headers = HeaderMap::with_capacity(fields.len() + 2);
    for (name, range) in fields {
        let value = match HeaderValue::from_maybe_shared(values.slice(range)) {
            Ok(value) => value,
            Err(source) => return Err(EncodeError::HeaderValue { name, source }),
        };
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
    Ok((headers, body))
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
        let (headers, body) = encode(event, &ExtensionHeaders::default()).expect("encoded");
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
        let (headers, _) = encode(event, &ExtensionHeaders::default()).expect("encoded");
        assert_eq!(headers["ce-subject"], "pk=Jos%C3%A9");
        assert_eq!(headers["ce-partitionkey"], "pk=%E6%9D%B1%E4%BA%AC%07");
    }

    #[test]
    fn extension_names_that_are_not_header_names_are_an_error() {
        let mut event = Event::default();
        event.set_extension("bad name", "x");
        let error = encode(event, &ExtensionHeaders::default()).expect_err("refused");
        assert!(error.to_string().contains("bad name"), "{error}");
    }
}
