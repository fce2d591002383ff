//! Issue 12, end to end: the adapter binary against the scripted fake of the
//! DynamoDB Streams API and loopback sinks, in the situations where it lost,
//! repeated or leaked something:
//! - the sink's credentials (userinfo in `K_SINK` and `K_DEAD_LETTER_SINK`)
//!   are sent as HTTP Basic authorization, and never logged, exported as a
//!   metric or forwarded in a dead letter;
//! - eventually consistent DescribeStream answers (a shard left out, no shard
//!   listed) neither reorder a parent and its children nor wipe progress;
//! - a GetRecords answer without a next iterator on a shard listed as open
//!   does not finish that shard;
//! - `/readyz` at a `LATEST` first start means every shard's position is held;
//! - malformed records get distinct ids, records without `Keys` are delivered
//!   without `subject` and `partitionkey`.
//!
//! Records of different item keys are delivered concurrently (issue 17), so
//! what the sinks get is checked as every record exactly once and, per item
//! key, in stream order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::fake_streams::{Change, Op, Written, changes, ids, written_per_key};
use crate::support::receiver::{Received, Receiver, Reply};
use crate::support::rig::{Rig, acknowledged_by};
use crate::support::{assert_delivered, eventually};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The longest any single wait in these tests may take (a loaded 2-core
/// machine runs several adapters at once).
const WITHIN: Duration = Duration::from_secs(30);

const SINK_USER: &str = "user";
const SINK_PASSWORD: &str = "s3cr3t-pass";
const DEAD_LETTER_USER: &str = "dlq";
const DEAD_LETTER_PASSWORD: &str = "d34d-l3tt3r-pass";
const AWS_SECRET: &str = "aws-s3cr3t-k3y-0451-do-not-log";

/// Polls `check` until it holds or `within` passes; whether it held. For
/// waits whose failure the test reports with more than a timeout.
async fn holds_within(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The receiver's URL with `user:password@` in it (both given encoded).
fn with_userinfo(receiver: &Receiver, user: &str, password: &str) -> String {
    format!("http://{user}:{password}@127.0.0.1:{}/", receiver.port)
}

/// The `Authorization` value for HTTP Basic authentication (RFC 7617).
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Requests whose `Authorization` header is not `expected`, for a report.
fn without_authorization(requests: &[Received], expected: &str) -> Vec<(String, Option<String>)> {
    requests
        .iter()
        .filter(|r| r.header("authorization") != Some(expected))
        .map(|r| (r.id(), r.header("authorization").map(str::to_owned)))
        .collect()
}

/// Lines of `text` holding any of `secrets`, cut short, for a report.
fn lines_with(text: &str, secrets: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|line| secrets.iter().any(|s| line.contains(s)))
        .map(|line| line.chars().take(300).collect())
        .take(5)
        .collect()
}

/// Every header value and the body of a request, as text.
fn request_text(request: &Received) -> String {
    let mut text = String::from_utf8_lossy(&request.body).into_owned();
    for (name, value) in &request.headers {
        text.push('\n');
        text.push_str(name.as_str());
        text.push_str(": ");
        text.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    text
}

/// A sink answering 400 to the events whose subject names `refused_key`
/// and 202 to the others.
async fn sink_refusing(refused_key: &'static str) -> Receiver {
    Receiver::start(
        0,
        Arc::new(move |_, headers| {
            let subject = headers
                .get("ce-subject")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if subject.contains(refused_key) {
                Reply::status(400)
            } else {
                Reply::status(202)
            }
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sinks_password_is_never_logged_nor_exported() {
    // The Basic credentials are the passwords too, merely encoded.
    let sink_credentials = basic(SINK_USER, SINK_PASSWORD);
    let dead_letter_credentials = basic(DEAD_LETTER_USER, DEAD_LETTER_PASSWORD);
    let secrets = [
        SINK_PASSWORD,
        DEAD_LETTER_PASSWORD,
        AWS_SECRET,
        &sink_credentials["Basic ".len()..],
        &dead_letter_credentials["Basic ".len()..],
    ];
    for format in ["json", "text"] {
        let dead_letters = Receiver::accepting().await;
        let mut rig = Rig::with_sink(
            &format!("secrets-{format}"),
            sink_refusing("refused").await,
            WITHIN,
        )
        .await;
        rig.env = rig
            .env
            .clone()
            .set("K_SINK", with_userinfo(&rig.sink, SINK_USER, SINK_PASSWORD))
            .set(
                "K_DEAD_LETTER_SINK",
                with_userinfo(&dead_letters, DEAD_LETTER_USER, DEAD_LETTER_PASSWORD),
            )
            .set("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .set("RUST_LOG", "trace")
            .set("LOG_FORMAT", format);
        let (_, shard) = rig.stream_with_shard();
        rig.fake.append(&shard, changes(2, 4, 0));
        // One refused event takes the dead-letter path too.
        rig.fake.append(&shard, [Change::insert("refused", 1)]);
        rig.fake.append(&shard, changes(2, 2, 10));

        let mut adapter = rig.spawn();
        adapter.wait_ready().await;
        rig.delivered(6).await;
        acknowledged_by(&dead_letters, 1, "the dead-letter sink", WITHIN).await;
        let metrics = adapter.metrics().await;
        assert!(
            metrics.contains("dynamodb_source_events_total"),
            "the metrics are served: {metrics}"
        );
        assert!(adapter.terminate(WITHIN).await.success());
        let log = adapter.logs();
        assert!(
            log.lines().count() > 20,
            "the adapter logged at trace level ({format}):\n{log}"
        );

        let logged = lines_with(&log, &secrets);
        assert!(
            logged.is_empty(),
            "LOG_FORMAT={format}: no log line holds a password or the AWS secret key: {logged:#?}"
        );
        let exported = lines_with(&metrics, &secrets);
        assert!(
            exported.is_empty(),
            "no metric holds a password or the AWS secret key: {exported:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_in_k_sink_is_sent_as_basic_authorization() {
    let mut rig = Rig::new("basic-auth", WITHIN).await;
    rig.env = rig
        .env
        .clone()
        .set("K_SINK", with_userinfo(&rig.sink, SINK_USER, SINK_PASSWORD));
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(2, 6, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(written.len()).await;

    let requests = rig.sink.requests();
    let expected = basic(SINK_USER, SINK_PASSWORD);
    assert_eq!(
        without_authorization(&requests, &expected),
        Vec::new(),
        "every request carries Authorization: {expected}"
    );
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(&written),
        "every record once, in order per key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_userinfo_in_k_sink_is_decoded_for_basic_authorization() {
    let mut rig = Rig::new("basic-auth-encoded", WITHIN).await;
    // `%40` is `@`, `%3A` is `:` (a colon is allowed in a Basic password).
    rig.env = rig.env.clone().set(
        "K_SINK",
        with_userinfo(&rig.sink, "us%65r", "p%40ss%3Aw0rd"),
    );
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(2, 4, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(written.len()).await;

    let expected = basic("user", "p@ss:w0rd");
    assert_eq!(
        without_authorization(&rig.sink.requests(), &expected),
        Vec::new(),
        "every request carries the decoded userinfo: {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_in_k_dead_letter_sink_is_sent_as_basic_authorization() {
    let dead_letters = Receiver::accepting().await;
    let mut rig = Rig::with_sink("basic-auth-dls", sink_refusing("k").await, WITHIN).await;
    rig.env = rig.env.clone().set(
        "K_DEAD_LETTER_SINK",
        with_userinfo(&dead_letters, DEAD_LETTER_USER, "d34d%40l3tt3r"),
    );
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(2, 3, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    acknowledged_by(&dead_letters, written.len(), "the dead-letter sink", WITHIN).await;

    let expected = basic(DEAD_LETTER_USER, "d34d@l3tt3r");
    assert_eq!(
        without_authorization(&dead_letters.requests(), &expected),
        Vec::new(),
        "every dead letter carries Authorization: {expected}"
    );
    assert_delivered(
        &dead_letters.acknowledged(),
        &written_per_key(&written),
        "every refused record dead-lettered once, in order per key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_events_never_carry_the_sinks_password() {
    let dead_letters = Receiver::accepting().await;
    let mut rig = Rig::with_sink("dead-letter-dest", sink_refusing("k").await, WITHIN).await;
    rig.env = rig
        .env
        .clone()
        .set("K_SINK", with_userinfo(&rig.sink, SINK_USER, SINK_PASSWORD))
        .set("K_DEAD_LETTER_SINK", &dead_letters.url);
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(2, 3, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    acknowledged_by(&dead_letters, written.len(), "the dead-letter sink", WITHIN).await;

    let credentials = &basic(SINK_USER, SINK_PASSWORD)["Basic ".len()..];
    for letter in dead_letters.requests() {
        assert_eq!(
            letter.header("ce-knativeerrordest"),
            Some(rig.sink.url.as_str()),
            "the error destination is the sink without its userinfo"
        );
        assert_eq!(letter.header("ce-knativeerrorcode"), Some("400"));
        let text = request_text(&letter);
        assert!(
            !text.contains(SINK_PASSWORD) && !text.contains(credentials),
            "the dead letter {} holds the sink's password:\n{text}",
            letter.id()
        );
    }
    assert_delivered(
        &dead_letters.acknowledged(),
        &written_per_key(&written),
        "every refused record dead-lettered once, in order per key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_missing_from_one_describe_stream_answer_still_holds_its_children_back() {
    // The parent's events are held at the sink (503, Retry-After: 1) until
    // the test opens the gate: the parent is being read, not finished, while
    // DescribeStream leaves it out.
    let gate_open = Arc::new(AtomicBool::new(false));
    let gated: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sink = {
        let (gate_open, gated) = (gate_open.clone(), gated.clone());
        Receiver::start(
            0,
            Arc::new(move |_, headers| {
                let id = headers
                    .get("ce-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let held = gated.lock().expect("lock").contains(id);
                if held && !gate_open.load(Ordering::SeqCst) {
                    Reply::status(503).header("retry-after", "1")
                } else {
                    Reply::status(202)
                }
            }),
        )
        .await
    };
    let rig = Rig::with_sink("hidden-parent", sink, WITHIN).await;
    let (stream, parent) = rig.stream_with_shard();
    // Closing these makes the adapter describe the stream again at once
    // (a shard read to its end triggers discovery), instead of every 10 s.
    let triggers: Vec<String> = (0..2).map(|_| rig.fake.add_shard(&stream, None)).collect();
    let parent_records = rig.fake.append(&parent, changes(4, 8, 0));
    gated.lock().expect("lock").extend(ids(&parent_records));

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    eventually("the parent's first event at the sink", WITHIN, async || {
        let gated = gated.lock().expect("lock").clone();
        rig.sink
            .requests()
            .iter()
            .any(|r| gated.contains(&r.id()))
            .then_some(())
    })
    .await;

    // The parent splits; each key goes on in one child.
    let children = rig.fake.split(&parent, 2);
    let child_records: Vec<Written> = children
        .iter()
        .enumerate()
        .flat_map(|(n, child)| {
            rig.fake.append(
                child,
                (0..4).map(|i| Change::modify(format!("k{}", n + 2 * (i % 2)), 100 + i as i64)),
            )
        })
        .collect();
    rig.fake.hide_from_describe(&parent, 3);
    for (n, trigger) in triggers.iter().enumerate() {
        rig.fake.close(trigger);
        eventually(
            &format!("DescribeStream answer {} without the parent", n + 1),
            WITHIN,
            async || (rig.fake.hidden_from_describe(&parent) <= 2 - n).then_some(()),
        )
        .await;
    }
    gate_open.store(true, Ordering::SeqCst);
    rig.delivered(parent_records.len() + child_records.len())
        .await;

    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(parent_records.iter().chain(&child_records)),
        "per key (k0 to k3), the parent's changes, then the child's, once each",
    );
    assert_eq!(
        rig.fake.read_before_parent_end(),
        Vec::<String>::new(),
        "no child read before its parent was read to its end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_describe_stream_answer_with_no_shards_does_not_wipe_progress() {
    let rig = Rig::new("empty-describe", WITHIN).await;
    let (stream, parent) = rig.stream_with_shard();
    let parent_records = rig.fake.append(&parent, changes(2, 3, 0));
    let child = rig.fake.split(&parent, 1).remove(0);
    // Closing these makes the adapter describe the stream again at once
    // (a shard read to its end triggers discovery), instead of every 10 s.
    let triggers: Vec<String> = (0..4).map(|_| rig.fake.add_shard(&stream, None)).collect();

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(parent_records.len()).await;
    rig.finished(&parent, "the parent").await;

    // Two rounds of discovery see a stream with no shard at all.
    rig.fake.describe_empty(2);
    for (n, trigger) in triggers[..2].iter().enumerate() {
        rig.fake.close(trigger);
        eventually(
            &format!("empty DescribeStream answer {}", n + 1),
            WITHIN,
            async || (rig.fake.pending_empty_describes() <= 1 - n).then_some(()),
        )
        .await;
    }
    // Then one sees every shard again, and one more round follows it, so
    // that anything started by the first has had time to be delivered.
    let described = rig.fake.calls(Op::DescribeStream);
    rig.fake.close(&triggers[2]);
    eventually(
        "a DescribeStream answer listing the shards again",
        WITHIN,
        async || (rig.fake.calls(Op::DescribeStream) > described).then_some(()),
    )
    .await;
    rig.fake.close(&triggers[3]);
    eventually("the last trigger read to its end", WITHIN, async || {
        rig.fake.ended().contains(&triggers[3]).then_some(())
    })
    .await;
    let marker = rig.fake.append(&child, [Change::modify("k0", 100)]);
    // The marker written to the child arrives.
    rig.all_acknowledged(&marker, WITHIN).await;

    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(parent_records.iter().chain(&marker)),
        "no record of the finished parent is delivered twice; per key, the parent's, then the child's",
    );
    let parent_iterators: Vec<_> = rig
        .fake
        .iterator_requests()
        .into_iter()
        .filter(|r| r.shard == parent)
        .collect();
    assert_eq!(
        parent_iterators.len(),
        1,
        "the finished parent is not read again: {parent_iterators:?}"
    );
    let checkpoint = rig.checkpoint().expect("a checkpoint");
    assert_eq!(checkpoint["shards"][&parent], "finished", "{checkpoint}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_next_shard_iterator_on_a_shard_listed_as_open_does_not_finish_it() {
    let rig = Rig::new("no-next-iterator", WITHIN).await;
    let (_, shard) = rig.stream_with_shard();
    let before = rig.fake.append(&shard, changes(2, 4, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(before.len()).await;

    // One answer says nothing of a next iterator; DescribeStream still lists
    // the shard with no ending sequence number.
    rig.fake.drop_next_iterator(&shard, 1);
    eventually(
        "a GetRecords answer without NextShardIterator",
        WITHIN,
        async || (rig.fake.pending_dropped_iterators(&shard) == 0).then_some(()),
    )
    .await;
    let after = rig.fake.append(&shard, changes(2, 4, 10));
    eventually(
        "the records appended after an answer without NextShardIterator",
        WITHIN,
        async || (rig.sink.acknowledged().len() >= before.len() + after.len()).then_some(()),
    )
    .await;
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(before.iter().chain(&after)),
        "every record once, in order per key, across the answer without NextShardIterator",
    );

    assert!(adapter.terminate(WITHIN).await.success());
    let checkpoint = rig.checkpoint().expect("a checkpoint after SIGTERM");
    assert_eq!(
        checkpoint["shards"][&shard]["after"],
        after.last().expect("records").sequence_number.as_str(),
        "the open shard is not finished: {checkpoint}"
    );

    // After a restart the shard is read on from its checkpoint.
    let later = rig.fake.append(&shard, changes(2, 3, 20));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(before.len() + after.len() + later.len())
        .await;
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(before.iter().chain(&after).chain(&later)),
        "every record once, in order per key, across the restart",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_at_a_latest_start_means_every_shards_first_position_is_held() {
    const SHARDS: usize = 64;
    let mut rig = Rig::new("latest-ready", WITHIN).await;
    rig.set("STARTING_POSITION", "LATEST");
    let stream = rig.fake.enable_stream(&rig.table);
    let shards: Vec<String> = (0..SHARDS)
        .map(|_| rig.fake.add_shard(&stream, None))
        .collect();
    // History from before the start, which LATEST leaves out.
    for shard in &shards {
        rig.fake.append(shard, [Change::insert("old", 0)]);
    }

    let adapter = rig.spawn();
    eventually(
        "/readyz to answer 200",
        Duration::from_secs(60),
        async || {
            matches!(
                crate::support::local_get(adapter.metrics_port, "/readyz").await,
                Some((200, _))
            )
            .then_some(())
        },
    )
    .await;
    // At once: one record per shard, each written after the adapter said ready.
    let written: Vec<Written> = shards
        .iter()
        .enumerate()
        .flat_map(|(n, shard)| {
            rig.fake
                .append(shard, [Change::insert(format!("new{n}"), 1)])
        })
        .collect();

    let all_arrived = holds_within(WITHIN, || rig.sink.acknowledged().len() >= written.len()).await;
    let received: HashSet<String> = rig.sink.acknowledged_ids().into_iter().collect();
    let lost: Vec<&String> = written
        .iter()
        .filter(|w| !received.contains(&w.event_id))
        .map(|w| &w.shard)
        .collect();
    assert!(
        all_arrived && lost.is_empty(),
        "{} of {SHARDS} records written once /readyz said 200 were lost, on shards {lost:?}",
        lost.len()
    );
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(&written),
        "only the records written after the start, once each",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_without_event_id_and_sequence_number_get_distinct_ids() {
    let dead_letters = Receiver::accepting().await;
    let mut rig = Rig::new("malformed-ids", WITHIN).await;
    rig.set("K_DEAD_LETTER_SINK", &dead_letters.url);
    let (_, shard) = rig.stream_with_shard();
    // Three byte-identical records: only their places in the shard tell them
    // apart, so an id made from the content alone would not do.
    for _ in 0..3 {
        let written = rig
            .fake
            .append_edited(&shard, Change::insert("bad", 0), |record| {
                record.as_object_mut().expect("a record").remove("eventID");
                let change = record["dynamodb"].as_object_mut().expect("dynamodb");
                change.remove("SequenceNumber");
                change.insert("ApproximateCreationDateTime".into(), 1_700_000_000.into());
            });
        assert_eq!(written.event_id, "", "the served record has no eventID");
    }
    let marker = rig.fake.append(&shard, [Change::insert("good", 1)]);

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    acknowledged_by(&dead_letters, 3, "the dead-letter sink", WITHIN).await;
    rig.delivered(1).await;
    assert_eq!(
        rig.sink.acknowledged_ids(),
        ids(&marker),
        "the shard goes on"
    );

    let letters = dead_letters.acknowledged_ids();
    let distinct: HashSet<&String> = letters.iter().collect();
    assert_eq!(letters.len(), 3, "one dead letter each: {letters:?}");
    assert_eq!(
        distinct.len(),
        3,
        "three malformed records, three distinct ids: {letters:?}"
    );
    assert!(letters.iter().all(|id| !id.is_empty()), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_keys_is_delivered_without_subject_and_partitionkey() {
    let rig = Rig::new("no-keys", WITHIN).await;
    let (_, shard) = rig.stream_with_shard();
    let keyless = rig
        .fake
        .append_edited(&shard, Change::insert("a", 1), |record| {
            record["dynamodb"]
                .as_object_mut()
                .expect("dynamodb")
                .remove("Keys");
        });
    let keyed = rig.fake.append(&shard, [Change::insert("b", 2)]);
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(2).await;

    // Two keys, none and `pk=b`: the two may arrive in either order.
    let received = rig.sink.acknowledged();
    assert_delivered(
        &received,
        &crate::support::per_key([
            (None, keyless.event_id.clone()),
            (Some(keyed[0].partition_key()), keyed[0].event_id.clone()),
        ]),
        "both records once, the keyless one without a key",
    );
    let event = |id: &str| {
        received
            .iter()
            .find(|r| r.id() == id)
            .expect("delivered")
            .clone()
    };
    let (without, with) = (&event(&keyless.event_id), &event(&keyed[0].event_id));
    assert_eq!(
        (
            without.header("ce-subject"),
            without.header("ce-partitionkey")
        ),
        (None, None),
        "no key, no subject and no partitionkey"
    );
    assert!(without.json()["dynamodb"].get("Keys").is_none());
    assert!(
        with.header("ce-subject").is_some() && with.header("ce-partitionkey").is_some(),
        "a keyed record has both"
    );
}
