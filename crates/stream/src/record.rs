//! A stream record as this product understands it, converted once from the
//! SDK's shapes so everything downstream works on checked values.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodbstreams::types as sdk;
use aws_smithy_types::DateTime;
use dynamodb_source_api::EventName;

use crate::ids::SequenceNumber;

/// An item (or key) image: attribute name to value, in a stable order so that
/// everything rendered from it is deterministic.
pub type Item = BTreeMap<String, AttributeValue>;

/// A DynamoDB attribute value, with the type it was written with.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    S(String),
    /// A number exactly as DynamoDB sent it (up to 38 significant digits).
    N(String),
    B(Vec<u8>),
    Ss(Vec<String>),
    Ns(Vec<String>),
    Bs(Vec<Vec<u8>>),
    M(Item),
    L(Vec<AttributeValue>),
    Null(bool),
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
    /// The record as the SDK parsed it, for the dead-letter sink and the log.
    pub raw: String,
}

/// The API carries milliseconds at most; the SDK's float parsing leaves noise
/// below that (…983.996999), which would leak into `time` and the payloads.
fn to_millis(time: &DateTime) -> DateTime {
    let millis = (f64::from(time.subsec_nanos()) / 1e6).round() as u32;
    if millis >= 1000 {
        DateTime::from_secs(time.secs() + 1)
    } else {
        DateTime::from_secs_and_nanos(time.secs(), millis * 1_000_000)
    }
}

/// Why an image cannot be converted, if it cannot: an attribute type this
/// SDK version does not know. Checked before anything is moved out of the
/// SDK's record, so a malformed record can still be shown whole.
fn image_problem(map: &HashMap<String, sdk::AttributeValue>) -> Option<String> {
    map.iter()
        .find_map(|(name, value)| value_problem(value).map(|e| format!("attribute {name:?}: {e}")))
}

fn value_problem(value: &sdk::AttributeValue) -> Option<String> {
    match value {
        sdk::AttributeValue::M(m) => image_problem(m),
        sdk::AttributeValue::L(l) => l.iter().find_map(value_problem),
        sdk::AttributeValue::S(_)
        | sdk::AttributeValue::N(_)
        | sdk::AttributeValue::B(_)
        | sdk::AttributeValue::Ss(_)
        | sdk::AttributeValue::Ns(_)
        | sdk::AttributeValue::Bs(_)
        | sdk::AttributeValue::Null(_)
        | sdk::AttributeValue::Bool(_) => None,
        _ => Some("an attribute value of a type this version does not know".to_owned()),
    }
}

/// Moves an image out of the SDK's shape; [`image_problem`] has vetted it.
fn convert_item(map: HashMap<String, sdk::AttributeValue>) -> Item {
    map.into_iter()
        .map(|(name, value)| (name, convert_value(value)))
        .collect()
}

fn convert_value(value: sdk::AttributeValue) -> AttributeValue {
    match value {
        sdk::AttributeValue::S(s) => AttributeValue::S(s),
        sdk::AttributeValue::N(n) => AttributeValue::N(n),
        sdk::AttributeValue::B(b) => AttributeValue::B(b.into_inner()),
        sdk::AttributeValue::Ss(ss) => AttributeValue::Ss(ss),
        sdk::AttributeValue::Ns(ns) => AttributeValue::Ns(ns),
        sdk::AttributeValue::Bs(bs) => {
            AttributeValue::Bs(bs.into_iter().map(|b| b.into_inner()).collect())
        }
        sdk::AttributeValue::M(m) => AttributeValue::M(convert_item(m)),
        sdk::AttributeValue::L(l) => AttributeValue::L(l.into_iter().map(convert_value).collect()),
        sdk::AttributeValue::Null(b) => AttributeValue::Null(b),
        sdk::AttributeValue::Bool(b) => AttributeValue::Bool(b),
        // Ruled out by `value_problem`; an empty string keeps this total.
        _ => AttributeValue::S(String::new()),
    }
}

