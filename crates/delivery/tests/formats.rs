//! Golden files for the three payload formats, over a record that holds every
//! attribute value type. `UPDATE_GOLDEN=1 cargo test -p dynamodb-source-delivery`
//! rewrites them; review the diff.

use std::path::PathBuf;

use aws_smithy_types::DateTime;
use dynamodb_source_api::{EventName, PayloadFormat, StreamArn};
use dynamodb_source_delivery::format;
use dynamodb_source_stream::{
    AttributeValue, Image, Item, SequenceNumber, StreamRecord, UserIdentity,
};
use serde_json::value::RawValue;

fn stream() -> StreamArn {
    "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-05-01T12:00:00.000"
        .parse()
        .expect("valid")
}

fn record() -> StreamRecord {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: &str| AttributeValue::N(v.to_owned());
    let image = Item::from([
        ("pk".to_owned(), s("order#1")),
        ("sk".to_owned(), n("42")),
        ("text".to_owned(), s("<tag> & \"quotes\" \u{2028} é\n")),
        (
            "big".to_owned(),
            n("12345678901234567890123456789012345678"),
        ),
        (
            "small".to_owned(),
            n("-0.000000000000000000000000000000000001"),
        ),
        (
            "blob".to_owned(),
            AttributeValue::B(vec![0, 1, 2, 253, 254, 255]),
        ),
        (
            "strings".to_owned(),
            AttributeValue::Ss(vec!["a".into(), "b".into()]),
        ),
        (
            "numbers".to_owned(),
            AttributeValue::Ns(vec![
                "1".into(),
                "2.5".into(),
                "99999999999999999999999999999999999999".into(),
            ]),
        ),
        (
            "blobs".to_owned(),
            AttributeValue::Bs(vec![vec![1], vec![2, 3]]),
        ),
        (
            "map".to_owned(),
            AttributeValue::M(Item::from([
                (
                    "nested".to_owned(),
                    AttributeValue::L(vec![n("1"), s("two"), AttributeValue::Bool(true)]),
                ),
                ("nothing".to_owned(), AttributeValue::Null(true)),
            ])),
        ),
        (
            "list".to_owned(),
            AttributeValue::L(vec![AttributeValue::M(Item::from([(
                "x".to_owned(),
                n("0"),
            )]))]),
        ),
        ("flag".to_owned(), AttributeValue::Bool(false)),
        ("none".to_owned(), AttributeValue::Null(true)),
    ]);
    StreamRecord {
        event_id: "c81e728d9d4c2f636f067f89cc14862c".to_owned(),
        event_name: EventName::Modify,
        event_version: Some("1.1".into()),
        event_source: Some("aws:dynamodb".into()),
        aws_region: Some("us-east-1".into()),
        approximate_creation: Some(DateTime::from_secs(1_714_564_800)),
        keys: Some(Item::from([
            ("pk".to_owned(), s("order#1")),
            ("sk".to_owned(), n("42")),
        ])),
        new_image: Some(Image::from_item(&image)),
        old_image: Some(Image::from_item(&Item::from([
            ("pk".to_owned(), s("order#1")),
            ("sk".to_owned(), n("42")),
        ]))),
        sequence_number: SequenceNumber::parse("111100000000000000000000001").expect("digits"),
        size_bytes: Some(321),
        stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
        user_identity: Some(UserIdentity {
            principal_id: Some("dynamodb.amazonaws.com".to_owned()),
            kind: Some("Service".to_owned()),
        }),
    }
}

fn golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected = std::fs::read(&path).expect("golden file exists (UPDATE_GOLDEN=1 creates it)");
    assert_eq!(
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(&expected),
        "{name} differs from its golden file"
    );
}

#[test]
fn aws_format_matches_golden() {
    let data = format::render(PayloadFormat::Aws, &record(), &stream()).expect("renders");
    golden("aws.json", &data);
}

#[test]
fn plain_format_matches_golden() {
    let data = format::render(PayloadFormat::Plain, &record(), &stream()).expect("renders");
    golden("plain.json", &data);
}

#[test]
fn triggermesh_format_matches_golden() {
    let data = format::render(PayloadFormat::TriggerMesh, &record(), &stream()).expect("renders");
    golden("triggermesh.json", &data);
}

#[test]
fn plain_keeps_38_digit_numbers_exact() {
    let data = format::render(PayloadFormat::Plain, &record(), &stream()).expect("renders");
    let text = String::from_utf8(data).expect("utf-8");
    assert!(
        text.contains("\"big\":12345678901234567890123456789012345678"),
        "{text}"
    );
    assert!(
        text.contains("99999999999999999999999999999999999999]"),
        "{text}"
    );
    assert!(
        text.contains("\"small\":-0.000000000000000000000000000000000001"),
        "{text}"
    );
}

#[test]
fn every_format_is_valid_json_with_the_same_event_id() {
    for format in [
        PayloadFormat::Aws,
        PayloadFormat::Plain,
        PayloadFormat::TriggerMesh,
    ] {
        let data = format::render(format, &record(), &stream()).expect("renders");
        let value: serde_json::Value = serde_json::from_slice(&data).expect("valid JSON");
        let id = value.get("eventID").or_else(|| value.get("EventID"));
        assert_eq!(
            id.and_then(|v| v.as_str()),
            Some("c81e728d9d4c2f636f067f89cc14862c"),
            "{format}"
        );
    }
}

#[test]
fn plain_rejects_a_number_json_cannot_carry() {
    let mut record = record();
    record.keys = Some(Item::from([(
        "pk".to_owned(),
        AttributeValue::N("NaN".to_owned()),
    )]));
    let err = format::render(PayloadFormat::Plain, &record, &stream()).expect_err("NaN");
    assert!(err.to_string().contains("Keys.pk"), "{err}");
}

/// An image in the API's own words, here with an attribute type this
/// version does not know.
fn image_as_sent(json: &str) -> Image {
    Image::new(RawValue::from_string(json.to_owned()).expect("JSON")).expect("an object")
}

#[test]
fn aws_format_passes_images_through_as_the_api_sent_them() {
    let mut record = record();
    let sent = r#"{"pk": {"S":"order#1"}, "embedding": {"VECTOR": [0.5, 1]}, "x": {"S":"\u00e9"}}"#;
    record.new_image = Some(image_as_sent(sent));
    let data = format::render(PayloadFormat::Aws, &record, &stream()).expect("renders");
    let text = String::from_utf8(data).expect("utf-8");
    assert!(text.contains(&format!(r#""NewImage":{sent}"#)), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(value["dynamodb"]["NewImage"]["x"]["S"], "é");
}

#[test]
fn formats_that_reshape_values_refuse_an_image_they_cannot_read() {
    let mut record = record();
    record.old_image = Some(image_as_sent(r#"{"embedding": {"VECTOR": [0.5, 1]}}"#));
    for payload in [PayloadFormat::Plain, PayloadFormat::TriggerMesh] {
        let error = format::render(payload, &record, &stream()).expect_err("unknown type");
        let text = format!("{error}: {:?}", std::error::Error::source(&error));
        assert!(text.starts_with("OldImage is not"), "{text}");
        assert!(text.contains("VECTOR"), "{text}");
    }
}
