//! The in-cluster checkpoint store: one ConfigMap per source, created and owned
//! by the controller, with the checkpoint document under the data key
//! [`DATA_KEY`] and the adapter's summary for the controller under
//! [`SUMMARY_KEY`] (a key of its own: the checkpoint's format refuses
//! unknown fields, and older adapters read only their key).
//!
//! The adapter never creates, lists or deletes the ConfigMap: its Role grants
//! only `get`, `update` and `patch` on that one name (`resourceNames`). It reads
//! the object with GET and writes it with PUT (replace) carrying the
//! `resourceVersion` it last saw, so a write based on a stale read is refused
//! (409 Conflict) instead of silently undoing someone else's change. Only the
//! entry being saved is changed by a save: the object's other data keys,
//! labels, annotations and owner references are written back as they were read.
//! The controller must therefore not apply a value for [`DATA_KEY`] itself
//! (with server-side apply it owns only the fields it sets, so it does not).
//!
//! # Conflicts
//!
//! With one adapter per source (`SHARD_LEASES` off) a 409 means something
//! else changed the object since we read it: the controller re-applying
//! labels or owner references, a person editing it, or an earlier save of ours
//! whose response was lost. A 409 re-reads the object (remembering its new
//! `resourceVersion` and the other fields as they now are). A single
//! adapter's checkpoint save then returns [`CheckpointError::Conflict`]; the
//! progress write loop retries with its newest in-memory progress, and that
//! save succeeds: it keeps the other writer's change (we only touch our key)
//! and stores our checkpoint, which only this adapter knows and which only
//! moves forward.
//!
//! With shard leases the replicas of a source all write this object, so a
//! write is tried again on the re-read object at once, up to
//! [`MERGE_ATTEMPTS`] times: a summary replaces only its own key, and the
//! checkpoint is merged into the stored document (each replica writes the
//! shards it holds, [`dynamodb_source_stream::merge`]), so nobody's progress
//! is undone.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use dynamodb_source_api::summary::{REPLICA_SUMMARY_PREFIX, SUMMARY_KEY, StreamSummary};
use dynamodb_source_stream::ShardId;
use dynamodb_source_stream::checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore};
use dynamodb_source_stream::merge::{self, Merge, Merged};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tokio::sync::Mutex;

/// The data key holding the checkpoint document (JSON).
pub const DATA_KEY: &str = "checkpoint.json";

/// The field manager of the adapter's writes (visible in `managedFields`).
pub(crate) const FIELD_MANAGER: &str = "dynamodb-source-adapter";

/// Keeps progress in a ConfigMap, with optimistic concurrency on its
/// `resourceVersion` (see the module documentation).
pub struct ConfigMapCheckpointStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    /// The object as last read or written: the base of the next save, so the
    /// PUT carries its `resourceVersion` and keeps everything but our key.
    /// `None` before the first read, or after a read that failed.
    last: Mutex<Option<ConfigMap>>,
    /// Where the summary goes: [`SUMMARY_KEY`], or with shard leases this
    /// replica's own key ([`dynamodb_source_api::summary::replica_summary_key`]).
    summary_key: String,
}

impl std::fmt::Debug for ConfigMapCheckpointStore {
    // By hand: the client (and its credentials) stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapCheckpointStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the store was doing when the API server refused, for error messages.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Get,
    Update,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Update => "update",
        }
    }
}

impl ConfigMapCheckpointStore {
    /// A store for the ConfigMap `namespace/name`, talking through `client`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        ConfigMapCheckpointStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            last: Mutex::new(None),
            summary_key: SUMMARY_KEY.to_owned(),
        }
    }

    /// Writes the summary under `key` instead of [`SUMMARY_KEY`]; summaries
    /// of other replicas not written for an hour are removed then.
    pub fn with_summary_key(mut self, key: String) -> Self {
        self.summary_key = key;
        self
    }

    /// A store with the default client: the pod's ServiceAccount in a cluster,
    /// otherwise `KUBECONFIG` or `~/.kube/config`.
    pub async fn connect(namespace: &str, name: &str) -> Result<Self, CheckpointError> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| CheckpointError::Backend {
                location: location(namespace, name),
                reason: format!(
                    "no Kubernetes client ({}): in a pod the ServiceAccount token must be mounted; \
                     outside a cluster set KUBECONFIG",
                    one_line(&e.to_string())
                ),
            })?;
        Ok(Self::new(client, namespace, name))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `resourceVersion` the next save will be conditional on, if the
    /// object was read.
    pub async fn resource_version(&self) -> Option<String> {
        self.last
            .lock()
            .await
            .as_ref()
            .and_then(|object| object.metadata.resource_version.clone())
    }

    async fn get(&self) -> Result<ConfigMap, CheckpointError> {
        self.api
            .get(&self.name)
            .await
            .map_err(|e| self.api_error(Verb::Get, &e))
    }

    fn api_error(&self, verb: Verb, error: &kube::Error) -> CheckpointError {
        CheckpointError::Backend {
            location: self.location(),
            reason: self.api_reason(verb, error),
        }
    }

    /// Why a request failed, on one line. Only the API server's status message
    /// is quoted: it names the user (the ServiceAccount), never a token.
    fn api_reason(&self, verb: Verb, error: &kube::Error) -> String {
        match error {
            kube::Error::Api(status) => match status.code {
                404 => "the ConfigMap does not exist: the controller creates it together with \
                        the adapter's Deployment (is the controller running, or was the source deleted?)"
                    .to_owned(),
                403 => format!(
                    "forbidden (HTTP 403) to {} the ConfigMap: {}; the adapter's Role must grant \
                     get, update and patch on configmaps with resourceNames [{}]",
                    verb.as_str(),
                    one_line(&status.message),
                    self.name
                ),
                401 => "the API server refused the client's credentials (HTTP 401)".to_owned(),
                code => format!(
                    "{} the ConfigMap failed (HTTP {code} {}): {}",
                    verb.as_str(),
                    status.reason,
                    one_line(&status.message)
                ),
            },
            other => format!(
                "{} the ConfigMap failed: {}",
                verb.as_str(),
                one_line(&other.to_string())
            ),
        }
    }
}