/// What a record must have to become a [`StreamRecord`], checked on the
/// SDK's record before anything is moved out of it.
fn vet(record: &sdk::Record) -> Result<(EventName, SequenceNumber), String> {
    let stream = record.dynamodb();
    if record.event_id().is_none() {
        return Err("no eventID".to_owned());
    }
    let event_name = match record.event_name() {
        Some(sdk::OperationType::Insert) => EventName::Insert,
        Some(sdk::OperationType::Modify) => EventName::Modify,
        Some(sdk::OperationType::Remove) => EventName::Remove,
        Some(other) => return Err(format!("unknown eventName {:?}", other.as_str())),
        None => return Err("no eventName".to_owned()),
    };
    let stream = stream.ok_or_else(|| "no dynamodb section".to_owned())?;
    let sequence_number = stream
        .sequence_number()
        .and_then(SequenceNumber::parse)
        .ok_or_else(|| {
            format!(
                "sequence number {:?} is not a decimal number",
                stream.sequence_number()
            )
        })?;
    for (what, image) in [
        ("Keys", stream.keys()),
        ("NewImage", stream.new_image()),
        ("OldImage", stream.old_image()),
    ] {
        if let Some(problem) = image.and_then(image_problem) {
            return Err(format!("{what}: {problem}"));
        }
    }
    Ok((event_name, sequence_number))
}

/// Takes the SDK's record apart rather than copying it: every string and
/// image moves into the result.
impl TryFrom<sdk::Record> for StreamRecord {
    type Error = MalformedRecord;

    fn try_from(record: sdk::Record) -> Result<Self, Self::Error> {
        let (event_name, sequence_number) = match vet(&record) {
            Ok(vetted) => vetted,
            Err(reason) => {
                return Err(MalformedRecord {
                    reason,
                    event_id: record.event_id().map(str::to_owned),
                    sequence_number: record
                        .dynamodb()
                        .and_then(|s| s.sequence_number())
                        .and_then(SequenceNumber::parse),
                    raw: format!("{record:?}"),
                });
            }
        };
        let stream = record
            .dynamodb
            .unwrap_or_else(|| sdk::StreamRecord::builder().build());
        Ok(StreamRecord {
            event_id: record.event_id.unwrap_or_default(),
            event_name,
            event_version: record.event_version,
            event_source: record.event_source,
            aws_region: record.aws_region,
            approximate_creation: stream
                .approximate_creation_date_time
                .as_ref()
                .map(to_millis),
            keys: stream.keys.map(convert_item),
            new_image: stream.new_image.map(convert_item),
            old_image: stream.old_image.map(convert_item),
            sequence_number,
            size_bytes: stream.size_bytes,
            stream_view_type: stream.stream_view_type.map(|v| v.as_str().to_owned()),
            user_identity: record.user_identity.map(|identity| UserIdentity {
                principal_id: identity.principal_id,
                kind: identity.r#type,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_record() -> sdk::builders::RecordBuilder {
        sdk::Record::builder()
            .event_id("e1")
            .event_name(sdk::OperationType::Insert)
            .dynamodb(
                sdk::StreamRecord::builder()
                    .sequence_number("000000000000000000001")
                    .keys("pk", sdk::AttributeValue::S("a".into()))
                    .new_image(
                        "nested",
                        sdk::AttributeValue::M(HashMap::from([(
                            "list".to_owned(),
                            sdk::AttributeValue::L(vec![sdk::AttributeValue::N("1".into())]),
                        )])),
                    )
                    .build(),
            )
    }

    #[test]
    fn converts_a_well_formed_record() {
        let record = StreamRecord::try_from(sdk_record().build()).expect("well formed");
        assert_eq!(record.event_name, EventName::Insert);
        assert_eq!(record.sequence_number.as_str(), "000000000000000000001");
        assert_eq!(
            record.new_image.expect("image")["nested"],
            AttributeValue::M(Item::from([(
                "list".to_owned(),
                AttributeValue::L(vec![AttributeValue::N("1".into())])
            )]))
        );
        assert_eq!(record.old_image, None);
    }

    #[test]
    fn record_without_event_id_is_malformed_but_keeps_its_position() {
        let mut record = sdk_record().build();
        record.event_id = None;
        let err = StreamRecord::try_from(record).expect_err("no id");
        assert_eq!(err.reason, "no eventID");
        assert_eq!(
            err.sequence_number.map(|s| s.as_str().to_owned()),
            Some("000000000000000000001".to_owned())
        );
    }

    #[test]
    fn unknown_operation_is_malformed() {
        let record = sdk_record()
            .event_name(sdk::OperationType::from("UPSERT"))
            .build();
        let err = StreamRecord::try_from(record).expect_err("unknown op");
        assert!(err.reason.contains("UPSERT"), "{}", err.reason);
    }
}
