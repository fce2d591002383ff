//! The adapter's configuration, parsed once from its environment (each
//! variable also a flag). This is the contract the controller writes into the
//! adapter's Deployment, so the names are fixed.

use crate::connection_pool::DEFAULT_MAX_CONNECTIONS;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use dynamodb_source_api::adapter_env as env;
use dynamodb_source_api::{
    EventNameFilter, FilterPatterns, PayloadFormat, Report, SourceArn, StartingPosition, secret_url,
};
use dynamodb_source_delivery::{BackoffPolicy, DeliveryPolicy, parse_duration};
use dynamodb_source_delivery::{CeOverrides, Endpoint};
use dynamodb_source_stream::checkpoint::{ReplayFrom, ReplayFromError};
use url::Url;

/// Events in flight per shard by default: a DynamoDB partition takes up to
/// 1,000 writes a second, and a sink that answers in 10 ms then needs ten
/// sends in flight; twice that leaves room for slower answers and for items
/// written in bursts.
pub(crate) const DEFAULT_PARALLELISM: usize = 20;
/// The most `DELIVERY_PARALLELISM` accepts, as the CRD does.
pub(crate) const MAX_PARALLELISM: usize = 1000;
/// The most `DELIVERY_MAX_CONNECTIONS` accepts: beyond it, file descriptors
/// and buffers (about 50 KB a connection) outweigh what more in flight gives.
const MAX_CONNECTIONS: usize = 10_000;

/// One setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct SettingError {
    pub setting: &'static str,
    pub message: String,
}

fn invalid(setting: &'static str, message: impl std::fmt::Display) -> SettingError {
    SettingError {
        setting,
        message: message.to_string(),
    }
}

