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
    Adapter(Box<RawSettings>),
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
    /// The ClusterRole holding the shard Lease verbs, bound for each adapter in its
    /// source's namespace [default: dynamodb-source-adapter-leases].
    #[arg(long, env = "ADAPTER_LEASES_CLUSTER_ROLE")]
    adapter_leases_cluster_role: Option<String>,
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
    /// Serve the validating admission webhook (HTTPS) on this port [default: not served].
    #[arg(long, env = "WEBHOOK_PORT")]
    webhook_port: Option<u16>,
    /// Directory holding the webhook's serving certificate, tls.crt and tls.key
    /// [default: /etc/dynamodb-source/webhook].
    #[arg(long, env = "WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<std::path::PathBuf>,
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
    let log_format = LogFormat::parse(args.log_format.as_deref()).map_err(|e| e.to_string())?;
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
            adapter_leases_role: args
                .adapter_leases_cluster_role
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| {
                    dynamodb_source_controller::ADAPTER_LEASES_CLUSTER_ROLE.to_owned()
                }),
            namespace: args.watch_namespace.filter(|n| !n.is_empty()),
            metrics_addr: SocketAddr::from((
                Ipv4Addr::UNSPECIFIED,
                args.metrics_port.unwrap_or(9090),
            )),
            leader_election,
            webhook: args
                .webhook_port
                .map(|port| dynamodb_source_controller::WebhookSettings {
                    addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                    cert_dir: args
                        .webhook_cert_dir
                        .unwrap_or_else(|| "/etc/dynamodb-source/webhook".into()),
                }),
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

async fn adapter(args: RawSettings) -> ExitCode {
    let config = match Config::from_raw(&args) {
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
