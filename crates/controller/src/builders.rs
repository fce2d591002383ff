//! The objects a source becomes, as pure functions of the source and what the
//! controller resolved for it. No I/O: every choice here is unit-tested.

use std::collections::BTreeMap;

use dynamodb_source_api::resource::{
    AWSDynamoDBSource, BackoffPolicySpec, EventNameSpec, PayloadFormatSpec, SecretValueFromField,
    StartingPositionSpec, TaintEffect, TolerationOperator, ValueFromField,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext,
    ServiceAccount, Toleration,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use url::Url;

use crate::names::{self, Names};
use dynamodb_source_api::{adapter_env, secret_url};

/// The adapter's metrics and health port.
pub(crate) const METRICS_PORT: i32 = 9090;
/// The annotation EKS reads to give a ServiceAccount an IAM role.
pub(crate) const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// What the controller resolved before building.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub image: String,
    pub sink: Url,
    pub dead_letter_sink: Option<Url>,
    /// [`secrets_digest`] of the Secret values the adapter reads, if it reads any.
    pub secrets_digest: Option<String>,
}

/// One value of a Secret the source refers to, as read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretValue {
    pub secret: String,
    pub key: String,
    pub value: Vec<u8>,
}

fn owner(source: &AWSDynamoDBSource) -> Option<OwnerReference> {
    source.controller_owner_ref(&())
}

/// Labels that select one source's adapter pods.
pub(crate) fn selector_labels(source: &AWSDynamoDBSource) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_NAME.to_owned(), names::APP_NAME.to_owned()),
        (
            names::LABEL_INSTANCE.to_owned(),
            names::label_value(&source.name_any()),
        ),
    ])
}

/// [`selector_labels`] as a label selector string (`k=v,k=v`): what the
/// Deployment selects, for listing the pods and for `status.selector`.
pub(crate) fn selector(source: &AWSDynamoDBSource) -> String {
    selector_labels(source)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(source: &AWSDynamoDBSource) -> BTreeMap<String, String> {
    let mut labels = selector_labels(source);
    labels.insert(names::LABEL_COMPONENT.to_owned(), "adapter".to_owned());
    labels.insert(
        names::LABEL_MANAGED_BY.to_owned(),
        names::MANAGER.to_owned(),
    );
    labels
}

fn meta(source: &AWSDynamoDBSource, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: source.namespace(),
        labels: Some(labels(source)),
        owner_references: owner(source).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The ServiceAccount the adapter runs as: the one the source names, or ours.
pub(crate) fn service_account_name(source: &AWSDynamoDBSource) -> String {
    source
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.service_account.clone())
        .unwrap_or_else(|| Names::of(&source.name_any()).service_account)
}

/// Our ServiceAccount, annotated for IRSA when the source has a role; `None`
/// when the source names its own ServiceAccount.
pub(crate) fn service_account(source: &AWSDynamoDBSource) -> Option<ServiceAccount> {
    let iam = source.spec.auth.as_ref().and_then(|a| a.iam.as_ref());
    if iam.is_some_and(|iam| iam.service_account.is_some()) {
        return None;
    }
    let mut meta = meta(source, &Names::of(&source.name_any()).service_account);
    if let Some(role) = iam.and_then(|iam| iam.role_arn.clone()) {
        meta.annotations = Some(BTreeMap::from([(IRSA_ANNOTATION.to_owned(), role)]));
    }
    Some(ServiceAccount {
        metadata: meta,
        ..ServiceAccount::default()
    })
}

/// The ConfigMap the adapter keeps its checkpoint in. Built without data: the
/// adapter owns the data, the controller only the object.
pub(crate) fn checkpoint(source: &AWSDynamoDBSource) -> ConfigMap {
    ConfigMap {
        metadata: meta(source, &Names::of(&source.name_any()).checkpoint),
        ..ConfigMap::default()
    }
}

/// Exactly the checkpoint object, and recording Events (on its source: the
/// API cannot narrow `create` by name), in the source's namespace only.
pub(crate) fn role(source: &AWSDynamoDBSource) -> Role {
    let names = Names::of(&source.name_any());
    Role {
        metadata: meta(source, &names.adapter),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".to_owned()]),
                resource_names: Some(vec![names.checkpoint]),
                verbs: ["get", "update", "patch"].map(String::from).to_vec(),
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["events.k8s.io".to_owned()]),
                resources: Some(vec!["events".to_owned()]),
                verbs: ["create", "patch"].map(String::from).to_vec(),
                ..PolicyRule::default()
            },
        ]),
    }
}

/// The shard Leases replicas share the stream by (one per shard, named by
/// the adapter, so not narrowed by name), in the source's
/// namespace only: a RoleBinding to the ClusterRole `cluster_role` that holds
/// them. Granting a Role would need the controller to hold the verbs itself,
/// everywhere; with them, it could take over any component's leader Lease in
/// the cluster. Binding a ClusterRole needs only `bind` on that one role.
pub(crate) fn lease_role_binding(source: &AWSDynamoDBSource, cluster_role: &str) -> RoleBinding {
    let names = Names::of(&source.name_any());
    RoleBinding {
        metadata: meta(source, &names.leases),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: cluster_role.to_owned(),
        },
        subjects: Some(vec![adapter_subject(source)]),
    }
}

pub(crate) fn role_binding(source: &AWSDynamoDBSource) -> RoleBinding {
    let names = Names::of(&source.name_any());
    RoleBinding {
        metadata: meta(source, &names.adapter),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: names.adapter,
        },
        subjects: Some(vec![adapter_subject(source)]),
    }
}

