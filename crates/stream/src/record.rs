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

fn convert_item(map: &HashMap<String, sdk::AttributeValue>) -> Result<Item, String> {
    map.iter()
        .map(|(name, value)| {
            convert_value(value)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("attribute {name:?}: {e}"))
        })
        .collect()
}

fn convert_value(value: &sdk::AttributeValue) -> Result<AttributeValue, String> {
    Ok(match value {
        sdk::AttributeValue::S(s) => AttributeValue::S(s.clone()),
        sdk::AttributeValue::N(n) => AttributeValue::N(n.clone()),
        sdk::AttributeValue::B(b) => AttributeValue::B(b.as_ref().to_vec()),
        sdk::AttributeValue::Ss(ss) => AttributeValue::Ss(ss.clone()),
        sdk::AttributeValue::Ns(ns) => AttributeValue::Ns(ns.clone()),
        sdk::AttributeValue::Bs(bs) => {
            AttributeValue::Bs(bs.iter().map(|b| b.as_ref().to_vec()).collect())
        }
        sdk::AttributeValue::M(m) => AttributeValue::M(convert_item(m)?),
        sdk::AttributeValue::L(l) => {
            AttributeValue::L(l.iter().map(convert_value).collect::<Result<_, _>>()?)
        }
        sdk::AttributeValue::Null(b) => AttributeValue::Null(*b),
        sdk::AttributeValue::Bool(b) => AttributeValue::Bool(*b),
        _ => return Err("an attribute value of a type this version does not know".to_owned()),
    })
}

impl TryFrom<sdk::Record> for StreamRecord {
    type Error = MalformedRecord;

    fn try_from(record: sdk::Record) -> Result<Self, Self::Error> {
        StreamRecord::try_from(&record)
    }
}

impl TryFrom<&sdk::Record> for StreamRecord {
    type Error = MalformedRecord;

    fn try_from(record: &sdk::Record) -> Result<Self, Self::Error> {
        let stream = record.dynamodb();
        let sequence_number = stream
            .and_then(|s| s.sequence_number())
            .and_then(SequenceNumber::parse);
        let malformed = |reason: String| MalformedRecord {
            reason,
            event_id: record.event_id().map(str::to_owned),
            sequence_number: sequence_number.clone(),
            raw: format!("{record:?}"),
        };
        let event_id = record
            .event_id()
            .ok_or_else(|| malformed("no eventID".to_owned()))?
            .to_owned();
        let event_name = match record.event_name() {
            Some(sdk::OperationType::Insert) => EventName::Insert,
            Some(sdk::OperationType::Modify) => EventName::Modify,
            Some(sdk::OperationType::Remove) => EventName::Remove,
            Some(other) => {
                return Err(malformed(format!("unknown eventName {:?}", other.as_str())));
            }
            None => return Err(malformed("no eventName".to_owned())),
        };
        let stream = stream.ok_or_else(|| malformed("no dynamodb section".to_owned()))?;
        let Some(sequence_number) = sequence_number.clone() else {
            return Err(malformed(format!(
                "sequence number {:?} is not a decimal number",
                stream.sequence_number()
            )));
        };
        let image = |map: Option<&HashMap<String, sdk::AttributeValue>>, what: &str| {
            map.map(convert_item)
                .transpose()
                .map_err(|e| malformed(format!("{what}: {e}")))
        };
        Ok(StreamRecord {
            event_id,
            event_name,
            event_version: record.event_version().map(str::to_owned),
            event_source: record.event_source().map(str::to_owned),
            aws_region: record.aws_region().map(str::to_owned),
            approximate_creation: stream.approximate_creation_date_time().map(to_millis),
            keys: image(stream.keys(), "Keys")?,
            new_image: image(stream.new_image(), "NewImage")?,
            old_image: image(stream.old_image(), "OldImage")?,
            sequence_number,
            size_bytes: stream.size_bytes(),
            stream_view_type: stream.stream_view_type().map(|v| v.as_str().to_owned()),
            user_identity: record.user_identity().map(|identity| UserIdentity {
                principal_id: identity.principal_id().map(str::to_owned),
                kind: identity.r#type().map(str::to_owned),
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
        let record = StreamRecord::try_from(&sdk_record().build()).expect("well formed");
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
        let err = StreamRecord::try_from(&record).expect_err("no id");
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
        let err = StreamRecord::try_from(&record).expect_err("unknown op");
        assert!(err.reason.contains("UPSERT"), "{}", err.reason);
    }
}
