//! Wiring: configuration in, a running adapter out, until shutdown.

use crate::connection_pool::ConnectionPool;
use dynamodb_source_api::Report;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dynamodb_source_backoff::{Backoff, Growth, Jitter};
use dynamodb_source_delivery::metrics::DeliveryMetrics;
use dynamodb_source_delivery::{Deliverer, EventFactory};
use dynamodb_source_delivery::{Sink, SinkError, connector};
use dynamodb_source_stream::DEFAULT_RECORDS_HELD;
use dynamodb_source_stream::checkpoint::{CheckpointError, CheckpointStore};
use dynamodb_source_stream::metrics::StreamMetrics;
use dynamodb_source_stream::{FileCheckpointStore, ReadSize, RecordsHeld, StreamClient};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use url::Url;

use crate::configmap_store::ConfigMapCheckpointStore;
use crate::health::Health;
use crate::lease::{Coordinator, HeldShards, LeaseMetrics, Owner, Timing};
use crate::progress::{Progress, ProgressMetrics};
use crate::reading::ReadingThread;
use crate::settings::{CheckpointLocation, Config};
use crate::shard_task::{Freer, Shared};
use crate::supervisor::Supervisor;
use dynamodb_source_api::summary::replica_summary_key;

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("serving metrics and health on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("starting the reading thread")]
    ReadingThread(#[source] std::io::Error),
    #[error(
        "no Kubernetes client for the shard leases: in a pod the ServiceAccount token must be mounted; outside a cluster set KUBECONFIG"
    )]
    Kubernetes(#[source] kube::Error),
}