/// The adapter's ServiceAccount, as a binding's subject.
fn adapter_subject(source: &AWSDynamoDBSource) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: service_account_name(source),
        namespace: source.namespace(),
        ..Subject::default()
    }
}

/// On the adapter's pod template: a digest of every Secret value the adapter
/// reads (see [`secrets_digest`]).
pub(crate) const SECRETS_ANNOTATION: &str = "sources.triggermesh.io/secrets-digest";

/// On the adapter's pod template when a sink URL has userinfo: the sinks
/// without it (see `pod_annotations`).
const SINKS_ANNOTATION: &str = "sources.triggermesh.io/sinks";
/// The key of the credentials Secret holding a sink URL that has userinfo.
const SINK_URL_KEY: &str = "sinkURL";
/// The same for the dead-letter sink.
const DEAD_LETTER_SINK_URL_KEY: &str = "deadLetterSinkURL";

/// Literal credential values, and sink URLs carrying userinfo (a password),
/// moved into a Secret owned by the source so the Deployment only ever
/// references them.
pub(crate) fn credentials_secret(
    source: &AWSDynamoDBSource,
    resolved: &Resolved,
) -> Option<Secret> {
    let mut data = BTreeMap::new();
    if let Some(credentials) = source
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.credentials.as_ref())
    {
        if let Some(value) = &credentials.access_key_id.value {
            data.insert("accessKeyID".to_owned(), value.clone());
        }
        if let Some(value) = &credentials.secret_access_key.value {
            data.insert("secretAccessKey".to_owned(), value.clone());
        }
        if let Some(value) = credentials
            .session_token
            .as_ref()
            .and_then(|t| t.value.clone())
        {
            data.insert("sessionToken".to_owned(), value);
        }
    }
    if secret_url::has_userinfo(&resolved.sink) {
        data.insert(SINK_URL_KEY.to_owned(), resolved.sink.to_string());
    }
    if let Some(dls) = resolved
        .dead_letter_sink
        .as_ref()
        .filter(|url| secret_url::has_userinfo(url))
    {
        data.insert(DEAD_LETTER_SINK_URL_KEY.to_owned(), dls.to_string());
    }
    if data.is_empty() {
        return None;
    }
    Some(Secret {
        metadata: meta(source, &Names::of(&source.name_any()).credentials),
        string_data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

/// Where one credential comes from: a key of a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretRef {
    pub name: String,
    pub key: String,
}

fn literal_or_ref(
    source: &AWSDynamoDBSource,
    value: Option<&String>,
    from_secret: Option<&dynamodb_source_api::resource::SecretKeySelector>,
    literal_key: &str,
) -> Option<SecretRef> {
    match (value, from_secret) {
        (_, Some(selector)) => Some(SecretRef {
            name: selector.name.clone(),
            key: selector.key.clone(),
        }),
        (Some(_), None) => Some(SecretRef {
            name: Names::of(&source.name_any()).credentials,
            key: literal_key.to_owned(),
        }),
        (None, None) => None,
    }
}

fn value_ref(source: &AWSDynamoDBSource, field: &ValueFromField, key: &str) -> Option<SecretRef> {
    literal_or_ref(
        source,
        field.value.as_ref(),
        field.value_from_secret.as_ref(),
        key,
    )
}

fn secret_ref(
    source: &AWSDynamoDBSource,
    field: &SecretValueFromField,
    key: &str,
) -> Option<SecretRef> {
    literal_or_ref(
        source,
        field.value.as_ref(),
        field.value_from_secret.as_ref(),
        key,
    )
}

/// Every Secret key the adapter will read, with the variable it fills.
pub(crate) fn credential_refs(source: &AWSDynamoDBSource) -> Vec<(&'static str, SecretRef)> {
    let Some(credentials) = source
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.credentials.as_ref())
    else {
        return Vec::new();
    };
    let mut refs = Vec::new();
    if let Some(r) = value_ref(source, &credentials.access_key_id, "accessKeyID") {
        refs.push((adapter_env::AWS_ACCESS_KEY_ID, r));
    }
    if let Some(r) = secret_ref(source, &credentials.secret_access_key, "secretAccessKey") {
        refs.push((adapter_env::AWS_SECRET_ACCESS_KEY, r));
    }
    if let Some(r) = credentials
        .session_token
        .as_ref()
        .and_then(|t| secret_ref(source, t, "sessionToken"))
    {
        refs.push((adapter_env::AWS_SESSION_TOKEN, r));
    }
    refs
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// A variable holding the pod's own namespace (downward API).
fn namespace_env(name: &str) -> EnvVar {
    field_env(name, "metadata.namespace")
}

/// A variable holding a field of the pod (downward API).
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A sink URL for the adapter: as a value, or, when it has userinfo, by
/// reference to the credentials Secret, so no password is in the Deployment.
fn sink_env(name: &str, url: &Url, names: &Names, key: &str) -> EnvVar {
    if !secret_url::has_userinfo(url) {
        return env(name, url.as_str());
    }
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names.credentials.clone(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The digest the pod template carries of what the adapter reads from
/// Secrets: the referenced keys of the user's Secrets (`referenced`, as read)
/// and the controller's own credentials Secret (literal credentials, sink URLs
/// with userinfo). The kubelet resolves `secretKeyRef` variables only when a
/// container starts, and a change of a Secret does not roll a Deployment, so
/// without it a rotated key would reach the adapter only at its next restart;
/// with it, the controller's next reconciliation rolls the adapter. Hex
/// SHA-256 over the values sorted by Secret and key, every field length
/// prefixed; `None` when the adapter reads no Secret (no annotation at all).
pub(crate) fn secrets_digest(
    source: &AWSDynamoDBSource,
    resolved: &Resolved,
    referenced: &[SecretValue],
) -> Option<String> {
    use sha2::{Digest, Sha256};
    let ours = Names::of(&source.name_any()).credentials;
    let own = credentials_secret(source, resolved)
        .and_then(|secret| secret.string_data)
        .unwrap_or_default();
    let mut values: Vec<(&str, &str, &[u8])> = referenced
        .iter()
        .map(|v| (v.secret.as_str(), v.key.as_str(), v.value.as_slice()))
        .chain(
            own.iter()
                .map(|(key, value)| (ours.as_str(), key.as_str(), value.as_bytes())),
        )
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort();
    values.dedup();
    let mut hasher = Sha256::new();
    for (secret, key, value) in values {
        for field in [secret.as_bytes(), key.as_bytes(), value] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field);
        }
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(7 + 2 * digest.len());
    hex.push_str("sha256:");
    for byte in digest.iter() {
        hex.push_str(&format!("{byte:02x}"));
    }
    Some(hex)
}

/// A sink URL with userinfo reaches the adapter through the credentials
/// Secret, and a change of a Secret does not roll a Deployment: the sinks'
/// addresses without userinfo go on the pod template instead, so a new host
/// or path still rolls the adapter. The digest of the Secret values the
/// adapter reads rolls it when one of them changes.
fn pod_annotations(
    mut annotations: Option<BTreeMap<String, String>>,
    resolved: &Resolved,
) -> Option<BTreeMap<String, String>> {
    if let Some(digest) = &resolved.secrets_digest {
        annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SECRETS_ANNOTATION.to_owned(), digest.clone());
    }
    let sinks: Vec<&Url> = std::iter::once(&resolved.sink)
        .chain(resolved.dead_letter_sink.as_ref())
        .collect();
    if sinks.iter().any(|url| secret_url::has_userinfo(url)) {
        let shown: Vec<String> = sinks
            .iter()
            .map(|url| secret_url::without_userinfo(url).to_string())
            .collect();
        annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SINKS_ANNOTATION.to_owned(), shown.join(" "));
    }
    annotations
}

