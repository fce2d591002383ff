//! `DELIVERY_MAX_RECORD_AGE`: during a long sink outage, records older than
//! the limit leave the retry loop for the dead-letter sink (reason
//! `expired`), or, without one, are logged in full and counted, and the
//! shard moves on instead of racing the stream's 24-hour trim.

use std::sync::Arc;
use std::time::Duration;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::eventually;
use crate::support::fake_streams::{Change, FakeStreams};
use crate::support::free_port;
use crate::support::receiver::{Receiver, Reply};

const WITHIN: Duration = Duration::from_secs(30);

/// A sink that answers 503 to everything: an outage.
async fn down() -> Receiver {
    Receiver::start(free_port(), Arc::new(|_, _| Reply::status(503))).await
}

fn env(sink: &Receiver, fake: &FakeStreams, table: &str, dir: &tempfile::TempDir) -> AdapterEnv {
    AdapterEnv::new(
        &sink.url,
        &fake.table_arn(table),
        &fake.endpoint,
        &dir.path().join("checkpoint.json"),
    )
    // Records are stamped in whole seconds (up to 1 s old at once): the adapter must read
    // them and try the sink within this.
    .set("DELIVERY_MAX_RECORD_AGE", "PT5S")
    .set("DELIVERY_RETRY", "1000")
    .set("DELIVERY_BACKOFF_DELAY", "PT0.2S")
    .set("DELIVERY_BACKOFF_POLICY", "linear")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_limit_go_to_the_dead_letter_sink_as_expired() {
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("aged");
    let shard = fake.add_shard(&stream, None);
    let sink = down().await;
    let dead_letters = Receiver::accepting().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&sink, &fake, "aged", &dir).set("K_DEAD_LETTER_SINK", &dead_letters.url);
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    // Written once the adapter reads (from the trim horizon), so their age runs
    // from then, not from before a start that a loaded machine can make slow.
    let written = fake.append(&shard, (0..4).map(|i| Change::insert(format!("k{i}"), i)));

    eventually(
        "every record dead-lettered as expired",
        WITHIN,
        async || (dead_letters.acknowledged().len() >= written.len()).then_some(()),
    )
    .await;
    let letters = dead_letters.acknowledged();
    let mut ids: Vec<String> = letters.iter().map(|r| r.id()).collect();
    ids.sort();
    let mut expected: Vec<String> = written.iter().map(|w| w.event_id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "each record once, to the dead-letter sink");
    for letter in &letters {
        let data = letter.header("ce-knativeerrordata").unwrap_or_default();
        let reason = String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        assert!(reason.contains("DELIVERY_MAX_RECORD_AGE"), "{reason}");
    }
    assert!(
        sink.requests().len() >= written.len(),
        "the sink was tried before the records expired"
    );
    adapter
        .wait_metric(
            "dynamodb_source_dead_lettered_total{reason=\"expired\"}",
            written.len() as f64,
        )
        .await;
    assert!(adapter.terminate(WITHIN).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dead_letter_sink_expired_records_are_logged_counted_and_passed_over() {
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("aged-nodls");
    let shard = fake.add_shard(&stream, None);
    let sink = down().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env(&sink, &fake, "aged-nodls", &dir);
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    let written = fake.append(&shard, (0..3).map(|i| Change::insert(format!("k{i}"), i)));

    let last = written.last().expect("records").sequence_number.clone();
    eventually(
        "the checkpoint passes the expired records",
        WITHIN,
        async || {
            let text = std::fs::read_to_string(dir.path().join("checkpoint.json")).ok()?;
            text.contains(&last).then_some(())
        },
    )
    .await;
    adapter
        .wait_metric(
            "dynamodb_source_events_total{result=\"expired\"}",
            written.len() as f64,
        )
        .await;
    let log = adapter.logs();
    for record in &written {
        assert!(
            log.lines()
                .any(|l| l.contains("expired record is logged in full")
                    && l.contains(&record.event_id)),
            "{} logged in full: {log}",
            record.event_id
        );
    }
    assert!(adapter.terminate(WITHIN).await.success());
}
