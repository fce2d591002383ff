//! The Kubernetes checkpoint store against a real API server
//! (tests/it/support/cluster.rs): round trips that keep the controller's fields,
//! optimistic concurrency on `resourceVersion`, and the least RBAC the
//! controller grants an adapter (get, update, patch on its own ConfigMap).

use std::collections::BTreeMap;

use dynamodb_source_adapter::{ConfigMapCheckpointStore, DATA_KEY};
use dynamodb_source_stream::checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore};
use dynamodb_source_stream::{SequenceNumber, ShardId};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::cluster::{self, DEADLINE, api_status, apply_params};
use crate::support::eventually;

const STREAM: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000";

fn checkpoint(sequence_number: &str) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(STREAM.parse().expect("a stream ARN"));
    checkpoint.advance(
        &ShardId::new("shardId-00000001"),
        &SequenceNumber::parse(sequence_number).expect("digits"),
    );
    checkpoint.finish(&ShardId::new("shardId-00000000"));
    checkpoint
}

/// Server-side applies `manifest` (which names its namespace) and returns the live object.
async fn apply<K>(api: &Api<K>, manifest: serde_json::Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).expect("a valid manifest");
    let name = object.name_any();
    api.patch(&name, &apply_params(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// A checkpoint ConfigMap as the controller creates it: labelled, owned, and
/// with a data key of its own, but no checkpoint.
async fn controller_config_map(admin: &Client, ns: &str, name: &str) -> ConfigMap {
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    // A live owner, so the garbage collector leaves the ConfigMap alone.
    let owner = apply(
        &config_maps,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("{name}-owner"), "namespace": ns },
        }),
    )
    .await;
    apply(
        &config_maps,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name, "namespace": ns,
                "labels": { "app.kubernetes.io/managed-by": "dynamodb-source" },
                "annotations": { "example.com/note": "kept" },
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "name": owner.name_any(), "uid": owner.uid().expect("a uid"),
                    "controller": true, "blockOwnerDeletion": false,
                }],
            },
            "data": { "README": "progress of the source's adapter" },
        }),
    )
    .await
}