/// The adapter's environment: exactly the contract `dynamodb-source adapter` reads.
pub(crate) fn adapter_env(source: &AWSDynamoDBSource, resolved: &Resolved) -> Vec<EnvVar> {
    let spec = &source.spec;
    let names = Names::of(&source.name_any());
    let mut vars = vec![
        sink_env(adapter_env::K_SINK, &resolved.sink, &names, SINK_URL_KEY),
        env(adapter_env::ARN, spec.arn.as_str()),
        env(adapter_env::CHECKPOINT_CONFIGMAP, names.checkpoint.clone()),
        namespace_env(adapter_env::CHECKPOINT_NAMESPACE),
        env(adapter_env::METRICS_PORT, METRICS_PORT.to_string()),
        env(adapter_env::LOG_FORMAT, "json"),
        env(adapter_env::SOURCE_NAME, source.name_any()),
        namespace_env(adapter_env::SOURCE_NAMESPACE),
        // Replicas share the shards through Leases owned by the source, each
        // holder named by its pod (not HOSTNAME: with host networking that is
        // the node's name, the same for every pod on it).
        env(adapter_env::SHARD_LEASES, "true"),
        field_env(adapter_env::POD_NAME, "metadata.name"),
    ];
    if let Some(uid) = source.uid() {
        vars.push(env(adapter_env::SOURCE_UID, uid));
    }
    for (name, secret) in credential_refs(source) {
        vars.push(EnvVar {
            name: name.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name,
                    key: secret.key,
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    if let Some(role) = spec
        .auth
        .as_ref()
        .and_then(|a| a.credentials.as_ref())
        .and_then(|c| c.assume_iam_role.clone())
    {
        vars.push(env(adapter_env::AWS_ASSUME_ROLE_ARN, role));
    }
    if let Some(endpoint) = &spec.endpoint {
        vars.push(env(adapter_env::AWS_ENDPOINT_URL, endpoint.url.as_str()));
    }
    if let Some(position) = spec.starting_position {
        vars.push(env(
            adapter_env::STARTING_POSITION,
            match position {
                StartingPositionSpec::Latest => "LATEST",
                StartingPositionSpec::TrimHorizon => "TRIM_HORIZON",
            },
        ));
    }
    if let Some(format) = spec.payload.as_ref().and_then(|p| p.format) {
        vars.push(env(
            adapter_env::PAYLOAD_FORMAT,
            match format {
                PayloadFormatSpec::Aws => "AWS",
                PayloadFormatSpec::Plain => "Plain",
                PayloadFormatSpec::TriggerMesh => "TriggerMesh",
            },
        ));
    }
    if let Some(names) = spec
        .filter
        .as_ref()
        .and_then(|f| f.event_names.as_ref())
        .filter(|n| !n.is_empty())
    {
        let list: Vec<&str> = names
            .iter()
            .map(|n| match n {
                EventNameSpec::Insert => "INSERT",
                EventNameSpec::Modify => "MODIFY",
                EventNameSpec::Remove => "REMOVE",
            })
            .collect();
        vars.push(env(adapter_env::EVENT_NAMES, list.join(",")));
    }
    if let Some(replay) = &spec.replay {
        vars.push(env(adapter_env::REPLAY_FROM, replay.from.as_str()));
        vars.push(env(adapter_env::REPLAY_TOKEN, replay.token.as_str()));
    }
    // As written: the adapter parses them again at start (the reconciler
    // deploys only patterns that parse).
    if let Some(patterns) = spec
        .filter
        .as_ref()
        .and_then(|f| f.patterns.as_ref())
        .filter(|p| !p.is_empty())
    {
        vars.push(env(
            adapter_env::FILTER_PATTERNS,
            serde_json::Value::Array(patterns.clone()).to_string(),
        ));
    }
    if let Some(extensions) = spec
        .ce_overrides
        .as_ref()
        .and_then(|o| o.extensions.as_ref())
        .filter(|e| !e.is_empty())
    {
        let json = serde_json::json!({ "extensions": extensions });
        vars.push(env(adapter_env::K_CE_OVERRIDES, json.to_string()));
    }
    if let Some(delivery) = &spec.delivery {
        if let Some(retry) = delivery.retry {
            vars.push(env(adapter_env::DELIVERY_RETRY, retry.to_string()));
        }
        if let Some(policy) = delivery.backoff_policy {
            vars.push(env(
                adapter_env::DELIVERY_BACKOFF_POLICY,
                match policy {
                    BackoffPolicySpec::Exponential => "exponential",
                    BackoffPolicySpec::Linear => "linear",
                },
            ));
        }
        if let Some(delay) = &delivery.backoff_delay {
            vars.push(env(adapter_env::DELIVERY_BACKOFF_DELAY, delay.as_str()));
        }
        if let Some(age) = &delivery.max_record_age {
            vars.push(env(adapter_env::DELIVERY_MAX_RECORD_AGE, age.as_str()));
        }
        if let Some(timeout) = &delivery.timeout {
            vars.push(env(adapter_env::DELIVERY_TIMEOUT, timeout.as_str()));
        }
        if let Some(parallelism) = delivery.parallelism {
            vars.push(env(
                adapter_env::DELIVERY_PARALLELISM,
                parallelism.to_string(),
            ));
        }
        if let Some(connections) = delivery.max_connections {
            vars.push(env(
                adapter_env::DELIVERY_MAX_CONNECTIONS,
                connections.to_string(),
            ));
        }
    }
    if let Some(dls) = &resolved.dead_letter_sink {
        vars.push(sink_env(
            adapter_env::K_DEAD_LETTER_SINK,
            dls,
            &names,
            DEAD_LETTER_SINK_URL_KEY,
        ));
    }
    if let Some(ca) = &spec.sink.ca_certs {
        vars.push(env(adapter_env::K_CA_CERTS, ca.as_str()));
    }
    // Overrides come last and replace a variable of the same name.
    for var in spec
        .adapter_overrides
        .as_ref()
        .and_then(|o| o.env.as_ref())
        .into_iter()
        .flatten()
    {
        let Some(name) = var.name.clone().filter(|n| !n.is_empty()) else {
            continue;
        };
        vars.retain(|v| v.name != name);
        vars.push(env(&name, var.value.clone().unwrap_or_default()));
    }
    vars
}

fn quantity(value: &serde_json::Value) -> Quantity {
    match value {
        serde_json::Value::String(s) => Quantity(s.clone()),
        other => Quantity(other.to_string()),
    }
}

fn resources(source: &AWSDynamoDBSource) -> ResourceRequirements {
    let defaults = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("25m".to_owned())),
            ("memory".to_owned(), Quantity("32Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("256Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    };
    let Some(custom) = source
        .spec
        .adapter_overrides
        .as_ref()
        .and_then(|o| o.resources.as_ref())
    else {
        return defaults;
    };
    let convert = |map: &Option<BTreeMap<String, serde_json::Value>>| {
        map.as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), quantity(v))).collect())
    };
    ResourceRequirements {
        requests: convert(&custom.requests).or(defaults.requests),
        limits: convert(&custom.limits).or(defaults.limits),
        ..ResourceRequirements::default()
    }
}

