//! A stream record as this product understands it, checked once when it is
//! read ([`crate::wire`]) so everything downstream works on checked values.

use std::collections::BTreeMap;

use aws_smithy_types::DateTime;
use dynamodb_source_api::EventName;
use serde::Deserialize;

use crate::ids::SequenceNumber;
use crate::wire::{base64_bytes, base64_list};

/// An item (or key) image: attribute name to value, in a stable order so that
/// everything rendered from it is deterministic.
pub type Item = BTreeMap<String, AttributeValue>;

/// A DynamoDB attribute value, with the type it was written with. It reads
/// DynamoDB's JSON form, `{"S": "text"}`; a type it does not know is an error.
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
    pub event_version: Option<String>,
    pub event_source: Option<String>,
    pub aws_region: Option<String>,
    pub approximate_creation: Option<DateTime>,
    pub keys: Option<Item>,
    pub new_image: Option<Item>,
    pub old_image: Option<Item>,
    pub sequence_number: SequenceNumber,
    pub size_bytes: Option<i64>,
    pub stream_view_type: Option<String>,
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
