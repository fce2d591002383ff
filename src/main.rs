//! `dynamodb-source`: one binary, several roles. Parses the command line and
//! environment, sets up logging, and hands over to the library crates.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dynamodb_source_adapter::{Config, LogFormat, RawSettings};
use dynamodb_source_api::Report;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "dynamodb-source",
    version,
    about = "Turns every change to an Amazon DynamoDB table into a CloudEvent."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read a table's DynamoDB Stream and deliver each record as a CloudEvent.
    ///
    /// Every setting is an environment variable and also a flag. AWS credentials
    /// come from the standard chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_SESSION_TOKEN, web identity, profile).
    Adapter(Box<AdapterArgs>),
    /// Reconcile AWSDynamoDBSource objects into adapter Deployments.
    Controller(ControllerArgs),
    /// Print the AWSDynamoDBSource CustomResourceDefinition as YAML (config/crd/ is generated from it).
    Crd,
}

#[derive(Args)]
#[command(next_help_heading = "Settings (environment variable or flag)")]
struct ControllerArgs {
    /// Required. The dynamodb-source image the adapters run.
    #[arg(long, env = "ADAPTER_IMAGE")]
    adapter_image: Option<String>,
    /// Watch only this namespace [default: all namespaces].
    #[arg(long = "namespace", env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Port of /metrics, /healthz and /readyz [default: 9090].
    #[arg(long, env = "METRICS_PORT")]
    metrics_port: Option<u16>,
    /// Leader election through a Lease, so several replicas are safe [default: true].
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: Option<bool>,
    /// Namespace of the leader Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader Lease [default: dynamodb-source-controller].
    #[arg(long, env = "LEASE_NAME")]
    lease_name: Option<String>,
    /// This replica's identity in the Lease [default: POD_NAME, else the host name and process id].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// json or text [default: json]. Levels come from RUST_LOG.
    #[arg(long, env = "LOG_FORMAT")]
    log_format: Option<String>,
}

fn controller_config(
    args: ControllerArgs,
) -> Result<(dynamodb_source_controller::ControllerConfig, LogFormat), String> {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;
    let adapter_image = args
        .adapter_image
        .filter(|i| !i.trim().is_empty())
        .ok_or("invalid setting ADAPTER_IMAGE: missing: the dynamodb-source image adapters run")?;
    let log_format = match args.log_format.as_deref() {
        None | Some("") | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            return Err(format!(
                "invalid setting LOG_FORMAT: {other:?} is not one of json, text"
            ));
        }
    };
    let leader_election = if args.leader_elect.unwrap_or(true) {
        let namespace = args
            .lease_namespace
            .filter(|n| !n.is_empty())
            .ok_or("invalid setting POD_NAMESPACE: missing: the namespace of the leader Lease (or LEADER_ELECT=false)")?;
        let identity = args.identity.filter(|i| !i.is_empty()).unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        Some((
            namespace,
            dynamodb_source_controller::LeaseSettings {
                name: args
                    .lease_name
                    .unwrap_or_else(|| "dynamodb-source-controller".to_owned()),
                identity,
                duration: Duration::from_secs(15),
                retry: Duration::from_secs(2),
            },
        ))
    } else {
        None
    };
    Ok((
        dynamodb_source_controller::ControllerConfig {
            adapter_image,
            namespace: args.watch_namespace.filter(|n| !n.is_empty()),
            metrics_addr: SocketAddr::from((
                Ipv4Addr::UNSPECIFIED,
                args.metrics_port.unwrap_or(9090),
            )),
            leader_election,
        },
        log_format,
    ))
}

