//! Per-key concurrent delivery (issue 17), end to end: the adapter binary
//! against the scripted Streams fake and a sink that answers slowly, at
//! random, or fails one key. Within a shard the records of one item arrive
//! one after another in stream order while different items' overlap; a key
//! that keeps failing holds back only itself and the checkpoint; every open
//! shard is read; all shards together keep to the connection bound; metrics
//! count each event once; and shutdown waits for the sends in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::fake_streams::{Change, Written, ids};
use crate::support::receiver::{
    Behaviour, Received, Receiver, Reply, Switch, failing_key, random_delays,
};
use crate::support::rig::Rig;
use crate::support::{eventually, seq_key};

/// The longest any single wait in these tests may take: the machine may be
/// loaded, and a wait only lasts this long when something is wrong.
const WITHIN: Duration = Duration::from_secs(60);

/// A rig whose sink answers as `behaviour` says.
async fn rig_answering(table: &str, behaviour: Behaviour) -> Rig {
    Rig::with_sink(table, Receiver::start(0, behaviour).await, WITHIN).await
}

/// `changes` changes to each of `keys` items named `{prefix}k{n}`,
/// interleaved: every item's first change, then every item's second...
fn interleaved(prefix: &str, keys: usize, changes: usize) -> Vec<Change> {
    (0..changes)
        .flat_map(|round| {
            (0..keys).map(move |k| Change::modify(format!("{prefix}k{k}"), round as i64))
        })
        .collect()
}

fn partition_key(written: &Written) -> String {
    format!("pk={}", written.key)
}

/// The stream's records per item key (`pk=...`), in stream order.
fn expected_per_key(written: &[Written]) -> BTreeMap<String, Vec<String>> {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in written {
        per_key
            .entry(partition_key(w))
            .or_default()
            .push(w.event_id.clone());
    }
    per_key
}

/// What the sink acknowledged per item key, in order of arrival; with
/// `first_only`, each record's first acknowledgement only.
fn acknowledged_per_key(
    acknowledged: &[Received],
    first_only: bool,
) -> BTreeMap<String, Vec<String>> {
    let mut seen = HashSet::new();
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in acknowledged {
        if first_only && !seen.insert(r.id()) {
            continue;
        }
        per_key
            .entry(r.header("ce-partitionkey").unwrap_or_default().to_owned())
            .or_default()
            .push(r.id());
    }
    per_key
}

