//! The adapter binary against moto's real DynamoDB Streams API on loopback.
//!
//! Records of different item keys are delivered concurrently (issue 17), so
//! what the sink gets is checked against moto's stream records as every
//! record exactly once and, per item key, in stream order.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::moto::Moto;
use crate::support::receiver::{Received, Receiver};
use crate::support::{assert_delivered, eventually, records_per_key};

/// Inserts, updates and deletes across `keys` keys, `ops` operations in all.
fn workload(moto: &Moto, table: &str, keys: usize, ops: usize, seed: usize) {
    moto.python(&[
        "workload",
        table,
        &keys.to_string(),
        &ops.to_string(),
        &seed.to_string(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_for_each_stream_view_type() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, view) in ["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"]
        .into_iter()
        .enumerate()
    {
        let table = format!("orders-{n}");
        let arn = moto.create_table(&table, view);
        let sink = Receiver::accepting().await;
        let env = AdapterEnv::new(
            &sink.url,
            &arn,
            &moto.endpoint,
            &dir.path().join(format!("{table}.json")),
        );
        let mut adapter = AdapterProcess::spawn(&env, dir.path());
        adapter.wait_ready().await;
        workload(&moto, &table, 8, 60, n);

        let truth = moto.stream_records(&table).await;
        assert!(
            truth.len() >= 60,
            "{view}: the workload wrote {} records",
            truth.len()
        );
        eventually(
            &format!("{view}: all records delivered"),
            Duration::from_secs(60),
            async || (sink.acknowledged().len() >= truth.len()).then_some(()),
        )
        .await;
        let received = sink.acknowledged();
        let expected = records_per_key(&truth);
        assert!(expected.len() >= 2, "{view}: several keys were written");
        assert_delivered(
            &received,
            &expected,
            &format!("{view}: every record, once, in stream order per key"),
        );

        let by_id: HashMap<String, &Received> = received.iter().map(|r| (r.id(), r)).collect();
        for record in &truth {
            let event = by_id[record.event_id().expect("id")];
            let stream = record.dynamodb().expect("dynamodb");
            assert_eq!(event.header("ce-specversion"), Some("1.0"));
            assert_eq!(
                event.header("ce-type"),
                Some("com.amazon.dynamodb.stream_record")
            );
            assert_eq!(event.header("ce-source"), Some(arn.as_str()));
            assert_eq!(
                event.header("ce-dynamodboperation"),
                record.event_name().map(|n| n.as_str())
            );
            assert_eq!(event.header("ce-sequence"), stream.sequence_number());
            assert!(
                event
                    .header("ce-time")
                    .is_some_and(|t| t.ends_with("Z") || t.ends_with("+00:00")),
                "time in UTC"
            );
            assert!(
                event
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json"))
            );
            let expected_key = match stream.keys().and_then(|k| k.get("pk")) {
                Some(aws_sdk_dynamodbstreams::types::AttributeValue::S(pk)) => format!("pk={pk}"),
                other => panic!("unexpected key {other:?}"),
            };
            assert_eq!(event.header("ce-subject"), Some(expected_key.as_str()));
            assert_eq!(event.header("ce-partitionkey"), Some(expected_key.as_str()));

            let data = event.json();
            assert_eq!(data["eventID"], record.event_id().expect("id"));
            assert_eq!(
                data["eventName"],
                record.event_name().expect("name").as_str()
            );
            assert_eq!(
                data["dynamodb"]["SequenceNumber"],
                stream.sequence_number().expect("seq")
            );
            assert_eq!(data["dynamodb"]["StreamViewType"], view);
            assert_eq!(
                data["dynamodb"]["Keys"]["pk"]["S"]
                    .as_str()
                    .map(|s| format!("pk={s}")),
                Some(expected_key)
            );
            assert_eq!(
                data["dynamodb"].get("NewImage").is_some(),
                stream.new_image().is_some(),
                "{view}: NewImage"
            );
            assert_eq!(
                data["dynamodb"].get("OldImage").is_some(),
                stream.old_image().is_some(),
                "{view}: OldImage"
            );
            assert!(
                data["eventSourceARN"]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{arn}/stream/")))
            );
        }
        let status = adapter.terminate(Duration::from_secs(30)).await;
        assert!(
            status.success(),
            "SIGTERM exits 0: {status}\n{}",
            adapter.logs()
        );
        let checkpoint: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!("{table}.json"))).expect("checkpoint"),
        )
        .expect("json");
        let last = truth
            .last()
            .and_then(|r| r.dynamodb())
            .and_then(|d| d.sequence_number())
            .expect("seq");
        let shards = checkpoint["shards"].as_object().expect("shards");
        assert!(
            shards.values().any(|p| p["after"] == last),
            "{view}: the checkpoint is at the last record: {checkpoint}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint_without_loss_or_replay() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let arn = moto.create_table("resume", "NEW_AND_OLD_IMAGES");
    let sink = Receiver::accepting().await;
    let env = AdapterEnv::new(&sink.url, &arn, &moto.endpoint, &dir.path().join("cp.json"));

    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    workload(&moto, "resume", 5, 20, 1);
    eventually("the first records", Duration::from_secs(60), async || {
        (sink.acknowledged().len() >= 20).then_some(())
    })
    .await;
    assert!(adapter.terminate(Duration::from_secs(30)).await.success());

    // Written while no adapter runs: must be delivered after the restart.
    workload(&moto, "resume", 5, 20, 2);
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    let truth = moto.stream_records("resume").await;
    eventually("every record", Duration::from_secs(60), async || {
        (sink.acknowledged().len() >= truth.len()).then_some(())
    })
    .await;
    assert_delivered(
        &sink.acknowledged(),
        &records_per_key(&truth),
        "a graceful restart neither loses nor repeats records, nor reorders a key's",
    );
    assert!(adapter.terminate(Duration::from_secs(30)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_at_latest_skips_history_but_not_what_follows() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let arn = moto.create_table("latest", "NEW_IMAGE");
    workload(&moto, "latest", 3, 10, 3);
    let history = moto.stream_records("latest").await.len();
    let sink = Receiver::accepting().await;
    let env = AdapterEnv::new(&sink.url, &arn, &moto.endpoint, &dir.path().join("cp.json"))
        .set("STARTING_POSITION", "LATEST");
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    // Ready means the stream was described; the shard task opens its iterator
    // right after, so wait for its first GetRecords call.
    eventually(
        "the shard to be polled",
        Duration::from_secs(30),
        async || {
            (adapter
                .metric("dynamodb_source_get_records_total{result=\"ok\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    workload(&moto, "latest", 3, 10, 4);
    let truth = moto.stream_records("latest").await;
    let expected = records_per_key(&truth[history..]);
    eventually("the new records", Duration::from_secs(60), async || {
        (sink.acknowledged().len() >= truth.len() - history).then_some(())
    })
    .await;
    assert_delivered(
        &sink.acknowledged(),
        &expected,
        "only what was written after the start, once each, in order per key",
    );
}