/// The adapter's settings as text, straight from the environment or the
/// command line: the one list of them. Each is an environment variable
/// (named by [`env`], which the controller uses to write them) and a flag.
/// Empty values count as unset, as Kubernetes may write them.
///
/// Values stay text here and are checked by [`Config::from_raw`], so that
/// every bad value, however it is wrong, exits with one line naming its
/// variable.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Settings (environment variable or flag)")]
pub struct RawSettings {
    /// Required. The URL events are POSTed to.
    #[arg(long = "sink", env = env::K_SINK, hide_env_values = true)]
    pub k_sink: Option<String>,
    /// Required. The table ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME), or a stream ARN to pin that stream.
    #[arg(long, env = env::ARN, hide_env_values = true)]
    pub arn: Option<String>,
    /// AWS region [default: the ARN's region].
    #[arg(long, env = env::AWS_REGION, hide_env_values = true)]
    pub aws_region: Option<String>,
    /// A custom AWS endpoint (VPC endpoint, local emulator).
    #[arg(long, env = env::AWS_ENDPOINT_URL, hide_env_values = true)]
    pub aws_endpoint_url: Option<String>,
    /// An IAM role to assume through STS before reading.
    #[arg(long, env = env::AWS_ASSUME_ROLE_ARN, hide_env_values = true)]
    pub aws_assume_role_arn: Option<String>,
    /// LATEST or TRIM_HORIZON: where shards open at a first start begin [default: LATEST].
    #[arg(long, env = env::STARTING_POSITION, hide_env_values = true)]
    pub starting_position: Option<String>,
    /// The checkpoint file [default: ./TABLE.checkpoint.json].
    #[arg(long, env = env::CHECKPOINT_FILE, hide_env_values = true)]
    pub checkpoint_file: Option<String>,
    /// A ConfigMap the controller created, to keep the checkpoint in (instead of a file).
    #[arg(long, env = env::CHECKPOINT_CONFIGMAP, hide_env_values = true)]
    pub checkpoint_configmap: Option<String>,
    /// The namespace of CHECKPOINT_CONFIGMAP (required with it).
    #[arg(long, env = env::CHECKPOINT_NAMESPACE, hide_env_values = true)]
    pub checkpoint_namespace: Option<String>,
    /// AWS, Plain or TriggerMesh: the shape of each event's data [default: AWS].
    #[arg(long, env = env::PAYLOAD_FORMAT, hide_env_values = true)]
    pub payload_format: Option<String>,
    /// Comma list of INSERT, MODIFY, REMOVE to deliver [default: all].
    #[arg(long, env = env::EVENT_NAMES, hide_env_values = true)]
    pub event_names: Option<String>,
    /// A JSON array of Lambda FilterCriteria patterns (objects or strings holding them); a record is delivered when any matches [default: all records].
    #[arg(long, env = env::FILTER_PATTERNS, hide_env_values = true)]
    pub filter_patterns: Option<String>,
    /// Knative CloudEvent overrides, JSON: {"extensions":{"name":"value"}}.
    #[arg(long, env = env::K_CE_OVERRIDES, hide_env_values = true)]
    pub k_ce_overrides: Option<String>,
    /// Retries before an event goes to the dead-letter sink [default: 5]; without one, retries never stop.
    #[arg(long, env = env::DELIVERY_RETRY, hide_env_values = true)]
    pub delivery_retry: Option<String>,
    /// exponential or linear [default: exponential].
    #[arg(long, env = env::DELIVERY_BACKOFF_POLICY, hide_env_values = true)]
    pub delivery_backoff_policy: Option<String>,
    /// ISO-8601 base delay between retries [default: PT0.2S].
    #[arg(long, env = env::DELIVERY_BACKOFF_DELAY, hide_env_values = true)]
    pub delivery_backoff_delay: Option<String>,
    /// ISO-8601 timeout of one delivery attempt [default: PT30S].
    #[arg(long, env = env::DELIVERY_TIMEOUT, hide_env_values = true)]
    pub delivery_timeout: Option<String>,
    /// The most events in flight per shard, 1 to 1000; records of one item are always sent one after another [default: 20].
    #[arg(long, env = env::DELIVERY_PARALLELISM, hide_env_values = true)]
    pub delivery_parallelism: Option<String>,
    /// The most connections to the sink, and so events in flight, across all shards, 1 to 10000 [default: 256].
    #[arg(long, env = env::DELIVERY_MAX_CONNECTIONS, hide_env_values = true)]
    pub delivery_max_connections: Option<String>,
    /// ISO-8601 oldest a record may be when its delivery starts or is retried; older ones are dead-lettered as expired [default: no limit].
    #[arg(long, env = env::DELIVERY_MAX_RECORD_AGE, hide_env_values = true)]
    pub delivery_max_record_age: Option<String>,
    /// Where events the sink refuses, or that exhaust their retries, are sent.
    #[arg(
        long = "dead-letter-sink",
        env = env::K_DEAD_LETTER_SINK,
        hide_env_values = true
    )]
    pub k_dead_letter_sink: Option<String>,
    /// Extra PEM CA certificates trusted for an HTTPS sink.
    #[arg(long = "ca-certs", env = env::K_CA_CERTS, hide_env_values = true)]
    pub k_ca_certs: Option<String>,
    /// Port of /metrics, /healthz and /readyz [default: 9090].
    #[arg(long, env = env::METRICS_PORT, hide_env_values = true)]
    pub metrics_port: Option<String>,
    /// json or text [default: json]. Levels come from RUST_LOG.
    #[arg(long, env = env::LOG_FORMAT, hide_env_values = true)]
    pub log_format: Option<String>,
    /// No longer used: every readable shard is read (accepted so older Deployments start).
    #[arg(long, env = env::MAX_SHARDS, hide_env_values = true)]
    pub max_shards: Option<String>,
    /// ISO-8601 longest pause between reads of an idle shard, the most latency it adds [default: PT1S].
    #[arg(long, env = env::IDLE_POLL_MAX, hide_env_values = true)]
    pub idle_poll_max: Option<String>,
    /// The AWSDynamoDBSource this adapter serves, to record Kubernetes Events on it (with SOURCE_NAMESPACE).
    #[arg(long, env = env::SOURCE_NAME, hide_env_values = true)]
    pub source_name: Option<String>,
    /// The namespace of SOURCE_NAME.
    #[arg(long, env = env::SOURCE_NAMESPACE, hide_env_values = true)]
    pub source_namespace: Option<String>,
    /// The most records one GetRecords call returns, 1 to 1000 [default: 400 records shared by the shards being read, 200 per read for one shard, at least 50].
    #[arg(long, env = env::RECORDS_PER_READ, hide_env_values = true)]
    pub records_per_read: Option<String>,
    /// ISO-8601 time in-flight deliveries get at shutdown [default: PT20S].
    #[arg(long, env = env::SHUTDOWN_TIMEOUT, hide_env_values = true)]
    pub shutdown_timeout: Option<String>,
    /// ISO-8601 shortest time between two checkpoint saves; a crash repeats at most what was acknowledged since the last one [default: PT1S].
    #[arg(long, env = env::CHECKPOINT_INTERVAL, hide_env_values = true)]
    pub checkpoint_interval: Option<String>,
    /// ISO-8601 time between two saves of the summary of how the adapter keeps up (iterator age, deliveries), which the controller shows as status.lag [default: PT30S].
    #[arg(long, env = env::SUMMARY_INTERVAL, hide_env_values = true)]
    pub summary_interval: Option<String>,
    /// TRIM_HORIZON or an RFC 3339 time in UTC: where a replay starts (with REPLAY_TOKEN).
    #[arg(long, env = env::REPLAY_FROM, hide_env_values = true)]
    pub replay_from: Option<String>,
    /// Any string: a replay from REPLAY_FROM is applied once per token the checkpoint has not recorded.
    #[arg(long, env = env::REPLAY_TOKEN, hide_env_values = true)]
    pub replay_token: Option<String>,
    /// true: in a cluster, replicas share the stream's shards through one coordination.k8s.io Lease per shard (needs SOURCE_NAME, SOURCE_NAMESPACE, SOURCE_UID and CHECKPOINT_CONFIGMAP) [default: false].
    #[arg(long, env = env::SHARD_LEASES, hide_env_values = true)]
    pub shard_leases: Option<String>,
    /// The uid of SOURCE_NAME: the owner of the shard Leases.
    #[arg(long, env = env::SOURCE_UID, hide_env_values = true)]
    pub source_uid: Option<String>,
    /// This replica's name, the holder of its shard Leases [default: HOSTNAME].
    #[arg(long, env = env::POD_NAME, hide_env_values = true)]
    pub pod_name: Option<String>,
    /// ISO-8601 time a shard Lease holds without renewal; a replica that dies gives its shards up after at most this long [default: PT30S].
    #[arg(long, env = env::SHARD_LEASE_DURATION, hide_env_values = true)]
    pub shard_lease_duration: Option<String>,
}

