//! The whole path on a real node (`tests/cluster/up --node=real`: a kubelet,
//! containerd and runc next to the test control plane): the image built from
//! the Dockerfile, `helm install` of the chart, and a sample manifest from
//! `config/samples` applied with `kubectl`, until CloudEvents arrive at a sink
//! on the host, parsed by the official CloudEvents SDK. Then what a user
//! lives through: the adapter pod deleted mid-writes, the source edited, the
//! credentials rotated, the stream trimmed past the checkpoint, bad manifests
//! fixed, the source deleted.
//!
//! Pods run in the host's network namespace (the node's admission policy), so
//! moto, the sinks and the apiserver are all on 127.0.0.1, and every adapter
//! listens on the host's port 9090: one adapter at a time on the node, which
//! is why this is one test walking through the steps in order, and why the
//! node's admission policy recreates Deployments instead of rolling them (a
//! surge pod could not start beside the old one; the rolling hand-over of
//! shards between replicas is tested with processes, `adapter_leases`). The
//! controller's metrics move to 9091 for the same reason.
//!
//! Skipped, with the reason, only where the machine cannot run containers
//! (not Linux, not root, no cgroups); everything else it needs is installed
//! by `tests/cluster/up --node=real`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::chart::helm_ok;
use crate::support::cluster::{Cluster, DEADLINE};
use crate::support::fake_streams::{FakeStreams, Fault, Op, changes, ids};
use crate::support::moto::Moto;
use crate::support::node::{self, HostProcess};
use crate::support::receiver::Receiver;
use crate::support::{eventually, repo_path, venv};

/// The controller's metrics port in this install: the adapters have 9090 of
/// the host (see the module docs).
const CONTROLLER_METRICS_PORT: &str = "9091";
/// The adapter Deployment of a source (`Names::of(name).adapter`).
fn adapter_name(source: &str) -> String {
    format!("awsdynamodbsource-{source}")
}

/// The labels of everything the controller makes for a source (short names).
fn selector(source: &str) -> String {
    format!("app.kubernetes.io/name=awsdynamodbsource,app.kubernetes.io/instance={source}")
}

/// The official CloudEvents SDK as the sink: `tests/peers/event_display.py`
/// on a free loopback port, appending every event it parsed to a file.
struct Display {
    child: Child,
    out: PathBuf,
    url: String,
}

impl Display {
    async fn start(dir: &Path) -> Display {
        let out = dir.join("events.jsonl");
        let port_file = dir.join("display.port");
        let child = Command::new(venv().join("bin/python"))
            .arg(repo_path("tests/peers/event_display.py"))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--out")
            .arg(&out)
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("display.log")).expect("log"))
            .spawn()
            .expect("the event display starts (make venv)");
        let port = eventually("the event display's port", DEADLINE, async || {
            std::fs::read_to_string(&port_file).ok()
        })
        .await;
        Display {
            child,
            out,
            url: format!("http://127.0.0.1:{}/", port.trim()),
        }
    }

    /// Every event parsed so far: `{"attributes", "data", "body"}`.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["attributes"]["id"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kubectl apply` of objects (JSON) in `namespace`.