fn location(namespace: &str, name: &str) -> String {
    format!("configmap {namespace}/{name}")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl CheckpointStore for ConfigMapCheckpointStore {
    fn location(&self) -> String {
        location(&self.namespace, &self.name)
    }

    /// Reads the ConfigMap. Without [`DATA_KEY`] the source has never run; a
    /// missing ConfigMap is an error (the controller creates it, so it is not
    /// a first start).
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let mut last = self.last.lock().await;
        let object = match self.get().await {
            Ok(object) => object,
            Err(e) => {
                *last = None;
                return Err(e);
            }
        };
        let document = object
            .data
            .as_ref()
            .and_then(|data| data.get(DATA_KEY))
            .cloned();
        *last = Some(object);
        drop(last);
        document
            .map(|text| checkpoint::decode(&self.location(), text.as_bytes()))
            .transpose()
    }

    /// Replaces the ConfigMap (PUT) conditional on the remembered
    /// `resourceVersion`, with only [`DATA_KEY`] changed. A 409 re-reads the
    /// object and returns [`CheckpointError::Conflict`]; the next save succeeds.
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let document = String::from_utf8_lossy(&checkpoint::encode(checkpoint)).into_owned();
        // One attempt: a conflict is the caller's to judge (see the module
        // documentation).
        self.put_key(DATA_KEY, document, 1).await
    }

    /// The same for [`SUMMARY_KEY`], which the controller reads.
    async fn save_summary(&self, summary: &StreamSummary) -> Result<(), CheckpointError> {
        let document = serde_json::to_string(summary).map_err(|e| CheckpointError::Backend {
            location: self.location(),
            reason: format!("encoding the summary: {e}"),
        })?;
        // Only our key changes: on a conflict, again on the fresh object.
        self.put_key(&self.summary_key, document, MERGE_ATTEMPTS)
            .await
    }

    /// Removes a replica's own summary key; the single-replica key stays (the
    /// next adapter overwrites it).
    async fn retire_summary(&self) -> Result<(), CheckpointError> {
        if self.summary_key == SUMMARY_KEY {
            return Ok(());
        }
        self.edit(MERGE_ATTEMPTS, |object| {
            let removed = object
                .data
                .as_mut()
                .and_then(|data| data.remove(&self.summary_key));
            Ok(match removed {
                Some(_) => Edit::Write(()),
                None => Edit::Keep(()),
            })
        })
        .await
    }

    /// Reads the stored document, merges, and writes it back, as many times
    /// as other replicas' writes in between require (at most
    /// [`MERGE_ATTEMPTS`]).
    async fn save_merged(
        &self,
        local: &Checkpoint,
        what: Merge,
        held: &(dyn for<'s> Fn(&'s ShardId) -> bool + Sync),
        forgotten: &BTreeSet<ShardId>,
    ) -> Result<(Checkpoint, Merged), CheckpointError> {
        self.edit(MERGE_ATTEMPTS, |object| {
            let mut stored = match object.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
                Some(text) => checkpoint::decode(&self.location(), text.as_bytes())?,
                None => Checkpoint::new(local.stream_arn.clone()),
            };
            let merged = merge::merge_into(&mut stored, local, what, |s| held(s), forgotten);
            if let Merged::Stale(_) = merged {
                return Ok(Edit::Keep((stored, merged)));
            }
            let document = String::from_utf8_lossy(&checkpoint::encode(&stored)).into_owned();
            object
                .data
                .get_or_insert_with(BTreeMap::new)
                .insert(DATA_KEY.to_owned(), document);
            Ok(Edit::Write((stored, merged)))
        })
        .await
    }
}

