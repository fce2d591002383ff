//! Crash safety: SIGKILL while items are being written loses nothing, and the
//! only duplicates are records that were delivered but not yet checkpointed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::moto::Moto;
use crate::support::receiver::Receiver;
use crate::support::{
    Keyed, assert_delivered, assert_delivered_keyed, checkpointed, eventually, first_arrivals,
    records_per_key, seq_key,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_nothing_and_repeats_only_what_was_in_flight() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let arn = moto.create_table("crash", "NEW_AND_OLD_IMAGES");
    let sink = Receiver::accepting().await;
    let checkpoint = dir.path().join("cp.json");
    let env = AdapterEnv::new(&sink.url, &arn, &moto.endpoint, &checkpoint);

    // Writes go on in the background for the whole test.
    let endpoint = moto.endpoint.clone();
    let writer = std::thread::spawn(move || {
        let status = std::process::Command::new(crate::support::venv().join("bin/python"))
            .arg(crate::support::repo_path("tests/peers/dynamodb.py"))
            .args([endpoint.as_str(), "workload", "crash", "10", "240", "9"])
            .status()
            .expect("python runs");
        assert!(status.success());
    });

    let mut in_flight_bound = 0usize;
    let kills = 3;
    for round in 0..kills {
        let mut adapter = AdapterProcess::spawn(&env, dir.path());
        let before = sink.acknowledged().len();
        eventually(
            &format!("round {round}: progress before the kill"),
            Duration::from_secs(60),
            async || (sink.acknowledged().len() >= before + 10).then_some(()),
        )
        .await;
        adapter.kill();
        // Everything acknowledged past the saved position will be delivered again.
        let saved = checkpointed(&checkpoint).map(|s| seq_key(&s));
        let acked_after_saved = sink
            .acknowledged()
            .iter()
            .filter(|r| {
                let seq = seq_key(r.header("ce-sequence").unwrap_or_default());
                saved.as_ref().is_none_or(|saved| seq > *saved)
            })
            .map(|r| r.id())
            .collect::<HashSet<_>>()
            .len();
        in_flight_bound += acked_after_saved;
    }
    writer.join().expect("writer");

    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    let truth = moto.stream_records("crash").await;
    eventually(
        "every record after the last restart",
        Duration::from_secs(90),
        async || {
            let acked: HashSet<String> = sink.acknowledged_ids().into_iter().collect();
            truth
                .iter()
                .all(|r| acked.contains(r.event_id().expect("id")))
                .then_some(())
        },
    )
    .await;
    assert!(adapter.terminate(Duration::from_secs(30)).await.success());

    let acked = sink.acknowledged_ids();
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), truth.len(), "nothing lost, nothing invented");
    let duplicates = acked.len() - unique.len();
    assert!(
        duplicates <= in_flight_bound,
        "{duplicates} duplicates, but only {in_flight_bound} records were in flight at the kills"
    );

    // Per item, first deliveries follow the stream's order.
    assert_delivered(
        &first_arrivals(&sink.acknowledged()),
        &records_per_key(&truth),
        "per-item order survives the crashes: every record, first deliveries in order per key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_parses_every_event() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let arn = moto.create_table("python", "NEW_IMAGE");
    let port_file = dir.path().join("port");
    let out = dir.path().join("events.jsonl");
    let mut display = std::process::Command::new(crate::support::venv().join("bin/python"))
        .arg(crate::support::repo_path("tests/peers/event_display.py"))
        .args(["--quiet", "--port-file"])
        .arg(&port_file)
        .arg("--out")
        .arg(&out)
        .spawn()
        .expect("event display starts");
    let port = eventually("the display's port", Duration::from_secs(30), async || {
        std::fs::read_to_string(&port_file)
            .ok()
            .filter(|p| !p.is_empty())
    })
    .await;
    let sink = format!("http://127.0.0.1:{port}/");
    let env = AdapterEnv::new(&sink, &arn, &moto.endpoint, &dir.path().join("cp.json"))
        .set("PAYLOAD_FORMAT", "Plain")
        .set("K_CE_OVERRIDES", r#"{"extensions":{"team":"orders"}}"#);
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;
    moto.python(&["workload", "python", "3", "12", "11"]);
    let truth = moto.stream_records("python").await;
    let lines = eventually(
        "the display to parse every event",
        Duration::from_secs(60),
        async || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            // Only whole lines: the display may be writing the last one.
            let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
            let lines: Vec<serde_json::Value> = complete
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect();
            (lines.len() >= truth.len()).then_some(lines)
        },
    )
    .await;
    let _ = display.kill();
    let _ = display.wait();
    assert!(adapter.terminate(Duration::from_secs(30)).await.success());
    // Records of different keys arrive in any order: each line is matched
    // to its record by id, and the lines are checked as every record once,
    // in order per key.
    let arrived: Vec<Keyed> = lines
        .iter()
        .map(|line| {
            let attrs = &line["attributes"];
            (
                attrs["partitionkey"].as_str().map(str::to_owned),
                attrs["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_delivered_keyed(
        &arrived,
        &records_per_key(&truth),
        "the display parsed every event once, in order per key",
    );
    let by_id: HashMap<&str, &serde_json::Value> = lines
        .iter()
        .map(|line| (line["attributes"]["id"].as_str().unwrap_or_default(), line))
        .collect();
    for record in &truth {
        let line = by_id[record.event_id().expect("id")];
        let attrs = &line["attributes"];
        assert_eq!(attrs["id"], record.event_id().expect("id"));
        assert_eq!(attrs["type"], "com.amazon.dynamodb.stream_record");
        assert_eq!(attrs["source"], arn.as_str());
        assert_eq!(attrs["specversion"], "1.0");
        assert_eq!(attrs["team"], "orders");
        assert_eq!(
            attrs["dynamodboperation"],
            record.event_name().expect("name").as_str()
        );
        assert!(
            attrs["time"].is_string()
                && attrs["subject"].is_string()
                && attrs["partitionkey"].is_string()
        );
        let data = &line["data"];
        assert_eq!(data["eventID"], record.event_id().expect("id"));
        if let Some(n) = data["dynamodb"]["NewImage"].get("n") {
            assert!(n.is_number(), "Plain numbers are JSON numbers: {n}");
        }
    }
}
