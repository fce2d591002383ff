//! The adapter binary against a scripted fake of the DynamoDB Streams API:
//! the failures and shapes of a real stream that moto cannot produce (expired
//! iterators, throttling, trimming, shard splits, many shards, server errors,
//! a table without a stream), each checked end to end at the sink: every
//! record exactly once, and the records of each item key in stream order
//! (records of different keys are delivered concurrently, issue 17).

use std::time::Duration;

use crate::support::adapter::AdapterProcess;
use crate::support::fake_streams::{Change, Fault, Op, Written, changes, ids, written_per_key};
use crate::support::rig::Rig;
use crate::support::{assert_delivered, assert_key_order, eventually};

/// The longest any single wait in these tests may take.
const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_iterator_is_reacquired_from_the_checkpoint_without_loss_or_duplicates() {
    let rig = Rig::new("expiry", WITHIN).await;
    let (_, shard) = rig.stream_with_shard();
    let first = rig.fake.append(&shard, changes(3, 10, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(10).await;

    // The reader sits at the end of the shard, polling: its iterator expires twice.
    let before = rig.fake.iterator_requests().len();
    rig.fake
        .fail_next(Op::GetRecords, 2, Fault::ExpiredIterator);
    let reacquired = eventually("two new iterators after two expiries", WITHIN, async || {
        let requests = rig.fake.iterator_requests();
        (rig.fake.pending_faults(Op::GetRecords) == 0 && requests.len() >= before + 2)
            .then(|| requests[before..].to_vec())
    })
    .await;
    let last_delivered = &first.last().expect("records").sequence_number;
    for request in &reacquired {
        assert_eq!(
            (request.kind.as_str(), request.sequence_number.as_ref()),
            ("AFTER_SEQUENCE_NUMBER", Some(last_delivered)),
            "an expired iterator is replaced from the last delivered record: {reacquired:?}"
        );
    }

    let second = rig.fake.append(&shard, changes(3, 10, 10));
    rig.delivered(20).await;
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(first.iter().chain(&second)),
        "every record once, in order per key, across the expiries",
    );
    assert!(
        adapter
            .metric("dynamodb_source_get_records_total{result=\"expired\"}")
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_backs_off_and_loses_nothing() {
    let mut rig = Rig::new("throttled", WITHIN).await;
    // The SDK's own retries are off so the adapter's backoff is what is measured.
    rig.set("AWS_MAX_ATTEMPTS", "1");
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(4, 30, 0));
    // Counted, not timed: a window of time would hold more or fewer calls as the
    // machine is loaded; a number of calls always takes the same backoff.
    rig.fake
        .fail_next(Op::GetRecords, 1, Fault::ProvisionedThroughputExceeded);
    rig.fake.fail_next(Op::GetRecords, 1, Fault::Throttling);
    rig.fake.fail_next(Op::GetRecords, 4, Fault::LimitExceeded);

    let adapter = rig.deliver_all(&written, "the throttling").await;

    let throttled: Vec<_> = rig
        .fake
        .call_log()
        .into_iter()
        .filter(|c| c.op == Op::GetRecords && c.error.is_some())
        .collect();
    assert_eq!(throttled.len(), 6, "one throttled call per fault queued");
    let gaps: Vec<Duration> = throttled
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .collect();
    assert!(
        gaps.last()
            .is_some_and(|gap| *gap >= Duration::from_millis(200)),
        "the pause grows with repeated throttling: {gaps:?}"
    );
    assert_eq!(
        adapter
            .metric("dynamodb_source_get_records_total{result=\"throttled\"}")
            .await,
        6.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_data_is_reported_and_reading_continues_from_trim_horizon() {
    let rig = Rig::new("trimmed", WITHIN).await;
    let (_, shard) = rig.stream_with_shard();
    let first = rig.fake.append(&shard, changes(2, 10, 0));
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(10).await;
    assert!(adapter.terminate(WITHIN).await.success());
    let checkpoint = rig.checkpoint().expect("a checkpoint after SIGTERM");
    let last_delivered = first.last().expect("records").sequence_number.clone();
    assert_eq!(
        checkpoint["shards"][&shard]["after"], last_delivered,
        "{checkpoint}"
    );

    // While the adapter is down, retention trims past its checkpoint.
    let second = rig.fake.append(&shard, changes(2, 10, 10));
    let removed = rig.fake.trim(&shard, &second[4].sequence_number);
    assert_eq!(removed, 14);

    // In a cluster the loss is also a Kubernetes Event on the source.
    let cluster = crate::support::cluster::shared();
    let namespace = cluster.namespace("trimmed").await;
    let env = rig
        .env
        .clone()
        .set("SOURCE_NAME", "orders")
        .set("SOURCE_NAMESPACE", &namespace)
        .set("KUBECONFIG", cluster.kubeconfig.display().to_string());
    let mut adapter = AdapterProcess::spawn(&env, rig.dir());
    adapter.wait_ready().await;
    rig.delivered(10 + 6).await;
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(first.iter().chain(&second[4..])),
        "after the trimmed gap, the oldest record still held and everything after it, \
         once each, in order per key",
    );
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(cluster.admin().await, &namespace);
    let event = eventually("a TrimmedData Event on the source", WITHIN, async || {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("TrimmedData"))
    })
    .await;
    let regarding = event.regarding.expect("regarding");
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("AWSDynamoDBSource"), Some("orders"))
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    eventually("the trimmed-data metric", WITHIN, async || {
        (adapter.metric("dynamodb_source_trimmed_data_total").await >= 1.0).then_some(())
    })
    .await;
    let requests = rig.fake.iterator_requests();
    let refused = requests
        .iter()
        .position(|r| {
            r.kind == "AFTER_SEQUENCE_NUMBER"
                && r.sequence_number.as_ref() == Some(&last_delivered)
                && r.error.as_deref() == Some("TrimmedDataAccessException")
        })
        .unwrap_or_else(|| panic!("the checkpoint position was asked for: {requests:?}"));
    assert_eq!(
        requests.get(refused + 1).map(|r| r.kind.as_str()),
        Some("TRIM_HORIZON"),
        "{requests:?}"
    );
    assert!(
        adapter.logs().contains("trimmed"),
        "the loss is logged:\n{}",
        adapter.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_shards_are_read_only_after_their_parent_ends() {
    let rig = Rig::new("lineage", WITHIN).await;
    let (_, parent) = rig.stream_with_shard();
    let parent_records = rig.fake.append(&parent, changes(2, 8, 0));
    let children = rig.fake.split(&parent, 2);
    // Each key goes on in one child: k0 in the first, k1 in the second.
    let child_records: Vec<Vec<Written>> = children
        .iter()
        .enumerate()
        .map(|(n, child)| {
            rig.fake.append(
                child,
                (0..4).map(|i| Change::modify(format!("k{n}"), 100 + i)),
            )
        })
        .collect();

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(8 + 8).await;

    // Per key, the parent's changes and then the child's, once each.
    let received = rig.sink.acknowledged();
    assert_delivered(
        &received,
        &written_per_key(parent_records.iter().chain(child_records.iter().flatten())),
        "every record once; per key, the parent's changes, then the child's",
    );
    // The parent is finished, its records all settled, before a child is
    // read: its records arrive first (among themselves, in any key order).
    let mut first_eight: Vec<String> = received[..8].iter().map(|r| r.id()).collect();
    let mut parent_ids = ids(&parent_records);
    first_eight.sort();
    parent_ids.sort();
    assert_eq!(
        first_eight, parent_ids,
        "every parent record before any child record"
    );
    assert_eq!(rig.fake.first_reads().first(), Some(&parent));
    assert_eq!(
        rig.fake.read_before_parent_end(),
        Vec::<String>::new(),
        "no child read before its parent was read to its end"
    );
    rig.finished(&parent, "the parent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_shard_final_response_with_records_is_delivered() {
    let rig = Rig::new("closing", WITHIN).await;
    // `closed` is read in one GetRecords call: its records and no next iterator.
    let (stream, closed) = rig.stream_with_shard();
    let closed_records = rig.fake.append(&closed, changes(2, 5, 0));
    rig.fake.close(&closed);
    // `closing` is closed while the adapter waits at its end, with new records:
    // the next answer holds them and no next iterator.
    let closing = rig.fake.add_shard(&stream, None);
    let early = rig.fake.append(&closing, changes(2, 3, 100));

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.delivered(5 + 3).await;
    let polls = rig.fake.calls(Op::GetRecords);
    eventually("the adapter polling the open shard", WITHIN, async || {
        (rig.fake.calls(Op::GetRecords) > polls).then_some(())
    })
    .await;
    let last = rig.fake.append_and_close(&closing, changes(2, 3, 200));
    rig.delivered(5 + 3 + 3).await;

    // The two shards are unrelated but write the same keys: per-key order
    // holds within each shard, and is checked shard by shard.
    let received = rig.sink.acknowledged();
    crate::support::assert_exactly_once(
        &received,
        &written_per_key(closed_records.iter().chain(&early).chain(&last)),
        "every record of both shards once",
    );
    assert_key_order(
        &received,
        &written_per_key(&closed_records),
        "the closed shard's records, in order per key",
    );
    assert_key_order(
        &received,
        &written_per_key(early.iter().chain(&last)),
        "the records of the final answer are delivered, in order per key",
    );
    let ended = rig.fake.ended();
    assert!(
        ended.contains(&closed) && ended.contains(&closing),
        "{ended:?}"
    );
    let checkpoint = eventually(
        "both shards finished in the checkpoint",
        WITHIN,
        async || {
            rig.checkpoint().filter(|c| {
                c["shards"][&closed] == "finished" && c["shards"][&closing] == "finished"
            })
        },
    )
    .await;
    assert_eq!(checkpoint["version"], 1);
    assert_eq!(checkpoint["streamArn"], stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_stream_pages_more_than_100_shards() {
    let rig = Rig::new("many-shards", WITHIN).await;
    let stream = rig.fake.enable_stream(&rig.table);
    // A lineage of 151 shards, 150 closed and the last open, one change each
    // to the same item: shards 101 to 151 are only on DescribeStream's second
    // page, and the item's order runs through all of them.
    let mut written = Vec::new();
    let mut parent: Option<String> = None;
    for n in 0..151 {
        let shard = rig.fake.add_shard(&stream, parent.as_deref());
        written.extend(rig.fake.append(&shard, [Change::modify("item", n)]));
        if n < 150 {
            rig.fake.close(&shard);
        }
        parent = Some(shard);
    }
    let shards = rig.fake.shards(&stream);
    assert_eq!(shards.len(), 151);

    let _adapter = rig
        .deliver_all(&written, "reading 151 shards in lineage order")
        .await;
    assert_eq!(rig.fake.first_reads(), shards);
    assert_eq!(rig.fake.read_before_parent_end(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let rig = Rig::new("flaky", WITHIN).await;
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(3, 12, 0));
    // More 500s in a row than the SDK retries by itself (3 attempts).
    rig.fake
        .fail_next(Op::GetRecords, 4, Fault::InternalServerError);
    rig.fake
        .fail_next(Op::GetShardIterator, 1, Fault::InternalServerError);
    rig.fake
        .fail_next(Op::DescribeStream, 1, Fault::InternalServerError);

    let adapter = rig.deliver_all(&written, "despite the 500s").await;
    for op in [Op::GetRecords, Op::GetShardIterator, Op::DescribeStream] {
        assert_eq!(rig.fake.pending_faults(op), 0, "{op:?} was retried");
    }
    assert!(
        adapter
            .metric("dynamodb_source_get_records_total{result=\"error\"}")
            .await
            >= 1.0,
        "the adapter saw the failure the SDK could not absorb"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_times_out_and_is_retried() {
    let rig = Rig::new("silent", WITHIN).await;
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(2, 6, 0));
    // The first read is never answered; without an attempt timeout the shard
    // would wait on it forever.
    rig.fake.fail_next(Op::GetRecords, 1, Fault::Unanswered);

    let _adapter = rig.deliver_all(&written, "the silent call").await;
    assert_eq!(rig.fake.pending_faults(Op::GetRecords), 0);
    assert!(
        rig.fake.calls(Op::GetRecords) >= 2,
        "the unanswered read was tried again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_without_a_stream_is_reported_and_retried_not_a_crash() {
    let rig = Rig::new("no-stream", WITHIN).await;
    rig.fake.create_table(&rig.table);
    let mut adapter = rig.spawn();
    eventually("ListStreams asked again", WITHIN, async || {
        (rig.fake.calls(Op::ListStreams) >= 2).then_some(())
    })
    .await;

    let readyz = format!("http://127.0.0.1:{}/readyz", adapter.metrics_port);
    let response = reqwest::get(&readyz).await.expect("the adapter answers");
    assert_eq!(
        response.status().as_u16(),
        503,
        "not ready without a stream"
    );
    let body = response.text().await.unwrap_or_default();
    assert!(body.contains("stream"), "{body}");
    let state = std::fs::read_to_string(format!("/proc/{}/stat", adapter.pid()))
        .expect("the process exists");
    assert!(
        !state.contains(") Z "),
        "the adapter is still running: {state}"
    );
    assert!(
        adapter.logs().contains("has no stream"),
        "the missing stream is reported:\n{}",
        adapter.logs()
    );
    assert_eq!(rig.sink.requests().len(), 0);

    // Streams get enabled on the table: the adapter picks it up by itself.
    let (_, shard) = rig.stream_with_shard();
    let written = rig.fake.append(&shard, changes(2, 5, 0));
    adapter.wait_ready().await;
    rig.delivered(5).await;
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(&written),
        "every record of the new stream once, in order per key",
    );
}

/// With STARTING_POSITION=LATEST, a shard's position before its first record
/// exists only as an iterator: a poll that fails must not move it to a later
/// LATEST, or records written in between are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_start_loses_nothing_when_a_poll_fails_before_the_first_record() {
    let mut rig = Rig::new("latest-flaky", WITHIN).await;
    rig.set("STARTING_POSITION", "LATEST");
    let (_, shard) = rig.stream_with_shard();
    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    eventually("the shard to be polled", WITHIN, async || {
        (rig.fake.calls(Op::GetRecords) >= 2).then_some(())
    })
    .await;
    // One poll fails for good (the SDK's three attempts) just after a write.
    let faulted = rig.fake.calls(Op::GetRecords);
    rig.fake
        .fail_next(Op::GetRecords, 3, Fault::InternalServerError);
    let first = rig.fake.append(&shard, changes(1, 1, 0));
    eventually("a successful poll after the failure", WITHIN, async || {
        rig.fake
            .call_log()
            .iter()
            .filter(|c| c.op == Op::GetRecords)
            .skip(faulted + 3)
            .any(|c| c.error.is_none())
            .then_some(())
    })
    .await;
    let second = rig.fake.append(&shard, changes(1, 1, 1));
    rig.all_acknowledged(&second, WITHIN).await;
    assert_delivered(
        &rig.sink.acknowledged(),
        &written_per_key(first.iter().chain(&second)),
        &format!(
            "the record written while the poll failed is delivered: {:?}",
            rig.fake.iterator_requests()
        ),
    );
}
