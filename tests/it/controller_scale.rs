//! Scaling a source against the real API server, with the controller running
//! with only the RBAC of `config/rbac/`: `kubectl scale` and the scale
//! subresource set the adapter Deployment's replicas, status reports its pods
//! and their selector, 0 suspends the source and keeps its checkpoint, and the
//! adapter's Role lets it share shards through Leases in its namespace only.

use dynamodb_source_api::resource::{AWSDynamoDBSource, ConditionStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::api::{WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::controller::{Rig, env, rig, unix_now};
use crate::support::cluster::{self, DEADLINE, api_status};
use crate::support::eventually;

const ARN: &str = "arn:aws:dynamodb:us-west-2:123456789012:table/orders";

fn spec() -> serde_json::Value {
    json!({"arn": ARN, "sink": {"uri": "http://display.example.svc.cluster.local/"}})
}

/// Waits until the source's status reports `replicas` pods and returns it.
async fn wait_status_replicas(rig: &Rig, name: &str, replicas: i32) -> AWSDynamoDBSource {
    eventually(
        &format!("{name} status.replicas={replicas}"),
        DEADLINE,
        async || {
            let source = rig.sources().get(name).await.ok()?;
            (source.status.as_ref()?.replicas == Some(replicas)).then_some(source)
        },
    )
    .await
}

async fn wait_deployment_replicas(rig: &Rig, name: &str, replicas: i32) -> Deployment {
    let deployments: Api<Deployment> = rig.api();
    let name = format!("awsdynamodbsource-{name}");
    eventually(
        &format!("Deployment {name} with {replicas} replicas"),
        DEADLINE,
        async || {
            let deployment = deployments.get(&name).await.ok()?;
            (deployment.spec.replicas == Some(replicas)).then_some(deployment)
        },
    )
    .await
}

/// Names of the pods `selector` selects, and of those whose name says they
/// belong to source `name` (a ReplicaSet of its Deployment), in the namespace.
async fn pods(rig: &Rig, selector: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let pods: Api<Pod> = rig.api();
    let names = |list: Vec<Pod>| {
        let mut names: Vec<String> = list
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        names.sort();
        names
    };
    let selected = names(
        pods.list(&ListParams::default().labels(selector))
            .await
            .expect("list pods by the selector")
            .items,
    );
    let prefix = format!("awsdynamodbsource-{name}-");
    let of_source = names(
        pods.list(&ListParams::default())
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.name_any().starts_with(&prefix))
            .collect(),
    );
    (selected, of_source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_and_the_scale_subresource_set_the_adapter_replicas_and_status_selects_its_pods()
 {
    let rig = rig("scale").await;
    // A second source in the namespace: the selector must not select its pod.
    for name in ["orders", "other"] {
        rig.apply_source(name, spec()).await;
    }
    let deployment = wait_deployment_replicas(&rig, "orders", 1).await;

    // Replicas share shards through Leases: rolling without a gap is safe.
    let strategy = deployment.spec.strategy.clone().expect("a strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rollingUpdate");
    assert_eq!(
        (rolling.max_surge, rolling.max_unavailable),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
    );
    let source = rig.sources().get("orders").await.expect("the source");
    assert_eq!(env(&deployment, "SHARD_LEASES").as_deref(), Some("true"));
    assert_eq!(env(&deployment, "SOURCE_UID"), source.uid());
    let pod_name = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers[0].env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "POD_NAME"))
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(pod_name.as_deref(), Some("metadata.name"));

    // Never set, spec.replicas reads as its default through the subresource.
    let scale = rig.sources().get_scale("orders").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));

    // As a user would.
    cluster::shared().kubectl(&[
        "scale",
        "--namespace",
        &rig.ns,
        "awsdynamodbsource/orders",
        "--replicas=3",
    ]);
    wait_deployment_replicas(&rig, "orders", 3).await;
    let source = wait_status_replicas(&rig, "orders", 3).await;
    let selector = source
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .expect("status.selector");
    // The selector selects exactly the adapter pods of this source.
    let (selected, of_source) = eventually("three pods, all selected", DEADLINE, async || {
        let (selected, of_source) = pods(&rig, &selector, "orders").await;
        (selected.len() == 3 && selected == of_source).then_some((selected, of_source))
    })
    .await;
    assert_eq!(selected, of_source);
    let (other_selected, _) = pods(&rig, &selector, "other").await;
    assert!(
        other_selected
            .iter()
            .all(|p| !p.starts_with("awsdynamodbsource-other-")),
        "{other_selected:?}"
    );

    // The scale subresource reports the same, for an autoscaler.
    let scale = rig.sources().get_scale("orders").await.expect("get scale");
    let scale_status = scale.status.expect("scale status");
    assert_eq!(scale_status.replicas, 3);
    assert_eq!(scale_status.selector.as_deref(), Some(selector.as_str()));

    if cluster::shared().kwok {
        eventually("three ready replicas", DEADLINE, async || {
            let status = rig.sources().get("orders").await.ok()?.status?;
            (status.ready_replicas == Some(3)).then_some(())
        })
        .await;
        rig.wait_ready("orders", ConditionStatus::True, "Ready")
            .await;
    }

    // As an autoscaler does.
    rig.sources()
        .patch_scale(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("patch scale");
    wait_deployment_replicas(&rig, "orders", 2).await;
    wait_status_replicas(&rig, "orders", 2).await;
}

