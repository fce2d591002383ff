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

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::cluster::{self, apply_params};
use crate::support::fake_streams::{Change, FakeStreams, Op, Written, ids, written_per_key};
use crate::support::receiver::Receiver;
use crate::support::{assert_delivered, eventually, first_arrivals};

const WITHIN: Duration = Duration::from_secs(60);
const SOURCE: &str = "orders";
const CONFIG_MAP: &str = "awsdynamodbsource-orders-checkpoint";
const ACCOUNT: &str = "awsdynamodbsource-orders-adapter";
const LEASE_LABEL: &str = "sources.triggermesh.io/shard-lease-of";

async fn apply<K>(client: &Client, ns: &str, manifest: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).expect("a valid manifest");
    let name = object.name_any();
    Api::<K>::namespaced(client.clone(), ns)
        .patch(&name, &apply_params(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// What the controller creates for a source, without the controller: the
/// source itself (the Leases' owner), its checkpoint ConfigMap, and the
/// adapter's ServiceAccount with the Role the controller grants it.
/// Returns the namespace and the source's uid.
async fn source_namespace(prefix: &str) -> (String, String) {
    let cluster = cluster::shared();
    crate::support::controller::install(cluster);
    let ns = cluster.namespace(prefix).await;
    let admin = cluster.admin().await;
    let sources: Api<kube::api::DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &ns,
        &kube::api::ApiResource {
            group: "sources.triggermesh.io".into(),
            version: "v1alpha1".into(),
            api_version: "sources.triggermesh.io/v1alpha1".into(),
            kind: "AWSDynamoDBSource".into(),
            plural: "awsdynamodbsources".into(),
        },
    );
    let source: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
        "metadata": {"name": SOURCE, "namespace": ns},
        "spec": {
            "arn": "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
            "sink": {"uri": "http://127.0.0.1:9/"},
        },
    }))
    .expect("a source");
    let source = sources
        .patch(SOURCE, &apply_params(), &Patch::Apply(&source))
        .await
        .expect("the source");
    let uid = source.uid().expect("a uid");
    apply::<ConfigMap>(
        &admin,
        &ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, "namespace": ns}}),
    )
    .await;
    apply::<ServiceAccount>(
        &admin,
        &ns,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": ns}}),
    )
    .await;
    apply::<Role>(
        &admin,
        &ns,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": ACCOUNT, "namespace": ns},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CONFIG_MAP], "verbs": ["get", "update", "patch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        }),
    )
    .await;
    apply::<RoleBinding>(
        &admin,
        &ns,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": ACCOUNT, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns}],
        }),
    )
    .await;
    (ns, uid)
}

struct Replicas {
    env: AdapterEnv,
    dir: tempfile::TempDir,
}

impl Replicas {
    async fn new(sink: &Receiver, fake: &FakeStreams, ns: &str, uid: &str) -> Replicas {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = cluster::shared()
            .service_account_kubeconfig(ns, ACCOUNT, dir.path())
            .await;
        let env = AdapterEnv::new(
            &sink.url,
            &fake.table_arn("orders"),
            &fake.endpoint,
            &dir.path().join("unused.json"),
        )
        .unset("CHECKPOINT_FILE")
        .set("CHECKPOINT_CONFIGMAP", CONFIG_MAP)
        .set("CHECKPOINT_NAMESPACE", ns)
        .set("SOURCE_NAME", SOURCE)
        .set("SOURCE_NAMESPACE", ns)
        .set("SOURCE_UID", uid)
        .set("SHARD_LEASES", "true")
        .set("SHARD_LEASE_DURATION", "PT4S")
        .set("CHECKPOINT_INTERVAL", "PT0.2S")
        .set("SUMMARY_INTERVAL", "PT1S")
        .set("KUBECONFIG", kubeconfig.display().to_string());
        Replicas { env, dir }
    }

    /// Replica `name`: its pod name, and the access key its Streams calls are signed with.
    fn spawn(&self, name: &str) -> AdapterProcess {
        let env = self
            .env
            .clone()
            .set("POD_NAME", name)
            .set("AWS_ACCESS_KEY_ID", name);
        AdapterProcess::spawn(&env, self.dir.path())
    }
}

/// The holder of each shard lease of the source.
async fn holders(ns: &str) -> BTreeMap<String, Option<String>> {
    let leases: Api<Lease> = Api::namespaced(cluster::shared().admin().await, ns);
    leases
        .list(&ListParams::default().labels(&format!("{LEASE_LABEL}={SOURCE}")))
        .await
        .expect("list leases")
        .items
        .into_iter()
        .map(|lease| {
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty());
            (lease.metadata.name.unwrap_or_default(), holder)
        })
        .collect()
}

/// Waits until the `shards` readable shards are held by exactly `replicas`,
/// each within one of an even share.
async fn balanced(ns: &str, shards: usize, replicas: &[&str]) {
    let what = format!("{shards} shard leases balanced over {replicas:?}");
    eventually(&what, WITHIN, async || {
        let holders = holders(ns).await;
        let mut load: BTreeMap<&str, usize> = replicas.iter().map(|r| (*r, 0)).collect();
        for holder in holders.values() {
            *load.get_mut(holder.as_deref()?)? += 1;
        }
        let total: usize = load.values().sum();
        let (min, max) = (load.values().min()?, load.values().max()?);
        (total == shards && holders.len() == shards && max - min <= 1).then_some(())
    })
    .await;
}

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
    balanced(&ns, open.len(), &["replica-a", "replica-b", "replica-c"]).await;

    // SIGKILL: the others take its shards over once its leases expire.
    let killed = holders(&ns).await;
    a.kill();
    let batch = write_batch(&fake, &open, 2);
    first_arrived(
        &sink,
        &batch,
        "the second batch, after a replica was killed",
    )
    .await;
    written.extend(batch);
    balanced(&ns, open.len(), &["replica-b", "replica-c"]).await;
    let taken_over = b
        .metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
        .await
        + c.metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
            .await;
    let held_by_a = killed
        .values()
        .filter(|h| h.as_deref() == Some("replica-a"))
        .count();
    assert_eq!(
        taken_over as usize, held_by_a,
        "every shard of the killed replica was taken over"
    );

    // A rolling update: the new replica comes up while the others read, is
    // given a share, then an old one stops with SIGTERM and hands over at once.
    let before = sink.acknowledged_ids().len();
    let mut d = replicas.spawn("replica-d");
    d.wait_ready().await;
    balanced(&ns, open.len(), &["replica-b", "replica-c", "replica-d"]).await;
    let taken_over_before = c
        .metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
        .await
        + d.metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
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
    balanced(&ns, open.len(), &["replica-c", "replica-d"]).await;
    let expired_after_sigterm = c
        .metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
        .await
        + d.metric("dynamodb_source_shard_lease_changes_total{change=\"taken_over\"}")
            .await;
    assert_eq!(
        expired_after_sigterm, taken_over_before,
        "a stopped replica's leases are released, not left to expire"
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
    balanced(&ns, open.len(), &["replica-e"]).await;
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
    // replica a few times (the kill, the balancing, the stops), never
    // back and forth as two concurrent readers' would.
    let readers = readers_per_shard(&fake);
    assert!(readers.len() >= open.len(), "{readers:?}");
    for (shard, runs) in &readers {
        let distinct: BTreeSet<&String> = runs.iter().collect();
        assert!(
            runs.len() <= 6 && runs.len() <= distinct.len() + 1,
            "shard {shard} went back and forth between readers: {runs:?}"
        );
    }
}
