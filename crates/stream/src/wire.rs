//! GetRecords answers read straight from their JSON into this product's
//! records.
//!
//! The SDK's own parse of a GetRecords answer cost 4-5 us per record (a
//! sixth of the adapter's CPU) and ran as one piece per batch. Here the page
//! and its records are read in one pass over the body: splitting the page
//! into raw records first and parsing each again scanned every byte twice
//! and copied every record once more (about 1.5-2 us per 1 KB record). The
//! price is that a page is parsed as one piece (about 3 us per 1 KB record,
//! so 0.6 ms of the reading thread for one shard's 200), where the second
//! pass had been spread between the reader's turns.
//!
//! A record that cannot become a [`StreamRecord`] must still be logged and
//! dead-lettered with its JSON as the API sent it, which one pass into typed
//! records cannot keep. Such records are rare (the API writes them), so a
//! page holding one is read again the old way, record by record, each kept
//! as its JSON until it is parsed: the slow path decides every answer the
//! fast path does not accept, and the fast path accepts only pages the slow
//! path reads as all well formed, so both give the same records.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aws_smithy_types::DateTime;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_api::EventName;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::ids::SequenceNumber;
use crate::record::{Image, Item, MalformedRecord, StreamRecord, UserIdentity, to_millis};

/// One GetRecords answer: its records parsed and checked, in shard order.
#[derive(Debug)]
pub struct Page {
    /// A record the API sent that cannot become an event is kept as a
    /// [`MalformedRecord`] in its place, its `place` not yet set.
    pub records: Vec<Result<StreamRecord, MalformedRecord>>,
    /// `None` once the shard is closed and read to its end.
    pub next_iterator: Option<String>,
}

impl Page {
    /// Fails only when the body is not a GetRecords answer at all.
    pub fn parse(body: &[u8]) -> Result<Page, serde_json::Error> {
        if let Ok(page) = serde_json::from_slice::<CheckedPage>(body) {
            return Ok(Page {
                records: page.records.0,
                next_iterator: page.next_iterator,
            });
        }
        let page: RawPage = serde_json::from_slice(body)?;
        Ok(Page {
            records: one_by_one(&page.records),
            next_iterator: page.next_iterator,
        })
    }
}

/// The one-pass reading of a page whose records are all well formed.
#[derive(Deserialize)]
struct CheckedPage {
    #[serde(rename = "Records", default)]
    records: CheckedRecords,
    #[serde(rename = "NextShardIterator")]
    next_iterator: Option<String>,
}

/// Records parsed and checked as the page is read; the first one that fails
/// fails the page, which is then read by the slow path ([`RawPage`]).
#[derive(Default)]
struct CheckedRecords(Vec<Result<StreamRecord, MalformedRecord>>);

impl<'de> Deserialize<'de> for CheckedRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CheckedRecords, D::Error> {
        struct Records;
        impl<'de> Visitor<'de> for Records {
            type Value = CheckedRecords;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of stream records")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CheckedRecords, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                let mut repeated = Repeated::default();
                while let Some(wire) = seq.next_element::<WireRecord>()? {
                    records.push(Ok(checked(wire, &mut repeated).map_err(de::Error::custom)?));
                }
                Ok(CheckedRecords(records))
            }
        }
        d.deserialize_seq(Records)
    }
}

/// The slow path: the page split into its records' JSON, each parsed on its
/// own by [`record`], so a malformed one keeps its text.
#[derive(Deserialize)]
struct RawPage {
    #[serde(rename = "Records", default)]
    records: Vec<Box<RawValue>>,
    #[serde(rename = "NextShardIterator")]
    next_iterator: Option<String>,
}

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(rename = "eventID")]
    event_id: Option<String>,
    #[serde(rename = "eventName", borrow)]
    event_name: Option<Text<'a>>,
    #[serde(rename = "eventVersion", borrow)]
    event_version: Option<Text<'a>>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Option<Text<'a>>,
    #[serde(rename = "awsRegion", borrow)]
    aws_region: Option<Text<'a>>,
    #[serde(borrow)]
    dynamodb: Option<WireChange<'a>>,
    #[serde(rename = "userIdentity")]
    user_identity: Option<WireIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireChange<'a> {
    /// Epoch seconds, as the JSON protocol sends timestamps.
    approximate_creation_date_time: Option<f64>,
    keys: Option<Item>,
    new_image: Option<Box<RawValue>>,
    old_image: Option<Box<RawValue>>,
    #[serde(borrow)]
    sequence_number: Option<Text<'a>>,
    size_bytes: Option<i64>,
    #[serde(borrow)]
    stream_view_type: Option<Text<'a>>,
}

/// A string of the answer, borrowed from it unless it holds escapes: the
/// fields a record only passes on are not copied on their way.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        struct Borrowing;
        impl<'de> Visitor<'de> for Borrowing {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        d.deserialize_str(Borrowing)
    }
}

