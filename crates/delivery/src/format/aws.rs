//! The record as the DynamoDB Streams API and Lambda present it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_api::StreamArn;
use dynamodb_source_stream::{AttributeValue, Item, StreamRecord};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use super::FormatError;

/// An attribute value with its type tag: `{"S": "x"}`, `{"N": "1"}`, ...
pub struct Typed<'a>(pub &'a AttributeValue);

struct TypedItem<'a>(&'a Item);

struct Base64List<'a>(&'a [Vec<u8>]);

impl Serialize for Base64List<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for bytes in self.0 {
            seq.serialize_element(&STANDARD.encode(bytes))?;
        }
        seq.end()
    }
}

impl Serialize for Typed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            AttributeValue::S(s) => map.serialize_entry("S", s)?,
            AttributeValue::N(n) => map.serialize_entry("N", n)?,
            AttributeValue::B(b) => map.serialize_entry("B", &STANDARD.encode(b))?,
            AttributeValue::Ss(ss) => map.serialize_entry("SS", ss)?,
            AttributeValue::Ns(ns) => map.serialize_entry("NS", ns)?,
            AttributeValue::Bs(bs) => map.serialize_entry("BS", &Base64List(bs))?,
            AttributeValue::M(m) => map.serialize_entry("M", &TypedItem(m))?,
            AttributeValue::L(l) => {
                map.serialize_entry("L", &l.iter().map(Typed).collect::<Vec<_>>())?
            }
            AttributeValue::Null(b) => map.serialize_entry("NULL", b)?,
            AttributeValue::Bool(b) => map.serialize_entry("BOOL", b)?,
        }
        map.end()
    }
}

impl Serialize for TypedItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &Typed(value))?;
        }
        map.end()
    }
}

/// Seconds since the epoch, whole when the API gave whole seconds, as Lambda shows it.
pub(crate) fn epoch_seconds(time: &aws_smithy_types::DateTime) -> serde_json::Number {
    if time.subsec_nanos() == 0 {
        serde_json::Number::from(time.secs())
    } else {
        serde_json::Number::from_f64(time.as_secs_f64()).unwrap_or_else(|| time.secs().into())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Dynamodb<'a, I: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_creation_date_time: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<I>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_image: Option<I>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_image: Option<I>,
    sequence_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_view_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// The envelope shared by the AWS and Plain formats; `I` renders an item image.
#[derive(Serialize)]
pub(crate) struct Envelope<'a, I: Serialize> {
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "eventVersion", skip_serializing_if = "Option::is_none")]
    event_version: Option<&'a str>,
    #[serde(rename = "eventSource", skip_serializing_if = "Option::is_none")]
    event_source: Option<&'a str>,
    #[serde(rename = "awsRegion", skip_serializing_if = "Option::is_none")]
    aws_region: Option<&'a str>,
    dynamodb: Dynamodb<'a, I>,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: String,
    #[serde(rename = "userIdentity", skip_serializing_if = "Option::is_none")]
    user_identity: Option<Identity<'a>>,
}

pub(crate) fn envelope<'a, I: Serialize>(
    record: &'a StreamRecord,
    stream: &StreamArn,
    image: impl Fn(&'a Item) -> I,
) -> Envelope<'a, I> {
    Envelope {
        event_id: &record.event_id,
        event_name: record.event_name.as_str(),
        event_version: record.event_version.as_deref(),
        event_source: record.event_source.as_deref(),
        aws_region: record.aws_region.as_deref(),
        dynamodb: Dynamodb {
            approximate_creation_date_time: record.approximate_creation.as_ref().map(epoch_seconds),
            keys: record.keys.as_ref().map(&image),
            new_image: record.new_image.as_ref().map(&image),
            old_image: record.old_image.as_ref().map(&image),
            sequence_number: record.sequence_number.as_str(),
            size_bytes: record.size_bytes,
            stream_view_type: record.stream_view_type.as_deref(),
        },
        event_source_arn: stream.to_string(),
        user_identity: record.user_identity.as_ref().map(|identity| Identity {
            principal_id: identity.principal_id.as_deref(),
            kind: identity.kind.as_deref(),
        }),
    }
}

/// The record as a JSON value, as [`render`] writes it: what filter patterns look at.
pub fn to_value(
    record: &StreamRecord,
    stream: &StreamArn,
) -> Result<serde_json::Value, FormatError> {
    serde_json::to_value(envelope(record, stream, TypedItem)).map_err(FormatError::Json)
}

pub fn render(record: &StreamRecord, stream: &StreamArn) -> Result<Vec<u8>, FormatError> {
    serde_json::to_vec(&envelope(record, stream, TypedItem)).map_err(FormatError::Json)
}
