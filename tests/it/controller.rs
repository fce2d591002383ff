//! The controller binary against the real API server, running with only the
//! RBAC of `config/rbac/`: a source becomes an adapter Deployment, status
//! follows what is observed, bad references recover by themselves, deletion
//! garbage-collects, and two replicas elect one leader.

use std::time::Duration;

use dynamodb_source_api::resource::AWSDynamoDBSource;
use dynamodb_source_api::resource::ConditionStatus;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, Patch};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::support::cluster::{self, DEADLINE, api_status, apply_params};
use crate::support::controller::{self as ctl, ControllerProcess};
use crate::support::eventually;

const ARN: &str = "arn:aws:dynamodb:us-west-2:123456789012:table/orders";

/// A namespace and a controller watching it (shared with `controller_scale`).
pub(crate) struct Rig {
    pub(crate) client: Client,
    pub(crate) ns: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) controller: ControllerProcess,
}

pub(crate) async fn rig(prefix: &str) -> Rig {
    let cluster = cluster::shared();
    ctl::install(cluster);
    let ns = cluster.namespace(prefix).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = ctl::kubeconfig(cluster, dir.path()).await;
    let mut controller =
        ControllerProcess::spawn(&kubeconfig, &ns, None, dir.path().join("controller.log"));
    controller.wait_serving().await;
    Rig {
        client: cluster.admin().await,
        ns,
        dir,
        controller,
    }
}

impl Rig {
    pub(crate) fn sources(&self) -> Api<AWSDynamoDBSource> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub(crate) async fn apply_source(&self, name: &str, spec: serde_json::Value) {
        let source = json!({
            "apiVersion": "sources.triggermesh.io/v1alpha1",
            "kind": "AWSDynamoDBSource",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        });
        self.sources()
            .patch(name, &apply_params(), &Patch::Apply(&source))
            .await
            .unwrap_or_else(|e| panic!("apply source {name}: {e}"));
    }

    async fn apply_json<K>(&self, manifest: serde_json::Value)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(manifest).expect("manifest");
        let name = object.name_any();
        self.api::<K>()
            .patch(&name, &apply_params(), &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("apply {name}: {e}"));
    }

    /// Waits until the source's Ready condition has this status and reason.
    pub(crate) async fn wait_ready(
        &self,
        name: &str,
        status: ConditionStatus,
        reason: &str,
    ) -> AWSDynamoDBSource {
        let what = format!("{name} Ready={status:?} ({reason})");
        eventually(&what, DEADLINE, async || {
            let source = self.sources().get(name).await.ok()?;
            let ready = source
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.kind == "Ready")?
                .clone();
            (ready.status == status && ready.reason.as_deref() == Some(reason)).then_some(source)
        })
        .await
    }

    pub(crate) async fn deployment(&self, name: &str) -> Deployment {
        let deployments: Api<Deployment> = self.api();
        let name = format!("awsdynamodbsource-{name}");
        eventually(&format!("Deployment {name}"), DEADLINE, async || {
            deployments.get(&name).await.ok()
        })
        .await
    }
}