async fn controller(args: ControllerArgs) -> ExitCode {
    let (config, log_format) = match controller_config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dynamodb-source: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(log_format);
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    match dynamodb_source_controller::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let error = Report(&e);
            tracing::error!(%error, "the controller stopped");
            eprintln!("dynamodb-source: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args)]
#[command(next_help_heading = "Settings (environment variable or flag)")]
struct AdapterArgs {
    /// Required. The URL events are POSTed to.
    #[arg(long = "sink", env = "K_SINK", hide_env_values = true)]
    k_sink: Option<String>,
    /// Required. The table ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME), or a stream ARN to pin that stream.
    #[arg(long, env = "ARN", hide_env_values = true)]
    arn: Option<String>,
    /// AWS region [default: the ARN's region].
    #[arg(long, env = "AWS_REGION", hide_env_values = true)]
    aws_region: Option<String>,
    /// A custom AWS endpoint (VPC endpoint, local emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL", hide_env_values = true)]
    aws_endpoint_url: Option<String>,
    /// An IAM role to assume through STS before reading.
    #[arg(long, env = "AWS_ASSUME_ROLE_ARN", hide_env_values = true)]
    aws_assume_role_arn: Option<String>,
    /// LATEST or TRIM_HORIZON: where shards open at a first start begin [default: LATEST].
    #[arg(long, env = "STARTING_POSITION", hide_env_values = true)]
    starting_position: Option<String>,
    /// The checkpoint file [default: ./TABLE.checkpoint.json].
    #[arg(long, env = "CHECKPOINT_FILE", hide_env_values = true)]
    checkpoint_file: Option<String>,
    /// A ConfigMap the controller created, to keep the checkpoint in (instead of a file).
    #[arg(long, env = "CHECKPOINT_CONFIGMAP", hide_env_values = true)]
    checkpoint_configmap: Option<String>,
    /// The namespace of CHECKPOINT_CONFIGMAP (required with it).
    #[arg(long, env = "CHECKPOINT_NAMESPACE", hide_env_values = true)]
    checkpoint_namespace: Option<String>,
    /// AWS, Plain or TriggerMesh: the shape of each event's data [default: AWS].
    #[arg(long, env = "PAYLOAD_FORMAT", hide_env_values = true)]
    payload_format: Option<String>,
    /// Comma list of INSERT, MODIFY, REMOVE to deliver [default: all].
    #[arg(long, env = "EVENT_NAMES", hide_env_values = true)]
    event_names: Option<String>,
    /// Knative CloudEvent overrides, JSON: {"extensions":{"name":"value"}}.
    #[arg(long, env = "K_CE_OVERRIDES", hide_env_values = true)]
    k_ce_overrides: Option<String>,
    /// Retries before an event goes to the dead-letter sink [default: 5]; without one, retries never stop.
    #[arg(long, env = "DELIVERY_RETRY", hide_env_values = true)]
    delivery_retry: Option<String>,
    /// exponential or linear [default: exponential].
    #[arg(long, env = "DELIVERY_BACKOFF_POLICY", hide_env_values = true)]
    delivery_backoff_policy: Option<String>,
    /// ISO-8601 base delay between retries [default: PT0.2S].
    #[arg(long, env = "DELIVERY_BACKOFF_DELAY", hide_env_values = true)]
    delivery_backoff_delay: Option<String>,
    /// ISO-8601 timeout of one delivery attempt [default: PT30S].
    #[arg(long, env = "DELIVERY_TIMEOUT", hide_env_values = true)]
    delivery_timeout: Option<String>,
    /// The most events in flight per shard, 1 to 1000; records of one item are always sent one after another [default: 20].
    #[arg(long, env = "DELIVERY_PARALLELISM", hide_env_values = true)]
    delivery_parallelism: Option<String>,
    /// Where events the sink refuses, or that exhaust their retries, are sent.
    #[arg(
        long = "dead-letter-sink",
        env = "K_DEAD_LETTER_SINK",
        hide_env_values = true
    )]
    k_dead_letter_sink: Option<String>,
    /// Extra PEM CA certificates trusted for an HTTPS sink.
    #[arg(long = "ca-certs", env = "K_CA_CERTS", hide_env_values = true)]
    k_ca_certs: Option<String>,
    /// Port of /metrics, /healthz and /readyz [default: 9090].
    #[arg(long, env = "METRICS_PORT", hide_env_values = true)]
    metrics_port: Option<String>,
    /// json or text [default: json]. Levels come from RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", hide_env_values = true)]
    log_format: Option<String>,
    /// No longer used: every readable shard is read (accepted so older Deployments start).
    #[arg(long, env = "MAX_SHARDS", hide_env_values = true)]
    max_shards: Option<String>,
    /// ISO-8601 longest pause between reads of an idle shard, the most latency it adds [default: PT1S].
    #[arg(long, env = "IDLE_POLL_MAX", hide_env_values = true)]
    idle_poll_max: Option<String>,
    /// The AWSDynamoDBSource this adapter serves, to record Kubernetes Events on it (with SOURCE_NAMESPACE).
    #[arg(long, env = "SOURCE_NAME", hide_env_values = true)]
    source_name: Option<String>,
    /// The namespace of SOURCE_NAME.
    #[arg(long, env = "SOURCE_NAMESPACE", hide_env_values = true)]
    source_namespace: Option<String>,
    /// The most records one GetRecords call returns, 1 to 1000 [default: 400 records shared by the shards being read, 200 per read for one shard, at least 50].
    #[arg(long, env = "RECORDS_PER_READ", hide_env_values = true)]
    records_per_read: Option<String>,
    /// ISO-8601 time in-flight deliveries get at shutdown [default: PT20S].
    #[arg(long, env = "SHUTDOWN_TIMEOUT", hide_env_values = true)]
    shutdown_timeout: Option<String>,
    /// ISO-8601 shortest time between two checkpoint saves; a crash repeats at most what was acknowledged since the last one [default: PT1S].
    #[arg(long, env = "CHECKPOINT_INTERVAL", hide_env_values = true)]
    checkpoint_interval: Option<String>,
}