/// The texts every record of a stream repeats (its event version, source,
/// region and view type), made once per answer and shared by its records
/// rather than allocated for each.
#[derive(Default)]
struct Repeated {
    event_version: Option<Arc<str>>,
    event_source: Option<Arc<str>>,
    aws_region: Option<Arc<str>>,
    stream_view_type: Option<Arc<str>>,
}

/// `text`, shared with the previous record's when it is the same.
fn shared(last: &mut Option<Arc<str>>, text: Option<Text>) -> Option<Arc<str>> {
    let text = text?;
    match last {
        Some(known) if **known == *text.0 => Some(known.clone()),
        _ => {
            let made = Arc::<str>::from(text.0);
            *last = Some(made.clone());
            Some(made)
        }
    }
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

/// The slow path's records, each parsed on its own by [`record`].
fn one_by_one(records: &[Box<RawValue>]) -> Vec<Result<StreamRecord, MalformedRecord>> {
    let mut repeated = Repeated::default();
    records
        .iter()
        .map(|raw| record(raw, &mut repeated))
        .collect()
}

/// Parses one record. A record that cannot become a [`StreamRecord`] keeps
/// its JSON, and its id and position where they can be read, so that it is
/// logged, dead-lettered and passed over rather than lost or stalling the shard.
fn record(raw: &RawValue, repeated: &mut Repeated) -> Result<StreamRecord, MalformedRecord> {
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
    checked(wire, repeated).map_err(malformed)
}

/// The checks a record that parsed must pass to become a [`StreamRecord`],
/// shared by both paths so that they agree; the error is the reason.
fn checked(wire: WireRecord, repeated: &mut Repeated) -> Result<StreamRecord, String> {
    let Some(event_id) = wire.event_id else {
        return Err("no eventID".to_owned());
    };
    let event_name = match wire.event_name.as_ref().map(|name| &*name.0) {
        Some("INSERT") => EventName::Insert,
        Some("MODIFY") => EventName::Modify,
        Some("REMOVE") => EventName::Remove,
        Some(other) => return Err(format!("unknown eventName {other:?}")),
        None => return Err("no eventName".to_owned()),
    };
    let Some(change) = wire.dynamodb else {
        return Err("no dynamodb section".to_owned());
    };
    let sequence_text = change.sequence_number.as_ref().map(|text| &*text.0);
    let Some(sequence_number) = sequence_text.and_then(SequenceNumber::parse) else {
        return Err(format!(
            "sequence number {sequence_text:?} is not a decimal number"
        ));
    };
    let image = |json: Option<Box<RawValue>>, name: &str| {
        json.map(Image::new)
            .transpose()
            .map_err(|e| format!("{name}: {e}"))
    };
    let new_image = image(change.new_image, "NewImage")?;
    let old_image = image(change.old_image, "OldImage")?;
    Ok(StreamRecord {
        event_id,
        event_name,
        event_version: shared(&mut repeated.event_version, wire.event_version),
        event_source: shared(&mut repeated.event_source, wire.event_source),
        aws_region: shared(&mut repeated.aws_region, wire.aws_region),
        approximate_creation: change
            .approximate_creation_date_time
            .map(|secs| to_millis(&DateTime::from_secs_f64(secs))),
        keys: change.keys,
        new_image,
        old_image,
        sequence_number,
        size_bytes: change.size_bytes,
        stream_view_type: shared(&mut repeated.stream_view_type, change.stream_view_type),
        user_identity: wire.user_identity.map(|identity| UserIdentity {
            principal_id: identity.principal_id,
            kind: identity.r#type,
        }),
    })
}

/// `B`: a base64 string on the wire.
pub(crate) fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(de::Error::custom)
}

