//! A source's namespace as the controller prepares it, and adapter replicas
//! sharing its shards through Leases, without the controller: for the lease
//! tests and benchmark.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::adapter::{AdapterEnv, AdapterProcess};
use super::cluster::{self, apply_params};
use super::eventually;
use super::fake_streams::FakeStreams;
use super::receiver::Receiver;

pub const SOURCE: &str = "orders";
pub const CONFIG_MAP: &str = "awsdynamodbsource-orders-checkpoint";
const ACCOUNT: &str = "awsdynamodbsource-orders-adapter";
const LEASE_LABEL: &str = "sources.triggermesh.io/shard-lease-of";

async fn apply<K>(client: &Client, ns: &str, manifest: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).expect("a valid manifest");
    let name = object.name_any();
    Api::<K>::namespaced(client.clone(), ns)
        .patch(&name, &apply_params(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

/// `AWSDynamoDBSource`s of `ns`, untyped: the tests of other crates' objects
/// need no more.
pub fn sources(client: &Client, ns: &str) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource {
            group: "sources.triggermesh.io".into(),
            version: "v1alpha1".into(),
            api_version: "sources.triggermesh.io/v1alpha1".into(),
            kind: "AWSDynamoDBSource".into(),
            plural: "awsdynamodbsources".into(),
        },
    )
}

/// What the controller creates for a source, without the controller: the
/// source itself (the Leases' owner), its checkpoint ConfigMap, and the
/// adapter's ServiceAccount with the Role the controller grants it.
/// Returns the namespace and the source's uid.
pub async fn source_namespace(prefix: &str) -> (String, String) {
    let cluster = cluster::shared();
    super::controller::install(cluster);
    let ns = cluster.namespace(prefix).await;
    let admin = cluster.admin().await;
    let sources = sources(&admin, &ns);
    let source: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
        "metadata": {"name": SOURCE, "namespace": ns},
        "spec": {
            "arn": "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
            "sink": {"uri": "http://127.0.0.1:9/"},
        },
    }))
    .expect("a source");
    let source = sources
        .patch(SOURCE, &apply_params(), &Patch::Apply(&source))
        .await
        .expect("the source");
    let uid = source.uid().expect("a uid");
    apply::<ConfigMap>(
        &admin,
        &ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, "namespace": ns}}),
    )
    .await;
    apply::<ServiceAccount>(
        &admin,
        &ns,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT, "namespace": ns}}),
    )
    .await;
    apply::<Role>(
        &admin,
        &ns,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": ACCOUNT, "namespace": ns},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CONFIG_MAP], "verbs": ["get", "update", "patch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        }),
    )
    .await;
    apply::<RoleBinding>(
        &admin,
        &ns,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": ACCOUNT, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ns}],
        }),
    )
    .await;
    (ns, uid)
}

pub struct Replicas {
    pub env: AdapterEnv,
    dir: tempfile::TempDir,
}

impl Replicas {
    pub async fn new(sink: &Receiver, fake: &FakeStreams, ns: &str, uid: &str) -> Replicas {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = cluster::shared()
            .service_account_kubeconfig(ns, ACCOUNT, dir.path())
            .await;
        let env = AdapterEnv::new(
            &sink.url,
            &fake.table_arn("orders"),
            &fake.endpoint,
            &dir.path().join("unused.json"),
        )
        .unset("CHECKPOINT_FILE")
        .set("CHECKPOINT_CONFIGMAP", CONFIG_MAP)
        .set("CHECKPOINT_NAMESPACE", ns)
        .set("SOURCE_NAME", SOURCE)
        .set("SOURCE_NAMESPACE", ns)
        .set("SOURCE_UID", uid)
        .set("SHARD_LEASES", "true")
        .set("RUST_LOG", "info,dynamodb_source_adapter::lease=debug")
        // Renewed every quarter of it: 8 s leaves room for an apiserver or a replica
        // that a loaded machine stalls for seconds, which would pass a lease on by
        // expiry where the test expects a hand-over.
        .set("SHARD_LEASE_DURATION", "PT8S")
        .set("CHECKPOINT_INTERVAL", "PT0.2S")
        .set("SUMMARY_INTERVAL", "PT1S")
        .set("KUBECONFIG", kubeconfig.display().to_string());
        Replicas { env, dir }
    }

    /// Replica `name`: its pod name, and the access key its Streams calls are signed with.
    pub fn spawn(&self, name: &str) -> AdapterProcess {
        let env = self
            .env
            .clone()
            .set("POD_NAME", name)
            .set("AWS_ACCESS_KEY_ID", name);
        AdapterProcess::spawn(&env, self.dir.path())
    }
}

/// The holder of each shard lease of the source.
pub async fn holders(ns: &str) -> BTreeMap<String, Option<String>> {
    let leases: Api<Lease> = Api::namespaced(cluster::shared().admin().await, ns);
    leases
        .list(&ListParams::default().labels(&format!("{LEASE_LABEL}={SOURCE}")))
        .await
        .expect("list leases")
        .items
        .into_iter()
        .map(|lease| {
            let holder = lease
                .spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty());
            (lease.metadata.name.unwrap_or_default(), holder)
        })
        .collect()
}

/// Waits until the `shards` readable shards are held by exactly `replicas`,
/// each within one of an even share.
pub async fn balanced(ns: &str, shards: usize, within: Duration, replicas: &[&str]) {
    let what = format!("{shards} shard leases balanced over {replicas:?}");
    eventually(&what, within, async || {
        let holders = holders(ns).await;
        let mut load: BTreeMap<&str, usize> = replicas.iter().map(|r| (*r, 0)).collect();
        for holder in holders.values() {
            *load.get_mut(holder.as_deref()?)? += 1;
        }
        let total: usize = load.values().sum();
        let (min, max) = (load.values().min()?, load.values().max()?);
        (total == shards && holders.len() == shards && max - min <= 1).then_some(())
    })
    .await;
}