pub(crate) fn env(deployment: &Deployment, name: &str) -> Option<String> {
    deployment.spec.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_becomes_an_available_adapter_and_a_ready_status() {
    let rig = rig("reconcile").await;
    rig.apply_source(
        "orders",
        json!({"arn": ARN, "sink": {"uri": "http://display.example.svc.cluster.local/"}}),
    )
    .await;
    let deployment = rig.deployment("orders").await;
    assert_eq!(
        env(&deployment, "K_SINK").as_deref(),
        Some("http://display.example.svc.cluster.local/")
    );
    assert_eq!(env(&deployment, "ARN").as_deref(), Some(ARN));
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("AWSDynamoDBSource", "orders", Some(true))
    );
    let image = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers[0].image.clone());
    assert_eq!(image.as_deref(), Some(ctl::ADAPTER_IMAGE));

    if cluster::shared().kwok {
        let source = rig
            .wait_ready("orders", ConditionStatus::True, "Ready")
            .await;
        let status = source.status.expect("status");
        assert_eq!(status.observed_generation, source.metadata.generation);
        assert_eq!(
            status.sink_uri.as_deref(),
            Some("http://display.example.svc.cluster.local/")
        );
        assert_eq!(status.ce_attributes[0].source, ARN);
        assert!(
            status
                .conditions
                .iter()
                .filter(|c| c.kind != "KeepingUp")
                .all(|c| c.status == ConditionStatus::True),
            "{:?}",
            status.conditions
        );
        // No adapter process runs on this node: no summary, no lag.
        let keeping_up = status
            .conditions
            .iter()
            .find(|c| c.kind == "KeepingUp")
            .expect("a KeepingUp condition once deployed");
        assert_eq!(
            (keeping_up.status, keeping_up.reason.as_deref()),
            (ConditionStatus::Unknown, Some("NoSummary"))
        );
        assert_eq!(status.lag, None);
    }

    // A change to the source rolls the Deployment and is observed.
    rig.apply_source(
        "orders",
        json!({"arn": ARN, "sink": {"uri": "http://display.example.svc.cluster.local/"}, "payload": {"format": "Plain"}}),
    )
    .await;
    let deployments: Api<Deployment> = rig.api();
    eventually(
        "the Deployment to carry the new format",
        DEADLINE,
        async || {
            let d = deployments.get("awsdynamodbsource-orders").await.ok()?;
            (env(&d, "PAYLOAD_FORMAT").as_deref() == Some("Plain")).then_some(())
        },
    )
    .await;
    eventually("observedGeneration to follow", DEADLINE, async || {
        let s = rig.sources().get("orders").await.ok()?;
        (s.status?.observed_generation == s.metadata.generation).then_some(())
    })
    .await;

    // Deletion garbage-collects everything the controller made.
    rig.sources()
        .delete("orders", &DeleteParams::foreground())
        .await
        .expect("delete");
    let name = "awsdynamodbsource-orders";
    eventually("garbage collection", DEADLINE, async || {
        let gone = rig.api::<Deployment>().get_opt(name).await.ok()?.is_none()
            && rig
                .api::<ServiceAccount>()
                .get_opt(name)
                .await
                .ok()?
                .is_none()
            && rig.api::<Role>().get_opt(name).await.ok()?.is_none()
            && rig.api::<RoleBinding>().get_opt(name).await.ok()?.is_none()
            && rig
                .api::<ConfigMap>()
                .get_opt(&format!("{name}-checkpoint"))
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;
    drop(rig.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sink_service_is_reported_then_recovers_by_itself() {
    let rig = rig("sink").await;
    rig.apply_source(
        "orders",
        json!({"arn": ARN, "sink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}, "uri": "/events"}}),
    )
    .await;
    let source = rig
        .wait_ready("orders", ConditionStatus::False, "SinkNotFound")
        .await;
    let sink = source
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.kind == "SinkProvided")
        .expect("SinkProvided");
    assert_eq!(sink.status, ConditionStatus::False);
    assert!(sink.message.unwrap_or_default().contains("display"));
    assert!(
        rig.api::<Deployment>()
            .get_opt("awsdynamodbsource-orders")
            .await
            .expect("get")
            .is_none()
    );

    rig.apply_json::<Service>(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "display", "namespace": rig.ns},
        "spec": {"ports": [{"port": 80}], "selector": {"app": "display"}},
    }))
    .await;
    let expected = format!("http://display.{}.svc.cluster.local/events", rig.ns);
    eventually("the sink to resolve", DEADLINE, async || {
        let s = rig.sources().get("orders").await.ok()?;
        (s.status?.sink_uri.as_deref() == Some(expected.as_str())).then_some(())
    })
    .await;
    let deployment = rig.deployment("orders").await;
    assert_eq!(
        env(&deployment, "K_SINK").as_deref(),
        Some(expected.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_password_stays_out_of_the_deployment_the_status_and_the_events() {
    let rig = rig("sink-password").await;
    rig.apply_source(
        "orders",
        json!({"arn": ARN, "sink": {"uri": "https://hook:s3cr3t-pass@events.example.com/in"},
               "delivery": {"deadLetterSink": {"uri": "https://dlq:d34d-l3tter@dls.example.com/"}}}),
    )
    .await;
    let source = rig
        .wait_ready("orders", ConditionStatus::True, "Ready")
        .await;
    let status = source.status.expect("status");
    assert_eq!(
        status.sink_uri.as_deref(),
        Some("https://events.example.com/in"),
        "status shows the sink without its userinfo"
    );
    let deployment = rig.deployment("orders").await;
    let secret: Secret = eventually("the credentials Secret", DEADLINE, async || {
        rig.api::<Secret>()
            .get("awsdynamodbsource-orders-credentials")
            .await
            .ok()
    })
    .await;
    let data = secret.data.expect("data");
    assert_eq!(
        data.get("sinkURL").map(|b| b.0.as_slice()),
        Some(&b"https://hook:s3cr3t-pass@events.example.com/in"[..]),
        "the adapter reads the sink URL from the Secret"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = rig.api();
    let events = eventually("an Event on the source", DEADLINE, async || {
        let list = events.list(&Default::default()).await.ok()?;
        (!list.items.is_empty()).then_some(list.items)
    })
    .await;
    let shown = [
        serde_json::to_string(&deployment).expect("deployment"),
        serde_json::to_string(&status.conditions).expect("conditions"),
        serde_json::to_string(&events).expect("events"),
    ]
    .concat();
    for password in ["s3cr3t-pass", "d34d-l3tter"] {
        assert!(
            !shown.contains(password),
            "{password} leaked into the Deployment, the conditions or an Event: {shown}"
        );
    }
    let log = std::fs::read_to_string(rig.dir.path().join("controller.log")).unwrap_or_default();
    assert!(
        !log.contains("s3cr3t-pass") && !log.contains("d34d-l3tter"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_or_key_is_reported_then_recovers_by_itself() {
    let rig = rig("secret").await;
    rig.apply_source(
        "orders",
        json!({
            "arn": ARN,
            "sink": {"uri": "http://display.example/"},
            "auth": {"credentials": {
                "accessKeyID": {"valueFromSecret": {"name": "aws", "key": "AWS_ACCESS_KEY_ID"}},
                "secretAccessKey": {"valueFromSecret": {"name": "aws", "key": "AWS_SECRET_ACCESS_KEY"}},
            }},
        }),
    )
    .await;
    rig.wait_ready("orders", ConditionStatus::False, "SecretNotFound")
        .await;
    rig.apply_json::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "aws", "namespace": rig.ns},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"},
    }))
    .await;
    rig.wait_ready("orders", ConditionStatus::False, "SecretKeyNotFound")
        .await;
    rig.apply_json::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "aws", "namespace": rig.ns},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret"},
    }))
    .await;
    let deployment = rig.deployment("orders").await;
    let text = serde_json::to_string(&deployment).expect("json");
    assert!(
        !text.contains("AKIAEXAMPLE") && !text.contains("example-secret"),
        "no secret value in the Deployment"
    );
    let logs = rig.controller.logs();
    assert!(
        !logs.contains("example-secret"),
        "no secret value in the controller's logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addressable_custom_resource_resolves_through_its_status_address() {
    let rig = rig("addressable").await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "sinks.example.dev"},
        "spec": {
            "group": "example.dev", "scope": "Namespaced",
            "names": {"kind": "Sink", "plural": "sinks", "singular": "sink"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    });
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(rig.client.clone());
    crds.patch("sinks.example.dev", &apply_params(), &Patch::Apply(&crd))
        .await
        .expect("crd");
    // Addressables are readable by the controller through Knative's aggregation label.
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "example-sinks-addressable", "labels": {"duck.knative.dev/addressable": "true"}},
        "rules": [{"apiGroups": ["example.dev"], "resources": ["sinks"], "verbs": ["get", "list", "watch"]}],
    });
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(rig.client.clone());
    roles
        .patch(
            "example-sinks-addressable",
            &apply_params(),
            &Patch::Apply(&role),
        )
        .await
        .expect("role");

    let resource = kube::core::ApiResource {
        group: "example.dev".into(),
        version: "v1".into(),
        api_version: "example.dev/v1".into(),
        kind: "Sink".into(),
        plural: "sinks".into(),
    };
    let sinks: Api<kube::api::DynamicObject> =
        Api::namespaced_with(rig.client.clone(), &rig.ns, &resource);
    let sink = json!({"apiVersion": "example.dev/v1", "kind": "Sink", "metadata": {"name": "broker", "namespace": rig.ns}});
    eventually("the Sink kind to be served", DEADLINE, async || {
        sinks
            .patch("broker", &apply_params(), &Patch::Apply(&sink))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let status = json!({"apiVersion": "example.dev/v1", "kind": "Sink", "status": {"address": {"url": "http://broker-ingress.example.svc.cluster.local/ns/default"}}});
    sinks
        .patch_status("broker", &apply_params(), &Patch::Apply(&status))
        .await
        .expect("status");

    rig.apply_source(
        "orders",
        json!({"arn": ARN, "sink": {"ref": {"apiVersion": "example.dev/v1", "kind": "Sink", "name": "broker"}}}),
    )
    .await;
    eventually(
        "the sink URI from status.address.url",
        DEADLINE,
        async || {
            let s = rig.sources().get("orders").await.ok()?;
            (s.status?.sink_uri.as_deref()
                == Some("http://broker-ingress.example.svc.cluster.local/ns/default"))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irsa_and_an_invalid_arn_are_handled() {
    let rig = rig("irsa").await;
    rig.apply_source(
        "irsa",
        json!({"arn": ARN, "sink": {"uri": "http://x.example/"}, "auth": {"iam": {"roleArn": "arn:aws:iam::123456789012:role/reader"}}}),
    )
    .await;
    let accounts: Api<ServiceAccount> = rig.api();
    let account = eventually("the annotated ServiceAccount", DEADLINE, async || {
        accounts.get("awsdynamodbsource-irsa").await.ok()
    })
    .await;
    assert_eq!(
        account
            .annotations()
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some("arn:aws:iam::123456789012:role/reader")
    );
    // The CRD pattern admits it, our stricter parser does not (a 1-character table name).
    rig.apply_source("bad", json!({"arn": "arn:aws:dynamodb:us-west-2:123456789012:table/x", "sink": {"uri": "http://x.example/"}}))
        .await;
    let source = rig
        .wait_ready("bad", ConditionStatus::False, "InvalidARN")
        .await;
    let message = source
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.kind == "Ready"))
        .and_then(|c| c.message);
    assert!(message.unwrap_or_default().contains("spec.arn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_patterns_reach_the_adapter_and_a_bad_operator_is_reported_with_its_path() {
    let rig = rig("patterns").await;
    let shipped = json!({"dynamodb": {"NewImage": {"status": {"S": ["shipped"]}}}});
    let as_string = r#"{"eventName": ["REMOVE"]}"#;
    rig.apply_source(
        "patterns",
        json!({"arn": ARN, "sink": {"uri": "http://x.example/"}, "filter": {"patterns": [shipped, as_string]}}),
    )
    .await;
    let deployment = rig.deployment("patterns").await;
    let passed: serde_json::Value =
        serde_json::from_str(&env(&deployment, "FILTER_PATTERNS").expect("FILTER_PATTERNS is set"))
            .expect("FILTER_PATTERNS is JSON");
    assert_eq!(passed, json!([shipped, as_string]));

    // The API server admits any object; the controller finds the bad operator.
    let bad = json!({"dynamodb": {"NewImage": {"total": {"N": [{"numeric": [">", "100"]}]}}}});
    rig.apply_source(
        "patterns",
        json!({"arn": ARN, "sink": {"uri": "http://x.example/"}, "filter": {"patterns": [shipped, bad]}}),
    )
    .await;
    let source = rig
        .wait_ready("patterns", ConditionStatus::False, "InvalidFilterPattern")
        .await;
    let deployed = source
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.kind == "Deployed"))
        .cloned()
        .expect("a Deployed condition");
    let message = deployed.message.unwrap_or_default();
    assert_eq!(deployed.reason.as_deref(), Some("InvalidFilterPattern"));
    assert!(
        message.starts_with("spec.filter.patterns[1]: ")
            && message.contains(" at dynamodb.NewImage.total.N[0].numeric: "),
        "{message}"
    );
    // The running adapter keeps the last good patterns.
    let kept = rig.deployment("patterns").await;
    assert_eq!(
        env(&kept, "FILTER_PATTERNS").map(|v| serde_json::from_str::<serde_json::Value>(&v).ok()),
        Some(Some(json!([shipped, as_string])))
    );

    // Fixed, it is deployed again without anything else done.
    let fixed = json!({"dynamodb": {"NewImage": {"total": {"N": [{"numeric": [">", 100]}]}}}});
    rig.apply_source(
        "patterns",
        json!({"arn": ARN, "sink": {"uri": "http://x.example/"}, "filter": {"patterns": [shipped, fixed]}}),
    )
    .await;
    eventually(
        "the fixed patterns in the Deployment",
        DEADLINE,
        async || {
            let deployment = rig
                .api::<Deployment>()
                .get("awsdynamodbsource-patterns")
                .await
                .ok()?;
            let passed: serde_json::Value =
                serde_json::from_str(&env(&deployment, "FILTER_PATTERNS")?).ok()?;
            (passed == json!([shipped, fixed])).then_some(())
        },
    )
    .await;
}

/// Writes `summary` into the source's checkpoint ConfigMap, as the adapter does.
pub(crate) async fn write_summary(rig: &Rig, source: &str, summary: serde_json::Value) {
    let name = format!("awsdynamodbsource-{source}-checkpoint");
    let manifest = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": rig.ns},
        "data": {"summary.json": summary.to_string()},
    });
    let object: ConfigMap = serde_json::from_value(manifest).expect("a ConfigMap");
    rig.api::<ConfigMap>()
        .patch(
            &name,
            &kube::api::PatchParams::apply("summary-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("write the summary of {source}: {e}"));
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Waits until the source's KeepingUp condition has this status and reason.
async fn wait_keeping_up(
    rig: &Rig,
    name: &str,
    status: ConditionStatus,
    reason: &str,
) -> AWSDynamoDBSource {
    eventually(
        &format!("{name} KeepingUp={status:?} ({reason})"),
        DEADLINE,
        async || {
            let source = rig.sources().get(name).await.ok()?;
            let condition = source
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.kind == "KeepingUp")?
                .clone();
            (condition.status == status && condition.reason.as_deref() == Some(reason))
                .then_some(source)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lag_and_keeping_up_follow_the_summary_next_to_the_checkpoint() {
    let rig = rig("lag").await;
    // Before the source exists, so the first reconcile already reads it.
    write_summary(
        &rig,
        "lag",
        json!({"updatedAt": unix_now(), "iteratorAgeSeconds": 200.4, "recordsDelivered": 10, "shardsRead": 3}),
    )
    .await;
    rig.apply_source(
        "lag",
        json!({"arn": ARN, "sink": {"uri": "http://x.example/"}}),
    )
    .await;
    let source = wait_keeping_up(&rig, "lag", ConditionStatus::True, "CaughtUp").await;
    let status = source.status.expect("a status");
    assert_eq!(status.lag.as_deref(), Some("3m20s"));
    let message = status
        .conditions
        .iter()
        .find(|c| c.kind == "KeepingUp")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("3 shards read"), "{message}");

    // The sink fails for two minutes: the next reconcile (here: a label on
    // the source; otherwise within a minute) reports it.
    let now = unix_now();
    write_summary(
        &rig,
        "lag",
        json!({"updatedAt": now, "iteratorAgeSeconds": 130, "sinkFailingSince": now - 120}),
    )
    .await;
    rig.sources()
        .patch(
            "lag",
            &kube::api::PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"nudge": "1"}}})),
        )
        .await
        .expect("label the source");
    let source = wait_keeping_up(&rig, "lag", ConditionStatus::False, "SinkFailing").await;
    let status = source.status.expect("a status");
    assert_eq!(status.lag.as_deref(), Some("2m10s"));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .expect("Ready");
    assert_ne!(
        ready.reason.as_deref(),
        Some("SinkFailing"),
        "keeping up is reported beside Ready, not in it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reaches_the_adapter_and_the_last_one_applied_is_reported() {
    let rig = rig("replay").await;
    write_summary(
        &rig,
        "replay",
        json!({
            "updatedAt": unix_now(), "iteratorAgeSeconds": 0,
            "lastReplay": {"token": "fix-1", "from": "2024-05-01T12:00:00Z", "appliedAt": 1_714_600_000},
        }),
    )
    .await;
    rig.apply_source(
        "replay",
        json!({"arn": ARN, "sink": {"uri": "http://x.example/"}, "replay": {"from": "2024-05-01T12:00:00Z", "token": "fix-1"}}),
    )
    .await;
    let deployment = rig.deployment("replay").await;
    assert_eq!(
        env(&deployment, "REPLAY_FROM").as_deref(),
        Some("2024-05-01T12:00:00Z")
    );
    assert_eq!(env(&deployment, "REPLAY_TOKEN").as_deref(), Some("fix-1"));
    let reported = eventually("status.lastReplay", DEADLINE, async || {
        rig.sources().get("replay").await.ok()?.status?.last_replay
    })
    .await;
    assert_eq!(
        (
            reported.token.as_str(),
            reported.from.as_str(),
            reported.applied_at.as_str()
        ),
        ("fix-1", "2024-05-01T12:00:00Z", "2024-05-01T21:46:40Z")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adapter_role_reaches_its_own_checkpoint_and_no_other() {
    let rig = rig("checkpoint-rbac").await;
    for name in ["a", "b"] {
        rig.apply_source(
            name,
            json!({"arn": ARN, "sink": {"uri": "http://x.example/"}}),
        )
        .await;
        rig.deployment(name).await;
    }
    let cluster = cluster::shared();
    let adapter_a = cluster
        .service_account(&rig.ns, "awsdynamodbsource-a")
        .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(adapter_a, &rig.ns);
    let own = "awsdynamodbsource-a-checkpoint";
    let mut checkpoint = eventually("A's checkpoint readable by A", DEADLINE, async || {
        config_maps.get(own).await.ok()
    })
    .await;
    checkpoint.data = Some([("checkpoint.json".to_owned(), "{}".to_owned())].into());
    config_maps
        .replace(own, &Default::default(), &checkpoint)
        .await
        .expect("A may update its own checkpoint");
    let other = config_maps
        .get("awsdynamodbsource-b-checkpoint")
        .await
        .expect_err("B's checkpoint");
    assert_eq!(api_status(&other), Some(403));
    let listing = config_maps
        .list(&Default::default())
        .await
        .expect_err("listing");
    assert_eq!(api_status(&listing), Some(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_replicas_only_the_leader_reconciles_and_a_standby_takes_over() {
    let cluster = cluster::shared();
    ctl::install(cluster);
    let ns = cluster.namespace("leader").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = ctl::kubeconfig(cluster, dir.path()).await;
    let lease = format!("lease-{ns}");
    let mut first = ControllerProcess::spawn(
        &kubeconfig,
        &ns,
        Some((&lease, "first")),
        dir.path().join("first.log"),
    );
    first.wait_serving().await;
    eventually("the first replica to lead", DEADLINE, async || {
        (first.metric("dynamodb_source_controller_leader").await == Some(1.0)).then_some(())
    })
    .await;
    let mut second = ControllerProcess::spawn(
        &kubeconfig,
        &ns,
        Some((&lease, "second")),
        dir.path().join("second.log"),
    );
    second.wait_serving().await;

    let client = cluster.admin().await;
    let sources: Api<AWSDynamoDBSource> = Api::namespaced(client.clone(), &ns);
    let apply = async |name: &str| {
        let source = json!({
            "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"arn": ARN, "sink": {"uri": "http://x.example/"}},
        });
        sources
            .patch(name, &apply_params(), &Patch::Apply(&source))
            .await
            .expect("apply");
    };
    apply("one").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually("the leader to reconcile", DEADLINE, async || {
        deployments.get("awsdynamodbsource-one").await.ok()
    })
    .await;
    assert_eq!(
        second.metric("dynamodb_source_controller_leader").await,
        Some(0.0),
        "the standby does not lead"
    );
    assert_eq!(
        second
            .metric("dynamodb_source_controller_reconciliations_total")
            .await
            .unwrap_or(0.0),
        0.0,
        "the standby does not reconcile"
    );

    first.kill();
    eventually(
        "the standby to take over",
        Duration::from_secs(90),
        async || {
            (second.metric("dynamodb_source_controller_leader").await == Some(1.0)).then_some(())
        },
    )
    .await;
    apply("two").await;
    eventually("the new leader to reconcile", DEADLINE, async || {
        deployments.get("awsdynamodbsource-two").await.ok()
    })
    .await;
    let status = second.terminate();
    assert!(
        status.success(),
        "SIGTERM exits 0: {status}\n{}",
        second.logs()
    );
}
