//! Adapter replicas sharing a stream's shards through Leases, against the
//! real API server (tests/it/support/cluster.rs): separate adapter processes
//! running as the adapter's ServiceAccount with the Role the controller
//! grants, the Streams fake with 24 open shards and a split, and a
//! CloudEvents receiver.
//!
//! Each replica signs its Streams calls with an access key of its own, so
//! the fake's request log says which process read which shard when.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::support::adapter::AdapterProcess;
use crate::support::cluster;
use crate::support::fake_streams::{Change, FakeStreams, Op, Written, ids, written_per_key};
use crate::support::leases::{CONFIG_MAP, Replicas, balanced, holders, source_namespace};
use crate::support::receiver::Receiver;
use crate::support::{assert_delivered, eventually, first_arrivals};

const WITHIN: Duration = Duration::from_secs(60);

/// The data keys of the checkpoint ConfigMap that hold summaries.
async fn summary_keys(ns: &str) -> BTreeSet<String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster::shared().admin().await, ns);
    let object = config_maps.get(CONFIG_MAP).await.expect("the ConfigMap");
    object
        .data
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k.starts_with("summary"))
        .collect()
}

/// Records on every open shard, keys cycling within each shard.
fn write_batch(fake: &FakeStreams, shards: &[String], round: usize) -> Vec<Written> {
    shards
        .iter()
        .enumerate()
        .flat_map(|(i, shard)| {
            fake.append(
                shard,
                (0..3).map(|n| Change::modify(format!("s{i}-k{n}"), (round * 10 + n) as i64)),
            )
        })
        .collect()
}

async fn first_arrived(sink: &Receiver, written: &[Written], what: &str) {
    let expected: HashSet<String> = ids(written).into_iter().collect();
    eventually(what, WITHIN, async || {
        let arrived: HashSet<String> = sink.acknowledged_ids().into_iter().collect();
        expected.is_subset(&arrived).then_some(())
    })
    .await;
}

/// For each shard, the replicas that called GetRecords on it, in the order
/// of their calls, consecutive calls of one replica counted once.
fn readers_per_shard(fake: &FakeStreams) -> BTreeMap<String, Vec<String>> {
    let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in fake.call_log() {
        if call.op != Op::GetRecords {
            continue;
        }
        let (Some(shard), Some(client)) = (call.shard, call.client) else {
            continue;
        };
        let runs = readers.entry(shard).or_default();
        if runs.last() != Some(&client) {
            runs.push(client);
        }
    }
    readers
}

