//! The adapter's summary against a real API server: next to its checkpoint
//! in the source's ConfigMap, under its own key, the adapter keeps how far
//! behind the stream it is and what it delivered, refreshed every
//! `SUMMARY_INTERVAL`; while the sink fails, it says since when.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dynamodb_source_adapter::DATA_KEY;
use dynamodb_source_api::summary::{SUMMARY_KEY, StreamSummary};
use dynamodb_source_stream::checkpoint;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch};
use serde_json::json;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::cluster::{self, apply_params};
use crate::support::eventually;
use crate::support::fake_streams::{Change, FakeStreams};
use crate::support::free_port;
use crate::support::receiver::{Receiver, Reply, Switch};

const WITHIN: Duration = Duration::from_secs(30);
const CONFIG_MAP: &str = "awsdynamodbsource-orders-checkpoint";

/// A namespace with the checkpoint ConfigMap the controller would create.
async fn config_map(prefix: &str) -> (Api<ConfigMap>, String) {
    let cluster = cluster::shared();
    let ns = cluster.namespace(prefix).await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.admin().await, &ns);
    let object: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": ns},
    }))
    .expect("a ConfigMap");
    api.patch(CONFIG_MAP, &apply_params(), &Patch::Apply(&object))
        .await
        .expect("the checkpoint ConfigMap");
    (api, ns)
}

/// The adapter's settings for `sink` and the fake's `orders` table, with
/// its checkpoint (and so its summary) in a ConfigMap of `ns`.
fn in_cluster(sink: &Receiver, fake: &FakeStreams, dir: &Path, ns: &str) -> AdapterEnv {
    AdapterEnv::new(
        &sink.url,
        &fake.table_arn("orders"),
        &fake.endpoint,
        &dir.join("unused.json"),
    )
    .unset("CHECKPOINT_FILE")
    .set("CHECKPOINT_CONFIGMAP", CONFIG_MAP)
    .set("CHECKPOINT_NAMESPACE", ns)
    .set(
        "KUBECONFIG",
        cluster::shared().kubeconfig.display().to_string(),
    )
    .set("SUMMARY_INTERVAL", "PT1S")
}

/// The summary the ConfigMap holds now, once `ready` accepts it.
async fn summary_when(
    api: &Api<ConfigMap>,
    what: &str,
    ready: impl Fn(&StreamSummary) -> bool,
) -> StreamSummary {
    eventually(what, WITHIN, async || {
        let object = api.get(CONFIG_MAP).await.ok()?;
        let text = object.data?.get(SUMMARY_KEY)?.clone();
        let summary: StreamSummary = serde_json::from_str(&text).ok()?;
        ready(&summary).then_some(summary)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_sits_next_to_the_checkpoint_and_counts_what_was_delivered() {
    let (api, ns) = config_map("summary").await;
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("orders");
    let shard = fake.add_shard(&stream, None);
    let written = fake.append(&shard, (0..6).map(|i| Change::insert(format!("k{i}"), i)));
    let sink = Receiver::accepting().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = in_cluster(&sink, &fake, dir.path(), &ns);
    // Before the spawn: a summary can be written while the test waits for readiness.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;

    let summary = summary_when(&api, "a summary counting every record", |s| {
        s.records_delivered == written.len() as u64 && s.last_delivery_at.is_some()
    })
    .await;
    assert_eq!(summary.shards_read, 1, "{summary:?}");
    assert_eq!(summary.dead_lettered, 0);
    assert!(
        summary.iterator_age_seconds < 60.0,
        "records written just now: {summary:?}"
    );
    assert!(summary.updated_at >= started - 1, "{summary:?}");
    assert_eq!(summary.sink_failing_since, None);

    // Written again within the interval: the summary is refreshed while idle.
    let later = summary_when(&api, "a newer summary", |s| {
        s.updated_at > summary.updated_at
    })
    .await;
    assert_eq!(later.records_delivered, summary.records_delivered);

    // The checkpoint beside it is whole and at the last record.
    let object = api.get(CONFIG_MAP).await.expect("the ConfigMap");
    let text = object
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .expect("the checkpoint key");
    let checkpoint = checkpoint::decode("test", text.as_bytes()).expect("a valid checkpoint");
    let last = written.last().expect("records").sequence_number.clone();
    assert!(
        serde_json::to_string(&checkpoint)
            .expect("json")
            .contains(&last),
        "{text}"
    );
    assert!(adapter.terminate(WITHIN).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_is_dated_in_the_summary_and_cleared_once_it_acknowledges() {
    let (api, ns) = config_map("summary-sink").await;
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("orders");
    let shard = fake.add_shard(&stream, None);
    fake.append(&shard, (0..2).map(|i| Change::insert(format!("k{i}"), i)));
    // Down (503) until it is switched on.
    let up = Switch::new(false);
    let sink = {
        let up = up.clone();
        Receiver::start(
            free_port(),
            Arc::new(move |_, _| Reply::status(if up.is_on() { 200 } else { 503 })),
        )
        .await
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let env = in_cluster(&sink, &fake, dir.path(), &ns)
        .set("DELIVERY_BACKOFF_DELAY", "PT0.2S")
        .set("DELIVERY_BACKOFF_POLICY", "linear");
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    adapter.wait_ready().await;

    let failing = summary_when(&api, "the sink failing, with a date", |s| {
        s.sink_failing_since.is_some()
    })
    .await;
    assert_eq!(failing.records_delivered, 0, "{failing:?}");
    assert!(
        failing.sink_failing_since <= Some(failing.updated_at),
        "{failing:?}"
    );

    up.set(true);
    let recovered = summary_when(&api, "the sink acknowledging again", |s| {
        s.records_delivered == 2 && s.sink_failing_since.is_none()
    })
    .await;
    assert!(recovered.last_delivery_at.is_some(), "{recovered:?}");
    assert!(adapter.terminate(WITHIN).await.success());
}
