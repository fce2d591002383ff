//! One reconciliation: check what the spec refers to, apply the adapter's
//! objects with server-side apply, observe the Deployment, write the status.

use std::sync::Arc;
use std::time::Duration;

use dynamodb_source_api::resource::{AWSDynamoDBSource, AWSDynamoDBSourceStatus, ConditionStatus};
use dynamodb_source_api::summary::{self, StreamSummary};
use dynamodb_source_api::{FilterPatterns, SourceArn};
use dynamodb_source_api::{Report, secret_url};
use dynamodb_source_backoff::{Backoff, Growth, Jitter};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, instrument, warn};

use crate::builders::{self, Resolved, SecretValue};
use crate::destination;
use crate::metrics::ControllerMetrics;
use crate::names::{self, Names};
use crate::status::{self, AdapterObservation, Observations, Problem, Replicas, SinkObservation};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("applying {kind} {namespace}/{name}")]
    Apply {
        kind: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("writing the status of {namespace}/{name}")]
    Status {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("reading {what}")]
    Read { what: String, source: kube::Error },
}

impl Error {
    /// A short label for metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply",
            Error::Status { .. } => "status",
            Error::Read { .. } => "read",
        }
    }
}

/// What every reconciliation shares.
pub(crate) struct Context {
    pub client: Client,
    /// Consecutive failures per source, for backoff.
    pub failures: std::sync::Mutex<std::collections::HashMap<ObjectRef<AWSDynamoDBSource>, u32>>,
    pub adapter_image: String,
    /// The ClusterRole of the shard Lease verbs, bound in each source's namespace.
    pub adapter_leases_role: String,
    pub recorder: Recorder,
    pub metrics: ControllerMetrics,
}

/// How soon a source is looked at again: soon while it waits for something
/// the controller does not watch (a sink), rarely otherwise.
const REQUEUE_NOT_READY: Duration = Duration::from_secs(15);
/// A deployed source is looked at again this often even when nothing it
/// watches changed, so that `status.lag` and `KeepingUp` follow the adapter's
/// summary (written every 30 s by default) within a minute.
const REQUEUE_READY: Duration = Duration::from_secs(60);

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(names::MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|error| Error::Apply {
        kind: std::any::type_name::<K>()
            .rsplit("::")
            .next()
            .unwrap_or("object"),
        namespace: namespace.to_owned(),
        name,
        source: error,
    })
}

/// The Secrets and keys the spec names must exist before the adapter can start;
/// their values, for the digest that rolls the adapter when one changes.
async fn check_secrets(
    client: &Client,
    source: &AWSDynamoDBSource,
    namespace: &str,
) -> Result<Result<Vec<SecretValue>, Problem>, Error> {
    let ours = Names::of(&source.name_any()).credentials;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut values = Vec::new();
    for (_, reference) in builders::credential_refs(source) {
        if reference.name == ours {
            continue;
        }
        let secret = secrets
            .get_opt(&reference.name)
            .await
            .map_err(|error| Error::Read {
                what: format!("Secret {namespace}/{}", reference.name),
                source: error,
            })?;
        let Some(secret) = secret else {
            return Ok(Err(Problem::new(
                "SecretNotFound",
                format!("Secret {namespace}/{} does not exist", reference.name),
            )));
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .map(|v| v.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&reference.key))
                    .map(|v| v.as_bytes().to_vec())
            });
        let Some(value) = value else {
            return Ok(Err(Problem::new(
                "SecretKeyNotFound",
                format!(
                    "Secret {namespace}/{} has no key {:?}",
                    reference.name, reference.key
                ),
            )));
        };
        values.push(SecretValue {
            secret: reference.name,
            key: reference.key,
            value,
        });
    }
    Ok(Ok(values))
}

/// A filter pattern the adapter could not parse, as a problem naming the
/// pattern and the path of its bad operator: the admission webhook refuses
/// such a source, but not one stored before it or where it is not installed,
/// so this keeps a source with a bad one from being deployed into an adapter
/// that would exit at start.
fn check_filter_patterns(source: &AWSDynamoDBSource) -> Option<Problem> {
    let patterns = source.spec.filter.as_ref()?.patterns.as_ref()?;
    FilterPatterns::parse(patterns).err().map(|e| {
        Problem::new(
            "InvalidFilterPattern",
            format!("spec.filter.patterns[{}]: {}", e.index, Report(&e)),
        )
    })
}