/// Writes `data` keys into the source's checkpoint ConfigMap as `manager` (the
/// adapter, or one of its replicas).
async fn write_checkpoint_keys(rig: &Rig, source: &str, manager: &str, data: serde_json::Value) {
    let name = format!("awsdynamodbsource-{source}-checkpoint");
    let object: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": rig.ns},
        "data": data,
    }))
    .expect("a ConfigMap");
    rig.api::<ConfigMap>()
        .patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("write {name} as {manager}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_replicas_suspend_the_source_and_keep_its_checkpoint_and_one_resumes_it() {
    let rig = rig("suspend").await;
    let checkpoint = r#"{"version":1,"shards":{}}"#;
    write_checkpoint_keys(
        &rig,
        "orders",
        "adapter",
        json!({
            "checkpoint.json": checkpoint,
            "summary.json": json!({"updatedAt": unix_now(), "iteratorAgeSeconds": 4}).to_string(),
        }),
    )
    .await;
    rig.apply_source("orders", spec()).await;
    wait_deployment_replicas(&rig, "orders", 1).await;

    rig.sources()
        .patch_scale(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale to 0");
    wait_deployment_replicas(&rig, "orders", 0).await;
    let source = rig
        .wait_ready("orders", ConditionStatus::False, "Suspended")
        .await;
    let status = source.status.expect("a status");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .expect("Ready");
    assert!(
        ready
            .message
            .as_deref()
            .is_some_and(|m| m.contains("spec.replicas is 0")),
        "{ready:?}"
    );
    let keeping_up = status
        .conditions
        .iter()
        .find(|c| c.kind == "KeepingUp")
        .expect("KeepingUp");
    assert_eq!(
        (keeping_up.status, keeping_up.reason.as_deref()),
        (ConditionStatus::Unknown, Some("Suspended"))
    );
    assert_eq!(status.lag, None, "nothing runs: no lag to show");
    wait_status_replicas(&rig, "orders", 0).await;
    let kept = rig
        .api::<ConfigMap>()
        .get("awsdynamodbsource-orders-checkpoint")
        .await
        .expect("the checkpoint ConfigMap is kept");
    assert_eq!(
        kept.data
            .as_ref()
            .and_then(|d| d.get("checkpoint.json"))
            .map(String::as_str),
        Some(checkpoint)
    );

    // Back to one, as the manifest says.
    rig.apply_source(
        "orders",
        json!({"arn": ARN, "sink": {"uri": "http://display.example.svc.cluster.local/"}, "replicas": 1}),
    )
    .await;
    wait_deployment_replicas(&rig, "orders", 1).await;
    if cluster::shared().kwok {
        rig.wait_ready("orders", ConditionStatus::True, "Ready")
            .await;
    } else {
        eventually("Ready no longer Suspended", DEADLINE, async || {
            let status = rig.sources().get("orders").await.ok()?.status?;
            let ready = status.conditions.iter().find(|c| c.kind == "Ready")?;
            (ready.reason.as_deref() != Some("Suspended")).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lag_combines_the_summaries_of_every_replica() {
    let rig = rig("replica-summaries").await;
    let now = unix_now();
    for (pod, age, shards) in [("orders-a", 30.0, 2), ("orders-b", 200.4, 3)] {
        write_checkpoint_keys(
            &rig,
            "orders",
            pod,
            json!({
                dynamodb_source_api::summary::replica_summary_key(pod):
                    json!({"updatedAt": now, "iteratorAgeSeconds": age, "shardsRead": shards}).to_string(),
            }),
        )
        .await;
    }
    // A replica long gone: left out.
    write_checkpoint_keys(
        &rig,
        "orders",
        "orders-gone",
        json!({
            "summary-orders-gone.json":
                json!({"updatedAt": now - 3600, "iteratorAgeSeconds": 9000, "shardsRead": 7}).to_string(),
        }),
    )
    .await;
    rig.apply_source("orders", spec()).await;
    let status = eventually("status.lag of the furthest behind", DEADLINE, async || {
        let status = rig.sources().get("orders").await.ok()?.status?;
        (status.lag.as_deref() == Some("3m20s")).then_some(status)
    })
    .await;
    let keeping_up = status
        .conditions
        .iter()
        .find(|c| c.kind == "KeepingUp")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(keeping_up.contains("5 shards read"), "{keeping_up}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_may_take_renew_and_release_shard_leases_in_its_namespace_only() {
    let rig = rig("leases").await;
    rig.apply_source("orders", spec()).await;
    // The controller, with config/rbac only, binds the adapter to the Lease verbs in this
    // namespace, through the ClusterRole that holds them; its Role has none.
    let binding = eventually("the adapter's Lease RoleBinding", DEADLINE, async || {
        rig.api::<RoleBinding>()
            .get("awsdynamodbsource-orders-leases")
            .await
            .ok()
    })
    .await;
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("ClusterRole", "dynamodb-source-adapter-leases")
    );
    // Applied after the binding (an upgrade never leaves running adapters without Leases).
    let role = eventually("the adapter's Role", DEADLINE, async || {
        rig.api::<Role>().get("awsdynamodbsource-orders").await.ok()
    })
    .await;
    assert!(
        !role
            .rules
            .iter()
            .flatten()
            .any(|r| r.resources.iter().flatten().any(|r| r == "leases")),
        "{role:?}"
    );
    let source = rig.sources().get("orders").await.expect("the source");
    let owner = source
        .controller_owner_ref(&())
        .expect("an owner reference");

    let cluster = cluster::shared();
    let adapter = cluster
        .service_account(&rig.ns, "awsdynamodbsource-orders")
        .await;
    let leases: Api<Lease> = Api::namespaced(adapter.clone(), &rig.ns);
    let lease = |name: &str, holder: &str| -> Lease {
        serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {
                "name": name,
                // As the adapter sets it: owned by the source, without
                // blockOwnerDeletion (which needs update on its finalizers).
                "ownerReferences": [{
                    "apiVersion": owner.api_version, "kind": owner.kind,
                    "name": owner.name, "uid": owner.uid,
                }],
            },
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
        }))
        .expect("a Lease")
    };
    let first = "awsdynamodbsource-orders-shard-00001";
    // The RoleBinding reaches the authorizer shortly after it is written.
    eventually("the adapter creates a Lease", DEADLINE, async || {
        leases
            .create(&PostParams::default(), &lease(first, "orders-a"))
            .await
            .ok()
    })
    .await;
    let mut taken = leases.get(first).await.expect("get");
    let listed = leases.list(&ListParams::default()).await.expect("list");
    assert!(listed.items.iter().any(|l| l.name_any() == first));
    let mut watch = leases
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .expect("watch")
        .boxed();
    match watch.next().await {
        Some(Ok(WatchEvent::Added(seen))) => assert_eq!(seen.name_any(), first),
        other => panic!("the watch's first event: {other:?}"),
    }
    // Taken over by another replica, then renewed.
    taken.spec.get_or_insert_default().holder_identity = Some("orders-b".to_owned());
    leases
        .replace(first, &PostParams::default(), &taken)
        .await
        .expect("update");
    leases
        .patch(
            first,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"leaseTransitions": 1}})),
        )
        .await
        .expect("patch");
    leases
        .delete(first, &DeleteParams::default())
        .await
        .expect("delete");

    // Nowhere else.
    let elsewhere = cluster.namespace("leases-elsewhere").await;
    let foreign: Api<Lease> = Api::namespaced(adapter, &elsewhere);
    let refused = foreign
        .create(&PostParams::default(), &lease("stolen", "orders-a"))
        .await
        .expect_err("a Lease in another namespace");
    assert_eq!(api_status(&refused), Some(403));
    let refused = foreign
        .list(&ListParams::default())
        .await
        .expect_err("listing another namespace");
    assert_eq!(api_status(&refused), Some(403));
    // Nor does the controller hold Lease verbs anywhere but its leader Lease's namespace:
    // it could otherwise take over any component's leader election.
    let controller = cluster
        .service_account(
            crate::support::controller::NAMESPACE,
            crate::support::controller::ACCOUNT,
        )
        .await;
    for namespace in ["kube-system", rig.ns.as_str()] {
        let refused = Api::<Lease>::namespaced(controller.clone(), namespace)
            .list(&ListParams::default())
            .await
            .expect_err("the controller lists no Leases");
        assert_eq!(api_status(&refused), Some(403), "in {namespace}");
    }

    // Owned by the source, the Leases go with it.
    let second = "awsdynamodbsource-orders-shard-00002";
    leases
        .create(&PostParams::default(), &lease(second, "orders-a"))
        .await
        .expect("create");
    rig.sources()
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete the source");
    let admin: Api<Lease> = rig.api();
    eventually("the Lease garbage-collected", DEADLINE, async || {
        admin.get_opt(second).await.ok()?.is_none().then_some(())
    })
    .await;
}