/// Sharing shards with other replicas through Leases (`SHARD_LEASES=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLeases {
    pub namespace: String,
    pub source: String,
    pub uid: String,
    /// This replica's identity.
    pub identity: String,
    pub duration: Duration,
}

/// A replay to apply once: every shard starts again from `from`, unless the
/// checkpoint already recorded `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub token: String,
    pub from: ReplayFrom,
}

/// How log lines are written; both roles read it from `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

impl LogFormat {
    /// `LOG_FORMAT`'s value: `json` (the default, also when empty) or `text`.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, SettingError> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None | Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => Err(invalid(
                env::LOG_FORMAT,
                format!("{other:?} is not one of json, text"),
            )),
        }
    }
}

/// Where progress is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointLocation {
    File(PathBuf),
    /// The data key `checkpoint.json` of a ConfigMap the controller created.
    ConfigMap {
        namespace: String,
        name: String,
    },
}

/// The adapter's configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sink; userinfo in `K_SINK` became its Basic authorization.
    pub sink: Endpoint,
    pub arn: SourceArn,
    pub region: String,
    pub endpoint: Option<Url>,
    pub assume_role_arn: Option<String>,
    pub starting_position: StartingPosition,
    pub checkpoint: CheckpointLocation,
    pub payload_format: PayloadFormat,
    pub event_names: EventNameFilter,
    /// Lambda event patterns, any of which passes a record; none passes all.
    pub filter_patterns: FilterPatterns,
    pub overrides: CeOverrides,
    pub delivery: DeliveryPolicy,
    pub dead_letter_sink: Option<Endpoint>,
    /// The most events in flight per shard; records of one item key are
    /// always sent one after another.
    pub parallelism: usize,
    /// The most connections to the sink, all shards together.
    pub max_connections: usize,
    pub ca_certs: Option<Vec<u8>>,
    pub metrics_addr: SocketAddr,
    pub log_format: LogFormat,
    /// `MAX_SHARDS`, no longer used: every readable shard is read, and
    /// memory is bounded by the records held instead. Kept so that older
    /// Deployments still start; the adapter warns when it is set.
    pub max_shards: Option<usize>,
    /// The longest wait between two reads of an idle shard: the worst added latency.
    pub idle_poll_max: Duration,
    /// How long shutdown waits for in-flight deliveries before abandoning them.
    pub shutdown_timeout: Duration,
    /// The shortest time between two checkpoint saves: what a crash may repeat.
    pub checkpoint_interval: Duration,
    /// The time between two saves of the summary the controller reads.
    pub summary_interval: Duration,
    /// `REPLAY_FROM` and `REPLAY_TOKEN`.
    pub replay: Option<Replay>,
    /// The most records one GetRecords call returns (1 to 1000); by default
    /// a share of [`dynamodb_source_stream::read_size::DEFAULT_BUDGET`].
    pub records_per_read: Option<u16>,
    /// The AWSDynamoDBSource this adapter serves (namespace, name), to record
    /// Kubernetes Events on it; `None` outside a cluster.
    pub source: Option<(String, String)>,
    /// How often the stream is described to find new shards.
    pub discovery_interval: Duration,
    /// `SHARD_LEASES=true`: shards are shared with other replicas.
    pub shard_leases: Option<ShardLeases>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn sink_endpoint(setting: &'static str, value: &str) -> Result<Endpoint, SettingError> {
    Endpoint::parse(value).map_err(|e| invalid(setting, Report(&e)))
}