async fn stored_document(admin: &Client, ns: &str, name: &str) -> Option<Checkpoint> {
    let object = Api::<ConfigMap>::namespaced(admin.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {ns}/{name}: {e}"));
    object
        .data
        .and_then(|data| data.get(DATA_KEY).cloned())
        .map(|text| checkpoint::decode("test", text.as_bytes()).expect("a valid document"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_then_load_round_trips_and_keeps_the_controllers_fields() {
    let cluster = cluster::shared();
    let ns = cluster.namespace("cp-round-trip").await;
    let admin = cluster.admin().await;
    let created = controller_config_map(&admin, &ns, "orders-checkpoint").await;

    let store = ConfigMapCheckpointStore::new(admin.clone(), &ns, "orders-checkpoint");
    assert_eq!(
        store.location(),
        format!("configmap {ns}/orders-checkpoint")
    );
    assert_eq!(store.load().await.expect("loads"), None, "never started");
    let read = store.resource_version().await.expect("a resourceVersion");
    assert_eq!(Some(&read), created.metadata.resource_version.as_ref());

    store
        .save(&checkpoint("000000000000000000100"))
        .await
        .expect("saves");
    let first = store.resource_version().await.expect("a resourceVersion");
    assert_ne!(first, read, "the save wrote a new version");
    store
        .save(&checkpoint("000000000000000000200"))
        .await
        .expect("saves again on the version it wrote");
    let second = store.resource_version().await.expect("a resourceVersion");
    assert_ne!(second, first);

    // A fresh store (a restarted adapter) reads what was saved.
    let restarted = ConfigMapCheckpointStore::new(admin.clone(), &ns, "orders-checkpoint");
    assert_eq!(
        restarted.load().await.expect("loads"),
        Some(checkpoint("000000000000000000200"))
    );

    let live = Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .get("orders-checkpoint")
        .await
        .expect("get");
    assert_eq!(live.metadata.resource_version.as_ref(), Some(&second));
    assert_eq!(live.labels(), created.labels());
    assert_eq!(
        live.annotations()
            .get("example.com/note")
            .map(String::as_str),
        Some("kept")
    );
    assert_eq!(live.owner_references(), created.owner_references());
    let data = live.data.clone().expect("data");
    assert_eq!(
        data.get("README").map(String::as_str),
        Some("progress of the source's adapter")
    );
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        ["README", DATA_KEY]
    );
    // The adapter's writes are recorded under its own field manager, next to the controller's.
    let managers: Vec<_> = live
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"dynamodb-source-adapter".to_owned()),
        "{managers:?}"
    );
    assert!(
        managers.contains(&cluster::FIELD_MANAGER.to_owned()),
        "{managers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_map_or_a_corrupt_document_is_an_error_not_a_first_start() {
    let cluster = cluster::shared();
    let ns = cluster.namespace("cp-missing").await;
    let admin = cluster.admin().await;

    let absent = ConfigMapCheckpointStore::new(admin.clone(), &ns, "absent-checkpoint");
    let err = absent.load().await.expect_err("no ConfigMap");
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::Backend { .. }), "{text}");
    assert!(
        text.contains(&format!("configmap {ns}/absent-checkpoint")),
        "{text}"
    );
    assert!(text.contains("the controller creates it"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    let err = absent
        .save(&checkpoint("000000000000000000001"))
        .await
        .expect_err("the adapter never creates it");
    assert!(
        err.to_string().contains("the controller creates it"),
        "{err}"
    );
    assert!(
        Api::<ConfigMap>::namespaced(admin.clone(), &ns)
            .get_opt("absent-checkpoint")
            .await
            .expect("get")
            .is_none()
    );

    controller_config_map(&admin, &ns, "corrupt-checkpoint").await;
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .patch(
            "corrupt-checkpoint",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { DATA_KEY: "{\"version\": 1, \"streamArn\":" } })),
        )
        .await
        .expect("patch");
    let err = ConfigMapCheckpointStore::new(admin.clone(), &ns, "corrupt-checkpoint")
        .load()
        .await
        .expect_err("corrupt");
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_gets_a_conflict_and_its_next_save_succeeds() {
    let cluster = cluster::shared();
    let ns = cluster.namespace("cp-conflict").await;
    let admin = cluster.admin().await;
    controller_config_map(&admin, &ns, "orders-checkpoint").await;

    let fresh = ConfigMapCheckpointStore::new(admin.clone(), &ns, "orders-checkpoint");
    let stale = ConfigMapCheckpointStore::new(admin.clone(), &ns, "orders-checkpoint");
    assert_eq!(fresh.load().await.expect("loads"), None);
    assert_eq!(stale.load().await.expect("loads"), None);
    let old_version = stale.resource_version().await.expect("a resourceVersion");

    fresh
        .save(&checkpoint("000000000000000000100"))
        .await
        .expect("the first writer saves");
    let err = stale
        .save(&checkpoint("000000000000000000050"))
        .await
        .expect_err("a save based on an old resourceVersion is refused");
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&old_version), "{err}");
    assert_eq!(
        stored_document(&admin, &ns, "orders-checkpoint").await,
        Some(checkpoint("000000000000000000100")),
        "the refused save wrote nothing"
    );
    // The conflict re-read the object: the next save goes through.
    assert_eq!(
        stale.resource_version().await,
        fresh.resource_version().await
    );
    stale
        .save(&checkpoint("000000000000000000300"))
        .await
        .expect("the retried save succeeds");
    assert_eq!(
        stored_document(&admin, &ns, "orders-checkpoint").await,
        Some(checkpoint("000000000000000000300"))
    );

    // The controller changing its own fields is a conflict too, and the retry keeps its change.
    Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .patch(
            "orders-checkpoint",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "example.com/tier": "gold" } } })),
        )
        .await
        .expect("label it");
    let err = stale
        .save(&checkpoint("000000000000000000400"))
        .await
        .expect_err("the object changed since the last save");
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
    stale
        .save(&checkpoint("000000000000000000400"))
        .await
        .expect("the retried save succeeds");
    let live = Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .get("orders-checkpoint")
        .await
        .expect("get");
    assert_eq!(
        live.labels().get("example.com/tier").map(String::as_str),
        Some("gold")
    );
    assert_eq!(
        stored_document(&admin, &ns, "orders-checkpoint").await,
        Some(checkpoint("000000000000000000400"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapters_role_allows_its_own_config_map_and_no_other() {
    let cluster = cluster::shared();
    let ns = cluster.namespace("cp-rbac").await;
    let admin = cluster.admin().await;
    let own = "source-a-checkpoint";
    let other = "source-b-checkpoint";
    controller_config_map(&admin, &ns, own).await;
    controller_config_map(&admin, &ns, other).await;

    // What the controller builds for source A's adapter.
    apply(
        &Api::<ServiceAccount>::namespaced(admin.clone(), &ns),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "source-a-adapter", "namespace": ns },
        }),
    )
    .await;
    apply(
        &Api::<Role>::namespaced(admin.clone(), &ns),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "source-a-adapter", "namespace": ns },
            "rules": [{
                "apiGroups": [""], "resources": ["configmaps"],
                "resourceNames": [own], "verbs": ["get", "update", "patch"],
            }],
        }),
    )
    .await;
    apply(
        &Api::<RoleBinding>::namespaced(admin.clone(), &ns),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "source-a-adapter", "namespace": ns },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "source-a-adapter" },
            "subjects": [{ "kind": "ServiceAccount", "name": "source-a-adapter", "namespace": ns }],
        }),
    )
    .await;
    let as_adapter = cluster.service_account(&ns, "source-a-adapter").await;

    // The authorizer learns of new bindings through its informers.
    let own_api: Api<ConfigMap> = Api::namespaced(as_adapter.clone(), &ns);
    eventually(
        "the RoleBinding to take effect",
        DEADLINE,
        async || match own_api.get(own).await {
            Ok(_) => Some(()),
            Err(e) if api_status(&e) == Some(403) => None,
            Err(e) => panic!("get {own} as the adapter: {e}"),
        },
    )
    .await;

    let store = ConfigMapCheckpointStore::new(as_adapter.clone(), &ns, own);
    assert_eq!(store.load().await.expect("loads its own"), None);
    store
        .save(&checkpoint("000000000000000000100"))
        .await
        .expect("saves its own");
    assert_eq!(
        store.load().await.expect("loads its own"),
        Some(checkpoint("000000000000000000100"))
    );
    store
        .save(&checkpoint("000000000000000000200"))
        .await
        .expect("saves its own again");
    assert_eq!(
        stored_document(&admin, &ns, own).await,
        Some(checkpoint("000000000000000000200"))
    );

    let forbidden = ConfigMapCheckpointStore::new(as_adapter.clone(), &ns, other);
    let token = cluster.service_account_token(&ns, "source-a-adapter").await;
    let load = forbidden
        .load()
        .await
        .expect_err("another source's ConfigMap");
    let save = forbidden
        .save(&checkpoint("000000000000000000100"))
        .await
        .expect_err("another source's ConfigMap");
    for err in [load, save] {
        let text = err.to_string();
        assert!(matches!(err, CheckpointError::Backend { .. }), "{text}");
        assert!(
            text.starts_with(&format!(
                "checkpoint configmap {ns}/{other}: forbidden (HTTP 403) to get"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("system:serviceaccount:{ns}:source-a-adapter")),
            "{text}"
        );
        assert!(text.contains(&format!("resourceNames [{other}]")), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
        // No bearer token (a JWT) in the message.
        assert!(!text.contains("eyJ") && !text.contains(&token), "{text}");
    }
    // The PUT itself is refused too, even with a valid object in hand.
    let mut object = Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .get(other)
        .await
        .expect("get");
    object.metadata.managed_fields = None;
    object.data = Some(BTreeMap::from([(
        DATA_KEY.to_owned(),
        String::from_utf8(checkpoint::encode(&checkpoint("000000000000000000100"))).expect("utf-8"),
    )]));
    let denied = Api::<ConfigMap>::namespaced(as_adapter.clone(), &ns)
        .replace(other, &PostParams::default(), &object)
        .await
        .expect_err("update of another source's ConfigMap");
    assert_eq!(api_status(&denied), Some(403), "{denied}");
    assert_eq!(stored_document(&admin, &ns, other).await, None);
    // Nor may it create a ConfigMap (the controller does).
    let created = Api::<ConfigMap>::namespaced(as_adapter, &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "source-c-checkpoint", "namespace": ns },
            }))
            .expect("a ConfigMap"),
        )
        .await
        .expect_err("create is not granted");
    assert_eq!(api_status(&created), Some(403), "{created}");
}
