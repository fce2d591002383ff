//! The test control plane (tests/cluster/up) from Rust: server-side apply, the
//! controllers the operator relies on, and RBAC as a ServiceAccount sees it.
//! The cluster is started once for this binary and stopped when it exits
//! (see tests/it/support/cluster.rs).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::cluster::{self, DEADLINE, FIELD_MANAGER, api_status, apply_params};
use crate::support::eventually;

/// Server-side applies `manifest` (which names its namespace) and returns the live object.
async fn apply<K>(api: &Api<K>, manifest: serde_json::Value) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).expect("a valid manifest");
    let name = object.name_any();
    api.patch(&name, &apply_params(), &kube::api::Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"))
}

#[tokio::test]
async fn a_deployment_applied_server_side_gets_a_replica_set_that_is_garbage_collected_after_deletion()
 {
    let cluster = cluster::shared();
    let ns = cluster.namespace("ssa").await;
    let client = cluster.admin().await;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let config_map = apply(
        &config_maps,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "settings", "namespace": ns },
            "data": { "PAYLOAD_FORMAT": "Plain" },
        }),
    )
    .await;
    assert_eq!(
        config_map.data,
        Some(BTreeMap::from([("PAYLOAD_FORMAT".into(), "Plain".into())]))
    );
    let managers: Vec<_> = config_map
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone(), m.operation.clone()))
        .collect();
    assert!(
        managers.contains(&(Some(FIELD_MANAGER.into()), Some("Apply".into()))),
        "{managers:?}"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = apply(
        &deployments,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "adapter", "namespace": ns },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "app": "adapter" } },
                "template": {
                    "metadata": { "labels": { "app": "adapter" } },
                    "spec": { "containers": [{
                        "name": "adapter",
                        "image": "example.invalid/adapter:1",
                        "envFrom": [{ "configMapRef": { "name": "settings" } }],
                    }] },
                },
            },
        }),
    )
    .await;
    let uid = deployment.uid().expect("a uid");

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let owned_by_deployment = async || -> Vec<String> {
        let list = replica_sets
            .list(&ListParams::default())
            .await
            .expect("list ReplicaSets");
        list.items
            .iter()
            .filter(|rs| rs.owner_references().iter().any(|o| o.uid == uid))
            .map(|rs| rs.name_any())
            .collect()
    };
    let names = eventually("the Deployment's ReplicaSet", DEADLINE, async || {
        Some(owned_by_deployment().await).filter(|names| !names.is_empty())
    })
    .await;
    assert_eq!(names.len(), 1, "{names:?}");

    deployments
        .delete("adapter", &DeleteParams::background())
        .await
        .expect("delete the Deployment");
    eventually(
        "the Deployment to be gone",
        DEADLINE,
        async || match deployments.get_opt("adapter").await {
            Ok(None) => Some(()),
            Ok(Some(_)) => None,
            Err(e) => panic!("get Deployment: {e}"),
        },
    )
    .await;
    eventually(
        "the ReplicaSet to be garbage collected",
        DEADLINE,
        async || owned_by_deployment().await.is_empty().then_some(()),
    )
    .await;
    // The ConfigMap has no owner and stays.
    assert!(config_maps.get_opt("settings").await.unwrap().is_some());
}