fn http_url(setting: &'static str, value: &str) -> Result<Url, SettingError> {
    let shown = secret_url::redact_text(value);
    let url =
        Url::parse(value).map_err(|e| invalid(setting, format!("{shown:?} is not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(invalid(
            setting,
            format!("{shown:?} is not an http(s) URL with a host"),
        )),
    }
}

/// Whether `value` is a DNS-1123 label: at most 63 lowercase letters, digits
/// and '-', starting and ending with a letter or digit.
fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A Kubernetes object name: a DNS-1123 subdomain (dot-separated labels, at
/// most 253 characters in all).
fn object_name(setting: &'static str, value: &str) -> Result<String, SettingError> {
    if value.len() <= 253 && value.split('.').all(is_dns1123_label) {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            setting,
            format!(
                "{value:?} is not a Kubernetes object name (lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters)"
            ),
        ))
    }
}

/// A namespace name: a DNS-1123 label.
fn namespace_name(setting: &'static str, value: &str) -> Result<String, SettingError> {
    if is_dns1123_label(value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(
            setting,
            format!(
                "{value:?} is not a namespace name (lowercase letters, digits and '-', \
                 starting and ending with a letter or digit, at most 63 characters)"
            ),
        ))
    }
}

fn source_object(raw: &RawSettings) -> Result<Option<(String, String)>, SettingError> {
    match (present(&raw.source_namespace), present(&raw.source_name)) {
        (None, None) => Ok(None),
        (Some(namespace), Some(name)) => Ok(Some((
            namespace_name(env::SOURCE_NAMESPACE, namespace)?,
            object_name(env::SOURCE_NAME, name)?,
        ))),
        (None, Some(_)) => Err(invalid(
            env::SOURCE_NAMESPACE,
            "missing: the namespace of SOURCE_NAME",
        )),
        (Some(_), None) => Err(invalid(
            env::SOURCE_NAME,
            "missing: set together with SOURCE_NAMESPACE",
        )),
    }
}

fn shard_leases(
    raw: &RawSettings,
    checkpoint: &CheckpointLocation,
) -> Result<Option<ShardLeases>, SettingError> {
    match present(&raw.shard_leases) {
        None | Some("false") => return Ok(None),
        Some("true") => {}
        Some(other) => {
            return Err(invalid(
                env::SHARD_LEASES,
                format!("{other:?} is neither true nor false"),
            ));
        }
    }
    let Some((namespace, source)) = source_object(raw)? else {
        return Err(invalid(
            env::SHARD_LEASES,
            "needs SOURCE_NAME and SOURCE_NAMESPACE: the Leases are the source's",
        ));
    };
    let CheckpointLocation::ConfigMap { .. } = checkpoint else {
        return Err(invalid(
            env::SHARD_LEASES,
            "needs CHECKPOINT_CONFIGMAP: replicas share their checkpoint there",
        ));
    };
    let uid = present(&raw.source_uid)
        .ok_or_else(|| {
            invalid(
                env::SOURCE_UID,
                "missing: SHARD_LEASES needs the source's uid",
            )
        })?
        .to_owned();
    let identity = present(&raw.pod_name)
        .map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .ok_or_else(|| {
            invalid(
                env::POD_NAME,
                "missing: SHARD_LEASES needs this replica's name (POD_NAME or HOSTNAME)",
            )
        })?;
    let duration = present(&raw.shard_lease_duration)
        .map(|v| duration(env::SHARD_LEASE_DURATION, v))
        .transpose()?
        .unwrap_or(Duration::from_secs(30));
    if duration < Duration::from_secs(3) {
        return Err(invalid(
            env::SHARD_LEASE_DURATION,
            "must be at least PT3S: a replica renews its leases four times per duration",
        ));
    }
    Ok(Some(ShardLeases {
        namespace,
        source,
        uid,
        identity,
        duration,
    }))
}

fn checkpoint_location(
    raw: &RawSettings,
    arn: &SourceArn,
) -> Result<CheckpointLocation, SettingError> {
    let file = present(&raw.checkpoint_file);
    let namespace = present(&raw.checkpoint_namespace);
    match present(&raw.checkpoint_configmap) {
        Some(_) if file.is_some() => Err(invalid(
            env::CHECKPOINT_CONFIGMAP,
            "cannot be combined with CHECKPOINT_FILE: set one checkpoint store",
        )),
        Some(name) => {
            let name = object_name(env::CHECKPOINT_CONFIGMAP, name)?;
            let namespace = namespace.ok_or_else(|| {
                invalid(
                    env::CHECKPOINT_NAMESPACE,
                    "missing: the namespace of CHECKPOINT_CONFIGMAP (in a pod, from the downward API: metadata.namespace)",
                )
            })?;
            let namespace = namespace_name(env::CHECKPOINT_NAMESPACE, namespace)?;
            Ok(CheckpointLocation::ConfigMap { namespace, name })
        }
        None if namespace.is_some() => Err(invalid(
            env::CHECKPOINT_NAMESPACE,
            "set without CHECKPOINT_CONFIGMAP, whose namespace it is",
        )),
        None => Ok(CheckpointLocation::File(
            file.map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(format!("{}.checkpoint.json", arn.table().table()))
            }),
        )),
    }
}