/// The leases `replicas` took over from a holder that stopped renewing, in all.
async fn taken_over(replicas: &[&AdapterProcess]) -> f64 {
    let mut sum = 0.0;
    for replica in replicas {
        sum += replica
            .metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
            .await;
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_shards_one_reader_each_through_kills_hand_overs_and_a_stop() {
    let (ns, uid) = source_namespace("leases").await;
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("orders");
    let mut open: Vec<String> = (0..24).map(|_| fake.add_shard(&stream, None)).collect();
    let sink = Receiver::accepting().await;
    let replicas = Replicas::new(&sink, &fake, &ns, &uid).await;
    let mut written = Vec::new();

    // Three replicas; one shard splits while they read.
    let mut a = replicas.spawn("replica-a");
    let mut b = replicas.spawn("replica-b");
    let mut c = replicas.spawn("replica-c");
    for replica in [&mut a, &mut b, &mut c] {
        replica.wait_ready().await;
    }
    written.extend(write_batch(&fake, &open, 1));
    let parent = open.remove(0);
    let children = fake.split(&parent, 2);
    // Keys of the parent continue in its children: order across the split.
    for (n, child) in children.iter().enumerate() {
        written.extend(
            fake.append(
                child,
                (0..3i64)
                    .filter(|k| k % 2 == n as i64)
                    .map(|k| Change::modify(format!("s0-k{k}"), 100 + k)),
            ),
        );
    }
    open.extend(children.iter().cloned());
    first_arrived(&sink, &written, "the first batch, across the split").await;
    balanced(
        &ns,
        open.len(),
        WITHIN,
        &["replica-a", "replica-b", "replica-c"],
    )
    .await;

    // SIGKILL: the others take its shards over once its leases expire.
    a.kill();
    // Its leases name it until they are taken over, a lease duration later.
    let killed = holders(&ns).await;
    let batch = write_batch(&fake, &open, 2);
    first_arrived(
        &sink,
        &batch,
        "the second batch, after a replica was killed",
    )
    .await;
    written.extend(batch);
    balanced(&ns, open.len(), WITHIN, &["replica-b", "replica-c"]).await;
    let held_by_a = killed
        .values()
        .filter(|h| h.as_deref() == Some("replica-a"))
        .count();
    // Shards it asked for may still be passed to it after it died: those
    // are taken over too. A replica counts its takes once all the writes of
    // a round have returned, which can be after the leases show the new
    // holder: the count is waited for, not read once.
    eventually(
        &format!("every one of the {held_by_a} shards of the killed replica taken over"),
        WITHIN,
        async || (taken_over(&[&b, &c]).await as usize >= held_by_a).then_some(()),
    )
    .await;
    let left = holders(&ns).await;
    assert!(
        !left.values().any(|h| h.as_deref() == Some("replica-a")),
        "{left:?}"
    );

    // A rolling update: the new replica comes up while the others read, is
    // given a share, then an old one stops with SIGTERM and hands over at once.
    let before = sink.acknowledged_ids().len();
    let mut d = replicas.spawn("replica-d");
    d.wait_ready().await;
    balanced(
        &ns,
        open.len(),
        WITHIN,
        &["replica-b", "replica-c", "replica-d"],
    )
    .await;
    eventually("a summary of each replica", WITHIN, async || {
        let keys = summary_keys(&ns).await;
        ["b", "c", "d"]
            .iter()
            .all(|r| keys.contains(&format!("summary-replica-{r}.json")))
            .then_some(())
    })
    .await;
    assert!(b.terminate(WITHIN).await.success(), "{}", b.logs());
    let keys = summary_keys(&ns).await;
    assert!(
        !keys.contains("summary-replica-b.json"),
        "a stopped replica removes its summary: {keys:?}"
    );
    balanced(&ns, open.len(), WITHIN, &["replica-c", "replica-d"]).await;
    // Asked of b's leases only: c and d taking each other's leases after a stall
    // of the machine would say nothing about how b stopped.
    let lease_lines = |logs: String| {
        logs.lines()
            .filter(|l| l.contains("took over") || l.contains("releas") || l.contains("lost"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let from_b: Vec<String> = [c.logs(), d.logs()]
        .iter()
        .flat_map(|logs| logs.lines())
        .filter(|l| l.contains("took over the lease") && l.contains("replica-b"))
        .map(str::to_owned)
        .collect();
    let released = b.logs().lines().find_map(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = entry.get("fields").unwrap_or(&entry);
        (fields["message"] == "shard leases released").then(|| fields["released"].as_u64())?
    });
    assert!(
        from_b.is_empty() && released.is_some_and(|n| n > 0),
        "a stopped replica's leases are released, not left to expire:\n{}\n{}\n{}",
        lease_lines(b.logs()),
        lease_lines(c.logs()),
        lease_lines(d.logs())
    );
    let batch = write_batch(&fake, &open, 3);
    first_arrived(&sink, &batch, "the third batch, after hand-overs").await;
    written.extend(batch.clone());
    assert_eq!(
        sink.acknowledged_ids().len() - before,
        batch.len(),
        "hand-overs repeat nothing"
    );

    // Scaled to zero: the leases and the checkpoint stay; one replica resumes.
    assert!(c.terminate(WITHIN).await.success(), "{}", c.logs());
    assert!(d.terminate(WITHIN).await.success(), "{}", d.logs());
    let left = holders(&ns).await;
    assert_eq!(left.len(), open.len(), "the leases stay: {left:?}");
    assert!(left.values().all(Option::is_none), "released: {left:?}");
    let before = sink.acknowledged_ids().len();
    let batch = write_batch(&fake, &open, 4);
    let mut e = replicas.spawn("replica-e");
    e.wait_ready().await;
    first_arrived(&sink, &batch, "the fourth batch, after scaling back to one").await;
    written.extend(batch.clone());
    balanced(&ns, open.len(), WITHIN, &["replica-e"]).await;
    assert_eq!(
        sink.acknowledged_ids().len() - before,
        batch.len(),
        "resumed where the others stopped"
    );
    assert!(e.terminate(WITHIN).await.success(), "{}", e.logs());

    // Everything arrived, each item's changes in order (repeats after the
    // kill dropped), across the split and every change of hands.
    let arrivals = first_arrivals(&sink.acknowledged());
    assert_delivered(
        &arrivals,
        &written_per_key(&written),
        "every record, in order per item",
    );
    let repeated = sink.acknowledged_ids().len() - arrivals.len();
    assert!(
        repeated <= held_by_a * 3,
        "at most the killed replica's unsaved records come again: {repeated}"
    );

    // One reader per shard at any time: a shard's reads pass from replica to
    // replica a few times (the start, the kill, the balancing, the stops),
    // never back and forth as two concurrent readers' polls would, dozens
    // of times.
    let readers = readers_per_shard(&fake);
    assert!(readers.len() >= open.len(), "{readers:?}");
    for (shard, runs) in &readers {
        if runs.len() > 8 {
            let mentions = [&a, &b, &c, &d, &e]
                .iter()
                .flat_map(|r| {
                    r.logs()
                        .lines()
                        .filter(|l| l.contains(shard.as_str()))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
                .join("\n");
            panic!("shard {shard} went back and forth between readers: {runs:?}\n{mentions}");
        }
    }
}
