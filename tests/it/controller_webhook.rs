//! The controller's validating admission webhook, called by the real API server: the
//! chart's `ValidatingWebhookConfiguration` (rendered by helm, its `clientConfig` pointed at
//! the controller process on loopback and its CA) makes `kubectl apply` refuse a source
//! whose filter patterns do not parse, with the path of the bad operator.

use std::process::Command;

use base64::Engine as _;
use dynamodb_source_api::resource::AWSDynamoDBSource;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::cluster::{self, Cluster, DEADLINE, api_status};
use crate::support::controller::{self as ctl, ControllerProcess};
use crate::support::tls::ServerCert;
use crate::support::{eventually, free_port};

const ARN: &str = "arn:aws:dynamodb:us-west-2:123456789012:table/orders";

fn source(ns: &str, name: &str, patterns: Value) -> Value {
    json!({
        "apiVersion": "sources.triggermesh.io/v1alpha1",
        "kind": "AWSDynamoDBSource",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"arn": ARN, "sink": {"uri": "http://x.example/"}, "filter": {"patterns": patterns}},
    })
}

/// The chart's webhook configuration, registered for one namespace only (other tests share
/// this API server) and calling `port` on loopback; deleted when dropped.
struct Registration {
    name: String,
    kubeconfig: std::path::PathBuf,
}

