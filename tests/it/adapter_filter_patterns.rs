//! `FILTER_PATTERNS` with the adapter binary against moto: only records that
//! a pattern matches (and `EVENT_NAMES` admits) reach the sink, in order per
//! key; the others are checkpointed past and counted as filtered. A pattern
//! that cannot be parsed stops the adapter at start with status 2, naming the
//! pattern and the path of its bad operator.

use std::process::Command;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record};

use crate::support::adapter::{AdapterEnv, AdapterProcess, BINARY};
use crate::support::moto::Moto;
use crate::support::receiver::Receiver;
use crate::support::{assert_delivered, eventually, records_per_key};

const WITHIN: Duration = Duration::from_secs(60);

/// New images with `n` of at least 20, keys ending in -1, and removals (as a
/// JSON string, as Lambda's FilterCriteria writes patterns).
const PATTERNS: &str = r#"[
    {"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">=", 20]}]}}}},
    {"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "-1"}]}}}},
    "{\"eventName\": [\"REMOVE\"]}"
]"#;

/// What the patterns and `EVENT_NAMES=INSERT,MODIFY` let through, computed
/// from moto's own records with the SDK's types rather than the adapter's.
fn passes(record: &Record) -> bool {
    let Some(change) = record.dynamodb() else {
        return false;
    };
    let n_at_least_20 = change
        .new_image()
        .and_then(|image| image.get("n"))
        .and_then(|n| match n {
            AttributeValue::N(n) => n.parse::<f64>().ok(),
            _ => None,
        })
        .is_some_and(|n| n >= 20.0);
    let key_ends_in_1 = change
        .keys()
        .and_then(|keys| keys.get("pk"))
        .is_some_and(|pk| matches!(pk, AttributeValue::S(s) if s.ends_with("-1")));
    let removal = record.event_name() == Some(&OperationType::Remove);
    let event_name_passes = matches!(
        record.event_name(),
        Some(OperationType::Insert | OperationType::Modify)
    );
    event_name_passes && (n_at_least_20 || key_ends_in_1 || removal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_records_a_pattern_matches_are_delivered_and_the_rest_are_passed_over() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let arn = moto.create_table("patterns", "NEW_AND_OLD_IMAGES");
    let sink = Receiver::accepting().await;
    let checkpoint = dir.path().join("cp.json");
    let env = AdapterEnv::new(&sink.url, &arn, &moto.endpoint, &checkpoint)
        .set("FILTER_PATTERNS", PATTERNS)
        .set("EVENT_NAMES", "INSERT,MODIFY");
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    moto.python(&["workload", "patterns", "6", "60", "7"]);

    let truth = moto.stream_records("patterns").await;
    let (kept, dropped): (Vec<&Record>, Vec<&Record>) = truth.iter().partition(|r| passes(r));
    assert!(
        kept.len() >= 5 && dropped.len() >= 5,
        "the workload exercises both sides: {} kept, {} filtered",
        kept.len(),
        dropped.len()
    );
    assert!(
        dropped
            .iter()
            .any(|r| r.event_name() == Some(&OperationType::Remove)),
        "EVENT_NAMES still applies: a removal the patterns match is filtered"
    );
    let last = truth
        .last()
        .and_then(|r| r.dynamodb())
        .and_then(|d| d.sequence_number())
        .expect("a last record")
        .to_owned();
    eventually(
        "the checkpoint at the last record, filtered or not",
        WITHIN,
        async || {
            let text = std::fs::read_to_string(&checkpoint).ok()?;
            text.contains(&format!("\"{last}\"")).then_some(())
        },
    )
    .await;
    assert_eq!(
        adapter
            .metric("dynamodb_source_events_total{result=\"filtered\"}")
            .await,
        dropped.len() as f64,
        "every record left out is counted"
    );
    assert_delivered(
        &sink.acknowledged(),
        &records_per_key(kept),
        "exactly the records a pattern matches, once each, in order per key",
    );
    assert!(adapter.terminate(WITHIN).await.success());
}

#[test]
fn a_bad_pattern_exits_2_naming_the_pattern_and_the_path_of_its_operator() {
    let out = Command::new(BINARY)
        .arg("adapter")
        .env_clear()
        .env("K_SINK", "http://127.0.0.1:9/")
        .env(
            "ARN",
            "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
        )
        .env(
            "FILTER_PATTERNS",
            r#"[{"eventName": ["INSERT"]}, "{\"dynamodb\": {\"NewImage\": {\"n\": {\"N\": [{\"anything-but\": {\"infix\": \"x\"}}]}}}}"]"#,
        )
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("invalid setting FILTER_PATTERNS: filter pattern 1 ({\"dynamodb\"")
            && stderr.contains(" at dynamodb.NewImage.n.N[0].anything-but: anything-but takes "),
        "{stderr}"
    );
}
