//! GetRecords answers read straight from their JSON into this product's
//! records.
//!
//! The SDK's own parse of a GetRecords answer cost 4-5 us per record (a
//! sixth of the adapter's CPU) and ran as one piece per batch, holding up
//! everything else on its thread for a millisecond at a time. Here
//! the page is split into one raw record each in a single pass, and each
//! record is parsed on its own, when the reader gets to it.

use aws_smithy_types::DateTime;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_api::EventName;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::ids::SequenceNumber;
use crate::record::{Image, Item, MalformedRecord, StreamRecord, UserIdentity, to_millis};

/// One GetRecords answer, its records not yet parsed.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(rename = "Records", default)]
    pub records: Vec<Box<RawValue>>,
    /// `None` once the shard is closed and read to its end.
    #[serde(rename = "NextShardIterator")]
    pub next_iterator: Option<String>,
}

impl Page {
    pub fn parse(body: &[u8]) -> Result<Page, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[derive(Deserialize)]
struct WireRecord {
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    #[serde(rename = "eventName")]
    event_name: Option<String>,
    #[serde(rename = "eventVersion")]
    event_version: Option<String>,
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    #[serde(rename = "awsRegion")]
    aws_region: Option<String>,
    dynamodb: Option<WireChange>,
    #[serde(rename = "userIdentity")]
    user_identity: Option<WireIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireChange {
    /// Epoch seconds, as the JSON protocol sends timestamps.
    approximate_creation_date_time: Option<f64>,
    keys: Option<Item>,
    new_image: Option<Box<RawValue>>,
    old_image: Option<Box<RawValue>>,
    sequence_number: Option<String>,
    size_bytes: Option<i64>,
    stream_view_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireIdentity {
    principal_id: Option<String>,
    r#type: Option<String>,
}

/// Just enough of a record that failed to parse to place it in the shard.
#[derive(Deserialize)]
struct Position {
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    dynamodb: Option<PositionChange>,
}

#[derive(Deserialize)]
struct PositionChange {
    #[serde(rename = "SequenceNumber")]
    sequence_number: Option<String>,
}

/// Parses one record. A record that cannot become a [`StreamRecord`] keeps
/// its JSON, and its id and position where they can be read, so that it is
/// logged, dead-lettered and passed over rather than lost or stalling the shard.
pub(crate) fn record(raw: &RawValue) -> Result<StreamRecord, MalformedRecord> {
    let malformed = |reason: String| {
        let position = serde_json::from_str::<Position>(raw.get()).ok();
        let (event_id, sequence_number) = match position {
            Some(p) => (
                p.event_id,
                p.dynamodb
                    .and_then(|d| d.sequence_number)
                    .as_deref()
                    .and_then(SequenceNumber::parse),
            ),
            None => (None, None),
        };
        MalformedRecord {
            reason,
            event_id,
            sequence_number,
            raw: raw.get().to_owned(),
            place: None,
        }
    };
    let wire: WireRecord = serde_json::from_str(raw.get())
        .map_err(|e| malformed(format!("not a stream record: {e}")))?;
    let Some(event_id) = wire.event_id else {
        return Err(malformed("no eventID".to_owned()));
    };
    let event_name = match wire.event_name.as_deref() {
        Some("INSERT") => EventName::Insert,
        Some("MODIFY") => EventName::Modify,
        Some("REMOVE") => EventName::Remove,
        Some(other) => return Err(malformed(format!("unknown eventName {other:?}"))),
        None => return Err(malformed("no eventName".to_owned())),
    };
    let Some(change) = wire.dynamodb else {
        return Err(malformed("no dynamodb section".to_owned()));
    };
    let Some(sequence_number) = change
        .sequence_number
        .as_deref()
        .and_then(SequenceNumber::parse)
    else {
        return Err(malformed(format!(
            "sequence number {:?} is not a decimal number",
            change.sequence_number
        )));
    };
    let image = |json: Option<Box<RawValue>>, name: &str| {
        json.map(Image::new)
            .transpose()
            .map_err(|e| malformed(format!("{name}: {e}")))
    };
    let new_image = image(change.new_image, "NewImage")?;
    let old_image = image(change.old_image, "OldImage")?;
    Ok(StreamRecord {
        event_id,
        event_name,
        event_version: wire.event_version,
        event_source: wire.event_source,
        aws_region: wire.aws_region,
        approximate_creation: change
            .approximate_creation_date_time
            .map(|secs| to_millis(&DateTime::from_secs_f64(secs))),
        keys: change.keys,
        new_image,
        old_image,
        sequence_number,
        size_bytes: change.size_bytes,
        stream_view_type: change.stream_view_type,
        user_identity: wire.user_identity.map(|identity| UserIdentity {
            principal_id: identity.principal_id,
            kind: identity.r#type,
        }),
    })
}

/// `B`: a base64 string on the wire.
pub(crate) fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

/// `BS`: a list of base64 strings.
pub(crate) fn base64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .into_iter()
        .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AttributeValue;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    const WELL_FORMED: &str = r#"{
        "eventID": "e1", "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1700000000.123,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {
                "pk": {"S": "a"}, "n": {"N": "12345678901234567890123456789012345678"},
                "b": {"B": "AAEC"}, "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2.5"]},
                "bs": {"BS": ["AQ==", "Ag=="]}, "nothing": {"NULL": true}, "yes": {"BOOL": true},
                "nested": {"M": {"list": {"L": [{"N": "1"}, {"S": "two"}]}}}
            },
            "SequenceNumber": "000000000000000000001",
            "SizeBytes": 42, "StreamViewType": "NEW_IMAGE"
        },
        "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},
        "somethingNewer": {"the API may add": "fields"}
    }"#;

    #[test]
    fn parses_every_field_and_attribute_type() {
        let record = record(&raw(WELL_FORMED)).expect("well formed");
        assert_eq!(record.event_id, "e1");
        assert_eq!(record.event_name, EventName::Insert);
        assert_eq!(record.sequence_number.as_str(), "000000000000000000001");
        assert_eq!(
            record.approximate_creation,
            Some(DateTime::from_secs_and_nanos(1_700_000_000, 123_000_000))
        );
        assert_eq!(record.size_bytes, Some(42));
        assert_eq!(record.stream_view_type.as_deref(), Some("NEW_IMAGE"));
        assert_eq!(
            record.user_identity,
            Some(UserIdentity {
                principal_id: Some("dynamodb.amazonaws.com".to_owned()),
                kind: Some("Service".to_owned()),
            })
        );
        let image = record
            .new_image
            .expect("image")
            .parse()
            .expect("typed values");
        assert_eq!(
            image["n"],
            AttributeValue::N("12345678901234567890123456789012345678".to_owned())
        );
        assert_eq!(image["b"], AttributeValue::B(vec![0, 1, 2]));
        assert_eq!(image["bs"], AttributeValue::Bs(vec![vec![1], vec![2]]));
        assert_eq!(
            image["ss"],
            AttributeValue::Ss(vec!["x".to_owned(), "y".to_owned()])
        );
        assert_eq!(image["nothing"], AttributeValue::Null(true));
        assert_eq!(image["yes"], AttributeValue::Bool(true));
        assert_eq!(
            image["nested"],
            AttributeValue::M(Item::from([(
                "list".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::N("1".to_owned()),
                    AttributeValue::S("two".to_owned())
                ])
            )]))
        );
        assert_eq!(record.old_image, None);
    }

    #[test]
    fn record_without_event_id_is_malformed_but_keeps_its_position() {
        let json =
            r#"{"eventName": "INSERT", "dynamodb": {"SequenceNumber": "000000000000000000001"}}"#;
        let err = record(&raw(json)).expect_err("no id");
        assert_eq!(err.reason, "no eventID");
        assert_eq!(
            err.sequence_number.map(|s| s.as_str().to_owned()),
            Some("000000000000000000001".to_owned())
        );
        assert_eq!(err.raw, json);
    }

    #[test]
    fn unknown_operation_is_malformed() {
        let err = record(&raw(&WELL_FORMED.replace("INSERT", "UPSERT"))).expect_err("unknown op");
        assert!(err.reason.contains("UPSERT"), "{}", err.reason);
        assert_eq!(err.event_id.as_deref(), Some("e1"));
    }

    #[test]
    fn unknown_attribute_type_in_the_keys_is_malformed_but_keeps_its_position() {
        let json = WELL_FORMED.replace(
            r#""Keys": {"pk": {"S": "a"}}"#,
            r#""Keys": {"pk": {"VECTOR": [1, 2]}}"#,
        );
        let err = record(&raw(&json)).expect_err("unknown type");
        assert!(err.reason.contains("VECTOR"), "{}", err.reason);
        assert_eq!(err.event_id.as_deref(), Some("e1"));
        assert_eq!(
            err.sequence_number.map(|s| s.as_str().to_owned()),
            Some("000000000000000000001".to_owned())
        );
    }

    #[test]
    fn images_are_kept_as_sent_and_checked_when_parsed() {
        let json = WELL_FORMED.replace(r#"{"S": "two"}"#, r#"{"VECTOR": [1, 2]}"#);
        let record = record(&raw(&json)).expect("images are not parsed when read");
        let image = record.new_image.expect("image");
        assert!(image.json().get().contains(r#"{"VECTOR": [1, 2]}"#));
        let err = image.parse().expect_err("unknown type");
        assert!(err.to_string().contains("VECTOR"), "{err}");
    }

    #[test]
    fn an_image_that_is_not_an_object_is_malformed() {
        let json = WELL_FORMED.replace(r#""NewImage": {"#, r#""NewImage": "text", "Was": {"#);
        let err = record(&raw(&json)).expect_err("not an object");
        assert!(err.reason.starts_with("NewImage: "), "{}", err.reason);
        assert!(err.reason.contains("\"text\""), "{}", err.reason);
        assert_eq!(err.event_id.as_deref(), Some("e1"));
    }

    #[test]
    fn bad_base64_and_bad_sequence_numbers_are_malformed() {
        let json = WELL_FORMED.replace(
            r#""Keys": {"pk": {"S": "a"}}"#,
            r#""Keys": {"pk": {"B": "not base64!"}}"#,
        );
        let err = record(&raw(&json)).expect_err("bad B");
        assert!(err.reason.contains("not a stream record"), "{}", err.reason);
        let err = record(&raw(&WELL_FORMED.replace("000000000000000000001", "12ab")))
            .expect_err("bad sequence number");
        assert!(err.reason.contains("12ab"), "{}", err.reason);
        assert_eq!(err.sequence_number, None);
    }

    #[test]
    fn a_page_splits_into_raw_records_and_its_next_iterator() {
        let body =
            format!(r#"{{"Records": [{WELL_FORMED}, {{"x": 1}}], "NextShardIterator": "it-2"}}"#);
        let page = Page::parse(body.as_bytes()).expect("page");
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.next_iterator.as_deref(), Some("it-2"));
        let closed = Page::parse(br#"{"Records": []}"#).expect("last page of a closed shard");
        assert!(closed.records.is_empty());
        assert_eq!(closed.next_iterator, None);
        assert!(Page::parse(b"<html>").is_err());
    }
}
