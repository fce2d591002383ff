//! The `AWSDynamoDBSource` custom resource (`sources.triggermesh.io/v1alpha1`).
//!
//! The schema accepts every manifest TriggerMesh's CRD accepts and rejects what
//! it rejects; our extensions are optional fields whose defaults keep
//! TriggerMesh's behaviour. The descriptions are the interface of `kubectl
//! explain` and of UIs that build the resource, so every field has one.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TriggerMesh's ARN pattern (a stream ARN also matches it).
pub const ARN_PATTERN: &str =
    r"^arn:aws(-cn|-us-gov)?:dynamodb:[a-z]{2}(-gov)?-[a-z]+-\d:\d{12}:table\/.+$";
/// TriggerMesh's IAM role ARN pattern.
pub const ROLE_ARN_PATTERN: &str = r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role\/.+$";
/// ISO-8601 durations in the RE2 syntax the API server speaks (no look-arounds).
const ISO8601_DURATION_PATTERN: &str =
    r"^P((\d+(\.\d+)?[YMWD])+(T(\d+(\.\d+)?[HMS])+)?|T(\d+(\.\d+)?[HMS])+)$";

/// Event source for Amazon DynamoDB: every change to a table's items becomes a CloudEvent.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sources.triggermesh.io",
    version = "v1alpha1",
    kind = "AWSDynamoDBSource",
    plural = "awsdynamodbsources",
    namespaced,
    status = "AWSDynamoDBSourceStatus",
    doc = "Event source for Amazon DynamoDB: every change to a table's items becomes a CloudEvent of type com.amazon.dynamodb.stream_record.",
    category = "all",
    category = "knative",
    category = "eventing",
    category = "sources",
    label("eventing.knative.dev/source", "true"),
    label("duck.knative.dev/source", "true"),
    label("knative.dev/crd-install", "true"),
    label("triggermesh.io/crd-install", "true"),
    annotation(
        "registry.knative.dev/eventTypes",
        r#"[{"type":"com.amazon.dynamodb.stream_record","description":"A change to an item of an Amazon DynamoDB table, read from its DynamoDB Stream."}]"#
    ),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].reason"}"#,
    printcolumn = r#"{"name":"Sink","type":"string","jsonPath":".status.sinkUri"}"#,
    printcolumn = r#"{"name":"Lag","type":"string","description":"How far behind the stream the source is","jsonPath":".status.lag"}"#,
    printcolumn = r#"{"name":"Ready Replicas","type":"integer","description":"Adapter replicas ready","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AWSDynamoDBSourceSpec {
    /// ARN of the DynamoDB table to receive modification events from, e.g.
    /// arn:aws:dynamodb:us-west-2:123456789012:table/orders. The region comes from it. A stream ARN
    /// (.../table/NAME/stream/LABEL) pins that stream instead of following the table's current one.
    #[schemars(regex(pattern = ARN_PATTERN))]
    pub arn: String,

    /// Authentication method to interact with the Amazon DynamoDB Streams API. Without it the adapter
    /// uses the default AWS credential chain of its pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    /// The destination of events sourced from Amazon DynamoDB.
    pub sink: Destination,

    /// Kubernetes object parameters to apply on top of default adapter values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_overrides: Option<AdapterOverrides>,

    /// A custom AWS endpoint, such as a VPC endpoint or a local emulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,

    /// Where reading starts in shards that are open when the source starts with no saved progress:
    /// LATEST (default, only new changes) or TRIM_HORIZON (everything the stream still holds, up to 24
    /// hours). Shards that appear later are always read from their beginning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_position: Option<StartingPositionSpec>,

    /// Extra CloudEvent extension attributes added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,

    /// How events are retried and where they go when the sink refuses them (Knative DeliverySpec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,

    /// Which changes become events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,

    /// The shape of each event's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,

    /// Delivers again what the stream still holds from a point on: every shard is read again from
    /// there, once per token. Change the token to replay again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,

    /// Adapter replicas (default 1). Replicas share the stream's shards, each shard read by one
    /// replica at a time (a coordination.k8s.io Lease per shard). 0 suspends the source: no adapter
    /// runs, and its saved progress is kept for when it is scaled up again. Set through the scale
    /// subresource too (kubectl scale, a HorizontalPodAutoscaler, KEDA).
    // The default is in the schema, so the API server fills it in and the scale subresource
    // reports 1, not 0, for a source that never set it (an autoscaler leaves a target at 0 alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 1))]
    pub replicas: Option<i32>,
}