fn duration(setting: &'static str, value: &str) -> Result<Duration, SettingError> {
    parse_duration(value).map_err(|e| invalid(setting, Report(&e)))
}

impl Config {
    pub fn from_raw(raw: &RawSettings) -> Result<Config, SettingError> {
        let sink = present(&raw.k_sink)
            .ok_or_else(|| invalid(env::K_SINK, "missing: the URL events are sent to"))
            .and_then(|v| sink_endpoint(env::K_SINK, v))?;
        let arn: SourceArn = present(&raw.arn)
            .ok_or_else(|| invalid(env::ARN, "missing: the DynamoDB table ARN"))?
            .parse()
            .map_err(|e| invalid(env::ARN, Report(&e)))?;
        let region = present(&raw.aws_region)
            .unwrap_or(arn.table().region())
            .to_owned();
        let endpoint = present(&raw.aws_endpoint_url)
            .map(|v| http_url(env::AWS_ENDPOINT_URL, v))
            .transpose()?;
        let assume_role_arn = present(&raw.aws_assume_role_arn)
            .map(|role| {
                let valid =
                    role.starts_with("arn:") && role.contains(":iam::") && role.contains(":role/");
                if valid {
                    Ok(role.to_owned())
                } else {
                    Err(invalid(
                        env::AWS_ASSUME_ROLE_ARN,
                        format!(
                            "{role:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"
                        ),
                    ))
                }
            })
            .transpose()?;
        let starting_position = present(&raw.starting_position)
            .map(|v| {
                v.parse()
                    .map_err(|e| invalid(env::STARTING_POSITION, Report(&e)))
            })
            .transpose()?
            .unwrap_or_default();
        let checkpoint = checkpoint_location(raw, &arn)?;
        let payload_format = present(&raw.payload_format)
            .map(|v| {
                v.parse()
                    .map_err(|e| invalid(env::PAYLOAD_FORMAT, Report(&e)))
            })
            .transpose()?
            .unwrap_or_default();
        let event_names = present(&raw.event_names)
            .map(|v| v.parse().map_err(|e| invalid(env::EVENT_NAMES, Report(&e))))
            .transpose()?
            .unwrap_or_default();
        let filter_patterns = present(&raw.filter_patterns)
            .map(|v| {
                FilterPatterns::parse_json_list(v)
                    .map_err(|e| invalid(env::FILTER_PATTERNS, Report(&e)))
            })
            .transpose()?
            .unwrap_or_default();
        let overrides = present(&raw.k_ce_overrides)
            .map(|v| {
                v.parse::<CeOverrides>()
                    .map_err(|e| invalid(env::K_CE_OVERRIDES, Report(&e)))
            })
            .transpose()?
            .unwrap_or_default();
        let mut delivery = DeliveryPolicy::default();
        if let Some(retry) = present(&raw.delivery_retry) {
            delivery.retry = Some(retry.parse::<u32>().map_err(|_| {
                invalid(
                    env::DELIVERY_RETRY,
                    format!("{retry:?} is not a whole number of retries"),
                )
            })?);
        }
        if let Some(policy) = present(&raw.delivery_backoff_policy) {
            delivery.backoff_policy = policy
                .parse::<BackoffPolicy>()
                .map_err(|e| invalid(env::DELIVERY_BACKOFF_POLICY, Report(&e)))?;
        }
        if let Some(delay) = present(&raw.delivery_backoff_delay) {
            delivery.backoff_delay = duration(env::DELIVERY_BACKOFF_DELAY, delay)?;
        }
        if let Some(timeout) = present(&raw.delivery_timeout) {
            delivery.timeout = duration(env::DELIVERY_TIMEOUT, timeout)?;
            if delivery.timeout.is_zero() {
                return Err(invalid(env::DELIVERY_TIMEOUT, "must be longer than zero"));
            }
        }
        if let Some(age) = present(&raw.delivery_max_record_age) {
            let age = duration(env::DELIVERY_MAX_RECORD_AGE, age)?;
            if age.is_zero() {
                return Err(invalid(
                    env::DELIVERY_MAX_RECORD_AGE,
                    "must be longer than zero",
                ));
            }
            delivery.max_record_age = Some(age);
        }
        let dead_letter_sink = present(&raw.k_dead_letter_sink)
            .map(|v| sink_endpoint(env::K_DEAD_LETTER_SINK, v))
            .transpose()?;
        let ca_certs = present(&raw.k_ca_certs)
            .map(|pem| {
                if pem.contains("-----BEGIN CERTIFICATE-----") {
                    Ok(pem.as_bytes().to_vec())
                } else {
                    Err(invalid(
                        env::K_CA_CERTS,
                        "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    ))
                }
            })
            .transpose()?;
        let metrics_port = present(&raw.metrics_port)
            .map(|v| {
                v.parse::<u16>().map_err(|_| {
                    invalid(
                        env::METRICS_PORT,
                        format!("{v:?} is not a port number (0-65535)"),
                    )
                })
            })
            .transpose()?
            .unwrap_or(9090);
        let log_format = LogFormat::parse(raw.log_format.as_deref())?;
        let max_shards = present(&raw.max_shards)
            .map(|v| match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid(
                    env::MAX_SHARDS,
                    format!("{v:?} is not a positive whole number"),
                )),
            })
            .transpose()?;
        let parallelism = present(&raw.delivery_parallelism)
            .map(|v| match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PARALLELISM).contains(&n) => Ok(n),
                _ => Err(invalid(
                    env::DELIVERY_PARALLELISM,
                    format!("{v:?} is not a whole number from 1 to {MAX_PARALLELISM}"),
                )),
            })
            .transpose()?
            .unwrap_or(DEFAULT_PARALLELISM);
        let max_connections = present(&raw.delivery_max_connections)
            .map(|v| match v.parse::<usize>() {
                Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => Ok(n),
                _ => Err(invalid(
                    env::DELIVERY_MAX_CONNECTIONS,
                    format!("{v:?} is not a whole number from 1 to {MAX_CONNECTIONS}"),
                )),
            })
            .transpose()?
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let idle_poll_max = present(&raw.idle_poll_max)
            .map(|v| duration(env::IDLE_POLL_MAX, v))
            .transpose()?
            .unwrap_or(Duration::from_secs(1));
        let records_per_read = present(&raw.records_per_read)
            .map(|v| match v.parse::<u16>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(invalid(
                    env::RECORDS_PER_READ,
                    format!("{v:?} is not a whole number from 1 to 1000"),
                )),
            })
            .transpose()?;
        let shutdown_timeout = present(&raw.shutdown_timeout)
            .map(|v| duration(env::SHUTDOWN_TIMEOUT, v))
            .transpose()?
            .unwrap_or(Duration::from_secs(20));
        let checkpoint_interval = present(&raw.checkpoint_interval)
            .map(|v| duration(env::CHECKPOINT_INTERVAL, v))
            .transpose()?
            .unwrap_or(Duration::from_secs(1));
        let summary_interval = present(&raw.summary_interval)
            .map(|v| duration(env::SUMMARY_INTERVAL, v))
            .transpose()?
            .unwrap_or(Duration::from_secs(30));
        if summary_interval.is_zero() {
            return Err(invalid(env::SUMMARY_INTERVAL, "must be longer than zero"));
        }
        let replay = match (present(&raw.replay_from), present(&raw.replay_token)) {
            (None, None) => None,
            (Some(from), Some(token)) => Some(Replay {
                token: token.to_owned(),
                from: from
                    .parse()
                    .map_err(|e: ReplayFromError| invalid(env::REPLAY_FROM, Report(&e)))?,
            }),
            (Some(_), None) => {
                return Err(invalid(
                    env::REPLAY_TOKEN,
                    "missing: REPLAY_FROM needs a token, which makes the replay happen once",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    env::REPLAY_FROM,
                    "missing: REPLAY_TOKEN needs REPLAY_FROM (TRIM_HORIZON or an RFC 3339 time)",
                ));
            }
        };
        Ok(Config {
            sink,
            arn,
            region,
            endpoint,
            assume_role_arn,
            starting_position,
            payload_format,
            event_names,
            filter_patterns,
            overrides,
            delivery,
            dead_letter_sink,
            parallelism,
            max_connections,
            ca_certs,
            metrics_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, metrics_port)),
            log_format,
            max_shards,
            idle_poll_max,
            shutdown_timeout,
            checkpoint_interval,
            summary_interval,
            replay,
            records_per_read,
            shard_leases: shard_leases(raw, &checkpoint)?,
            checkpoint,
            source: source_object(raw)?,
            discovery_interval: Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RawSettings {
        RawSettings {
            k_sink: Some("http://127.0.0.1:8080/".into()),
            arn: Some("arn:aws:dynamodb:eu-west-1:123456789012:table/orders".into()),
            ..RawSettings::default()
        }
    }

    #[test]
    fn minimal_settings_take_documented_defaults() {
        let config = Config::from_raw(&minimal()).expect("valid");
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.starting_position, StartingPosition::Latest);
        assert_eq!(config.payload_format, PayloadFormat::Aws);
        assert_eq!(
            config.checkpoint,
            CheckpointLocation::File(PathBuf::from("orders.checkpoint.json"))
        );
        assert_eq!(config.metrics_addr.port(), 9090);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn every_setting_is_read() {
        let raw = RawSettings {
            aws_region: Some("us-east-2".into()),
            aws_endpoint_url: Some("http://127.0.0.1:5000".into()),
            starting_position: Some("TRIM_HORIZON".into()),
            checkpoint_file: Some("/tmp/cp.json".into()),
            payload_format: Some("Plain".into()),
            event_names: Some("INSERT".into()),
            filter_patterns: Some(r#"[{"eventName":["INSERT"]}]"#.into()),
            k_ce_overrides: Some(r#"{"extensions":{"team":"a"}}"#.into()),
            delivery_retry: Some("3".into()),
            delivery_backoff_policy: Some("linear".into()),
            delivery_backoff_delay: Some("PT1S".into()),
            delivery_timeout: Some("PT5S".into()),
            k_dead_letter_sink: Some("http://127.0.0.1:9/dls".into()),
            metrics_port: Some("0".into()),
            log_format: Some("text".into()),
            ..minimal()
        };
        let config = Config::from_raw(&raw).expect("valid");
        assert_eq!(config.region, "us-east-2");
        assert_eq!(config.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(config.delivery.retry, Some(3));
        assert_eq!(config.delivery.backoff_policy, BackoffPolicy::Linear);
        assert_eq!(config.delivery.backoff_delay, Duration::from_secs(1));
        assert_eq!(config.delivery.timeout, Duration::from_secs(5));
        assert!(config.dead_letter_sink.is_some());
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.filter_patterns.len(), 1);
    }

    #[test]
    fn a_config_map_replaces_the_checkpoint_file() {
        let raw = RawSettings {
            checkpoint_configmap: Some("orders-source.checkpoint".into()),
            checkpoint_namespace: Some("team-a".into()),
            ..minimal()
        };
        assert_eq!(
            Config::from_raw(&raw).expect("valid").checkpoint,
            CheckpointLocation::ConfigMap {
                namespace: "team-a".into(),
                name: "orders-source.checkpoint".into(),
            }
        );
        // Empty values are unset: the file store stays.
        let raw = RawSettings {
            checkpoint_configmap: Some(String::new()),
            checkpoint_namespace: Some(" ".into()),
            ..minimal()
        };
        assert!(matches!(
            Config::from_raw(&raw).expect("valid").checkpoint,
            CheckpointLocation::File(_)
        ));
    }

    #[test]
    fn names_are_checked_as_kubernetes_names() {
        for good in ["a", "a-b.c-d", "0x", &"a".repeat(63), &["a"; 127].join(".")] {
            assert!(object_name("X", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a b",
            &"a".repeat(64),
            &["a"; 128].join("."),
        ] {
            assert!(object_name("X", bad).is_err(), "{bad}");
        }
        assert!(namespace_name("X", "team-a").is_ok());
        assert!(namespace_name("X", "team.a").is_err());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let raw = RawSettings {
            payload_format: Some(String::new()),
            ..minimal()
        };
        assert_eq!(
            Config::from_raw(&raw).expect("valid").payload_format,
            PayloadFormat::Aws
        );
    }

    #[test]
    fn each_bad_setting_names_itself() {
        let cases: Vec<(RawSettings, &str)> = vec![
            (
                RawSettings {
                    k_sink: None,
                    ..minimal()
                },
                "invalid setting K_SINK: missing",
            ),
            (
                RawSettings {
                    k_sink: Some("ftp://x".into()),
                    ..minimal()
                },
                "invalid setting K_SINK:",
            ),
            (
                RawSettings {
                    arn: None,
                    ..minimal()
                },
                "invalid setting ARN: missing",
            ),
            (
                RawSettings {
                    arn: Some("arn:aws:s3:::bucket".into()),
                    ..minimal()
                },
                "invalid setting ARN:",
            ),
            (
                RawSettings {
                    starting_position: Some("EARLIEST".into()),
                    ..minimal()
                },
                "invalid setting STARTING_POSITION:",
            ),
            (
                RawSettings {
                    payload_format: Some("xml".into()),
                    ..minimal()
                },
                "invalid setting PAYLOAD_FORMAT:",
            ),
            (
                RawSettings {
                    event_names: Some("INSERT,DELETE".into()),
                    ..minimal()
                },
                "invalid setting EVENT_NAMES:",
            ),
            (
                RawSettings {
                    filter_patterns: Some(r#"[{"a":[{"prefix":1}]}]"#.into()),
                    ..minimal()
                },
                "invalid setting FILTER_PATTERNS: filter pattern 0 ({\"a\":[{\"prefix\":1}]}) at a[0].prefix: prefix takes",
            ),
            (
                RawSettings {
                    k_ce_overrides: Some(r#"{"extensions":{"id":"x"}}"#.into()),
                    ..minimal()
                },
                "invalid setting K_CE_OVERRIDES:",
            ),
            (
                RawSettings {
                    delivery_retry: Some("-1".into()),
                    ..minimal()
                },
                "invalid setting DELIVERY_RETRY:",
            ),
            (
                RawSettings {
                    delivery_backoff_policy: Some("random".into()),
                    ..minimal()
                },
                "invalid setting DELIVERY_BACKOFF_POLICY:",
            ),
            (
                RawSettings {
                    delivery_backoff_delay: Some("1s".into()),
                    ..minimal()
                },
                "invalid setting DELIVERY_BACKOFF_DELAY:",
            ),
            (
                RawSettings {
                    delivery_timeout: Some("PT0S".into()),
                    ..minimal()
                },
                "invalid setting DELIVERY_TIMEOUT:",
            ),
            (
                RawSettings {
                    k_dead_letter_sink: Some("nope".into()),
                    ..minimal()
                },
                "invalid setting K_DEAD_LETTER_SINK:",
            ),
            (
                RawSettings {
                    k_ca_certs: Some("garbage".into()),
                    ..minimal()
                },
                "invalid setting K_CA_CERTS:",
            ),
            (
                RawSettings {
                    metrics_port: Some("70000".into()),
                    ..minimal()
                },
                "invalid setting METRICS_PORT:",
            ),
            (
                RawSettings {
                    log_format: Some("xml".into()),
                    ..minimal()
                },
                "invalid setting LOG_FORMAT:",
            ),
            (
                RawSettings {
                    records_per_read: Some("5000".into()),
                    ..minimal()
                },
                "invalid setting RECORDS_PER_READ:",
            ),
            (
                RawSettings {
                    delivery_max_connections: Some("0".into()),
                    ..minimal()
                },
                "invalid setting DELIVERY_MAX_CONNECTIONS:",
            ),
            (
                RawSettings {
                    delivery_max_connections: Some("10001".into()),
                    ..minimal()
                },
                "invalid setting DELIVERY_MAX_CONNECTIONS:",
            ),
            (
                RawSettings {
                    source_name: Some("orders".into()),
                    ..minimal()
                },
                "invalid setting SOURCE_NAMESPACE: missing",
            ),
            (
                RawSettings {
                    aws_endpoint_url: Some("localhost:4566".into()),
                    ..minimal()
                },
                "invalid setting AWS_ENDPOINT_URL:",
            ),
            (
                RawSettings {
                    aws_assume_role_arn: Some("role".into()),
                    ..minimal()
                },
                "invalid setting AWS_ASSUME_ROLE_ARN:",
            ),
            (
                RawSettings {
                    checkpoint_configmap: Some("orders-checkpoint".into()),
                    ..minimal()
                },
                "invalid setting CHECKPOINT_NAMESPACE: missing:",
            ),
            (
                RawSettings {
                    checkpoint_namespace: Some("team-a".into()),
                    ..minimal()
                },
                "invalid setting CHECKPOINT_NAMESPACE:",
            ),
            (
                RawSettings {
                    checkpoint_configmap: Some("Orders_Checkpoint".into()),
                    checkpoint_namespace: Some("team-a".into()),
                    ..minimal()
                },
                "invalid setting CHECKPOINT_CONFIGMAP:",
            ),
            (
                RawSettings {
                    checkpoint_configmap: Some("orders-checkpoint".into()),
                    checkpoint_namespace: Some("team.a".into()),
                    ..minimal()
                },
                "invalid setting CHECKPOINT_NAMESPACE:",
            ),
            (
                RawSettings {
                    checkpoint_file: Some("/tmp/cp.json".into()),
                    checkpoint_configmap: Some("orders-checkpoint".into()),
                    checkpoint_namespace: Some("team-a".into()),
                    ..minimal()
                },
                "invalid setting CHECKPOINT_CONFIGMAP: cannot be combined with CHECKPOINT_FILE",
            ),
        ];
        for (raw, expected) in cases {
            let err = Config::from_raw(&raw).expect_err(expected).to_string();
            assert!(err.starts_with(expected), "{err} (expected {expected})");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
