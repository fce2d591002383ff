//! Where an event's CPU goes before it is sent, in-process: rendering the
//! payload, building the CloudEvent with the official SDK, and encoding it as
//! binary-mode headers and body, with the SDK's HTTP binding and with the
//! adapter's own encoder (`delivery/src/binary.rs`), and straight from the
//! record as the adapter now does (`EventFactory::record_event`, whose
//! headers are made for each attempt), each followed by
//! the copy of the headers every attempt makes; beside them, the same request
//! built by hand (headers and body set directly).
//!
//! Run with `cargo bench --bench encode`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_smithy_types::DateTime;
use dynamodb_source_api::{EventName, PayloadFormat, SourceArn, StreamArn};
use dynamodb_source_delivery::{CeOverrides, Endpoint, EventFactory, Sink, connector, format};
use dynamodb_source_stream::{AttributeValue, Image, SequenceNumber, StreamRecord};

const N: u32 = 200_000;

fn record() -> StreamRecord {
    let item = BTreeMap::from([
        ("pk".to_owned(), AttributeValue::S("key-0-17".to_owned())),
        ("n".to_owned(), AttributeValue::N("17".to_owned())),
        ("padding".to_owned(), AttributeValue::S("x".repeat(200))),
    ]);
    StreamRecord {
        event_id: "5a2f6c3e0b7d4b1a9f8e7d6c5b4a3f2e".to_owned(),
        event_name: EventName::Modify,
        event_version: Some("1.1".into()),
        event_source: Some("aws:dynamodb".into()),
        aws_region: Some("us-east-1".into()),
        approximate_creation: Some(DateTime::from_secs(1_764_000_000)),
        keys: Some(BTreeMap::from([(
            "pk".to_owned(),
            AttributeValue::S("key-0-17".to_owned()),
        )])),
        new_image: Some(Image::from_item(&item)),
        old_image: Some(Image::from_item(&item)),
        sequence_number: SequenceNumber::parse("100000000000000000000017").expect("digits"),
        size_bytes: Some(300),
        stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
        user_identity: None,
    }
}

fn time(name: &str, mut f: impl FnMut()) -> Duration {
    for _ in 0..N / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..N {
        f();
    }
    let per = started.elapsed() / N;
    println!("{name:<56} {:>8.2} us", per.as_secs_f64() * 1e6);
    per
}

fn main() {
    let arn: SourceArn = "arn:aws:dynamodb:us-east-1:123456789012:table/bench"
        .parse()
        .expect("arn");
    let stream: StreamArn =
        "arn:aws:dynamodb:us-east-1:123456789012:table/bench/stream/2026-01-01T00:00:00.000"
            .parse()
            .expect("stream");
    let record = record();
    let factory = EventFactory::new(arn.table(), PayloadFormat::Aws, CeOverrides::default());
    let connector = connector(None).expect("connector");
    let sink = Sink::new(
        connector,
        Endpoint::parse("http://127.0.0.1:9/").expect("url"),
    )
    .expect("sink");
    println!();
    let render = time("render the AWS payload", || {
        black_box(format::render(PayloadFormat::Aws, black_box(&record), &stream).expect("render"));
    });
    let build = time("render + build the CloudEvent (SDK)", || {
        black_box(factory.build(black_box(&record), &stream).expect("event"));
    });
    let encode = time("... + encode (SDK HTTP binding) + one attempt", || {
        let event = factory.build(black_box(&record), &stream).expect("event");
        let request = http::Request::<Option<Vec<u8>>>::try_from(event).expect("request");
        black_box(request.headers().clone());
    });
    let ours = time("... + encode (binary.rs) + one attempt", || {
        let event = factory.build(black_box(&record), &stream).expect("event");
        let encoded = sink.prepare(event).expect("request");
        black_box(encoded.headers().clone());
    });
    let direct = time(
        "render + headers from the record (event.rs) + one attempt",
        || {
            let event = factory
                .record_event(black_box(&record), &stream)
                .expect("event");
            let mut headers = factory.headers(&event, sink.headers_added());
            sink.add_headers(&mut headers);
            black_box((headers, event.body().clone()));
        },
    );
    let by_hand = time("render + the same request by hand", || {
        let body = format::render(PayloadFormat::Aws, black_box(&record), &stream).expect("render");
        let request = http::Request::post("http://127.0.0.1:9/")
            .header("ce-specversion", "1.0")
            .header("ce-id", record.event_id.as_str())
            .header("ce-source", factory.source())
            .header("ce-type", "com.amazon.dynamodb.stream_record")
            .header("ce-time", "2025-11-24T16:00:00Z")
            .header("ce-subject", "pk=key-0-17")
            .header("ce-partitionkey", "pk=key-0-17")
            .header("ce-sequence", record.sequence_number.as_str())
            .header("ce-dynamodboperation", "MODIFY")
            .header("content-type", "application/json")
            .body(body)
            .expect("request");
        black_box(request);
    });
    println!(
        "\nBeyond rendering, per event: the SDK's binding {:.2} us, binary.rs {:.2} us, from the record {:.2} us, by hand {:.2} us.",
        (encode - render).as_secs_f64() * 1e6,
        (ours - render).as_secs_f64() * 1e6,
        (direct - render).as_secs_f64() * 1e6,
        (by_hand - render).as_secs_f64() * 1e6,
    );
    let _ = build;
}