#[tokio::test]
async fn a_service_account_may_list_config_maps_only_once_a_role_binding_grants_it() {
    let cluster = cluster::shared();
    let ns = cluster.namespace("rbac").await;
    let admin = cluster.admin().await;

    apply(
        &Api::<ServiceAccount>::namespaced(admin.clone(), &ns),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "reader", "namespace": ns },
        }),
    )
    .await;
    let as_reader = cluster.service_account(&ns, "reader").await;
    let reader_config_maps: Api<ConfigMap> = Api::namespaced(as_reader.clone(), &ns);

    let denied = reader_config_maps
        .list(&ListParams::default())
        .await
        .expect_err("listing ConfigMaps without a Role is forbidden");
    assert_eq!(api_status(&denied), Some(403), "{denied}");
    // Authenticated as the ServiceAccount (not anonymous): RBAC said no to it.
    assert!(
        denied
            .to_string()
            .contains(&format!("system:serviceaccount:{ns}:reader")),
        "{denied}"
    );

    apply(
        &Api::<Role>::namespaced(admin.clone(), &ns),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "config-map-reader", "namespace": ns },
            "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
        }),
    )
    .await;
    apply(
        &Api::<RoleBinding>::namespaced(admin.clone(), &ns),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "reader", "namespace": ns },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "config-map-reader" },
            "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns }],
        }),
    )
    .await;

    // The authorizer sees new bindings through its informers: poll until allowed.
    let listed =
        eventually(
            "the RoleBinding to take effect",
            DEADLINE,
            async || match reader_config_maps.list(&ListParams::default()).await {
                Ok(list) => Some(list),
                Err(e) if api_status(&e) == Some(403) => None,
                Err(e) => panic!("list ConfigMaps as the ServiceAccount: {e}"),
            },
        )
        .await;
    // Every namespace gets kube-root-ca.crt from the controller-manager (eventually).
    assert!(
        listed
            .items
            .iter()
            .all(|cm| cm.namespace().as_deref() == Some(ns.as_str())),
        "{listed:?}"
    );

    // The grant is exactly that: Secrets stay forbidden, as do other namespaces.
    let secrets = Api::<Secret>::namespaced(as_reader.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect_err("listing Secrets is not granted");
    assert_eq!(api_status(&secrets), Some(403), "{secrets}");
    let elsewhere = Api::<ConfigMap>::namespaced(as_reader, "default")
        .list(&ListParams::default())
        .await
        .expect_err("the Role is namespaced");
    assert_eq!(api_status(&elsewhere), Some(403), "{elsewhere}");
}

#[test]
fn export_lines_of_up_are_parsed_with_shell_escapes_removed() {
    let out = "export KUBECONFIG=/tmp/a\\ b/kubeconfig\nexport X=1\n";
    assert_eq!(
        cluster::export_value(out, "KUBECONFIG").as_deref(),
        Some("/tmp/a b/kubeconfig")
    );
    assert_eq!(cluster::export_value(out, "X").as_deref(), Some("1"));
    assert_eq!(cluster::export_value(out, "Y"), None);
}

/// Stops the cluster of a directory `up` made, when dropped (also on a failed assertion).
struct Down(Option<String>);

impl Drop for Down {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::process::Command::new(crate::support::repo_path("tests/cluster/down"))
                .arg(dir)
                .output();
        }
    }
}

/// `up` checks that the components it started are still alive by their
/// `/proc/PID/exe`. Right after the fork that is still the shell, `setsid` or
/// `nohup`, so on a loaded machine a component whose exec was late was taken
/// for one that had exited, with an empty log, failing every test of a run.
/// Here every exec is late: a `nohup` first on `PATH` that sleeps before it
/// execs the real one.
#[test]
fn up_waits_for_each_component_s_exec_before_checking_it_is_alive() {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v nohup"])
        .output()
        .expect("sh runs");
    let nohup = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(nohup.starts_with('/'), "no nohup on PATH: {nohup:?}");
    let bin = tempfile::tempdir().expect("tempdir");
    let slow = bin.path().join("nohup");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 0.5\nexec {nohup} \"$@\"\n"),
    )
    .expect("write nohup");
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod nohup");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(crate::support::repo_path("tests/cluster/up"))
        .env("PATH", path)
        .env_remove("DYNAMODB_SOURCE_CLUSTER_DIR")
        .output()
        .expect("up runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _down = Down(cluster::export_value(
        &stdout,
        "DYNAMODB_SOURCE_CLUSTER_DIR",
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "up failed:\n{stderr}");
    assert!(stderr.contains("cluster ready at"), "{stderr}");
    assert!(!stderr.contains("exited unexpectedly"), "{stderr}");
}