/// Adapter replicas when `spec.replicas` is not set.
pub const DEFAULT_REPLICAS: i32 = 1;

impl AWSDynamoDBSourceSpec {
    /// The adapter replicas asked for: `spec.replicas`, or [`DEFAULT_REPLICAS`]. A negative value
    /// (refused at admission) counts as 0.
    pub fn desired_replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS).max(0)
    }
}

/// A replay of the stream from a point on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.from == 'TRIM_HORIZON' || (self.from.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?Z$') && timestamp(self.from) >= timestamp('1970-01-01T00:00:00Z'))").message("replay.from is TRIM_HORIZON or an RFC 3339 time in UTC, such as 2024-05-01T12:00:00Z").field_path(".from")
)]
pub struct Replay {
    /// TRIM_HORIZON (everything the stream still holds, up to 24 hours) or an RFC 3339 time in UTC
    /// such as 2024-05-01T12:00:00Z: records created before it (by their ApproximateCreationDateTime)
    /// are not delivered again.
    #[schemars(length(min = 1, max = 64))]
    pub from: String,
    /// Any string: the adapter replays once for each token it has not recorded in its checkpoint,
    /// so a restart does not replay again. Set a new one (a date, a ticket number) to replay again.
    #[schemars(length(min = 1, max = 253))]
    pub token: String,
}

/// Exactly one authentication method.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.iamRole)").message("auth.iamRole is deprecated and not supported: use auth.iam.roleArn").field_path(".iamRole"),
    validation = Rule::new("has(self.credentials) != has(self.iam)").message("exactly one of auth.credentials or auth.iam must be set")
)]
pub struct Auth {
    /// Security credentials authentication (an access key). See
    /// https://docs.aws.amazon.com/general/latest/gr/aws-security-credentials.html.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Deprecated and rejected: use iam.roleArn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_ARN_PATTERN))]
    pub iam_role: Option<String>,
    /// The IAM role authentication parameters (EKS IAM roles for service accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<IamAuth>,
}

/// An access key, each part a literal value or a reference to a Secret key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// Access key ID.
    #[serde(rename = "accessKeyID")]
    pub access_key_id: ValueFromField,
    /// Secret access key.
    pub secret_access_key: SecretValueFromField,
    /// The AWS session token for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretValueFromField>,
    /// The ARN of an IAM role to assume through STS for cross-account access. See
    /// https://docs.aws.amazon.com/IAM/latest/UserGuide/tutorial_cross-account-with-roles.html.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_ARN_PATTERN))]
    pub assume_iam_role: Option<String>,
}

/// A value given literally or read from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFromSecret)").message("exactly one of value or valueFromSecret must be set"))]
pub struct ValueFromField {
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A reference to a key of a Kubernetes Secret holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from_secret: Option<SecretKeySelector>,
}

/// A secret value given literally or read from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFromSecret)").message("exactly one of value or valueFromSecret must be set"))]
pub struct SecretValueFromField {
    /// Literal value. Prefer valueFromSecret: a literal is stored in the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "password"))]
    pub value: Option<String>,
    /// A reference to a key of a Kubernetes Secret holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from_secret: Option<SecretKeySelector>,
}

/// A key of a Secret in the source's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// IAM roles for service accounts (Amazon EKS).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IamAuth {
    /// The ARN of an IAM role the adapter's ServiceAccount is annotated with
    /// (eks.amazonaws.com/role-arn). See
    /// https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROLE_ARN_PATTERN))]
    pub role_arn: Option<String>,
    /// The name of an existing ServiceAccount to run the adapter as, instead of one created for the
    /// source. Can be shared between sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// Where events go: an addressable object, a URI, or a URI relative to the object's address.