fn tolerations(source: &AWSDynamoDBSource) -> Option<Vec<Toleration>> {
    let list = source
        .spec
        .adapter_overrides
        .as_ref()?
        .tolerations
        .as_ref()?;
    Some(
        list.iter()
            .map(|t| Toleration {
                key: t.key.clone(),
                operator: t.operator.map(|o| match o {
                    TolerationOperator::Exists => "Exists".to_owned(),
                    TolerationOperator::Equal => "Equal".to_owned(),
                }),
                value: t.value.clone(),
                effect: t.effect.map(|e| match e {
                    TaintEffect::NoSchedule => "NoSchedule".to_owned(),
                    TaintEffect::PreferNoSchedule => "PreferNoSchedule".to_owned(),
                    TaintEffect::NoExecute => "NoExecute".to_owned(),
                }),
                toleration_seconds: t.toleration_seconds,
            })
            .collect(),
    )
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The adapter Deployment: `spec.replicas` replicas sharing the shards through
/// Leases, which keep one reader per shard; so it rolls one new pod at a time
/// before an old one stops (maxSurge 1, maxUnavailable 0), with no gap.
pub(crate) fn deployment(source: &AWSDynamoDBSource, resolved: &Resolved) -> Deployment {
    let names = Names::of(&source.name_any());
    let overrides = source.spec.adapter_overrides.clone().unwrap_or_default();
    let mut pod_labels = labels(source);
    for (k, v) in overrides.labels.clone().unwrap_or_default() {
        // The selector labels stay ours: overriding them would orphan the pods.
        if !selector_labels(source).contains_key(&k) {
            pod_labels.insert(k, v);
        }
    }
    let affinity: Option<Affinity> = overrides
        .affinity
        .clone()
        .and_then(|value| serde_json::from_value(value).ok());
    let container = Container {
        name: "adapter".to_owned(),
        image: Some(resolved.image.clone()),
        args: Some(vec!["adapter".to_owned()]),
        env: Some(adapter_env(source, resolved)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        resources: Some(resources(source)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: meta(source, &names.adapter),
        spec: DeploymentSpec {
            replicas: Some(source.spec.desired_replicas()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(source)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: pod_annotations(overrides.annotations.clone(), resolved),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(service_account_name(source)),
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    tolerations: tolerations(source),
                    node_selector: overrides.node_selector.clone(),
                    affinity,
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamodb_source_api::resource::AWSDynamoDBSource;

    fn source(spec: serde_json::Value) -> AWSDynamoDBSource {
        let mut object: AWSDynamoDBSource = serde_json::from_value(serde_json::json!({
            "apiVersion": "sources.triggermesh.io/v1alpha1",
            "kind": "AWSDynamoDBSource",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "1234", "generation": 2},
            "spec": spec,
        }))
        .expect("valid source");
        object.metadata.uid = Some("1234".to_owned());
        object
    }

    fn resolved() -> Resolved {
        Resolved {
            image: "registry.example/dynamodb-source:1.0".to_owned(),
            sink: Url::parse("http://display.shop.svc.cluster.local/").expect("url"),
            dead_letter_sink: None,
            secrets_digest: None,
        }
    }

    fn env_of(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
        let pod = deployment.spec.template.spec.as_ref().expect("pod spec");
        pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    fn value(env: &BTreeMap<String, EnvVar>, name: &str) -> Option<String> {
        env.get(name).and_then(|e| e.value.clone())
    }

    const ARN: &str = "arn:aws:dynamodb:us-west-2:123456789012:table/orders";

    #[test]
    fn deployment_carries_the_adapter_env_contract() {
        let source = source(serde_json::json!({
            "arn": ARN,
            "sink": {"uri": "http://display.shop.svc.cluster.local/"},
            "endpoint": {"url": "https://vpce.example"},
            "startingPosition": "TRIM_HORIZON",
            "payload": {"format": "Plain"},
            "replay": {"from": "2024-05-01T12:00:00Z", "token": "fix-1"},
            "filter": {"eventNames": ["INSERT", "REMOVE"], "patterns": [{"eventName": ["INSERT"]}, "{\"dynamodb\":{}}"]},
            "ceOverrides": {"extensions": {"team": "orders"}},
            "delivery": {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT1S", "timeout": "PT5S", "maxRecordAge": "PT6H"},
        }));
        let mut resolved = resolved();
        resolved.dead_letter_sink =
            Some(Url::parse("http://dls.shop.svc.cluster.local/").expect("url"));
        let env = env_of(&deployment(&source, &resolved));
        assert_eq!(
            value(&env, "K_SINK").as_deref(),
            Some("http://display.shop.svc.cluster.local/")
        );
        assert_eq!(value(&env, "ARN").as_deref(), Some(ARN));
        assert_eq!(
            value(&env, "AWS_ENDPOINT_URL").as_deref(),
            Some("https://vpce.example")
        );
        assert_eq!(
            value(&env, "STARTING_POSITION").as_deref(),
            Some("TRIM_HORIZON")
        );
        assert_eq!(value(&env, "PAYLOAD_FORMAT").as_deref(), Some("Plain"));
        assert_eq!(value(&env, "EVENT_NAMES").as_deref(), Some("INSERT,REMOVE"));
        assert_eq!(
            value(&env, "REPLAY_FROM").as_deref(),
            Some("2024-05-01T12:00:00Z")
        );
        assert_eq!(value(&env, "REPLAY_TOKEN").as_deref(), Some("fix-1"));
        assert_eq!(
            value(&env, "FILTER_PATTERNS").as_deref(),
            Some(r#"[{"eventName":["INSERT"]},"{\"dynamodb\":{}}"]"#)
        );
        assert_eq!(
            value(&env, "K_CE_OVERRIDES").as_deref(),
            Some(r#"{"extensions":{"team":"orders"}}"#)
        );
        assert_eq!(value(&env, "DELIVERY_RETRY").as_deref(), Some("3"));
        assert_eq!(
            value(&env, "DELIVERY_BACKOFF_POLICY").as_deref(),
            Some("linear")
        );
        assert_eq!(
            value(&env, "DELIVERY_BACKOFF_DELAY").as_deref(),
            Some("PT1S")
        );
        assert_eq!(value(&env, "DELIVERY_TIMEOUT").as_deref(), Some("PT5S"));
        assert_eq!(
            value(&env, "DELIVERY_MAX_RECORD_AGE").as_deref(),
            Some("PT6H")
        );
        assert_eq!(
            value(&env, "K_DEAD_LETTER_SINK").as_deref(),
            Some("http://dls.shop.svc.cluster.local/")
        );
        assert_eq!(
            value(&env, "CHECKPOINT_CONFIGMAP").as_deref(),
            Some("awsdynamodbsource-orders-checkpoint")
        );
        assert_eq!(value(&env, "SOURCE_NAME").as_deref(), Some("orders"));
        let namespace = env["CHECKPOINT_NAMESPACE"]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref());
        assert_eq!(
            namespace.map(|f| f.field_path.as_str()),
            Some("metadata.namespace")
        );
    }

    #[test]
    fn delivery_parallelism_reaches_the_adapter_only_when_set() {
        let parallelism = |spec: serde_json::Value| {
            let env = env_of(&deployment(&source(spec), &resolved()));
            value(&env, "DELIVERY_PARALLELISM")
        };
        let sink = serde_json::json!({"uri": "http://display.shop.svc.cluster.local/"});
        for (set, expected) in [(1, "1"), (20, "20"), (1000, "1000")] {
            let spec =
                serde_json::json!({"arn": ARN, "sink": sink, "delivery": {"parallelism": set}});
            assert_eq!(parallelism(spec).as_deref(), Some(expected));
        }
        // Unset, the adapter chooses (20): the Deployment does not pin the default.
        let spec = serde_json::json!({"arn": ARN, "sink": sink, "delivery": {"retry": 3}});
        assert_eq!(parallelism(spec), None);
        assert_eq!(
            parallelism(serde_json::json!({"arn": ARN, "sink": sink})),
            None
        );
    }

    #[test]
    fn max_connections_reach_the_adapter_only_when_set() {
        let connections = |spec: serde_json::Value| {
            let env = env_of(&deployment(&source(spec), &resolved()));
            value(&env, "DELIVERY_MAX_CONNECTIONS")
        };
        let sink = serde_json::json!({"uri": "http://display.shop.svc.cluster.local/"});
        let spec =
            serde_json::json!({"arn": ARN, "sink": sink, "delivery": {"maxConnections": 1000}});
        assert_eq!(connections(spec).as_deref(), Some("1000"));
        assert_eq!(
            connections(serde_json::json!({"arn": ARN, "sink": sink})),
            None
        );
    }

    #[test]
    fn a_sink_password_reaches_the_adapter_only_by_secret_reference() {
        let source = source(serde_json::json!({"arn": ARN, "sink": {"uri": "http://x/"}}));
        let with_userinfo = Resolved {
            sink: Url::parse("https://hook:s3cret@sink.example/in").expect("url"),
            dead_letter_sink: Some(Url::parse("https://dlq:d34d@dls.example/").expect("url")),
            ..resolved()
        };
        let built = deployment(&source, &with_userinfo);
        let text = serde_json::to_string(&built).expect("serializes");
        assert!(!text.contains("s3cret") && !text.contains("d34d"), "{text}");
        let env = env_of(&built);
        for (name, key) in [
            ("K_SINK", "sinkURL"),
            ("K_DEAD_LETTER_SINK", "deadLetterSinkURL"),
        ] {
            let by_ref = env[name]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| (s.name.as_str(), s.key.as_str()));
            assert_eq!(
                by_ref,
                Some(("awsdynamodbsource-orders-credentials", key)),
                "{name}"
            );
        }
        let annotations = built
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            annotations.get(SINKS_ANNOTATION).map(String::as_str),
            Some("https://sink.example/in https://dls.example/"),
            "a new host rolls the adapter"
        );
        let data = credentials_secret(&source, &with_userinfo)
            .and_then(|s| s.string_data)
            .expect("a Secret for the sink URLs");
        assert_eq!(
            data.get("sinkURL").map(String::as_str),
            Some("https://hook:s3cret@sink.example/in")
        );
        assert_eq!(
            data.get("deadLetterSinkURL").map(String::as_str),
            Some("https://dlq:d34d@dls.example/")
        );

        // Without userinfo: a plain value, no Secret, no annotation.
        let plain = deployment_env_value(&source);
        assert_eq!(
            plain.as_deref(),
            Some("http://display.shop.svc.cluster.local/")
        );
        assert!(credentials_secret(&source, &resolved()).is_none());
    }

    fn deployment_env_value(source: &AWSDynamoDBSource) -> Option<String> {
        value(&env_of(&deployment(source, &resolved())), "K_SINK")
    }

    #[test]
    fn credentials_reach_the_adapter_only_by_secret_reference() {
        let source = source(serde_json::json!({
            "arn": ARN,
            "sink": {"uri": "http://x/"},
            "auth": {"credentials": {
                "accessKeyID": {"value": "AKIAEXAMPLE"},
                "secretAccessKey": {"valueFromSecret": {"name": "aws", "key": "secret"}},
                "assumeIamRole": "arn:aws:iam::123456789012:role/reader",
            }},
        }));
        let deployment = deployment(&source, &resolved());
        let text = serde_json::to_string(&deployment).expect("serializes");
        assert!(
            !text.contains("AKIAEXAMPLE"),
            "a literal credential leaked into the Deployment"
        );
        let env = env_of(&deployment);
        let key_ref = |name: &str| {
            env[name]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| (s.name.clone(), s.key.clone()))
        };
        assert_eq!(
            key_ref("AWS_ACCESS_KEY_ID"),
            Some((
                "awsdynamodbsource-orders-credentials".to_owned(),
                "accessKeyID".to_owned()
            ))
        );
        assert_eq!(
            key_ref("AWS_SECRET_ACCESS_KEY"),
            Some(("aws".to_owned(), "secret".to_owned()))
        );
        assert_eq!(
            value(&env, "AWS_ASSUME_ROLE_ARN").as_deref(),
            Some("arn:aws:iam::123456789012:role/reader")
        );
        let secret =
            credentials_secret(&source, &resolved()).expect("a Secret for the literal value");
        assert_eq!(
            secret
                .string_data
                .expect("data")
                .get("accessKeyID")
                .map(String::as_str),
            Some("AKIAEXAMPLE")
        );
    }

    #[test]
    fn deployment_is_hardened_one_replica_by_default_rolling_without_a_gap_and_owned() {
        let source = source(serde_json::json!({"arn": ARN, "sink": {"uri": "http://x/"}}));
        let deployment = deployment(&source, &resolved());
        assert_eq!(
            deployment.metadata.name.as_deref(),
            Some("awsdynamodbsource-orders")
        );
        let owner = &deployment.metadata.owner_references.clone().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("AWSDynamoDBSource", "orders", Some(true))
        );
        let spec = &deployment.spec;
        assert_eq!(spec.replicas, Some(1));
        let strategy = spec.strategy.as_ref().expect("a strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
        assert_eq!(
            (rolling.max_surge.as_ref(), rolling.max_unavailable.as_ref()),
            (Some(&IntOrString::Int(1)), Some(&IntOrString::Int(0))),
            "a new pod starts before an old one stops"
        );
        let pod = spec.template.spec.as_ref().expect("pod");
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example/dynamodb-source:1.0")
        );
        assert_eq!(container.args.as_deref(), Some(&["adapter".to_owned()][..]));
        let security = container
            .security_context
            .as_ref()
            .expect("security context");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(
            security.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert!(container.liveness_probe.is_some() && container.readiness_probe.is_some());
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("awsdynamodbsource-orders")
        );
    }

    #[test]
    fn replicas_follow_the_spec_and_zero_suspends() {
        let replicas =
            |spec: serde_json::Value| deployment(&source(spec), &resolved()).spec.replicas;
        let sink = serde_json::json!({"uri": "http://x/"});
        assert_eq!(
            replicas(serde_json::json!({"arn": ARN, "sink": sink})),
            Some(1)
        );
        for n in [0, 3] {
            assert_eq!(
                replicas(serde_json::json!({"arn": ARN, "sink": sink, "replicas": n})),
                Some(n)
            );
        }
        assert_eq!(
            replicas(serde_json::json!({"arn": ARN, "sink": sink, "replicas": -1})),
            Some(0),
            "refused at admission; never a negative Deployment"
        );
    }

    #[test]
    fn replicas_share_shards_through_leases_named_by_their_pod() {
        let source = source(serde_json::json!({"arn": ARN, "sink": {"uri": "http://x/"}}));
        let env = env_of(&deployment(&source, &resolved()));
        assert_eq!(value(&env, "SHARD_LEASES").as_deref(), Some("true"));
        assert_eq!(value(&env, "SOURCE_UID").as_deref(), Some("1234"));
        let pod_name = env["POD_NAME"]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref());
        assert_eq!(
            pod_name.map(|f| f.field_path.as_str()),
            Some("metadata.name"),
            "the pod's name, not HOSTNAME (the node's under host networking)"
        );
        assert_eq!(value(&env, "SOURCE_NAME").as_deref(), Some("orders"));
        assert!(env.contains_key("SOURCE_NAMESPACE"));
    }

    #[test]
    fn the_selector_string_selects_what_the_deployment_selects() {
        let source = source(serde_json::json!({"arn": ARN, "sink": {"uri": "http://x/"}}));
        let built = deployment(&source, &resolved());
        let parsed: BTreeMap<String, String> = selector(&source)
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(Some(parsed.clone()), built.spec.selector.match_labels);
        let pod_labels = built
            .spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("pod labels");
        assert!(parsed.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    }

    #[test]
    fn adapter_overrides_are_applied_last() {
        let source = source(serde_json::json!({
            "arn": ARN,
            "sink": {"uri": "http://x/"},
            "adapterOverrides": {
                "labels": {"team": "orders", "app.kubernetes.io/instance": "hijack"},
                "annotations": {"sidecar.istio.io/inject": "false"},
                "env": [{"name": "LOG_FORMAT", "value": "text"}, {"name": "RUST_LOG", "value": "debug"}],
                "resources": {"limits": {"memory": "64Mi", "cpu": 1}},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "events", "effect": "NoSchedule"}],
                "nodeSelector": {"pool": "events"},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            },
        }));
        let deployment = deployment(&source, &resolved());
        let template = &deployment.spec.template;
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert_eq!(labels.get("team").map(String::as_str), Some("orders"));
        assert_eq!(
            labels.get("app.kubernetes.io/instance").map(String::as_str),
            Some("orders"),
            "selector labels stay"
        );
        let env = env_of(&deployment);
        assert_eq!(value(&env, "LOG_FORMAT").as_deref(), Some("text"));
        assert_eq!(value(&env, "RUST_LOG").as_deref(), Some("debug"));
        let pod = template.spec.as_ref().expect("pod");
        let limits = pod.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("limits");
        assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("64Mi"));
        assert_eq!(limits.get("cpu").map(|q| q.0.as_str()), Some("1"));
        assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            pod.node_selector
                .as_ref()
                .and_then(|n| n.get("pool"))
                .map(String::as_str),
            Some("events")
        );
        assert!(
            pod.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some()
        );
    }

    #[test]
    fn irsa_gets_an_annotated_service_account_and_a_named_one_is_used_as_is() {
        let irsa = source(serde_json::json!({
            "arn": ARN, "sink": {"uri": "http://x/"},
            "auth": {"iam": {"roleArn": "arn:aws:iam::123456789012:role/stream-reader"}},
        }));
        let account = service_account(&irsa).expect("ours");
        assert_eq!(
            account
                .metadata
                .annotations
                .expect("annotated")
                .get(IRSA_ANNOTATION)
                .map(String::as_str),
            Some("arn:aws:iam::123456789012:role/stream-reader")
        );
        let named = source(serde_json::json!({
            "arn": ARN, "sink": {"uri": "http://x/"},
            "auth": {"iam": {"serviceAccount": "shared-reader"}},
        }));
        assert!(service_account(&named).is_none());
        assert_eq!(service_account_name(&named), "shared-reader");
        let subjects = role_binding(&named).subjects.expect("subjects");
        assert_eq!(subjects[0].name, "shared-reader");
    }

    #[test]
    fn the_role_grants_only_the_checkpoint_and_events_and_a_binding_the_leases() {
        let source = source(serde_json::json!({"arn": ARN, "sink": {"uri": "http://x/"}}));
        let built = role(&source);
        assert_eq!(built.metadata.namespace.as_deref(), Some("shop"));
        let rules = built.rules.expect("rules");
        assert_eq!(rules.len(), 2, "no Lease verbs in the Role: {rules:?}");
        assert_eq!(
            rules[1].resources.as_deref(),
            Some(&["events".to_owned()][..])
        );
        assert_eq!(rules[1].verbs, vec!["create", "patch"]);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["configmaps".to_owned()][..])
        );
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["awsdynamodbsource-orders-checkpoint".to_owned()][..])
        );
        assert_eq!(rules[0].verbs, vec!["get", "update", "patch"]);

        let leases = lease_role_binding(&source, "team-adapter-leases");
        assert_eq!(
            leases.metadata.name.as_deref(),
            Some("awsdynamodbsource-orders-leases")
        );
        assert_eq!(leases.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(leases.role_ref.kind, "ClusterRole");
        assert_eq!(leases.role_ref.name, "team-adapter-leases");
        let subjects = leases.subjects.expect("subjects");
        assert_eq!(subjects, role_binding(&source).subjects.expect("subjects"));
        assert_eq!(subjects[0].name, "awsdynamodbsource-orders");
    }
    fn template_annotation(deployment: &Deployment, name: &str) -> Option<String> {
        deployment
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(name).cloned())
    }

    #[test]
    fn a_changed_secret_value_changes_the_pod_template_and_nothing_else_does() {
        let referencing = source(serde_json::json!({
            "arn": "arn:aws:dynamodb:us-west-2:123456789012:table/orders",
            "sink": {"uri": "http://display.shop.svc.cluster.local/"},
            "auth": {"credentials": {
                "accessKeyID": {"valueFromSecret": {"name": "aws", "key": "id"}},
                "secretAccessKey": {"valueFromSecret": {"name": "aws", "key": "secret"}},
            }},
        }));
        let value = |key: &str, value: &str| SecretValue {
            secret: "aws".to_owned(),
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
        };
        let built = |values: &[SecretValue]| {
            let mut resolved = resolved();
            resolved.secrets_digest = secrets_digest(&referencing, &resolved, values);
            deployment(&referencing, &resolved)
        };
        let before = built(&[value("id", "AKIA1"), value("secret", "s1")]);
        let digest = template_annotation(&before, SECRETS_ANNOTATION).expect("a digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        assert!(!digest.contains("AKIA1") && !digest.contains("s1"));

        // The same values in another order: the same template (no needless roll).
        let same = built(&[value("secret", "s1"), value("id", "AKIA1")]);
        assert_eq!(before.spec, same.spec);
        // A rotated key: another digest, so the Deployment rolls.
        let rotated = built(&[value("id", "AKIA2"), value("secret", "s2")]);
        assert_ne!(
            template_annotation(&rotated, SECRETS_ANNOTATION),
            Some(digest.clone())
        );
        // Fields cannot run into each other.
        let shifted = built(&[value("id", "AKIA1s"), value("secret", "1")]);
        assert_ne!(
            template_annotation(&shifted, SECRETS_ANNOTATION),
            Some(digest)
        );

        // No Secret read: no annotation at all.
        let plain = source_without_auth();
        let resolved = resolved();
        assert_eq!(secrets_digest(&plain, &resolved, &[]), None);
        assert_eq!(
            template_annotation(&deployment(&plain, &resolved), SECRETS_ANNOTATION),
            None
        );
        // Literal credentials (moved into the controller's own Secret) count too.
        let literal = source(serde_json::json!({
            "arn": "arn:aws:dynamodb:us-west-2:123456789012:table/orders",
            "sink": {"uri": "http://display.shop.svc.cluster.local/"},
            "auth": {"credentials": {
                "accessKeyID": {"value": "AKIA1"},
                "secretAccessKey": {"value": "s1"},
            }},
        }));
        let first = secrets_digest(&literal, &resolved, &[]);
        assert!(first.is_some());
        let mut changed = literal.clone();
        changed
            .spec
            .auth
            .as_mut()
            .and_then(|a| a.credentials.as_mut())
            .expect("credentials")
            .secret_access_key
            .value = Some("s2".to_owned());
        assert_ne!(secrets_digest(&changed, &resolved, &[]), first);
    }

    fn source_without_auth() -> AWSDynamoDBSource {
        source(serde_json::json!({
            "arn": "arn:aws:dynamodb:us-west-2:123456789012:table/orders",
            "sink": {"uri": "http://display.shop.svc.cluster.local/"},
        }))
    }
}