/// `BS`: a list of base64 strings.
pub(crate) fn base64_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .into_iter()
        .map(|text| STANDARD.decode(text).map_err(de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::AttributeValue;

    /// One record parsed on its own, as the slow path parses it.
    fn record(raw: &RawValue) -> Result<StreamRecord, MalformedRecord> {
        super::record(raw, &mut Repeated::default())
    }

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

    /// What the slow path makes of a page: each record parsed on its own.
    fn record_by_record(body: &str) -> Vec<Result<StreamRecord, MalformedRecord>> {
        let page: RawPage = serde_json::from_str(body).expect("a page");
        one_by_one(&page.records)
    }

    #[test]
    fn a_well_formed_page_is_read_in_one_pass_into_the_same_records() {
        let modify = WELL_FORMED
            .replace("INSERT", "MODIFY")
            .replace(r#""e1""#, r#""e\u0032""#)
            .replace("000000000000000000001", "000000000000000000002")
            .replace(
                r#""NewImage""#,
                r#""OldImage": {"pk": {"S": "\"a\""}}, "NewImage""#,
            );
        let body =
            format!(r#"{{"NextShardIterator": "it-2", "Records": [{WELL_FORMED}, {modify}]}}"#);
        let one_pass: CheckedPage = serde_json::from_str(&body).expect("all well formed");
        assert_eq!(one_pass.records.0, record_by_record(&body));
        assert!(one_pass.records.0.iter().all(Result::is_ok));
        let page = Page::parse(body.as_bytes()).expect("page");
        assert_eq!(page.records, one_pass.records.0);
        assert_eq!(page.next_iterator.as_deref(), Some("it-2"));
        let second = page.records[1].as_ref().expect("well formed");
        assert_eq!(second.event_id, "e2");
        assert_eq!(
            second.old_image.as_ref().map(|i| i.json().get()),
            Some(r#"{"pk": {"S": "\"a\""}}"#)
        );
    }

    /// The texts every record repeats are made once per answer; escaped
    /// text (which cannot be borrowed from the answer) reads as well.
    #[test]
    fn repeated_texts_are_shared_within_a_page_and_escapes_are_read() {
        let escaped = WELL_FORMED
            .replace(r#""us-east-1""#, r#""us-east-\u0031""#)
            .replace(r#""INSERT""#, r#""\u0049NSERT""#)
            .replace("000000000000000000001", "000000000000000000003");
        let second = WELL_FORMED.replace("000000000000000000001", "000000000000000000002");
        let body = format!(r#"{{"Records": [{WELL_FORMED}, {second}, {escaped}]}}"#);
        let page = Page::parse(body.as_bytes()).expect("page");
        let records: Vec<&StreamRecord> = page
            .records
            .iter()
            .map(|r| r.as_ref().expect("well formed"))
            .collect();
        let [first, second, third] = records[..] else {
            panic!("three records");
        };
        let same = |a: &Option<Arc<str>>, b: &Option<Arc<str>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        assert!(same(&first.event_version, &second.event_version));
        assert!(same(&first.event_source, &third.event_source));
        assert!(same(&first.stream_view_type, &third.stream_view_type));
        assert!(same(&first.aws_region, &second.aws_region));
        assert_eq!(third.aws_region.as_deref(), Some("us-east-1"));
        assert_eq!(third.event_name, EventName::Insert);
        assert_eq!(third.sequence_number.as_str(), "000000000000000000003");
        assert_eq!(page.records, record_by_record(&body));
    }

    #[test]
    fn a_malformed_record_in_a_page_keeps_its_json_and_its_neighbours_are_read() {
        let bad_key = WELL_FORMED
            .replace(
                r#""Keys": {"pk": {"S": "a"}}"#,
                r#""Keys": {"pk": {"VECTOR": [1]}}"#,
            )
            .replace("000000000000000000001", "000000000000000000002");
        let body = format!(
            r#"{{"Records": [{WELL_FORMED}, {{"x": 1}}, {bad_key}, {WELL_FORMED}], "NextShardIterator": "it-2"}}"#
        );
        let page = Page::parse(body.as_bytes()).expect("page");
        assert_eq!(page.records, record_by_record(&body));
        assert_eq!(page.records.len(), 4);
        assert!(page.records[0].is_ok() && page.records[3].is_ok());
        let unknown = page.records[1].as_ref().expect_err("not a record");
        assert_eq!(unknown.raw, r#"{"x": 1}"#);
        let bad = page.records[2].as_ref().expect_err("unknown type");
        assert_eq!(bad.raw, bad_key);
        assert!(bad.reason.contains("VECTOR"), "{}", bad.reason);
        assert_eq!(page.next_iterator.as_deref(), Some("it-2"));
    }

    #[test]
    fn a_record_failing_a_check_sends_its_page_to_the_slow_path() {
        let body = format!(
            r#"{{"Records": [{WELL_FORMED}, {}]}}"#,
            WELL_FORMED.replace("INSERT", "UPSERT")
        );
        assert!(serde_json::from_str::<CheckedPage>(&body).is_err());
        let page = Page::parse(body.as_bytes()).expect("page");
        assert!(page.records[0].is_ok());
        let err = page.records[1].as_ref().expect_err("unknown op");
        assert!(err.reason.contains("UPSERT"), "{}", err.reason);
    }

    #[test]
    fn an_empty_or_absent_list_is_no_records_and_other_answers_are_errors() {
        let closed = Page::parse(br#"{"Records": []}"#).expect("last page of a closed shard");
        assert!(closed.records.is_empty());
        assert_eq!(closed.next_iterator, None);
        let none = Page::parse(br#"{"NextShardIterator": "it"}"#).expect("no records");
        assert!(none.records.is_empty());
        assert!(Page::parse(b"<html>").is_err());
        assert!(Page::parse(br#"{"Records": {}}"#).is_err());
    }
}