// Without ref the URI is the whole address, so it must be absolute (Knative's Destination rule):
// a relative one could never be resolved. The API server's `format: uri` check (Go's
// url.ParseRequestURI, the parser of CEL's isURL too) lets a path such as /events through.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.ref) || has(self.uri)").message("a destination needs ref or uri"),
    validation = Rule::new("has(self.ref) || !has(self.uri) || (isURL(self.uri) && url(self.uri).getScheme() != '')").message("uri must be an absolute URL with a scheme (such as https://events.example.com/path) when ref is not set; only a uri next to a ref may be relative").field_path(".uri")
)]
pub struct Destination {
    /// Reference to an addressable Kubernetes object (a Knative Service or Broker, a core Service, ...).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    /// URI of the destination; relative to the object's address when ref is set too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "uri"))]
    pub uri: Option<String>,
    /// PEM CA certificates trusted when the destination is HTTPS.
    #[serde(default, rename = "CACerts", skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
}

/// A reference to an object by kind and name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KReference {
    /// API version of the referent, e.g. serving.knative.dev/v1.
    pub api_version: String,
    /// Kind of the referent, e.g. Service.
    pub kind: String,
    /// Namespace of the referent; the source's namespace when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    pub name: String,
}

/// Adapter Deployment settings applied on top of the defaults.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdapterOverrides {
    /// Adapter annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Adapter labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Adapter environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Compute resources required by the adapter. See
    /// https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Pod tolerations. See https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Only schedule the adapter on nodes with all these labels. See
    /// https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodeselector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Scheduling constraints of the adapter's pod. See
    /// https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#affinity-and-anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub affinity: Option<serde_json::Value>,
}

/// An environment variable of the adapter.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// Name of the variable.
    // Required and non-empty at admission (a Deployment with a nameless variable is refused),
    // yet an Option without serde(default), so that an object admitted before that rule still
    // deserializes; the controller skips a nameless entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required, length(min = 1))]
    pub name: Option<String>,
    /// Value of the variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Resource limits and requests, as Kubernetes quantities.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Resources {
    /// Limits describes the maximum amount of compute resources allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_map")]
    pub limits: Option<BTreeMap<String, serde_json::Value>>,
    /// Requests describes the minimum amount of compute resources required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "quantity_map")]
    pub requests: Option<BTreeMap<String, serde_json::Value>>,
}

/// A toleration of a node taint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    /// Taint key that the toleration applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Key's relationship to the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// Taint value the toleration matches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Taint effect to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// Period of time a toleration of effect NoExecute tolerates the taint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// How a toleration's key relates to its value.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TolerationOperator {
    Exists,
    Equal,
}

/// The effect of a taint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// A custom AWS endpoint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// URL of the endpoint, e.g. https://vpce-0123.streams.dynamodb.us-east-1.vpce.amazonaws.com.
    #[schemars(extend("format" = "uri"))]
    pub url: String,
}

/// Where reading starts in shards open at a first start.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingPositionSpec {
    #[serde(rename = "LATEST")]
    Latest,
    #[serde(rename = "TRIM_HORIZON")]
    TrimHorizon,
}

/// Extra CloudEvent attributes (Knative SourceSpec ceOverrides).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.extensions) || self.extensions.all(k, !(k in ['specversion', 'id', 'source', 'type', 'datacontenttype', 'dataschema', 'subject', 'time', 'data', 'data_base64']))").message("ceOverrides.extensions may not override a required CloudEvents attribute (id, source, type, specversion, datacontenttype, dataschema, subject, time)").field_path(".extensions"),
    validation = Rule::new("!has(self.extensions) || self.extensions.all(k, k.matches('^[a-z0-9]{1,20}$'))").message("ceOverrides.extensions names are 1 to 20 lower-case letters or digits").field_path(".extensions")
)]
pub struct CloudEventOverrides {
    /// Extension attributes and their values, added to every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<BTreeMap<String, String>>,
}