impl From<AdapterArgs> for RawSettings {
    fn from(a: AdapterArgs) -> Self {
        RawSettings {
            k_sink: a.k_sink,
            arn: a.arn,
            aws_region: a.aws_region,
            aws_endpoint_url: a.aws_endpoint_url,
            aws_assume_role_arn: a.aws_assume_role_arn,
            starting_position: a.starting_position,
            checkpoint_file: a.checkpoint_file,
            checkpoint_configmap: a.checkpoint_configmap,
            checkpoint_namespace: a.checkpoint_namespace,
            payload_format: a.payload_format,
            event_names: a.event_names,
            k_ce_overrides: a.k_ce_overrides,
            delivery_retry: a.delivery_retry,
            delivery_backoff_policy: a.delivery_backoff_policy,
            delivery_backoff_delay: a.delivery_backoff_delay,
            delivery_timeout: a.delivery_timeout,
            delivery_parallelism: a.delivery_parallelism,
            k_dead_letter_sink: a.k_dead_letter_sink,
            k_ca_certs: a.k_ca_certs,
            metrics_port: a.metrics_port,
            log_format: a.log_format,
            max_shards: a.max_shards,
            idle_poll_max: a.idle_poll_max,
            shutdown_timeout: a.shutdown_timeout,
            checkpoint_interval: a.checkpoint_interval,
            records_per_read: a.records_per_read,
            source_name: a.source_name,
            source_namespace: a.source_namespace,
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // The span of a line (a shard task, a reconcile) goes with it, so
        // logs filter by shard or source without every line repeating it.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        // Colours only for a person at a terminal, not in a pod's log file.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Cancels `token` at the first SIGTERM or SIGINT.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        token.cancel();
    });
}

async fn adapter(args: AdapterArgs) -> ExitCode {
    let config = match Config::from_raw(&args.into()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dynamodb-source: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let result = dynamodb_source_adapter::run(config, shutdown, |addr| {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    })
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let error = Report(&e);
            tracing::error!(%error, "the adapter stopped");
            eprintln!("dynamodb-source: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // One crypto backend for every TLS client in the process (kube, AWS).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // The adapter's delivery is waiting on sockets: one thread avoids the
    // cross-thread wake-ups that cost it more CPU per event than the work
    // itself (BENCHMARKS.md); reading has a thread of its own
    // (`dynamodb_source_adapter::reading`). The controller keeps a thread pool.
    let mut builder = match cli.command {
        Command::Adapter(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dynamodb-source: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Adapter(args) => runtime.block_on(adapter(*args)),
        Command::Controller(args) => runtime.block_on(controller(args)),
        Command::Crd => match dynamodb_source_api::crd::yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dynamodb-source: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