fn apply(cluster: &Cluster, namespace: &str, objects: &[Value], dir: &Path) {
    let file = dir.join("apply.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&file, list.to_string()).expect("write");
    cluster.kubectl(&[
        "apply",
        "-n",
        namespace,
        "-f",
        file.to_str().expect("utf-8"),
    ]);
}

/// `kubectl get awsdynamodbsource NAME` as a user reads it: the printed
/// columns `NAME READY REASON SINK AGE`.
fn get_source_line(cluster: &Cluster, namespace: &str, name: &str) -> String {
    cluster
        .kubectl(&[
            "get",
            "awsdynamodbsource",
            name,
            "-n",
            namespace,
            "--no-headers",
        ])
        .trim()
        .to_owned()
}

/// The Ready condition of a source: (status, reason, message).
async fn ready(
    sources: &Api<kube::api::DynamicObject>,
    name: &str,
) -> Option<(String, String, String)> {
    let source = sources.get_opt(name).await.ok()??;
    let conditions = source.data["status"]["conditions"].as_array()?.clone();
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    let field = |f: &str| ready[f].as_str().unwrap_or_default().to_owned();
    Some((field("status"), field("reason"), field("message")))
}

async fn wait_ready(sources: &Api<kube::api::DynamicObject>, name: &str, status: &str) {
    eventually(
        &format!("source {name} Ready={status}"),
        DEADLINE,
        async || {
            ready(sources, name)
                .await
                .filter(|(s, _, _)| s == status)
                .map(|_| ())
        },
    )
    .await;
}

/// The one Running, ready adapter pod of a source (its name and uid), once
/// every other pod of it is gone.
async fn running_adapter(pods: &Api<Pod>, source: &str, not: Option<&str>) -> (String, String) {
    eventually(
        &format!("one running adapter pod of {source} (other than {not:?})"),
        DEADLINE,
        async || {
            let list = pods
                .list(&ListParams::default().labels(&selector(source)))
                .await
                .ok()?;
            let [pod] = list.items.as_slice() else {
                return None;
            };
            let uid = pod.metadata.uid.clone()?;
            if Some(uid.as_str()) == not || pod.metadata.deletion_timestamp.is_some() {
                return None;
            }
            let status = pod.status.as_ref()?;
            let ready = status
                .container_statuses
                .iter()
                .flatten()
                .all(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()));
            (status.phase.as_deref() == Some("Running") && ready)
                .then(|| (pod.metadata.name.clone().unwrap_or_default(), uid))
        },
    )
    .await
}

/// No pod of the source's adapter restarted (no crash loop).
async fn restarts(pods: &Api<Pod>, source: &str) -> i32 {
    pods.list(&ListParams::default().labels(&selector(source)))
        .await
        .expect("list pods")
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

/// Whether no object of `api` carries the label `selector`; `None` when the
/// list failed (the wait asks again).
async fn none_labelled<K>(api: &Api<K>, selector: &str) -> Option<bool>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let listed = api
        .list(&ListParams::default().labels(selector))
        .await
        .ok()?;
    Some(listed.items.is_empty())
}

/// Waits until the source's adapter objects are gone (owner references: the
/// garbage collector removes them with the source) and port 9090 is free.
async fn gone(client: &kube::Client, namespace: &str, source: &str) {
    let name = adapter_name(source);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = selector(source);
    eventually(
        &format!("the Deployment, pod, ConfigMap, Role and RoleBinding of {source} to be gone"),
        DEADLINE,
        async || {
            let none = deployments.get_opt(&name).await.ok()?.is_none()
                && none_labelled(&config_maps, &selector).await?
                && none_labelled(&roles, &selector).await?
                && none_labelled(&bindings, &selector).await?
                && none_labelled(&pods, &selector).await?
                && node::adapter_processes(namespace).is_empty();
            none.then_some(())
        },
    )
    .await;
}

/// The adapter process of the namespace's one source, as the host sees it.
async fn adapter_process(namespace: &str, what: &str) -> HostProcess {
    eventually(what, DEADLINE, async || {
        let mut found = node::adapter_processes(namespace);
        (found.len() == 1).then(|| found.remove(0))
    })
    .await
}

/// The ids of every record moto's stream holds for `table`.
async fn stream_ids(moto: &Moto, table: &str) -> Vec<String> {
    moto.stream_records(table)
        .await
        .iter()
        .filter_map(|r| r.event_id().map(str::to_owned))
        .collect()
}