/// Knative DeliverySpec.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Retries before an event goes to the dead-letter sink (default 5). Without a dead-letter sink,
    /// failed events are retried for ever so that none is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retry: Option<i32>,
    /// How the wait between retries grows: exponential (default) or linear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<BackoffPolicySpec>,
    /// The base wait between retries, an ISO-8601 duration such as PT0.2S (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ISO8601_DURATION_PATTERN))]
    pub backoff_delay: Option<String>,
    /// How long one delivery attempt may take, an ISO-8601 duration (default PT30S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ISO8601_DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// Where events go that the sink refuses or that exhaust their retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// The most events in flight per shard (default 20). Records of one item key are always
    /// delivered one after another in stream order, records of different items concurrently; 1
    /// delivers strictly one at a time in per-shard order, as TriggerMesh did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: Option<i32>,
    /// The most connections to the sink, and so events in flight, all shards together (default
    /// 128). Shards take turns for them. Each takes about 50 KB of the adapter's memory and a
    /// file descriptor; raise it for a slow sink and a table with many shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_connections: Option<i32>,
    /// The oldest a record may be, an ISO-8601 duration such as PT6H (off by default). A
    /// record older than this when its delivery would start or be retried goes to the
    /// dead-letter sink with reason `expired` (without one, it is logged in full and counted)
    /// and the shard moves on, so a long sink outage does not race the stream's 24-hour trim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ISO8601_DURATION_PATTERN))]
    pub max_record_age: Option<String>,
}

/// How the wait between retries grows.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackoffPolicySpec {
    Exponential,
    Linear,
}

/// Which changes become events.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// The kinds of change to deliver; all when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_names: Option<Vec<EventNameSpec>>,
    /// Lambda FilterCriteria event patterns, each a JSON object or a string holding one, as in
    /// AWS's documentation, e.g. {"dynamodb": {"NewImage": {"status": {"S": ["shipped"]}}}}.
    /// They apply to the record as the AWS payload format presents it (eventName,
    /// dynamodb.Keys, dynamodb.NewImage, dynamodb.OldImage with typed values); a change becomes an
    /// event when any pattern matches it, and eventNames applies too. Operators: exact values,
    /// prefix, suffix, equals-ignore-case, anything-but, numeric, exists and $or. Records filtered
    /// out are passed over and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "filter_patterns")]
    pub patterns: Option<Vec<serde_json::Value>>,
}

/// A kind of change.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventNameSpec {
    Insert,
    Modify,
    Remove,
}

/// The shape of each event's data.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Payload {
    /// AWS (default): the record as the Streams API and Lambda present it. Plain: attribute values as
    /// plain JSON. TriggerMesh: exactly what TriggerMesh's source sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<PayloadFormatSpec>,
}

/// A payload format.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormatSpec {
    #[serde(rename = "AWS")]
    Aws,
    Plain,
    TriggerMesh,
}

/// Reported status of the event source.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AWSDynamoDBSourceStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, SinkProvided and Deployed; Ready is true only when the others are. KeepingUp says
    /// whether the adapter keeps up with the stream (reasons Throttled, TrimmedData, SinkFailing,
    /// FallingBehind); it does not change Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// URI of the sink where events are currently sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "uri"))]
    pub sink_uri: Option<String>,
    /// The last replay the adapter applied (spec.replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay: Option<ReplayStatus>,
    /// How far behind the stream the source is, such as 0s or 3m20s: the age of the newest record
    /// read from the shard that is furthest behind, as the adapter last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
    /// Adapter pods the adapter's Deployment has (the scale subresource's status.replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Adapter pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The label selector of the adapter's pods, such as app.kubernetes.io/instance=orders,... (the
    /// scale subresource's selector, which an autoscaler reads pods' metrics by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The CloudEvent attributes of the events this source emits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ce_attributes: Vec<CeAttribute>,
}

/// A replay the adapter applied.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStatus {
    /// The replay's token.
    pub token: String,
    /// TRIM_HORIZON or the time it replayed from.
    pub from: String,
    /// When the adapter applied it.
    #[schemars(extend("format" = "date-time"))]
    pub applied_at: String,
}

/// The type and source of emitted events.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CeAttribute {
    /// CloudEvent type.
    #[serde(rename = "type")]
    pub kind: String,
    /// CloudEvent source.
    pub source: String,
}

/// One aspect of the source's state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, SinkProvided or Deployed.
    #[serde(rename = "type")]
    pub kind: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// How much a False condition matters: Error, Warning or Info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// A CamelCase reason for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
}

/// A condition's status.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A condition's severity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// At most 10 patterns, Lambda's own limit per event source. Each is any JSON
/// value to the schema: a node may not be an object or a string in a
/// structural schema, and the API server's CEL cannot type an untyped node
/// (it refuses such a rule), so the controller checks each pattern and
/// reports a bad one in the Ready condition.
fn filter_patterns(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 10,
        "items": {
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

fn quantity_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
            "x-kubernetes-int-or-string": true,
        },
    })
}
