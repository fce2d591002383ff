//! The controller at scale, against the real API server on loopback: 1,000
//! sources applied at once; time until every one has its adapter Deployment
//! and a status for its current generation, the controller's peak RSS, and
//! API requests per source.
//!
//! Requests are read from the API server's own `apiserver_request_total`,
//! counting only what the controller alone does (server-side APPLY and GET of
//! the objects it owns, status writes, pod lists, Events); other clients
//! (kube-controller-manager,
//! kwok) use other verbs on those resources. The fake node takes 110 pods, so
//! availability of 1,000 adapters is not what is measured here.
//!
//! Run with `cargo bench --bench controller` (builds the control plane once).

// The benchmark uses a few of the test support helpers.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dynamodb_source_api::resource::AWSDynamoDBSource;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch};
use support::cluster::{self, apply_params};
use support::controller::{self as ctl, ControllerProcess};
use support::eventually;

const SOURCES: usize = 1000;

fn controller_requests(
    before: &HashMap<(String, String, String), f64>,
    after: &HashMap<(String, String, String), f64>,
) -> f64 {
    let ours = |verb: &str, resource: &str, subresource: &str| {
        matches!(
            (verb, resource, subresource),
            (
                "PATCH" | "GET",
                "deployments" | "serviceaccounts" | "configmaps" | "roles" | "rolebindings",
                ""
            ) | ("PATCH", "awsdynamodbsources", "status")
                | ("LIST", "pods", "")
                | ("POST" | "PATCH", "events", "")
        )
    };
    after
        .iter()
        .filter(|((v, r, s), _)| ours(v, r, s))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cluster = cluster::shared();
        ctl::install(cluster);
        let ns = cluster.namespace("bench").await;
        let client = cluster.admin().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = ctl::kubeconfig(cluster, dir.path()).await;
        let mut controller = ControllerProcess::spawn(&kubeconfig, &ns, None, dir.path().join("controller.log"));
        controller.wait_serving().await;

        let before = cluster::request_counts(&client).await;
        let sources: Api<AWSDynamoDBSource> = Api::namespaced(client.clone(), &ns);
        let started = Instant::now();
        futures::stream::iter(0..SOURCES)
            .for_each_concurrent(16, |i| {
                let sources = sources.clone();
                let ns = ns.clone();
                async move {
                    let name = format!("table-{i:04}");
                    let source = serde_json::json!({
                        "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
                        "metadata": {"name": name, "namespace": ns},
                        "spec": {"arn": format!("arn:aws:dynamodb:us-west-2:123456789012:table/{name}"),
                                 "sink": {"uri": "http://display.example.svc.cluster.local/"}},
                    });
                    sources.patch(&name, &apply_params(), &Patch::Apply(&source)).await.expect("apply");
                }
            })
            .await;
        let applied = started.elapsed();

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        eventually("every source deployed with a current status", Duration::from_secs(1800), async || {
            let deployed = deployments.list(&ListParams::default()).await.ok()?.items.len();
            let current = sources
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .filter(|s| s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation)
                .count();
            (deployed >= SOURCES && current >= SOURCES).then_some(())
        })
        .await;
        let deployed = started.elapsed();
        // Let the controller settle (requeues, Deployment status events) before counting.
        let rss = support::peak_rss_kib(controller.pid());
        let after = cluster::request_counts(&client).await;
        let requests = controller_requests(&before, &after);
        let reconciles = controller.metric("dynamodb_source_controller_reconciliations_total").await.unwrap_or(0.0);
        let status = controller.terminate();
        assert!(status.success(), "the controller exits 0");

        println!();
        println!("{SOURCES} sources: applied by the test in {:.1} s", applied.as_secs_f64());
        println!("  all deployed with a current status after {:.1} s ({:.0} sources/s)", deployed.as_secs_f64(), SOURCES as f64 / deployed.as_secs_f64());
        println!("  controller peak RSS: {}", rss.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0)));
        println!("  controller API requests: {requests:.0} ({:.1} per source), reconciliations: {reconciles:.0}", requests / SOURCES as f64);
    });
}