/// Waits until the display has every id of `expected`.
async fn arrived(display: &Display, expected: &[String], what: &str) {
    let wanted: HashSet<&String> = expected.iter().collect();
    eventually(what, DEADLINE, async || {
        let got: HashSet<String> = display.ids().into_iter().collect();
        wanted.iter().all(|id| got.contains(*id)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_helm_install_to_cloudevents_on_a_real_node() {
    let Some(cluster) = node::real_node_or_skip() else {
        return;
    };
    let image = node::image(cluster);
    let client = cluster.admin().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut report = node::FailureReport::new(cluster);

    // ---- helm install, with the image built here, into a `restricted` namespace.
    let release_ns = node::namespace(
        cluster,
        "ddbsrc-system",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await;
    report.watch(&release_ns);
    let (repository, tag) = image.rsplit_once(':').expect("NAME:TAG");
    // No admission webhook: this node has no kube-proxy, so the API server cannot reach a
    // Service's cluster IP (and would dial it off loopback); controller_webhook proves the
    // chart's webhook against the API server directly.
    helm_ok(
        &[
            "install",
            "dynamodb-source",
            "charts/dynamodb-source",
            "--namespace",
            &release_ns,
            "--set",
            &format!(
                "image.repository={repository},image.tag={tag},metrics.port={CONTROLLER_METRICS_PORT},metrics.service.port={CONTROLLER_METRICS_PORT},logFormat=text,webhook.enabled=false"
            ),
            // Longer than the suite's other deadlines: the controller's first pod is
            // the node's first container, started while the rest of the suite loads
            // the machine.
            "--wait",
            "--timeout",
            "300s",
        ],
        Some(&cluster.kubeconfig),
    );
    let release_pods: Api<Pod> = Api::namespaced(client.clone(), &release_ns);
    let controller_pod = eventually("the controller pod to run", DEADLINE, async || {
        let pods = release_pods.list(&ListParams::default()).await.ok()?;
        let pod = pods
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))?;
        pod.metadata.name
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &release_ns);
    eventually(
        "the controller pod to become the leader",
        DEADLINE,
        async || {
            let lease = leases.get_opt("dynamodb-source-controller").await.ok()??;
            (lease.spec?.holder_identity.as_deref() == Some(controller_pod.as_str())).then_some(())
        },
    )
    .await;

    // ---- A sample manifest: credentials from a Secret, moto on the host, a sink on the host.
    let ns = node::namespace(cluster, "ddbsrc-e2e", &[]).await;
    report.watch(&ns);
    let moto = Moto::start().await;
    let arn = moto.create_table("orders", "NEW_AND_OLD_IMAGES");
    let display = Display::start(dir.path()).await;
    let sample = std::fs::read_to_string(repo_path(
        "config/samples/awsdynamodbsource-credentials-secret.yaml",
    ))
    .expect("the sample");
    let mut objects: Vec<Value> = serde_saphyr::from_multiple::<Value>(&sample)
        .expect("YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect();
    let source_name = {
        let source = objects
            .iter_mut()
            .find(|o| o["kind"] == "AWSDynamoDBSource")
            .expect("a source in the sample");
        source["spec"]["arn"] = json!(arn);
        source["spec"]["endpoint"] = json!({"url": moto.endpoint});
        source["spec"]["sink"] = json!({"uri": display.url});
        source["spec"]["startingPosition"] = json!("TRIM_HORIZON");
        source["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned()
    };
    let secret_name = objects
        .iter()
        .find(|o| o["kind"] == "Secret")
        .and_then(|o| o["metadata"]["name"].as_str())
        .expect("a Secret in the sample")
        .to_owned();
    apply(cluster, &ns, &objects, dir.path());

    let sources: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::discovery::ApiResource {
            group: "sources.triggermesh.io".into(),
            version: "v1alpha1".into(),
            api_version: "sources.triggermesh.io/v1alpha1".into(),
            kind: "AWSDynamoDBSource".into(),
            plural: "awsdynamodbsources".into(),
        },
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_ready(&sources, &source_name, "True").await;
    let (_, first_pod) = running_adapter(&pods, &source_name, None).await;
    let line = get_source_line(cluster, &ns, &source_name);
    assert!(
        line.contains(" True "),
        "kubectl get shows it Ready: {line}"
    );

    // The pod as the host sees it: the image's user, no capabilities, no new
    // privileges, a seccomp filter, the Secret's key in its environment.
    let process = adapter_process(&ns, "the adapter process on the host").await;
    assert_eq!(
        process
            .status_field("Uid")
            .as_deref()
            .map(|u| u.split_whitespace().next()),
        Some(Some("65532")),
        "{}",
        process.status
    );
    assert_eq!(
        process.status_field("CapEff").as_deref(),
        Some("0000000000000000")
    );
    assert_eq!(process.status_field("NoNewPrivs").as_deref(), Some("1"));
    assert_eq!(process.status_field("Seccomp").as_deref(), Some("2"));
    assert_eq!(
        process.env("AWS_ACCESS_KEY_ID").as_deref(),
        Some("AKIAIOSFODNN7EXAMPLE"),
        "the sample Secret's key"
    );

    // `kubectl logs` reaches the kubelet; the image has no CA bundle, and the
    // binary does not go looking for one (its roots are compiled in).
    let logs = cluster.kubectl(&[
        "logs",
        "-n",
        &ns,
        &format!("deployment/{}", adapter_name(&source_name)),
    ]);
    assert!(logs.contains("adapter started"), "{logs}");
    assert!(!logs.contains("root CA certificates"), "{logs}");

    // Writes become CloudEvents, parsed by the SDK.
    moto.python(&["workload", "orders", "4", "12", "1"]);
    let written = stream_ids(&moto, "orders").await;
    assert_eq!(written.len(), 12);
    arrived(&display, &written, "the first writes as CloudEvents").await;
    for event in display.events() {
        assert_eq!(
            event["attributes"]["type"],
            "com.amazon.dynamodb.stream_record"
        );
        assert_eq!(event["attributes"]["specversion"], "1.0");
        assert!(
            event["data"]["dynamodb"]["Keys"]["pk"]["S"].is_string(),
            "AWS format: typed attribute values: {event}"
        );
    }

    // ---- The adapter pod deleted while items are written: the new pod resumes
    // from the ConfigMap checkpoint; nothing is lost.
    let checkpoints: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let checkpoint_name = format!("{}-checkpoint", adapter_name(&source_name));
    let mut writer = Command::new(venv().join("bin/python"))
        .arg(repo_path("tests/peers/dynamodb.py"))
        .args([&moto.endpoint, "workload", "orders", "6", "400", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the writer starts");
    let before = display.ids().len();
    eventually("events of the writes in progress", DEADLINE, async || {
        (display.ids().len() >= before + 10).then_some(())
    })
    .await;
    let delivered_before_delete = display.ids().len();
    pods.delete(
        &running_adapter(&pods, &source_name, None).await.0,
        &DeleteParams::default(),
    )
    .await
    .expect("delete the adapter pod");
    let status = writer.wait().expect("the writer ends");
    assert!(status.success(), "the writer failed");
    let (_, second_pod) = running_adapter(&pods, &source_name, Some(&first_pod)).await;
    let written = stream_ids(&moto, "orders").await;
    arrived(&display, &written, "every write after the pod was deleted").await;
    let all = display.ids();
    let repeats = all.len() - all.iter().collect::<HashSet<_>>().len();
    assert!(
        repeats < delivered_before_delete,
        "the new pod resumed from the checkpoint ({repeats} repeats of {delivered_before_delete} delivered before)"
    );
    let checkpoint = checkpoints
        .get(&checkpoint_name)
        .await
        .expect("the checkpoint ConfigMap");
    assert!(
        checkpoint
            .data
            .as_ref()
            .is_some_and(|d| d.contains_key("checkpoint.json")),
        "the pod saved its checkpoint in the ConfigMap: {checkpoint:?}"
    );
    assert_eq!(restarts(&pods, &source_name).await, 0);

    // ---- The source edited (payload format, filter): the adapter is rolled and
    // the events change shape.
    sources
        .patch(
            &source_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "payload": {"format": "Plain"},
                "filter": {"eventNames": ["INSERT"]},
            }})),
        )
        .await
        .expect("patch the source");
    let (_, third_pod) = running_adapter(&pods, &source_name, Some(&second_pod)).await;
    let process = adapter_process(&ns, "the edited adapter process").await;
    assert_eq!(process.env("PAYLOAD_FORMAT").as_deref(), Some("Plain"));
    let before: HashSet<String> = display.ids().into_iter().collect();
    // Three inserts of new keys, an update and a delete: only the inserts come,
    // with plain JSON attribute values.
    moto.python(&["demo-writes", "orders"]);
    let records = moto.stream_records("orders").await;
    let inserts: Vec<String> = records
        .iter()
        .filter(|r| {
            r.event_name().map(|n| n.as_str()) == Some("INSERT")
                && !before.contains(r.event_id().unwrap_or_default())
        })
        .filter_map(|r| r.event_id().map(str::to_owned))
        .collect();
    assert_eq!(inserts.len(), 3, "demo-writes inserts three new keys");
    arrived(&display, &inserts, "the inserts after the edit").await;
    let shaped: Vec<Value> = display
        .events()
        .into_iter()
        .filter(|e| {
            e["attributes"]["id"]
                .as_str()
                .is_some_and(|id| !before.contains(id))
        })
        .collect();
    assert_eq!(shaped.len(), 3, "only the inserts: {shaped:#?}");
    for event in &shaped {
        assert_eq!(
            event["attributes"]["dynamodboperation"], "INSERT",
            "{event}"
        );
        assert!(
            event["data"]["dynamodb"]["NewImage"]["pk"].is_string(),
            "Plain format: plain attribute values: {event}"
        );
    }

    // ---- The credentials rotated in the Secret reach the adapter: the
    // controller rolls the Deployment.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .patch(
            &secret_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": "AKIAROTATEDEXAMPLE1"}})),
        )
        .await
        .expect("rotate the key");
    let (_, fourth_pod) = running_adapter(&pods, &source_name, Some(&third_pod)).await;
    let process = eventually("the rotated key in the adapter", DEADLINE, async || {
        let found = node::adapter_processes(&ns);
        found
            .into_iter()
            .find(|p| p.env("AWS_ACCESS_KEY_ID").as_deref() == Some("AKIAROTATEDEXAMPLE1"))
    })
    .await;
    assert_eq!(node::adapter_processes(&ns).len(), 1, "{process:?}");
    let before: HashSet<String> = display.ids().into_iter().collect();
    // order-2 was deleted: inserting it again is an insert.
    moto.python(&["demo-writes", "orders"]);
    let fresh: Vec<String> = moto
        .stream_records("orders")
        .await
        .iter()
        .filter(|r| {
            r.event_name().map(|n| n.as_str()) == Some("INSERT")
                && !before.contains(r.event_id().unwrap_or_default())
        })
        .filter_map(|r| r.event_id().map(str::to_owned))
        .collect();
    assert_eq!(fresh.len(), 1, "order-2 inserted again");
    arrived(&display, &fresh, "events after the rotation").await;
    let _ = fourth_pod;

    // ---- The source deleted: everything the controller made for it goes.
    sources
        .delete(&source_name, &DeleteParams::default())
        .await
        .expect("delete the source");
    gone(&client, &ns, &source_name).await;
    drop(display);
    drop(moto);

    // ---- The stream trimmed past the checkpoint: a TrimmedData Event on the
    // source, recorded by the adapter pod with its own RBAC.
    let fake = FakeStreams::start().await;
    let sink = Receiver::accepting().await;
    let stream = fake.enable_stream("trimmed");
    let shard = fake.add_shard(&stream, None);
    let first = fake.append(&shard, changes(2, 10, 0));
    let trimmed = json!({
        "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
        "metadata": {"name": "trimmed"},
        "spec": {
            "arn": fake.table_arn("trimmed"),
            "endpoint": {"url": fake.endpoint},
            "sink": {"uri": sink.url},
            "startingPosition": "TRIM_HORIZON",
            "auth": {"credentials": {
                "accessKeyID": {"valueFromSecret": {"name": secret_name, "key": "AWS_ACCESS_KEY_ID"}},
                "secretAccessKey": {"valueFromSecret": {"name": secret_name, "key": "AWS_SECRET_ACCESS_KEY"}},
            }},
        },
    });
    apply(cluster, &ns, &[trimmed], dir.path());
    wait_ready(&sources, "trimmed", "True").await;
    let (_, trimmed_pod) = running_adapter(&pods, "trimmed", None).await;
    eventually("the first records delivered", DEADLINE, async || {
        (sink.acknowledged_ids().len() >= first.len()).then_some(())
    })
    .await;
    let last = first.last().expect("records").sequence_number.clone();
    let checkpoint_name = format!("{}-checkpoint", adapter_name("trimmed"));
    eventually("the checkpoint at the last record", DEADLINE, async || {
        let cm = checkpoints.get_opt(&checkpoint_name).await.ok()??;
        let text = cm.data?.get("checkpoint.json")?.clone();
        let value: Value = serde_json::from_str(&text).ok()?;
        (value["shards"][&shard]["after"] == json!(last)).then_some(())
    })
    .await;
    // The next pod cannot get an iterator for a while; meanwhile retention
    // trims past the checkpoint.
    fake.fail_for(
        Op::GetShardIterator,
        Duration::from_secs(15),
        Fault::LimitExceeded,
    );
    pods.delete(
        &running_adapter(&pods, "trimmed", None).await.0,
        &DeleteParams::default(),
    )
    .await
    .expect("delete the adapter pod");
    let second = fake.append(&shard, changes(2, 10, 10));
    assert_eq!(fake.trim(&shard, &second[4].sequence_number), 14);
    let _ = running_adapter(&pods, "trimmed", Some(&trimmed_pod)).await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = eventually("a TrimmedData Event on the source", DEADLINE, async || {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("TrimmedData"))
    })
    .await;
    let regarding = event.regarding.clone().expect("regarding");
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("AWSDynamoDBSource"), Some("trimmed"))
    );
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("dynamodb-source-adapter"),
        "recorded by the adapter pod: {event:?}"
    );
    let kept: Vec<String> = ids(&second[4..]);
    eventually("the records after the trimmed gap", DEADLINE, async || {
        let got: HashSet<String> = sink.acknowledged_ids().into_iter().collect();
        kept.iter().all(|id| got.contains(id)).then_some(())
    })
    .await;
    sources
        .delete("trimmed", &DeleteParams::default())
        .await
        .expect("delete the source");
    gone(&client, &ns, "trimmed").await;

    // ---- Bad manifests show the precise reason in `kubectl get` and recover
    // once fixed, with no pod crash-looping meanwhile.
    let moto = Moto::start().await;
    let arn = moto.create_table("fixed", "NEW_AND_OLD_IMAGES");
    let sink = Receiver::accepting().await;
    let broken = |arn: &str, key: &str| {
        json!({
            "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
            "metadata": {"name": "broken"},
            "spec": {
                "arn": arn,
                "endpoint": {"url": moto.endpoint},
                "sink": {"uri": sink.url},
                "startingPosition": "TRIM_HORIZON",
                "auth": {"credentials": {
                    "accessKeyID": {"valueFromSecret": {"name": secret_name, "key": key}},
                    "secretAccessKey": {"valueFromSecret": {"name": secret_name, "key": "AWS_SECRET_ACCESS_KEY"}},
                }},
            },
        })
    };
    let problems: BTreeMap<&str, (Value, &str, &str)> = BTreeMap::from([
        (
            "a missing Secret key",
            (
                broken(&arn, "AWS_ACCESS_KEY"),
                "SecretKeyNotFound",
                "has no key \"AWS_ACCESS_KEY\"",
            ),
        ),
        (
            "a wrong ARN",
            (
                broken(
                    "arn:aws:dynamodb:us-east-1:123456789012:table/no such table",
                    "AWS_ACCESS_KEY_ID",
                ),
                "InvalidARN",
                "spec.arn",
            ),
        ),
    ]);
    for (what, (manifest, reason, message)) in problems {
        apply(cluster, &ns, &[manifest], dir.path());
        let (_, _, got_message) = eventually(
            &format!("{what}: Ready=False with reason {reason}"),
            DEADLINE,
            async || {
                ready(&sources, "broken")
                    .await
                    .filter(|(s, r, _)| s == "False" && r == reason)
            },
        )
        .await;
        assert!(got_message.contains(message), "{what}: {got_message}");
        let line = get_source_line(cluster, &ns, "broken");
        assert!(
            line.contains(" False ") && line.contains(reason),
            "{what}: kubectl get shows the reason: {line}"
        );
        // Nothing runs that could crash-loop.
        assert!(
            pods.list(&ListParams::default())
                .await
                .expect("pods")
                .items
                .is_empty(),
            "{what}: no adapter pod for a source that cannot work"
        );
        // Fixed: Ready, running, delivering.
        apply(
            cluster,
            &ns,
            &[broken(&arn, "AWS_ACCESS_KEY_ID")],
            dir.path(),
        );
        wait_ready(&sources, "broken", "True").await;
        let _ = running_adapter(&pods, "broken", None).await;
        let before = sink.acknowledged_ids().len();
        moto.python(&["workload", "fixed", "1", "1", "5"]);
        eventually(
            &format!("{what}: events once fixed"),
            DEADLINE,
            async || (sink.acknowledged_ids().len() > before).then_some(()),
        )
        .await;
        assert_eq!(restarts(&pods, "broken").await, 0, "{what}: no restart");
        sources
            .delete("broken", &DeleteParams::default())
            .await
            .expect("delete the source");
        gone(&client, &ns, "broken").await;
    }

    // The controller never restarted either.
    let restarted: i32 = release_pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    assert_eq!(restarted, 0, "the controller pod restarted");
    helm_ok(
        &[
            "uninstall",
            "dynamodb-source",
            "--namespace",
            &release_ns,
            "--wait",
        ],
        Some(&cluster.kubeconfig),
    );
}