/// Whether the Deployment is available and, if not, why (pods' waiting reasons first).
async fn observe(
    client: &Client,
    source: &AWSDynamoDBSource,
    namespace: &str,
) -> Result<AdapterObservation, Error> {
    let name = Names::of(&source.name_any()).adapter;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments
        .get_opt(&name)
        .await
        .map_err(|error| Error::Read {
            what: format!("Deployment {namespace}/{name}"),
            source: error,
        })?;
    let deployment_status = deployment.as_ref().and_then(|d| d.status.as_ref());
    let conditions = deployment_status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let replicas = Replicas {
        current: deployment_status.and_then(|s| s.replicas).unwrap_or(0),
        ready: deployment_status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    };
    // Its status describes the spec just applied only once the Deployment
    // controller has seen it: a scale-up from 0 is not Available yet.
    let current = deployment.as_ref().is_some_and(|d| {
        deployment_status.and_then(|s| s.observed_generation) >= d.metadata.generation
    });
    let available = current
        && conditions.iter().any(|c| {
            c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
        });
    if available {
        return Ok(AdapterObservation::Deployed {
            available,
            waiting: None,
            replicas,
        });
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = builders::selector(source);
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|error| Error::Read {
            what: format!("pods of {namespace}/{name}"),
            source: error,
        })?;
    let waiting = pods
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.clone()?;
            Some(Problem::new(
                reason,
                format!(
                    "{}: {}",
                    c.name,
                    waiting.message.clone().unwrap_or_default()
                ),
            ))
        })
        .or_else(|| {
            conditions
                .iter()
                .find(|c| matches!(c.type_.as_deref(), Some("Progressing" | "ReplicaFailure")))
                .map(|c| {
                    Problem::new(
                        "AdapterUnavailable",
                        c.message
                            .clone()
                            .unwrap_or_else(|| "the adapter is starting".to_owned()),
                    )
                })
        });
    Ok(AdapterObservation::Deployed {
        available,
        waiting,
        replicas,
    })
}

async fn apply_objects(
    ctx: &Context,
    source: &AWSDynamoDBSource,
    namespace: &str,
    resolved: &Resolved,
) -> Result<ConfigMap, Error> {
    let client = &ctx.client;
    if let Some(secret) = builders::credentials_secret(source, resolved) {
        apply::<Secret>(client, namespace, &secret).await?;
    }
    if let Some(account) = builders::service_account(source) {
        apply::<ServiceAccount>(client, namespace, &account).await?;
    }
    let checkpoint = apply::<ConfigMap>(client, namespace, &builders::checkpoint(source)).await?;
    // The Lease binding first: an adapter Role from before it held the Lease
    // verbs, and running adapters keep them while that Role loses them.
    let leases = builders::lease_role_binding(source, &ctx.adapter_leases_role);
    apply::<RoleBinding>(client, namespace, &leases).await?;
    apply::<Role>(client, namespace, &builders::role(source)).await?;
    apply::<RoleBinding>(client, namespace, &builders::role_binding(source)).await?;
    apply::<Deployment>(client, namespace, &builders::deployment(source, resolved)).await?;
    Ok(checkpoint)
}