impl Registration {
    async fn new(cluster: &Cluster, ns: &str, port: u16, ca_pem: &str) -> Registration {
        // The chart's 5 s timeout, with Fail, would refuse a valid write whenever the
        // loaded test machine stalls the controller that long: the test gives 30 s.
        let objects = crate::chart::render(&[
            "--set",
            "webhook.failurePolicy=Fail,webhook.timeoutSeconds=30",
        ]);
        let mut configuration = objects
            .into_iter()
            .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
            .expect("the chart renders a ValidatingWebhookConfiguration");
        let name = format!("test-{ns}");
        configuration["metadata"] = json!({ "name": name });
        let webhook = &mut configuration["webhooks"][0];
        let path = webhook["clientConfig"]["service"]["path"].clone();
        webhook["clientConfig"] = json!({
            "url": format!("https://127.0.0.1:{port}{}", path.as_str().expect("a path")),
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
        });
        webhook["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
        let configuration: ValidatingWebhookConfiguration =
            serde_json::from_value(configuration).expect("a ValidatingWebhookConfiguration");
        Api::<ValidatingWebhookConfiguration>::all(cluster.admin().await)
            .create(&PostParams::default(), &configuration)
            .await
            .expect("the API server accepts the chart's webhook configuration");
        Registration {
            name,
            kubeconfig: cluster.kubeconfig.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args([
                "delete",
                "validatingwebhookconfiguration",
                &self.name,
                "--ignore-not-found",
            ])
            .output();
    }
}

/// `kubectl apply` of `manifest`, as a user runs it: its exit status and what it printed.
fn kubectl_apply(cluster: &Cluster, dir: &std::path::Path, manifest: &Value) -> (bool, String) {
    let file = dir.join("manifest.json");
    std::fs::write(&file, manifest.to_string()).expect("write the manifest");
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["apply", "-f"])
        .arg(&file)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_filter_patterns_that_do_not_parse_naming_the_bad_operator() {
    let cluster = cluster::shared();
    ctl::install(cluster);
    let ns = cluster.namespace("webhook").await;
    let client = cluster.admin().await;
    let sources: Api<AWSDynamoDBSource> = Api::namespaced(client.clone(), &ns);
    let dir = tempfile::tempdir().expect("tempdir");

    // Stored before the webhook existed: a pattern that is not JSON.
    let legacy: AWSDynamoDBSource =
        serde_json::from_value(source(&ns, "legacy", json!(["not json"]))).expect("a source");
    sources
        .create(&PostParams::default(), &legacy)
        .await
        .expect("no webhook yet");

    let certificate = ServerCert::new();
    let cert_dir = dir.path().join("webhook");
    std::fs::create_dir(&cert_dir).expect("mkdir");
    std::fs::write(cert_dir.join("tls.crt"), &certificate.cert_pem).expect("write tls.crt");
    std::fs::write(cert_dir.join("tls.key"), &certificate.key_pem).expect("write tls.key");
    let port = free_port();
    let kubeconfig = ctl::kubeconfig(cluster, dir.path()).await;
    let mut controller = ControllerProcess::spawn_with(
        &kubeconfig,
        &ns,
        None,
        dir.path().join("controller.log"),
        &[
            ("WEBHOOK_PORT", &port.to_string()),
            ("WEBHOOK_CERT_DIR", cert_dir.to_str().expect("UTF-8")),
        ],
    );
    controller.wait_serving().await;
    let _registration = Registration::new(cluster, &ns, port, &certificate.ca_pem).await;

    // The API server picks the configuration up within moments: probe with a dry run,
    // which calls the webhook and stores nothing.
    let probe: AWSDynamoDBSource =
        serde_json::from_value(source(&ns, "probe", json!(["{"]))).expect("a source");
    let denied = eventually("the API server to call the webhook", DEADLINE, async || {
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let error = sources.create(&dry_run, &probe).await.err()?;
        (api_status(&error) == Some(422)).then_some(error)
    })
    .await;
    let kube::Error::Api(status) = denied else {
        panic!("an API error: {denied:?}");
    };
    assert_eq!(status.reason, "Invalid");
    assert!(
        status.message.contains(
            "admission webhook \"validate.awsdynamodbsources.sources.triggermesh.io\" denied the request: spec.filter.patterns[0]"
        ),
        "{}",
        status.message
    );

    let apply_orders =
        |patterns: Value| kubectl_apply(cluster, dir.path(), &source(&ns, "orders", patterns));
    // A pattern written as a string that is not JSON, the second of two.
    let shipped = json!({"dynamodb": {"NewImage": {"status": {"S": ["shipped"]}}}});
    let (applied, out) = apply_orders(json!([shipped, "{\"eventName\": [\"INSERT\""]));
    assert!(!applied, "{out}");
    assert!(
        out.contains("is invalid: spec.filter.patterns[1]: filter pattern 1 (")
            && out.contains("must hold JSON"),
        "{out}"
    );
    // An unknown operator, inside a typed attribute value, in a pattern written as an object.
    let (applied, out) = apply_orders(json!([
        {"dynamodb": {"NewImage": {"total": {"N": [{"numerik": [">", 100]}]}}}}
    ]));
    assert!(!applied, "{out}");
    assert!(
        out.contains("spec.filter.patterns[0]")
            && out.contains("at dynamodb.NewImage.total.N[0]")
            && out.contains("\"numerik\""),
        "{out}"
    );
    assert!(
        sources.get_opt("orders").await.expect("get").is_none(),
        "nothing stored"
    );
    // Patterns that parse, as objects and as strings, are admitted unchanged.
    let good = json!([shipped, "{\"eventName\": [\"INSERT\", \"MODIFY\"]}"]);
    let (applied, out) = apply_orders(good.clone());
    assert!(applied, "{out}");
    let stored = sources.get("orders").await.expect("the source is stored");
    assert_eq!(
        serde_json::to_value(&stored.spec).expect("JSON")["filter"]["patterns"],
        good
    );

    // The source stored before the webhook: it can still be labelled (its patterns
    // unchanged), not given other bad patterns, and can be fixed and deleted.
    let legacy = &sources;
    let merge = async |patch: Value| {
        legacy
            .patch("legacy", &PatchParams::default(), &Patch::Merge(&patch))
            .await
    };
    merge(json!({"metadata": {"labels": {"team": "shop"}}}))
        .await
        .expect("an update that keeps the patterns is admitted");
    let error =
        merge(json!({"spec": {"filter": {"patterns": [{"eventName": [{"prefx": "IN"}]}]}}}))
            .await
            .expect_err("new bad patterns are refused");
    assert_eq!(api_status(&error), Some(422), "{error}");
    merge(json!({"spec": {"filter": {"patterns": [{"eventName": [{"prefix": "IN"}]}]}}}))
        .await
        .expect("fixed patterns are admitted");
    sources
        .delete("legacy", &DeleteParams::default())
        .await
        .expect("deleted");

    let denied = controller
        .metric("dynamodb_source_controller_admission_reviews_total{verdict=\"denied\"}")
        .await
        .unwrap_or_default();
    assert!(denied >= 4.0, "denied {denied}");
    let allowed = controller
        .metric("dynamodb_source_controller_admission_reviews_total{verdict=\"allowed\"}")
        .await
        .unwrap_or_default();
    assert!(allowed >= 3.0, "allowed {allowed}");
}
