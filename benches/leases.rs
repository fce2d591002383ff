//! Adapter replicas sharing 256 open shards through Leases, against the real
//! API server on loopback, the adapters running as the adapter's
//! ServiceAccount with the production lease duration (`SHARD_LEASE_DURATION`,
//! default PT30S, or `BENCH_LEASE_DURATION`):
//!
//! - time for 1, 2 and 4 replicas started together to hold an even share;
//! - hand-over at SIGTERM (until the survivor holds every shard) and after
//!   SIGKILL (the same, through expiry);
//! - API requests per second per replica at steady state, by kind (lease
//!   renewals and lists, checkpoint and summary writes), for 64 and 256
//!   shards, read from the API server's own `apiserver_request_total`;
//! - the controller's reconcile of a scale change (`spec.replicas` 1 -> 3
//!   until the Deployment asks for 3).
//!
//! Run with `cargo bench --bench leases` (builds the control plane once).

// The benchmark uses a few of the test support helpers.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::adapter::AdapterProcess;
use support::cluster;
use support::controller::{self as ctl, ControllerProcess};
use support::eventually;
use support::fake_streams::FakeStreams;
use support::leases::{Replicas, balanced, source_namespace};
use support::receiver::Receiver;

const SHARDS: usize = 256;
const PATIENCE: Duration = Duration::from_secs(300);

struct Setup {
    ns: String,
    replicas: Replicas,
    _fake: FakeStreams,
    _sink: Receiver,
}

async fn setup(prefix: &str, shards: usize) -> Setup {
    let (ns, uid) = source_namespace(prefix).await;
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("orders");
    for _ in 0..shards {
        fake.add_shard(&stream, None);
    }
    let sink = Receiver::accepting().await;
    let mut replicas = Replicas::new(&sink, &fake, &ns, &uid).await;
    let duration = std::env::var("BENCH_LEASE_DURATION").unwrap_or_else(|_| "PT30S".into());
    replicas.env = replicas
        .env
        .clone()
        .set("SHARD_LEASE_DURATION", duration)
        .set("CHECKPOINT_INTERVAL", "PT1S")
        .set("SUMMARY_INTERVAL", "PT30S")
        .set("IDLE_POLL_MAX", "PT1S")
        .set(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    Setup {
        ns,
        replicas,
        _fake: fake,
        _sink: sink,
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("replica-{i}")).collect()
}

async fn start(setup: &Setup, names: &[String]) -> Vec<AdapterProcess> {
    names.iter().map(|n| setup.replicas.spawn(n)).collect()
}

async fn time_to_balance(replicas: usize) -> Duration {
    let setup = setup(&format!("bench-balance-{replicas}"), SHARDS).await;
    let names = names(replicas);
    let started = Instant::now();
    let _running = start(&setup, &names).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    balanced(&setup.ns, SHARDS, PATIENCE, &refs).await;
    started.elapsed()
}

/// Until `survivor` holds every shard, after `stop` ends the other replica.
async fn hand_over(kill: bool) -> Duration {
    let label = if kill { "kill" } else { "term" };
    let setup = setup(&format!("bench-handover-{label}"), SHARDS).await;
    let names = names(2);
    let mut running = start(&setup, &names).await;
    balanced(&setup.ns, SHARDS, PATIENCE, &["replica-0", "replica-1"]).await;
    let started = Instant::now();
    if kill {
        running[0].kill();
    } else {
        running[0].terminate(PATIENCE).await;
    }
    balanced(&setup.ns, SHARDS, PATIENCE, &["replica-1"]).await;
    let took = started.elapsed();
    if std::env::var_os("BENCH_RUST_LOG").is_some() {
        for line in running[1].logs().lines().filter(|l| l.contains("lease")) {
            println!("    {line}");
        }
    }
    took
}

/// Requests per second per replica, by (verb, resource), over `window`.
async fn steady_requests(shards: usize, replicas: usize, window: Duration) -> Vec<(String, f64)> {
    let setup = setup(&format!("bench-steady-{shards}"), shards).await;
    let names = names(replicas);
    let _running = start(&setup, &names).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    balanced(&setup.ns, shards, PATIENCE, &refs).await;
    let admin = cluster::shared().admin().await;
    let before = cluster::request_counts(&admin).await;
    tokio::time::sleep(window).await;
    let after = cluster::request_counts(&admin).await;
    let mut rates: Vec<(String, f64)> = after
        .iter()
        .filter(|((_, resource, _), _)| resource == "leases" || resource == "configmaps")
        .map(|(key @ (verb, resource, _), n)| {
            let delta = n - before.get(key).unwrap_or(&0.0);
            (
                format!("{verb} {resource}"),
                delta / window.as_secs_f64() / replicas as f64,
            )
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect();
    rates.sort_by(|a, b| a.0.cmp(&b.0));
    rates
}

async fn scale_reconcile() -> Duration {
    let cluster = cluster::shared();
    ctl::install(cluster);
    let ns = cluster.namespace("bench-scale").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = ctl::kubeconfig(cluster, dir.path()).await;
    let mut controller =
        ControllerProcess::spawn(&kubeconfig, &ns, None, dir.path().join("controller.log"));
    controller.wait_serving().await;
    let admin = cluster.admin().await;
    let sources = support::leases::sources(&admin, &ns);
    let source: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {
            "arn": "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
            "sink": {"uri": "http://127.0.0.1:9/"},
            "auth": {"credentials": {"accessKeyID": {"value": "a"}, "secretAccessKey": {"value": "b"}}},
        },
    }))
    .expect("a source");
    sources
        .patch("orders", &cluster::apply_params(), &Patch::Apply(&source))
        .await
        .expect("apply");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let replicas_of = async |n: i32| {
        eventually("the Deployment's replicas", PATIENCE, async || {
            let d = deployments.get("awsdynamodbsource-orders").await.ok()?;
            (d.spec.replicas == Some(n)).then_some(())
        })
        .await
    };
    replicas_of(1).await;
    let started = Instant::now();
    sources
        .patch_scale(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    replicas_of(3).await;
    started.elapsed()
}

/// `BENCH_ONLY=balance|handover|steady|scale` runs one part.
fn part(name: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only == name)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    cluster::install_crypto_provider();
    println!("shard leases, {SHARDS} open shards");
    if part("balance") {
        balance_parts().await;
    }
    if part("handover") {
        let took = hand_over(false).await;
        println!(
            "  hand-over at SIGTERM (2 -> 1): the survivor holds every shard after {took:.1?}"
        );
        let took = hand_over(true).await;
        println!("  after SIGKILL (2 -> 1): the survivor holds every shard after {took:.1?}");
    }
    if part("steady") {
        for shards in [64, 256] {
            let rates = steady_requests(shards, 2, Duration::from_secs(60)).await;
            println!(
                "  steady state, {shards} shards over 2 idle replicas, requests/s per replica:"
            );
            for (kind, rate) in rates {
                println!("    {kind:<20} {rate:>7.2}");
            }
        }
    }
    if part("scale") {
        let took = scale_reconcile().await;
        println!(
            "  controller: spec.replicas 1 -> 3 through the scale subresource, Deployment at 3 after {took:.1?}"
        );
    }
}

async fn balance_parts() {
    for replicas in [1, 2, 4] {
        let took = time_to_balance(replicas).await;
        println!("  {replicas} replica(s) started together, balanced after {took:.1?}");
    }
}