/// Asserts every record of `written` was acknowledged exactly once, that the
/// sink saw no other request, and that each item's records came in stream order.
fn assert_once_each_in_item_order(sink: &Receiver, written: &[Written]) {
    let requests = sink.requests();
    let acknowledged = sink.acknowledged();
    let mut got: Vec<String> = acknowledged.iter().map(Received::id).collect();
    let mut want = ids(written);
    got.sort();
    want.sort();
    assert_eq!(
        (requests.len(), got.len()),
        (written.len(), written.len()),
        "one request per record, none refused"
    );
    assert_eq!(got, want, "every record exactly once");
    assert_eq!(
        acknowledged_per_key(&acknowledged, false),
        expected_per_key(written),
        "each item's records in stream order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_item_order_holds_and_sends_overlap_under_random_sink_latencies() {
    let rig = rig_answering(
        "latencies",
        random_delays(17, Duration::ZERO..Duration::from_millis(50)),
    )
    .await;
    let shard = rig.add_shard();
    // 50 items, 10 changes each, interleaved: 500 records.
    let written = rig.fake.append(&shard, interleaved("", 50, 10));

    let _adapter = rig.run_until_settled(&written).await;

    assert_once_each_in_item_order(&rig.sink, &written);
    assert!(
        rig.sink.peak_open_requests() > 1,
        "different items' records were sent at the same time: at most {} request(s) were open at once",
        rig.sink.peak_open_requests()
    );
    assert_ne!(
        rig.sink.acknowledged_ids(),
        ids(&written),
        "with random latencies, different items' records overtake each other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_item_order_holds_in_every_shard_of_several_under_random_sink_latencies() {
    let rig = rig_answering(
        "latencies-shards",
        random_delays(1717, Duration::ZERO..Duration::from_millis(50)),
    )
    .await;
    // 4 shards, each with its own 20 items of 8 changes: 640 records.
    let mut written = Vec::new();
    for n in 0..4 {
        let shard = rig.add_shard();
        written.extend(
            rig.fake
                .append(&shard, interleaved(&format!("s{n}"), 20, 8)),
        );
    }

    let _adapter = rig.run_until_settled(&written).await;

    assert_once_each_in_item_order(&rig.sink, &written);
    assert!(
        rig.sink.peak_open_requests() > 1,
        "at most {} request(s) were open at once",
        rig.sink.peak_open_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_holds_back_only_itself_and_the_checkpoint_never_passes_it() {
    let failing = Switch::new(true);
    let mut rig = rig_answering(
        "failing-key",
        failing_key(
            "pk=k0",
            503,
            failing.clone(),
            Arc::new(|_, _| Reply::status(202)),
        ),
    )
    .await;
    // k0 is retried often while it fails.
    rig.set("DELIVERY_BACKOFF_DELAY", "PT0.05S");
    let shard = rig.add_shard();
    // Five records of other items first, so the checkpoint has somewhere to
    // go before k0's first record; then 10 items (k0 to k9) x 10 changes.
    let mut written = rig.fake.append(&shard, interleaved("a", 5, 1));
    written.extend(rig.fake.append(&shard, interleaved("", 10, 10)));
    let k0: Vec<&Written> = written.iter().filter(|w| w.key == "k0").collect();
    let k0_first = k0[0].clone();
    let before_k0 = written[4].clone();
    assert_eq!(written[5], k0_first);
    let others: Vec<Written> = written.iter().filter(|w| w.key != "k0").cloned().collect();

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    rig.all_acknowledged(&others, WITHIN).await;
    // The checkpoint moves up to the record before k0's first, and no further.
    eventually(
        "the checkpoint at the last record before k0's first",
        WITHIN,
        async || (rig.after(&shard).as_ref() == Some(&before_k0.sequence_number)).then_some(()),
    )
    .await;
    eventually("k0 tried again and again", WITHIN, async || {
        let tries = rig
            .sink
            .requests()
            .iter()
            .filter(|r| r.header("ce-partitionkey") == Some("pk=k0"))
            .count();
        (tries >= 3).then_some(())
    })
    .await;
    let k0_requests: Vec<String> = rig
        .sink
        .requests()
        .iter()
        .filter(|r| r.header("ce-partitionkey") == Some("pk=k0"))
        .map(Received::id)
        .collect();
    assert!(
        k0_requests.iter().all(|id| *id == k0_first.event_id),
        "only k0's first record is tried while it fails, never a later one of k0: {k0_requests:?}"
    );
    assert!(
        rig.sink
            .acknowledged()
            .iter()
            .all(|r| r.header("ce-partitionkey") != Some("pk=k0")),
        "nothing of k0 was acknowledged"
    );

    adapter.kill();
    let saved = rig
        .after(&shard)
        .expect("a checkpoint position before the kill");
    assert!(
        seq_key(&saved) < seq_key(&k0_first.sequence_number),
        "the checkpoint ({saved}) is below k0's first record ({})",
        k0_first.sequence_number
    );
    let acked_before_kill = rig.sink.acknowledged().len();

    // k0 is accepted again; the restarted adapter resumes from the checkpoint.
    failing.set(false);
    let _adapter = rig.run_until_settled(&written).await;

    let acknowledged = rig.sink.acknowledged();
    let per_key = acknowledged_per_key(&acknowledged, false);
    assert_eq!(
        per_key.get("pk=k0"),
        Some(&k0.iter().map(|w| w.event_id.clone()).collect::<Vec<_>>()),
        "every k0 record once, in stream order"
    );
    assert_eq!(
        acknowledged_per_key(&acknowledged, true),
        expected_per_key(&written),
        "every item's records first arrive in stream order"
    );
    let sequence: HashMap<String, String> = written
        .iter()
        .map(|w| (w.event_id.clone(), w.sequence_number.clone()))
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &acknowledged {
        *counts.entry(r.id()).or_default() += 1;
    }
    assert_eq!(
        counts.len(),
        written.len(),
        "nothing lost, nothing invented"
    );
    let repeated_before_checkpoint: Vec<&String> = counts
        .iter()
        .filter(|(id, n)| **n > 1 && seq_key(&sequence[*id]) <= seq_key(&saved))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        repeated_before_checkpoint,
        Vec::<&String>::new(),
        "only records after the checkpoint ({saved}) are delivered again"
    );
    assert!(
        counts.values().all(|n| *n <= 2),
        "no record delivered more than once per run: {counts:?}"
    );
    assert!(acknowledged.len() > acked_before_kill);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_open_shards_with_a_few_records_each_are_all_delivered() {
    let mut rig = Rig::new("many-open", WITHIN).await;
    // Idle shards are polled once a second at most: 300 of them polled five
    // times a second would be load on a shared machine, not what is tested.
    rig.set("IDLE_POLL_MAX", "PT1S");
    let shards = 300;
    let mut written = Vec::new();
    for n in 0..shards {
        let shard = rig.add_shard();
        // Two items; the first changes twice.
        written.extend(rig.fake.append(
            &shard,
            [
                Change::insert(format!("s{n}k0"), 0),
                Change::insert(format!("s{n}k1"), 0),
                Change::modify(format!("s{n}k0"), 1),
            ],
        ));
    }
    assert_eq!(written.len(), shards * 3);

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    eventually(
        "every shard read at once (dynamodb_source_shards_read)",
        WITHIN,
        async || {
            (adapter.metric("dynamodb_source_shards_read").await == shards as f64).then_some(())
        },
    )
    .await;
    rig.all_acknowledged(&written, Duration::from_secs(120))
        .await;
    rig.checkpointed_to_the_end(&written).await;

    assert_once_each_in_item_order(&rig.sink, &written);
    let shard_of: HashMap<&str, &str> = written
        .iter()
        .map(|w| (w.event_id.as_str(), w.shard.as_str()))
        .collect();
    let delivered_shards: HashSet<&str> = rig
        .sink
        .acknowledged_ids()
        .iter()
        .map(|id| shard_of[id.as_str()])
        .collect();
    assert_eq!(delivered_shards.len(), shards, "records from every shard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_shards_together_keep_to_the_connection_bound() {
    let mut rig = rig_answering(
        "connection-bound",
        random_delays(29, Duration::ZERO..Duration::from_millis(20)),
    )
    .await;
    // 8 shards x 20 in flight each would be 160 at once.
    rig.set("DELIVERY_MAX_CONNECTIONS", "6");
    let mut written = Vec::new();
    for n in 0..8 {
        let shard = rig.add_shard();
        written.extend(
            rig.fake
                .append(&shard, interleaved(&format!("s{n}"), 10, 5)),
        );
    }

    let _adapter = rig.run_until_settled(&written).await;

    assert_once_each_in_item_order(&rig.sink, &written);
    let peak = rig.sink.peak_open_requests();
    assert!(
        (2..=6).contains(&peak),
        "sends overlap, at most one per connection of the 6 allowed: {peak} were open at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_parallelism_of_one_delivers_the_shard_in_stream_order_one_request_at_a_time() {
    let mut rig = rig_answering(
        "one-at-a-time",
        random_delays(7, Duration::ZERO..Duration::from_millis(10)),
    )
    .await;
    rig.set("DELIVERY_PARALLELISM", "1");
    let shard = rig.add_shard();
    let written = rig.fake.append(&shard, interleaved("", 10, 10));

    let _adapter = rig.run_until_settled(&written).await;

    assert_eq!(
        rig.sink.acknowledged_ids(),
        ids(&written),
        "the whole shard in stream order, every item's records together"
    );
    assert_eq!(rig.sink.requests().len(), written.len());
    assert_eq!(
        rig.sink.peak_open_requests(),
        1,
        "never two requests open at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_counted_once_however_often_it_was_retried() {
    // The first six requests fail, whichever records they carry.
    let mut rig = rig_answering(
        "counted",
        Arc::new(|i, _| match i {
            0..=5 => Reply::status(503),
            _ => Reply::status(202),
        }),
    )
    .await;
    rig.set("DELIVERY_BACKOFF_DELAY", "PT0.05S");
    let mut written = Vec::new();
    for n in 0..2 {
        let shard = rig.add_shard();
        written.extend(rig.fake.append(&shard, interleaved(&format!("s{n}"), 8, 5)));
    }
    let n = written.len();

    let adapter = rig.run_until_settled(&written).await;
    let delivered = "dynamodb_source_events_total{result=\"delivered\"}";
    let in_flight = "dynamodb_source_events_in_flight";
    let metrics = eventually(
        "every event counted and none in flight",
        WITHIN,
        async || {
            let metrics = adapter.metrics().await;
            (crate::support::sample(&metrics, delivered) >= Some(n as f64)
                && crate::support::sample(&metrics, in_flight) == Some(0.0))
            .then_some(metrics)
        },
    )
    .await;

    assert_eq!(
        rig.sink.requests().len(),
        n + 6,
        "six refusals, then one each"
    );
    assert_eq!(rig.sink.acknowledged().len(), n);
    assert_eq!(
        crate::support::sample(&metrics, delivered),
        Some(n as f64),
        "each event counted once:\n{metrics}"
    );
    assert_eq!(
        crate::support::sample(&metrics, in_flight),
        Some(0.0),
        "{metrics}"
    );
    let retried: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("dynamodb_source_delivery_attempts_total{")
                && l.contains("retryable")
                && l.contains("503")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        retried, 6.0,
        "the six 503s are counted as attempts:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_the_sends_in_flight_and_checkpoints_what_was_acknowledged() {
    let slow = Switch::new(true);
    let mut rig = rig_answering("sigterm", {
        let slow = slow.clone();
        Arc::new(move |_, _| {
            let reply = Reply::status(202);
            if slow.is_on() {
                reply.delay(Duration::from_secs(1))
            } else {
                reply
            }
        })
    })
    .await;
    // Ample for sends of a second each even on a stalled machine, where the
    // default 5 s would abandon them and fail the test for the machine.
    let shutdown_timeout = Duration::from_secs(30);
    rig.set("SHUTDOWN_TIMEOUT", "PT30S");
    let shard = rig.add_shard();
    // 5 items x 6 changes: five sends at a time, a second each.
    let written = rig.fake.append(&shard, interleaved("", 5, 6));

    let mut adapter = rig.spawn();
    adapter.wait_ready().await;
    eventually("sends in flight at the sink", WITHIN, async || {
        (rig.sink.open_requests() >= 1).then_some(())
    })
    .await;
    let terminated = Instant::now();
    let status = adapter.terminate(shutdown_timeout + WITHIN).await;
    let took = terminated.elapsed();
    assert!(status.success(), "the adapter exits 0: {status}");
    assert!(
        took < shutdown_timeout,
        "the adapter exits within SHUTDOWN_TIMEOUT ({shutdown_timeout:?}), took {took:?}"
    );
    let log = adapter.logs();
    assert!(
        !log.contains("abandoning an in-flight delivery"),
        "no send was abandoned"
    );

    // Every request that reached the sink was answered 202 (a second later):
    // the checkpoint holds the longest prefix of the shard the sink acknowledged.
    let acknowledged: HashSet<String> = rig.sink.acknowledged_ids().into_iter().collect();
    assert!(!acknowledged.is_empty());
    let prefix_end = written
        .iter()
        .take_while(|w| acknowledged.contains(&w.event_id))
        .last()
        .map(|w| w.sequence_number.clone())
        .expect("the shard's first record was sent and acknowledged");
    let saved = rig.after(&shard);
    assert_eq!(
        saved.as_ref(),
        Some(&prefix_end),
        "the checkpoint after SIGTERM is the last record below which the sink acknowledged everything ({} acknowledged)",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < written.len(),
        "SIGTERM came while records were still to be sent"
    );

    // The restart delivers the rest, quickly now; nothing is lost.
    slow.set(false);
    let _adapter = rig.run_until_settled(&written).await;
    let all = rig.sink.acknowledged();
    assert_eq!(
        acknowledged_per_key(&all, true),
        expected_per_key(&written),
        "every record, each item's in stream order"
    );
    let sequence: HashMap<&str, &str> = written
        .iter()
        .map(|w| (w.event_id.as_str(), w.sequence_number.as_str()))
        .collect();
    let mut seen = HashSet::new();
    for r in &all {
        let id = r.id();
        if !seen.insert(id.clone()) {
            assert!(
                seq_key(sequence[id.as_str()]) > seq_key(&prefix_end),
                "{id} delivered again though the checkpoint ({prefix_end}) covered it"
            );
        }
    }
}
