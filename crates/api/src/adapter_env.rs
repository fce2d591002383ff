//! The adapter's environment variables: the contract between the controller,
//! which writes them into the adapter's Deployment, and the adapter, which
//! reads them (its settings are defined with these names).

/// Required. The URL events are POSTed to.
pub const K_SINK: &str = "K_SINK";

/// Required. The table ARN (arn:aws:dynamodb:REGION:ACCOUNT:table/NAME), or a stream ARN to pin that stream.
pub const ARN: &str = "ARN";

/// AWS region [default: the ARN's region].
pub const AWS_REGION: &str = "AWS_REGION";

/// A custom AWS endpoint (VPC endpoint, local emulator).
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// An IAM role to assume through STS before reading.
pub const AWS_ASSUME_ROLE_ARN: &str = "AWS_ASSUME_ROLE_ARN";

/// LATEST or TRIM_HORIZON: where shards open at a first start begin [default: LATEST].
pub const STARTING_POSITION: &str = "STARTING_POSITION";

/// The checkpoint file [default: ./TABLE.checkpoint.json].
pub const CHECKPOINT_FILE: &str = "CHECKPOINT_FILE";

/// A ConfigMap the controller created, to keep the checkpoint in (instead of a file).
pub const CHECKPOINT_CONFIGMAP: &str = "CHECKPOINT_CONFIGMAP";

/// The namespace of CHECKPOINT_CONFIGMAP (required with it).
pub const CHECKPOINT_NAMESPACE: &str = "CHECKPOINT_NAMESPACE";

/// AWS, Plain or TriggerMesh: the shape of each event's data [default: AWS].
pub const PAYLOAD_FORMAT: &str = "PAYLOAD_FORMAT";

/// Comma list of INSERT, MODIFY, REMOVE to deliver [default: all].
pub const EVENT_NAMES: &str = "EVENT_NAMES";

/// A JSON array of Lambda FilterCriteria patterns (objects or strings holding them); a record is delivered when any matches [default: all records].
pub const FILTER_PATTERNS: &str = "FILTER_PATTERNS";

/// Knative CloudEvent overrides, JSON: {"extensions":{"name":"value"}}.
pub const K_CE_OVERRIDES: &str = "K_CE_OVERRIDES";

/// Retries before an event goes to the dead-letter sink [default: 5]; without one, retries never stop.
pub const DELIVERY_RETRY: &str = "DELIVERY_RETRY";

/// exponential or linear [default: exponential].
pub const DELIVERY_BACKOFF_POLICY: &str = "DELIVERY_BACKOFF_POLICY";

/// ISO-8601 base delay between retries [default: PT0.2S].
pub const DELIVERY_BACKOFF_DELAY: &str = "DELIVERY_BACKOFF_DELAY";

/// ISO-8601 timeout of one delivery attempt [default: PT30S].
pub const DELIVERY_TIMEOUT: &str = "DELIVERY_TIMEOUT";

/// The most events in flight per shard, 1 to 1000; records of one item are always sent one after another [default: 20].
pub const DELIVERY_PARALLELISM: &str = "DELIVERY_PARALLELISM";

/// The most connections to the sink, and so events in flight, across all shards, 1 to 10000 [default: 256].
pub const DELIVERY_MAX_CONNECTIONS: &str = "DELIVERY_MAX_CONNECTIONS";

/// ISO-8601 oldest a record may be when its delivery starts or is retried; older ones are dead-lettered as expired [default: no limit].
pub const DELIVERY_MAX_RECORD_AGE: &str = "DELIVERY_MAX_RECORD_AGE";

/// Where events the sink refuses, or that exhaust their retries, are sent.
pub const K_DEAD_LETTER_SINK: &str = "K_DEAD_LETTER_SINK";

/// Extra PEM CA certificates trusted for an HTTPS sink.
pub const K_CA_CERTS: &str = "K_CA_CERTS";

/// Port of /metrics, /healthz and /readyz [default: 9090].
pub const METRICS_PORT: &str = "METRICS_PORT";

/// json or text [default: json]. Levels come from RUST_LOG.
pub const LOG_FORMAT: &str = "LOG_FORMAT";

/// No longer used: every readable shard is read (accepted so older Deployments start).
pub const MAX_SHARDS: &str = "MAX_SHARDS";

/// ISO-8601 longest pause between reads of an idle shard, the most latency it adds [default: PT1S].
pub const IDLE_POLL_MAX: &str = "IDLE_POLL_MAX";

/// The AWSDynamoDBSource this adapter serves, to record Kubernetes Events on it (with SOURCE_NAMESPACE).
pub const SOURCE_NAME: &str = "SOURCE_NAME";

/// The namespace of SOURCE_NAME.
pub const SOURCE_NAMESPACE: &str = "SOURCE_NAMESPACE";

/// The most records one GetRecords call returns, 1 to 1000 [default: 400 records shared by the shards being read, 200 per read for one shard, at least 50].
pub const RECORDS_PER_READ: &str = "RECORDS_PER_READ";

/// ISO-8601 time in-flight deliveries get at shutdown [default: PT20S].
pub const SHUTDOWN_TIMEOUT: &str = "SHUTDOWN_TIMEOUT";

/// ISO-8601 shortest time between two checkpoint saves; a crash repeats at most what was acknowledged since the last one [default: PT1S].
pub const CHECKPOINT_INTERVAL: &str = "CHECKPOINT_INTERVAL";

/// TRIM_HORIZON or an RFC 3339 time in UTC: where a replay starts (with REPLAY_TOKEN).
pub const REPLAY_FROM: &str = "REPLAY_FROM";

/// Any string: a replay from REPLAY_FROM is applied once per token the checkpoint has not recorded.
pub const REPLAY_TOKEN: &str = "REPLAY_TOKEN";

/// ISO-8601 time between two saves of the summary of how the adapter keeps up (iterator age, deliveries), which the controller shows as status.lag [default: PT30S].
pub const SUMMARY_INTERVAL: &str = "SUMMARY_INTERVAL";

/// Read by the AWS SDK's standard credential chain, not by the adapter's
/// settings: the controller sets them from `auth.credentials`.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";

/// See [`AWS_ACCESS_KEY_ID`].
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";

/// See [`AWS_ACCESS_KEY_ID`].
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// true: in a cluster, replicas share the stream's shards through one
/// coordination.k8s.io Lease per shard (needs SOURCE_NAME, SOURCE_NAMESPACE,
/// SOURCE_UID, and the checkpoint in CHECKPOINT_CONFIGMAP) [default: false].
pub const SHARD_LEASES: &str = "SHARD_LEASES";

/// The uid of SOURCE_NAME: the owner of the shard Leases, so that they are
/// garbage-collected with the source.
pub const SOURCE_UID: &str = "SOURCE_UID";

/// This replica's name among the source's replicas, the holder of its shard
/// Leases (the controller sets the pod's name) [default: HOSTNAME].
pub const POD_NAME: &str = "POD_NAME";

/// ISO-8601 time a shard Lease holds without renewal; a replica that dies
/// gives its shards up after at most this long [default: PT15S].
pub const SHARD_LEASE_DURATION: &str = "SHARD_LEASE_DURATION";
