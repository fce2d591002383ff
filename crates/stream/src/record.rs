//! A stream record as this product understands it, checked once when it is
//! read ([`crate::wire`]) so everything downstream works on checked values.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_types::DateTime;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_api::EventName;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::SequenceNumber;
use crate::wire::{base64_bytes, base64_list};

/// An item (or key) image: attribute name to value, in a stable order so that
/// everything rendered from it is deterministic.
pub type Item = BTreeMap<String, AttributeValue>;

/// A DynamoDB attribute value, with the type it was written with. It reads
/// and writes DynamoDB's JSON form, `{"S": "text"}`; reading a type it does
/// not know is an error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum AttributeValue {
    S(String),
    /// A number exactly as DynamoDB sent it (up to 38 significant digits).
    N(String),
    #[serde(deserialize_with = "base64_bytes")]
    B(Vec<u8>),
    #[serde(rename = "SS")]
    Ss(Vec<String>),
    #[serde(rename = "NS")]
    Ns(Vec<String>),
    #[serde(rename = "BS", deserialize_with = "base64_list")]
    Bs(Vec<Vec<u8>>),
    M(Item),
    L(Vec<AttributeValue>),
    #[serde(rename = "NULL")]
    Null(bool),
    #[serde(rename = "BOOL")]
    Bool(bool),
}

impl Serialize for AttributeValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            AttributeValue::S(s) => map.serialize_entry("S", s)?,
            AttributeValue::N(n) => map.serialize_entry("N", n)?,
            AttributeValue::B(b) => map.serialize_entry("B", &STANDARD.encode(b))?,
            AttributeValue::Ss(ss) => map.serialize_entry("SS", ss)?,
            AttributeValue::Ns(ns) => map.serialize_entry("NS", ns)?,
            AttributeValue::Bs(bs) => map.serialize_entry("BS", &Base64List(bs))?,
            AttributeValue::M(m) => map.serialize_entry("M", m)?,
            AttributeValue::L(l) => map.serialize_entry("L", l)?,
            AttributeValue::Null(b) => map.serialize_entry("NULL", b)?,
            AttributeValue::Bool(b) => map.serialize_entry("BOOL", b)?,
        }
        map.end()
    }
}

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

/// An item image (`NewImage`, `OldImage`) as the Streams API sent it:
/// DynamoDB's typed JSON, not parsed.
///
/// Parsing both images of a production item into trees, only to write the
/// same JSON back out for the AWS payload format, was about half of the
/// adapter's CPU per event and most of the memory a held record took. The
/// AWS format copies this text as it is; the formats that reshape attribute
/// values parse it when they render, and a record they cannot parse is
/// dead-lettered then, like any record that cannot become an event.
#[derive(Debug, Clone)]
pub struct Image(Box<RawValue>);

/// An image that is not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("an item image must be a JSON object, not {0}")]
pub struct NotAnObject(String);

impl Image {
    /// An image from the API's JSON; the attribute values are checked only
    /// when [`Image::parse`] reads them.
    pub fn new(json: Box<RawValue>) -> Result<Image, NotAnObject> {
        if json.get().starts_with('{') {
            Ok(Image(json))
        } else {
            let mut start: String = json.get().chars().take(40).collect();
            if start.len() < json.get().len() {
                start.push('…');
            }
            Err(NotAnObject(start))
        }
    }

    /// The image written as the API writes it, for records made here.
    pub fn from_item(item: &Item) -> Image {
        // Writing a map of strings, numbers kept as text and base64 cannot fail.
        Image(serde_json::value::to_raw_value(item).unwrap_or_default())
    }

    /// The image's JSON, exactly as the API sent it.
    pub fn json(&self) -> &RawValue {
        &self.0
    }

    /// The image as attribute values.
    pub fn parse(&self) -> Result<Item, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

/// Equal images are the same JSON text.
impl PartialEq for Image {
    fn eq(&self, other: &Image) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Who made a change the table's owner did not make itself (TTL deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub principal_id: Option<String>,
    pub kind: Option<String>,
}

/// One change to one item.
///
/// Optional fields stay optional: the payload formats must tell a field the
/// API left out from one it sent empty.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    pub event_id: String,
    pub event_name: EventName,
    /// This and the other texts every record of a stream repeats are shared
    /// between the records of an answer.
    pub event_version: Option<Arc<str>>,
    pub event_source: Option<Arc<str>>,
    pub aws_region: Option<Arc<str>>,
    pub approximate_creation: Option<DateTime>,
    pub keys: Option<Item>,
    pub new_image: Option<Image>,
    pub old_image: Option<Image>,
    pub sequence_number: SequenceNumber,
    pub size_bytes: Option<i64>,
    pub stream_view_type: Option<Arc<str>>,
    pub user_identity: Option<UserIdentity>,
}

/// A record the API returned that cannot be turned into an event.
///
/// It keeps what could be read so it can be logged and dead-lettered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "malformed stream record (eventID {event_id:?}, sequence number {sequence_number:?}): {reason}"
)]
pub struct MalformedRecord {
    pub reason: String,
    pub event_id: Option<String>,
    pub sequence_number: Option<SequenceNumber>,
    /// The record's JSON as the API sent it, for the dead-letter sink and the log.
    pub raw: String,
    /// Where it was read, for a record with neither eventID nor sequence
    /// number: its shard, the last sequence number before it and its place
    /// after that. Reading resumes after a sequence number, so the same
    /// record gets the same place when it is read again.
    pub place: Option<String>,
}

/// The API carries milliseconds at most; epoch seconds read as a float leave
/// noise below that (…983.996999), which would leak into `time` and the payloads.
pub(crate) fn to_millis(time: &DateTime) -> DateTime {
    let millis = (f64::from(time.subsec_nanos()) / 1e6).round() as u32;
    if millis >= 1000 {
        DateTime::from_secs(time.secs() + 1)
    } else {
        DateTime::from_secs_and_nanos(time.secs(), millis * 1_000_000)
    }
}