/// What an edit of the object asks for.
enum Edit<T> {
    /// Write the edited object.
    Write(T),
    /// Nothing to write (nothing changed, or the edit refused to).
    Keep(T),
}

/// How many times a merged save re-reads and retries after other replicas
/// wrote in between, before it gives up until the next save.
const MERGE_ATTEMPTS: usize = 8;

/// Summaries of replicas that wrote none for this long are removed by the
/// others: their pods are long gone.
const FORGET_SUMMARY_AFTER_SECONDS: i64 = 3600;

impl ConfigMapCheckpointStore {
    /// Replaces the ConfigMap with `key` set to `document` and everything else
    /// as last read or written (see the module documentation on conflicts).
    async fn put_key(
        &self,
        key: &str,
        document: String,
        attempts: usize,
    ) -> Result<(), CheckpointError> {
        self.edit(attempts, |object| {
            let data = object.data.get_or_insert_with(BTreeMap::new);
            data.insert(key.to_owned(), document.clone());
            if key != SUMMARY_KEY && key != DATA_KEY {
                forget_old_summaries(data, key);
            }
            Ok(Edit::Write(()))
        })
        .await
    }

    /// Applies `edit` to the object as last read or written (read first if
    /// it never was) and writes it back, conditional on its
    /// `resourceVersion`; after a conflict `replace` re-read the object, and
    /// the edit is applied to that, up to `attempts` times in all.
    async fn edit<T>(
        &self,
        attempts: usize,
        mut edit: impl FnMut(&mut ConfigMap) -> Result<Edit<T>, CheckpointError>,
    ) -> Result<T, CheckpointError> {
        let mut last = self.last.lock().await;
        let mut conflict = None;
        for _ in 0..attempts {
            let mut object = match last.as_ref() {
                Some(object) => object.clone(),
                None => {
                    let object = self.get().await?;
                    *last = Some(object.clone());
                    object
                }
            };
            let value = match edit(&mut object)? {
                Edit::Keep(value) => return Ok(value),
                Edit::Write(value) => value,
            };
            match self.replace(&mut last, object).await {
                Ok(()) => return Ok(value),
                Err(e @ CheckpointError::Conflict { .. }) => conflict = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(conflict.unwrap_or_else(|| CheckpointError::Conflict {
            location: self.location(),
            reason: "no attempt was made".to_owned(),
        }))
    }

    /// PUTs `object`, conditional on the `resourceVersion` it carries, and
    /// remembers the result; a 409 re-reads the object.
    async fn replace(
        &self,
        last: &mut Option<ConfigMap>,
        mut object: ConfigMap,
    ) -> Result<(), CheckpointError> {
        let based_on = object.metadata.resource_version.clone().unwrap_or_default();
        // Left out, the server keeps the stored managedFields and records our
        // change under FIELD_MANAGER.
        object.metadata.managed_fields = None;
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        match self.api.replace(&self.name, &params, &object).await {
            Ok(stored) => {
                *last = Some(stored);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let reread = match self.api.get(&self.name).await {
                    Ok(current) => {
                        let now = current.metadata.resource_version.clone();
                        *last = Some(current);
                        format!(
                            "resourceVersion {based_on} is stale, now {}; re-read, the next save replaces it",
                            now.unwrap_or_default()
                        )
                    }
                    Err(e) => {
                        *last = None;
                        format!(
                            "resourceVersion {based_on} is stale, and re-reading failed ({}); the next save reads it again",
                            self.api_reason(Verb::Get, &e)
                        )
                    }
                };
                Err(CheckpointError::Conflict {
                    location: self.location(),
                    reason: reread,
                })
            }
            Err(e) => {
                if matches!(&e, kube::Error::Api(status) if status.code == 404) {
                    // Recreated later, it has another uid: read it afresh.
                    *last = None;
                }
                // Otherwise the remembered object stays the base: if this
                // write did land after all, the next one gets a 409 and re-reads.
                Err(self.api_error(Verb::Update, &e))
            }
        }
    }
}

/// Removes the summaries of replicas other than `ours` that were last
/// written more than [`FORGET_SUMMARY_AFTER_SECONDS`] ago (or cannot be read).
fn forget_old_summaries(data: &mut BTreeMap<String, String>, ours: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    data.retain(|key, text| {
        if key == ours || !key.starts_with(REPLICA_SUMMARY_PREFIX) || !key.ends_with(".json") {
            return true;
        }
        serde_json::from_str::<StreamSummary>(text).is_ok_and(|summary| {
            now.saturating_sub(summary.updated_at) < FORGET_SUMMARY_AFTER_SECONDS
        })
    });
}