/// Waits until something answers on the sink's host and port, so readiness
/// means events can flow; a TCP connection is enough and sends nothing.
async fn probe_sink(url: Url, health: Arc<Health>, stop: CancellationToken) {
    // `url` has no userinfo (see `Endpoint`): safe to log.
    let Some(host) = url.host_str().map(str::to_owned) else {
        return;
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let mut pause = Backoff::new(
        Growth::Exponential,
        Duration::from_millis(100),
        Duration::from_secs(10),
        Jitter::None,
    );
    loop {
        match tokio::net::TcpStream::connect((host.as_str(), port)).await {
            Ok(_) => {
                health.sink_reachable();
                info!(sink = %url, "the sink is reachable");
                return;
            }
            Err(e) => warn!(sink = %url, error = %Report(&e), "the sink is not reachable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause.next_wait()) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Runs the adapter until `shutdown` is cancelled, then flushes progress.
///
/// `on_listening` learns the address the operations server bound (useful when
/// `METRICS_PORT` is 0).
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), AdapterError> {
    // First, before anything can start another thread (see `reading`).
    let reading = ReadingThread::start().map_err(AdapterError::ReadingThread)?;
    let mut registry = Registry::default();
    let stream_metrics = StreamMetrics::default();
    let delivery_metrics = DeliveryMetrics::default();
    let progress_metrics = ProgressMetrics::default();
    let lease_metrics = LeaseMetrics::default();
    if config.shard_leases.is_some() {
        lease_metrics.register(&mut registry);
    }
    stream_metrics.register(&mut registry);
    delivery_metrics.register(&mut registry);
    progress_metrics.register(&mut registry);
    let registry = Arc::new(registry);
    let health = Arc::new(Health::default());

    let ops_stop = CancellationToken::new();
    let readiness: dynamodb_source_ops::Readiness = {
        let health = health.clone();
        Arc::new(move || health.readiness())
    };
    let (addr, ops_task) =
        dynamodb_source_ops::serve(config.metrics_addr, registry, readiness, ops_stop.clone())
            .await
            .map_err(|source| AdapterError::Bind {
                addr: config.metrics_addr,
                source,
            })?;
    on_listening(addr);

    let store: Arc<dyn CheckpointStore> = match &config.checkpoint {
        CheckpointLocation::File(path) => Arc::new(FileCheckpointStore::new(path)),
        CheckpointLocation::ConfigMap { namespace, name } => {
            let store = ConfigMapCheckpointStore::connect(namespace, name).await?;
            Arc::new(match &config.shard_leases {
                Some(leases) => store.with_summary_key(replica_summary_key(&leases.identity)),
                None => store,
            })
        }
    };
    let loaded = store.load().await?;
    if let Some(checkpoint) = &loaded {
        if checkpoint.stream_arn.table() != config.arn.table() {
            return Err(CheckpointError::OtherTable {
                location: store.location(),
                found: checkpoint.stream_arn.table().to_string(),
                expected: config.arn.table().to_string(),
            }
            .into());
        }
        info!(checkpoint = %store.location(), shards = checkpoint.shards.len(), "resuming from the checkpoint");
    } else {
        info!(checkpoint = %store.location(), position = %config.starting_position, "no checkpoint: first start");
    }
    let held_shards = HeldShards::default();
    let mut progress = Progress::new(
        store.clone(),
        loaded,
        progress_metrics,
        config.checkpoint_interval,
        config.replay.as_ref(),
    );
    if config.shard_leases.is_some() {
        progress = progress.shared_with(held_shards.clone());
    }
    let progress = Arc::new(progress);
    let summary_stop = CancellationToken::new();
    let summary = tokio::spawn(crate::summary::write_loop(
        store.clone(),
        progress.clone(),
        stream_metrics.clone(),
        delivery_metrics.clone(),
        config.summary_interval,
        summary_stop.clone(),
    ));

    let connector = connector(config.ca_certs.as_deref())?;
    let deliverer = Deliverer::new(
        EventFactory::new(
            config.arn.table(),
            config.payload_format,
            config.overrides.clone(),
        ),
        Sink::new(connector.clone(), config.sink.clone())?,
        config
            .dead_letter_sink
            .clone()
            .map(|endpoint| Sink::new(connector.clone(), endpoint))
            .transpose()?,
        config.delivery.clone(),
        delivery_metrics.clone(),
    );
    let sdk = crate::sdk_config::sdk_config(
        &config.region,
        config.endpoint.as_ref(),
        config.assume_role_arn.as_deref(),
    )
    .await;
    let client = StreamClient::new(aws_sdk_dynamodbstreams::Client::new(&sdk));
    let read_size = config
        .records_per_read
        .map_or_else(ReadSize::default, ReadSize::Fixed);

    let events = match &config.source {
        Some((namespace, name)) => match kube::Client::try_default().await {
            Ok(client) => Some(crate::source_events::SourceEvents::new(
                client, namespace, name,
            )),
            Err(e) => {
                warn!(error = %Report(&e), "no Kubernetes client: Events on the source will not be recorded");
                None
            }
        },
        None => None,
    };
    let shared = Arc::new(Shared {
        deliverer,
        filter: config.event_names,
        patterns: config.filter_patterns.clone(),
        progress: progress.clone(),
        stream_metrics,
        delivery_metrics,
        idle_poll_max: config.idle_poll_max,
        events,
        reading: reading.handle().clone(),
        parallelism: config.parallelism,
        held: RecordsHeld::new(DEFAULT_RECORDS_HELD),
        pool: ConnectionPool::new(config.max_connections),
        freer: Freer::start(reading.handle()),
    });

    let writer_stop = CancellationToken::new();
    let writer = {
        let progress = progress.clone();
        let stop = writer_stop.clone();
        tokio::spawn(async move { progress.write_loop(stop).await })
    };
    let probe = tokio::spawn(probe_sink(
        config.sink.url().clone(),
        health.clone(),
        shutdown.clone(),
    ));

    if let Some(max_shards) = config.max_shards {
        warn!(
            max_shards,
            "MAX_SHARDS is no longer used and is ignored: every readable shard is read, and memory is bounded by the records held"
        );
    }
    let lease_stop = CancellationToken::new();
    let (coordinator, leases) = match &config.shard_leases {
        Some(settings) => {
            let client = kube::Client::try_default()
                .await
                .map_err(AdapterError::Kubernetes)?;
            let events = crate::source_events::SourceEvents::new(
                client.clone(),
                &settings.namespace,
                &settings.source,
            );
            let owner = Owner {
                namespace: settings.namespace.clone(),
                source: settings.source.clone(),
                uid: settings.uid.clone(),
                identity: settings.identity.clone(),
                duration_seconds: i32::try_from(settings.duration.as_secs_f64().ceil() as u64)
                    .unwrap_or(i32::MAX),
            };
            let (coordinator, leases) = Coordinator::new(
                client,
                owner,
                Timing::for_duration(settings.duration),
                progress.clone(),
                held_shards.clone(),
                lease_metrics,
                Some(events),
            );
            (
                Some(tokio::spawn(
                    coordinator.run(shutdown.clone(), lease_stop.clone()),
                )),
                Some(leases),
            )
        }
        None => (None, None),
    };
    info!(table = %config.arn.table(), sink = %config.sink, format = %config.payload_format, parallelism = config.parallelism, max_connections = config.max_connections, "adapter started");
    let supervisor = Supervisor {
        client,
        arn: config.arn.clone(),
        starting_position: config.starting_position,
        shared,
        health,
        read_size,
        discovery_interval: config.discovery_interval,
        shutdown_timeout: config.shutdown_timeout,
        delivery: tokio::runtime::Handle::current(),
        listing: Arc::default(),
        leases,
    };
    // Discovery runs on the reading thread too: a connection of the SDK's
    // pool is driven by the runtime that opened it, so every call to the
    // Streams API, discovery's and the readers', stays off this thread.
    if let Err(e) = reading
        .handle()
        .spawn(supervisor.run(shutdown.clone()))
        .await
    {
        error!(error = %Report(&e), "shard supervision ended abnormally");
    }

    probe.abort();
    drop(reading);
    writer_stop.cancel();
    let _ = writer.await;
    summary_stop.cancel();
    let _ = summary.await;
    let mut flushed = progress.flush().await;
    if let Err(CheckpointError::Conflict { .. }) = &flushed {
        // The store re-read the object after the conflict; with a single writer
        // per source, the second save goes through.
        flushed = progress.flush().await;
    }
    if let Err(e) = flushed {
        error!(error = %Report(&e), "the final checkpoint could not be saved; records since the last save will be delivered again");
    } else {
        info!("checkpoint saved; adapter stopped");
    }
    if config.shard_leases.is_some()
        && let Err(e) = store.retire_summary().await
    {
        warn!(error = %Report(&e), "removing this replica's summary failed; the controller ignores it once it is stale");
    }
    if let Some(coordinator) = coordinator {
        // Released only now that the checkpoint holds everything delivered:
        // the next holder continues where this replica stopped.
        lease_stop.cancel();
        match coordinator.await {
            Ok(coordinator) => coordinator.release_all().await,
            Err(e) => {
                error!(error = %Report(&e), "the shard lease coordinator ended abnormally; its leases expire instead")
            }
        }
    }
    ops_stop.cancel();
    let _ = ops_task.await;
    Ok(())
}
