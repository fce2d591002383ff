//! The controller process: leader election, the watch-driven reconcile loop,
//! operations endpoints, and graceful shutdown.

use dynamodb_source_api::Report;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamodb_source_api::resource::AWSDynamoDBSource;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::builders;
use crate::leader::{Elector, LeaseSettings};
use crate::metrics::ControllerMetrics;
use crate::names;
use crate::reconcile::{self, Context, Error};
use crate::webhook::{self, WebhookError, WebhookSettings};

/// The controller's configuration, parsed by the binary.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The image of `dynamodb-source` the adapters run.
    pub adapter_image: String,
    /// The ClusterRole holding the shard Lease verbs, which each adapter is
    /// bound to in its source's namespace.
    pub adapter_leases_role: String,
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    /// Leader election: the Lease's namespace and settings; `None` disables it.
    pub leader_election: Option<(String, LeaseSettings)>,
    /// The validating admission webhook, served by every replica; `None` serves none.
    pub webhook: Option<WebhookSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the Kubernetes API")]
    Client(#[source] kube::Error),
    #[error("serving metrics and health on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("lost the leader Lease; exiting so that only one replica reconciles")]
    LeadershipLost,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The sources whose credentials name `secret` (same namespace): the ones to
/// reconcile when it changes.
fn sources_reading(
    store: &Store<AWSDynamoDBSource>,
    secret: &Secret,
) -> Vec<ObjectRef<AWSDynamoDBSource>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|source| source.namespace() == namespace)
        .filter(|source| {
            builders::credential_refs(source)
                .iter()
                .any(|(_, reference)| reference.name == name)
        })
        .map(|source| ObjectRef::from_obj(&**source))
        .collect()
}

/// How long the webhook keeps answering after SIGTERM: the API server goes
/// on calling this pod until the removal of its endpoint reaches it, and a
/// call refused meanwhile fails a write (`failurePolicy: Fail`) or skips the
/// check (`Ignore`). /readyz is gone by then, which hastens the removal.
const WEBHOOK_DRAIN: Duration = Duration::from_secs(5);

async fn stop_webhook(
    task: Option<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
    shutdown: &CancellationToken,
) {
    let Some(task) = task else {
        return;
    };
    if shutdown.is_cancelled() {
        tokio::time::sleep(WEBHOOK_DRAIN).await;
    }
    stop.cancel();
    let _ = task.await;
}

/// Runs until `shutdown`; returns an error if leadership is lost.
pub async fn run(config: ControllerConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = ControllerMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness: dynamodb_source_ops::Readiness = Arc::new(|| Ok(()));
    let ops_stop = CancellationToken::new();
    let (addr, ops_task) = dynamodb_source_ops::serve(
        config.metrics_addr,
        Arc::new(registry),
        readiness,
        ops_stop.clone(),
    )
    .await
    .map_err(|source| RunError::Bind {
        addr: config.metrics_addr,
        source,
    })?;
    info!(%addr, "serving /metrics, /healthz and /readyz");
    let webhook_stop = CancellationToken::new();
    let webhook_task = match &config.webhook {
        Some(settings) => {
            let served = webhook::serve(settings, metrics.clone(), webhook_stop.clone()).await;
            let (addr, task) = match served {
                Ok(served) => served,
                Err(e) => {
                    ops_stop.cancel();
                    let _ = ops_task.await;
                    return Err(e.into());
                }
            };
            info!(%addr, path = webhook::PATH, "serving the admission webhook");
            Some(task)
        }
        None => None,
    };

    let elector = config.leader_election.clone().map(|(namespace, settings)| {
        Arc::new(Elector::new(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            settings,
        ))
    });
    let reconciling = shutdown.child_token();
    let mut lost = None;
    if let Some(elector) = &elector {
        info!("waiting to become the leader");
        if !elector.acquire(&shutdown).await {
            ops_stop.cancel();
            let _ = ops_task.await;
            stop_webhook(webhook_task, webhook_stop, &shutdown).await;
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        lost = Some(rx);
        let hold_stop = reconciling.clone();
        let holder = elector.clone();
        let leader_gauge = metrics.leader.clone();
        tokio::spawn(async move {
            leader_gauge.set(1);
            let was_lost = holder.hold(&hold_stop).await;
            leader_gauge.set(0);
            if was_lost {
                hold_stop.cancel();
            }
            let _ = tx.send(was_lost);
        });
    }

    let reporter = Reporter {
        controller: names::MANAGER.to_owned(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        failures: Default::default(),
        adapter_image: config.adapter_image.clone(),
        adapter_leases_role: config.adapter_leases_role.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
    });
    let sources: Api<AWSDynamoDBSource> = api(&client, &config.namespace);
    let deployments: Api<Deployment> = api(&client, &config.namespace);
    let secrets: Api<Secret> = api(&client, &config.namespace);
    let managed = format!("{}={}", names::LABEL_MANAGED_BY, names::MANAGER);
    info!(namespace = ?config.namespace, image = %config.adapter_image, "reconciling AWSDynamoDBSource objects");
    let controller = Controller::new(sources, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(deployments, watcher::Config::default().labels(&managed))
        // A Secret a source reads changed (rotated credentials) or appeared: reconcile
        // that source now, which rolls its adapter (the pod template's Secrets digest).
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: Secret| sources_reading(&store, &secret),
        )
        .graceful_shutdown_on(reconciling.clone().cancelled_owned())
        .run(
            |source, ctx: Arc<Context>| async move {
                let started = Instant::now();
                ctx.metrics.reconciliations.inc();
                let result: Result<Action, Error> = reconcile::reconcile(source, ctx.clone()).await;
                ctx.metrics
                    .duration
                    .observe(started.elapsed().as_secs_f64());
                result
            },
            reconcile::error_policy,
            ctx,
        )
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(source = %object.name, "reconciled"),
                Err(e) => debug!(error = %Report(&e), "reconcile loop"),
            }
        })
        .await;

    let leadership_lost = match lost {
        Some(rx) => {
            reconciling.cancel();
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(false)
        }
        None => false,
    };
    if let (Some(elector), false) = (&elector, leadership_lost) {
        elector.release().await;
    }
    ops_stop.cancel();
    let _ = ops_task.await;
    stop_webhook(webhook_task, webhook_stop, &shutdown).await;
    if leadership_lost {
        error!("lost the leader Lease");
        return Err(RunError::LeadershipLost);
    }
    info!("controller stopped");
    Ok(())
}