/// The adapter's summary in its checkpoint object (as the apply returned it,
/// so reading it costs no request): the one of a single adapter and those of
/// each replica, combined (`StreamSummary::combine`). One that cannot be read
/// counts as none.
fn summary_of(checkpoint: &ConfigMap, now: i64) -> Option<StreamSummary> {
    let summaries = checkpoint
        .data
        .iter()
        .flatten()
        .filter(|(key, _)| summary::is_summary_key(key))
        .filter_map(|(key, text)| {
            serde_json::from_str(text)
                .inspect_err(|e| {
                    warn!(key, error = %e, "an adapter summary is not readable; it is left out of status.lag");
                })
                .ok()
        });
    StreamSummary::combine(summaries, now)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One pass over a source: resolve, apply, observe, report. Its span names
/// the source and the generation reconciled, for every line logged within.
#[instrument(skip_all, fields(
    source = %source.name_any(),
    namespace = source.namespace().as_deref().unwrap_or("default"),
    generation = source.metadata.generation.unwrap_or_default(),
))]
pub(crate) async fn reconcile(
    source: Arc<AWSDynamoDBSource>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = source.namespace().unwrap_or_else(|| "default".to_owned());
    let name = source.name_any();
    let client = &ctx.client;

    let sink = destination::resolve(client, &namespace, &source.spec.sink).await;
    let table_source = match source.spec.arn.parse::<SourceArn>() {
        Ok(arn) => Ok(arn.table().to_string()),
        Err(e) => Err(Problem::new("InvalidARN", format!("spec.arn: {e}"))),
    };
    let dead_letter = match source
        .spec
        .delivery
        .as_ref()
        .and_then(|d| d.dead_letter_sink.as_ref())
    {
        Some(destination) => destination::resolve(client, &namespace, destination)
            .await
            .map(Some)
            .map_err(|p| {
                Problem::new(
                    format!("DeadLetter{}", p.reason),
                    format!("delivery.deadLetterSink: {}", p.message),
                )
            }),
        None => Ok(None),
    };
    let secrets = check_secrets(client, &source, &namespace).await?;
    let patterns = check_filter_patterns(&source);

    let mut summary = None;
    let adapter = match (&table_source, &sink, &dead_letter, secrets, patterns) {
        (Err(problem), ..) => AdapterObservation::NotDeployed(problem.clone()),
        (_, _, _, _, Some(problem)) => AdapterObservation::NotDeployed(problem),
        (_, _, _, Err(problem), _) => AdapterObservation::NotDeployed(problem),
        (_, Err(problem), ..) => AdapterObservation::NotDeployed(problem.clone()),
        (_, _, Err(problem), ..) => AdapterObservation::NotDeployed(problem.clone()),
        (Ok(_), Ok(sink_url), Ok(dls), Ok(secret_values), None) => {
            let mut resolved = Resolved {
                image: ctx.adapter_image.clone(),
                sink: sink_url.clone(),
                dead_letter_sink: dls.clone(),
                secrets_digest: None,
            };
            resolved.secrets_digest = builders::secrets_digest(&source, &resolved, &secret_values);
            let checkpoint = apply_objects(&ctx, &source, &namespace, &resolved).await?;
            summary = summary_of(&checkpoint, chrono::Utc::now().timestamp());
            observe(client, &source, &namespace).await?
        }
    };
    let observations = Observations {
        generation: source.metadata.generation,
        source: table_source
            .clone()
            .unwrap_or_else(|_| source.spec.arn.clone()),
        sink: match &sink {
            // Status and Events show the sink without its userinfo.
            Ok(url) => SinkObservation::Resolved(secret_url::without_userinfo(url).to_string()),
            Err(problem) => SinkObservation::Failed(problem.clone()),
        },
        adapter,
        desired_replicas: source.spec.desired_replicas(),
        selector: builders::selector(&source),
        summary,
        now: chrono::Utc::now().timestamp(),
    };
    let previous = source.status.as_ref();
    let status = status::compute(&observations, previous, &now());
    write_status(&ctx, &source, &namespace, &name, &status).await?;
    announce(&ctx, &source, previous, &status).await;

    // Changes to the Deployment and to the Secrets the source names wake the
    // controller through its watches; what it cannot watch (sinks of any kind)
    // is polled while it is wrong (and Secrets too: a missing one may have no
    // event to wake it if the watch restarts).
    let waits_on_unwatched = match &observations.adapter {
        AdapterObservation::NotDeployed(_) => true,
        AdapterObservation::Deployed { .. } => {
            matches!(observations.sink, SinkObservation::Failed(_))
        }
    };
    ctx.failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&ObjectRef::from_obj(&*source));
    Ok(Action::requeue(if waits_on_unwatched {
        REQUEUE_NOT_READY
    } else {
        REQUEUE_READY
    }))
}

async fn write_status(
    ctx: &Context,
    source: &AWSDynamoDBSource,
    namespace: &str,
    name: &str,
    status: &AWSDynamoDBSourceStatus,
) -> Result<(), Error> {
    if source.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<AWSDynamoDBSource> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": AWSDynamoDBSource::api_version(&()),
        "kind": AWSDynamoDBSource::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(names::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|error| Error::Status {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: error,
    })
}

/// A Kubernetes Event on the source when Ready changes.
async fn announce(
    ctx: &Context,
    source: &AWSDynamoDBSource,
    previous: Option<&AWSDynamoDBSourceStatus>,
    status: &AWSDynamoDBSourceStatus,
) {
    let before = previous
        .and_then(status::ready)
        .map(|c| (c.status, c.reason.clone()));
    let Some(after) = status::ready(status) else {
        return;
    };
    if before == Some((after.status, after.reason.clone())) {
        return;
    }
    let ready = after.status == ConditionStatus::True;
    let event = Event {
        type_: if ready {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: after.reason.clone().unwrap_or_else(|| "Unknown".to_owned()),
        note: after.message.clone(),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if ready {
        info!("source is ready");
    } else {
        warn!(reason = ?after.reason, message = ?after.message, "source is not ready");
    }
    if let Err(e) = ctx.recorder.publish(&event, &source.object_ref(&())).await {
        warn!(error = %e, "publishing a Kubernetes Event failed");
    }
}

/// The wait before retrying a source that failed `failures` times in a row:
/// 1 s doubling to 5 minutes, so a broken API server is not hammered.
pub(crate) fn backoff(failures: u32) -> Duration {
    Backoff::new(
        Growth::Exponential,
        Duration::from_secs(1),
        Duration::from_secs(300),
        Jitter::None,
    )
    .nominal(failures)
}

/// Errors are retried with exponential backoff per source; the next reconcile
/// starts from scratch.
pub(crate) fn error_policy(
    source: Arc<AWSDynamoDBSource>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let failures = {
        let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(ObjectRef::from_obj(&*source)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let wait = backoff(failures);
    warn!(source = %source.name_any(), error = %Report(error), failures, retry_in = ?wait, "reconcile failed");
    ctx.metrics.failure(error.kind());
    Action::requeue(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_exponentially_to_five_minutes() {
        let waits: Vec<u64> = (1..=4).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8]);
        assert_eq!(backoff(50), Duration::from_secs(300));
    }
}