/// The host's disk is shared and can be nearly full (a CI run met one): a kubelet
/// with eviction thresholds then taints its node `disk-pressure:NoSchedule` and
/// evicts the controller, whose replacement stays Pending until helm gives up.
/// `up --node=real` configures no thresholds; the kubelet's own account of its
/// configuration says whether it took them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_node_has_no_eviction_thresholds_and_no_taints() {
    let Some(cluster) = node::real_node_or_skip() else {
        return;
    };
    let log_path = cluster.dir.join("logs").join("kubelet.log");
    let log = std::fs::read_to_string(&log_path).expect("the kubelet's log");
    let node_config = log
        .lines()
        .find(|l| l.contains("Creating Container Manager object based on Node Config"))
        .expect("the kubelet logs its node config at start");
    assert!(
        node_config.contains(r#""HardEvictionThresholds":[]"#),
        "the kubelet has eviction thresholds: {node_config}"
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cluster.admin().await);
    let node = nodes.get(node::NODE_NAME).await.expect("the node");
    let spec = node.spec.unwrap_or_default();
    assert_eq!(spec.taints.unwrap_or_default(), vec![], "the node's taints");
    let pressures: Vec<String> = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.ends_with("Pressure") && c.status != "False")
        .map(|c| format!("{}={}", c.type_, c.status))
        .collect();
    assert_eq!(
        pressures,
        Vec::<String>::new(),
        "the node's pressure conditions"
    );
}
