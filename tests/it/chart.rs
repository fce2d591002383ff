//! The Helm chart (`charts/dynamodb-source`), with helm built from its pinned version
//! (tests/cluster/helm): it lints, renders what its values say, rejects bad values with a
//! message naming them, carries exactly config/'s CRD and RBAC, and installs into a real
//! control plane, where its ServiceAccount is enough to run the controller.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use serde_json::{Value, json};

use crate::support::cluster::{self, DEADLINE};
use crate::support::{eventually, free_port, repo_path};

const CHART: &str = "charts/dynamodb-source";

/// The helm binary, built once (cached outside the repository) by tests/cluster/helm.
fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = Command::new(repo_path("tests/cluster/helm"))
            .stderr(Stdio::inherit())
            .output()
            .expect("tests/cluster/helm runs");
        assert!(out.status.success(), "tests/cluster/helm failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// Helm with its own (empty) config, cache and data directories, never the user's.
fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME
        .get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path();
    let mut command = Command::new(helm_binary());
    command
        .current_dir(repo_path(""))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_NAMESPACE")
        .args(args);
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env("KUBECONFIG", home.join("no-cluster")),
    };
    command.output().expect("helm runs")
}

pub(crate) fn helm_ok(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let out = helm(args, kubeconfig);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template` as release `dynamodb-source` in namespace `dynamodb-source` (the names
/// of config/), with extra arguments; the rendered objects.
pub(crate) fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "dynamodb-source",
        CHART,
        "--namespace",
        "dynamodb-source",
    ];
    args.extend_from_slice(extra);
    parse_yaml(&helm_ok(&args, None))
}

fn parse_yaml(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:#?}", kinds(objects)))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]).replace('"', ""))
        .collect()
}

fn container(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "dynamodb-source-controller")["spec"]["template"]["spec"]["containers"]
        [0]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e.get("value").unwrap_or(&e["valueFrom"]))
}

#[test]
fn the_chart_lints_clean_with_default_and_custom_values() {
    let out = helm_ok(&["lint", "--strict", CHART], None);
    assert!(out.contains("0 chart(s) failed"), "{out}");
    let out = helm_ok(
        &[
            "lint",
            "--strict",
            CHART,
            "--set",
            "replicas=2,metrics.serviceMonitor.enabled=true,watchNamespace=team-a",
        ],
        None,
    );
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

/// What a Grafana panel target or an alert expression must be: PromQL that
/// parses (Grafana's `$namespace` variable stands for a regex).
fn assert_promql(expr: &str, what: &str) {
    let expr = expr.replace("$namespace", ".*");
    if let Err(e) = promql_parser::parser::parse(&expr) {
        panic!("{what}: {expr:?} is not PromQL: {e}");
    }
}

#[test]
fn alerts_dashboard_and_pod_monitor_render_only_when_enabled_and_hold_valid_promql() {
    let defaults = kinds(&render(&[]));
    for kind in ["PrometheusRule", "PodMonitor"] {
        assert!(
            !defaults.contains(&kind.to_owned()),
            "{kind} off by default"
        );
    }
    let objects = render(&[
        "--set",
        "metrics.prometheusRule.enabled=true,metrics.dashboard.enabled=true,metrics.podMonitor.enabled=true",
    ]);

    let rule = find(&objects, "PrometheusRule", "dynamodb-source-controller");
    let rules = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    let alerts: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for expected in [
        "DynamoDBSourceLagNearRetention",
        "DynamoDBSourceTrimmedData",
        "DynamoDBSourceSinkFailing",
        "DynamoDBSourceDeadLetters",
        "DynamoDBSourceCheckpointErrors",
    ] {
        assert!(alerts.contains(&expected), "{expected} in {alerts:?}");
    }
    for r in rules {
        let name = r["alert"].as_str().unwrap_or("?");
        assert_promql(r["expr"].as_str().expect("expr"), name);
        assert!(
            r["labels"]["severity"].as_str().is_some(),
            "{name} has a severity"
        );
        assert!(
            r["annotations"]["summary"].as_str().is_some(),
            "{name} has a summary"
        );
    }
    let lag = rules
        .iter()
        .find(|r| r["alert"].as_str() == Some("DynamoDBSourceLagNearRetention"))
        .and_then(|r| r["expr"].as_str())
        .expect("lag alert");
    assert!(
        lag.ends_with("> 64800"),
        "18 hours of lag by default: {lag}"
    );

    let dashboard = find(
        &objects,
        "ConfigMap",
        "dynamodb-source-controller-dashboard",
    );
    assert_eq!(
        dashboard["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1"),
        "labelled for Grafana's dashboard sidecar"
    );
    let json: Value = serde_json::from_str(
        dashboard["data"]["dynamodb-source.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("the dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for expected in [
        "Lag",
        "Events by result",
        "Delivery latency",
        "throttled",
        "Dead letters",
        "Checkpoint",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(expected)),
            "a panel on {expected}: {titles:?}"
        );
    }
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            assert_promql(target["expr"].as_str().expect("expr"), title);
        }
    }

    let monitor = find(
        &objects,
        "PodMonitor",
        "dynamodb-source-controller-adapters",
    );
    let selected = &monitor["spec"]["selector"]["matchLabels"];
    assert_eq!(
        selected["app.kubernetes.io/component"].as_str(),
        Some("adapter")
    );
    assert_eq!(
        selected["app.kubernetes.io/managed-by"].as_str(),
        Some("dynamodb-source-controller")
    );
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"].as_str(),
        Some("metrics")
    );
}

#[test]
fn default_values_render_a_leader_elected_hardened_controller() {
    let objects = render(&[]);
    let mut names = kinds(&objects);
    names.sort();
    assert_eq!(
        names,
        [
            "ClusterRole/dynamodb-source-adapter-leases",
            "ClusterRole/dynamodb-source-addressable-resolver",
            "ClusterRole/dynamodb-source-controller",
            "ClusterRoleBinding/dynamodb-source-addressable-resolver",
            "ClusterRoleBinding/dynamodb-source-controller",
            "Deployment/dynamodb-source-controller",
            "Role/dynamodb-source-leader-election",
            "RoleBinding/dynamodb-source-leader-election",
            "Secret/dynamodb-source-controller-webhook-tls",
            "Service/dynamodb-source-controller-metrics",
            "Service/dynamodb-source-controller-webhook",
            "ServiceAccount/dynamodb-source-controller",
            "ValidatingWebhookConfiguration/dynamodb-source-controller-webhook-dynamodb-source",
        ],
        "no ServiceMonitor by default; the admission webhook with a certificate made by Helm"
    );
    let deployment = find(&objects, "Deployment", "dynamodb-source-controller");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "dynamodb-source-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let c = container(&objects);
    let app_version = chart_yaml()["appVersion"].as_str().unwrap().to_owned();
    let image = format!("ghcr.io/dynamodb-source/dynamodb-source:{app_version}");
    assert_eq!(c["image"], image.as_str());
    assert_eq!(c["args"], json!(["controller"]));
    assert_eq!(env(c, "ADAPTER_IMAGE"), Some(&json!(image)));
    assert_eq!(env(c, "LEADER_ELECT"), Some(&json!("true")));
    assert_eq!(
        env(c, "ADAPTER_LEASES_CLUSTER_ROLE"),
        Some(&json!("dynamodb-source-adapter-leases"))
    );
    assert_eq!(
        env(c, "LEASE_NAME"),
        Some(&json!("dynamodb-source-controller"))
    );
    assert_eq!(
        env(c, "POD_NAMESPACE"),
        Some(&json!({"fieldRef": {"fieldPath": "metadata.namespace"}}))
    );
    assert_eq!(env(c, "WATCH_NAMESPACE"), Some(&json!("")));
    assert_eq!(env(c, "RUST_LOG"), Some(&json!("info")));
    assert_eq!(env(c, "LOG_FORMAT"), Some(&json!("json")));
    assert_eq!(env(c, "METRICS_PORT"), Some(&json!("9090")));
    let security = &c["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let service = find(&objects, "Service", "dynamodb-source-controller-metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

/// The base64 PEM of a rendered Secret or caBundle, as DER certificates.
fn certificates(base64_pem: &Value) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use base64::Engine as _;
    use rustls::pki_types::pem::PemObject as _;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(base64_pem.as_str().expect("base64 text"))
        .expect("base64");
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

#[test]
fn the_webhook_serves_a_certificate_its_configuration_trusts_for_its_service() {
    let objects = render(&[]);
    let name = "dynamodb-source-controller-webhook";
    let configuration = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "dynamodb-source-controller-webhook-dynamodb-source",
    );
    let webhook = &configuration["webhooks"][0];
    assert_eq!(
        webhook["name"],
        "validate.awsdynamodbsources.sources.triggermesh.io"
    );
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(
        webhook["rules"],
        json!([{
            "apiGroups": ["sources.triggermesh.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["awsdynamodbsources"],
            "scope": "Namespaced",
        }])
    );
    assert!(webhook.get("namespaceSelector").is_none(), "all namespaces");
    let service_ref = &webhook["clientConfig"]["service"];
    assert_eq!(service_ref["name"], name);
    assert_eq!(service_ref["namespace"], "dynamodb-source");
    assert_eq!(
        service_ref["path"],
        dynamodb_source_controller::WEBHOOK_PATH
    );
    assert_eq!(service_ref["port"], 443);

    // The Service reaches the controller's webhook port.
    let service = find(&objects, "Service", name);
    let deployment = find(&objects, "Deployment", "dynamodb-source-controller");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");
    let c = container(&objects);
    assert!(
        c["ports"]
            .as_array()
            .expect("ports")
            .contains(&json!({"name": "webhook", "containerPort": 9443})),
        "{}",
        c["ports"]
    );
    assert_eq!(env(c, "WEBHOOK_PORT"), Some(&json!("9443")));
    let cert_dir = env(c, "WEBHOOK_CERT_DIR").expect("WEBHOOK_CERT_DIR");
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "webhook-certificate", "mountPath": cert_dir, "readOnly": true}])
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "webhook-certificate", "secret": {"secretName": format!("{name}-tls")}}])
    );

    // The certificate the controller serves chains to the caBundle the API server trusts,
    // for the name the API server dials.
    let secret = find(&objects, "Secret", &format!("{name}-tls"));
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret["data"]["ca.crt"],
        webhook["clientConfig"]["caBundle"]
    );
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(&webhook["clientConfig"]["caBundle"]) {
        roots.add(ca).expect("a CA certificate");
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("a verifier");
    let chain = certificates(&secret["data"]["tls.crt"]);
    let host = format!("{name}.dynamodb-source.svc");
    let verified = rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &*verifier,
        &chain[0],
        &chain[1..],
        &rustls::pki_types::ServerName::try_from(host.clone()).expect("a DNS name"),
        &[],
        rustls::pki_types::UnixTime::now(),
    );
    assert!(verified.is_ok(), "{host}: {verified:?}");
    assert!(
        secret["data"]["tls.key"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "a key"
    );
}

/// Every object the default values render, the admission webhook's included, passes the
/// real API server's validation and admission (a server-side dry run: nothing is stored,
/// and no webhook configuration takes effect).
#[test]
fn the_default_chart_passes_the_api_server_s_validation_webhook_included() {
    let cluster = cluster::shared();
    crate::support::controller::install(cluster);
    let manifests = helm_ok(
        &[
            "template",
            "dynamodb-source",
            CHART,
            "--namespace",
            crate::support::controller::NAMESPACE,
        ],
        None,
    );
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), &manifests).expect("write the manifests");
    let applied = cluster.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        file.path().to_str().expect("UTF-8"),
    ]);
    for object in [
        "validatingwebhookconfiguration.admissionregistration.k8s.io/dynamodb-source-controller-webhook-dynamodb-source",
        "secret/dynamodb-source-controller-webhook-tls",
        "service/dynamodb-source-controller-webhook",
        "deployment.apps/dynamodb-source-controller",
        "clusterrole.rbac.authorization.k8s.io/dynamodb-source-adapter-leases",
    ] {
        assert!(
            applied
                .lines()
                .any(|l| l.starts_with(object) && l.ends_with("(server dry run)")),
            "{object} in:\n{applied}"
        );
    }
}

#[test]
fn the_webhook_follows_its_values_cert_manager_a_watched_namespace_or_none() {
    let name = "dynamodb-source-controller-webhook";
    let objects = render(&[
        "--set",
        "webhook.certManager.enabled=true,webhook.failurePolicy=Fail,watchNamespace=shop",
    ]);
    let configuration = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "dynamodb-source-controller-webhook-dynamodb-source",
    );
    assert_eq!(
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("dynamodb-source/{name}")
    );
    let webhook = &configuration["webhooks"][0];
    assert!(
        webhook["clientConfig"].get("caBundle").is_none(),
        "injected"
    );
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(
        webhook["namespaceSelector"],
        json!({"matchLabels": {"kubernetes.io/metadata.name": "shop"}})
    );
    let certificate = find(&objects, "Certificate", name);
    assert_eq!(
        certificate["spec"]["secretName"],
        format!("{name}-cert-manager-tls"),
        "not the name of the Secret Helm makes, so switching modes claims or deletes neither"
    );
    assert_eq!(
        find(&objects, "Deployment", "dynamodb-source-controller")["spec"]["template"]["spec"]["volumes"]
            [0]["secret"]["secretName"],
        certificate["spec"]["secretName"]
    );
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        format!("{name}.dynamodb-source.svc")
    );
    assert_eq!(
        certificate["spec"]["issuerRef"],
        json!({"name": name, "kind": "Issuer"})
    );
    assert_eq!(
        find(&objects, "Issuer", name)["spec"],
        json!({"selfSigned": {}})
    );
    assert!(
        !kinds(&objects).iter().any(|k| k.starts_with("Secret/")),
        "cert-manager writes the Secret: {:?}",
        kinds(&objects)
    );

    let objects = render(&[
        "--set",
        "webhook.certManager.enabled=true,webhook.certManager.issuerRef.name=corp,webhook.certManager.issuerRef.kind=ClusterIssuer",
    ]);
    assert_eq!(
        find(&objects, "Certificate", name)["spec"]["issuerRef"],
        json!({"name": "corp", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert!(!kinds(&objects).iter().any(|k| k.starts_with("Issuer/")));

    let objects = render(&["--set", "webhook.enabled=false"]);
    let kinds = kinds(&objects);
    assert!(
        !kinds
            .iter()
            .any(|k| k.contains("webhook") || k.starts_with("ValidatingWebhookConfiguration/")),
        "{kinds:?}"
    );
    let c = container(&objects);
    assert_eq!(env(c, "WEBHOOK_PORT"), None);
    assert!(c.get("volumeMounts").is_none());
}

#[test]
fn custom_values_reach_the_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        r#"
image: {repository: registry.example/dynamodb-source, tag: "1.2.3"}
adapterImage: registry.example/adapter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
replicas: 2
watchNamespace: team-a
logLevel: debug
logFormat: text
leaderElection: {leaseName: my-lease}
extraEnv:
  - {name: HTTPS_PROXY, value: "http://proxy.example:3128"}
resources: {limits: {memory: 512Mi}}
podSecurityContext: {runAsNonRoot: true, runAsUser: 10001}
securityContext: {runAsUser: 10001}
metrics:
  port: 9100
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
"#,
    )
    .expect("write values");
    let objects = render(&["-f", values.to_str().unwrap()]);
    let deployment = find(&objects, "Deployment", "dynamodb-source-controller");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let c = container(&objects);
    assert_eq!(c["image"], "registry.example/dynamodb-source:1.2.3");
    assert_eq!(
        env(c, "ADAPTER_IMAGE"),
        Some(&json!(
            "registry.example/adapter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ))
    );
    assert_eq!(env(c, "WATCH_NAMESPACE"), Some(&json!("team-a")));
    assert_eq!(env(c, "RUST_LOG"), Some(&json!("debug")));
    assert_eq!(env(c, "LOG_FORMAT"), Some(&json!("text")));
    assert_eq!(env(c, "LEASE_NAME"), Some(&json!("my-lease")));
    assert_eq!(env(c, "LEADER_ELECT"), Some(&json!("true")));
    assert_eq!(
        env(c, "HTTPS_PROXY"),
        Some(&json!("http://proxy.example:3128"))
    );
    assert_eq!(env(c, "METRICS_PORT"), Some(&json!("9100")));
    assert_eq!(c["ports"][0]["containerPort"], 9100);
    // Helm merges maps with the defaults (`requests: null` would remove the default requests).
    assert_eq!(
        c["resources"],
        json!({"limits": {"memory": "512Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}})
    );
    assert_eq!(c["securityContext"]["runAsUser"], 10001);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        10001
    );
    let monitor = find(&objects, "ServiceMonitor", "dynamodb-source-controller");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // A digest pins the controller image; the adapters follow it by default.
    let digest = "sha256:".to_owned() + &"ab".repeat(32);
    let objects = render(&["--set", &format!("image.digest={digest}")]);
    let c = container(&objects);
    let pinned = format!("ghcr.io/dynamodb-source/dynamodb-source@{digest}");
    assert_eq!(c["image"], pinned.as_str());
    assert_eq!(env(c, "ADAPTER_IMAGE"), Some(&json!(pinned)));
}

#[test]
fn invalid_values_fail_with_a_message_naming_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str]); 8] = [
        ("replicas: two\n", &["/replicas", "want integer"]),
        ("logLevel: loud\n", &["/logLevel", "'info'", "'debug'"]),
        ("logFormat: xml\n", &["/logFormat", "'json'"]),
        ("replica: 2\n", &["'replica' not allowed"]),
        ("image: {digest: latest}\n", &["/image/digest"]),
        (
            "webhook: {failurePolicy: Sometimes}\n",
            &["/webhook/failurePolicy", "'Ignore'", "'Fail'"],
        ),
        (
            "webhook: {generated: {ca: x}}\n",
            &["'generated' not allowed"],
        ),
        (
            "metrics: {service: {enabled: false}, serviceMonitor: {enabled: true}}\n",
            &["metrics.serviceMonitor.enabled needs metrics.service.enabled"],
        ),
    ];
    for (n, (values, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{n}.yaml"));
        std::fs::write(&file, values).expect("write values");
        let file = file.to_str().unwrap();
        let mut commands = vec![vec!["template", "dynamodb-source", CHART, "-f", file]];
        // The schema is checked by lint too; a template's `fail` is only INFO to lint.
        if !expected[0].contains("needs") {
            commands.push(vec!["lint", CHART, "-f", file]);
        }
        for args in commands {
            let command = args[0];
            let out = helm(&args, None);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "helm {command} accepted {values:?}");
            for needle in *expected {
                assert!(
                    stderr.contains(needle),
                    "helm {command} with {values:?}: no {needle:?} in:\n{stderr}"
                );
            }
        }
    }
}

fn chart_yaml() -> Value {
    let text =
        std::fs::read_to_string(repo_path(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml");
    serde_saphyr::from_str(&text).expect("Chart.yaml is YAML")
}

#[test]
fn the_chart_crd_is_config_crd() {
    let chart = std::fs::read(repo_path(&format!("{CHART}/crds/awsdynamodbsources.yaml")))
        .expect("the chart's CRD");
    let config =
        std::fs::read(repo_path("config/crd/awsdynamodbsources.yaml")).expect("config CRD");
    assert!(
        chart == config,
        "{CHART}/crds/ differs from config/crd/: run `make crd`"
    );
    // Nothing else in crds/ (Helm installs every file there).
    let files: Vec<_> = std::fs::read_dir(repo_path(&format!("{CHART}/crds")))
        .expect("crds/")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(files, ["awsdynamodbsources.yaml"]);
}

/// Every RBAC object (and the ServiceAccount) of config/rbac/ is in the chart rendered as
/// release `dynamodb-source` in namespace `dynamodb-source`, equal but for labels.
#[test]
fn the_chart_rbac_equals_config_rbac() {
    let rendered = render(&[]);
    let mut config = Vec::new();
    for entry in std::fs::read_dir(repo_path("config/rbac")).expect("config/rbac") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        config.extend(parse_yaml(&std::fs::read_to_string(&path).expect("read")));
    }
    assert_eq!(config.len(), 8, "{:?}", kinds(&config));
    let strip = |object: &Value| {
        let mut object = object.clone();
        object["metadata"].as_object_mut().unwrap().remove("labels");
        object
    };
    for expected in &config {
        let kind = expected["kind"].as_str().unwrap();
        let name = expected["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            strip(find(&rendered, kind, name)),
            strip(expected),
            "{kind} {name}: the chart differs from config/rbac/"
        );
    }
    // The rule comparison above must be able to fail.
    let mut changed = strip(&config[0]);
    changed["metadata"]["name"] = json!("other");
    assert_ne!(changed, strip(&config[0]));
}

struct Controller(Child, PathBuf);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_a_controller_that_reconciles_a_sample_source_then_uninstalls() {
    let cluster = cluster::shared();
    let client = cluster.admin().await;
    let release_ns = cluster.namespace("chart").await;
    let sources_ns = cluster.namespace("chart-sources").await;
    let release = "chart-test";
    let prefix = "chart-test-dynamodb-source";
    let kubeconfig = Some(cluster.kubeconfig.as_path());

    let out = helm_ok(
        &[
            "install",
            release,
            CHART,
            "--namespace",
            &release_ns,
            "--set",
            // No admission webhook: kwok's pods serve nothing, and without kube-proxy the
            // API server would dial its Service's cluster IP off loopback on every source
            // written. controller_webhook proves the chart's webhook on this API server.
            &format!(
                "image.repository=example.invalid/dynamodb-source,image.tag=test,watchNamespace={sources_ns},replicas=2,webhook.enabled=false"
            ),
            "--wait",
            "--timeout",
            "180s",
        ],
        kubeconfig,
    );
    assert!(out.contains("STATUS: deployed"), "{out}");

    // The controller Deployment becomes Available (kwok runs its pods, without running code).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &release_ns);
    let controller_name = format!("{prefix}-controller");
    let deployment = eventually("the controller Deployment", DEADLINE, async || {
        deployments.get_opt(&controller_name).await.ok().flatten()
    })
    .await;
    if cluster.kwok {
        eventually(
            "the controller Deployment to be Available",
            DEADLINE,
            async || {
                let d = deployments.get(&controller_name).await.ok()?;
                let status = d.status?;
                let available = status.conditions?.iter().any(|c| {
                    c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
                });
                (available && status.available_replicas == Some(2)).then_some(())
            },
        )
        .await;
    }
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=120s",
        "crd/awsdynamodbsources.sources.triggermesh.io",
    ]);

    // The documented CRD upgrade path (Helm never upgrades crds/) works on a Helm-made CRD.
    let crds = repo_path(&format!("{CHART}/crds"));
    let applied = cluster.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crds.to_str().unwrap(),
    ]);
    assert!(applied.contains("serverside-applied"), "{applied}");

    // The code runs here instead, as the chart's ServiceAccount with the chart's settings
    // (the Deployment's literal env), so the chart's RBAC and configuration are what is proven.
    let dir = tempfile::tempdir().expect("tempdir");
    let account_kubeconfig = cluster
        .service_account_kubeconfig(&release_ns, &controller_name, dir.path())
        .await;
    let pod = deployment.spec.template.spec.as_ref().expect("a pod spec");
    let mut command = Command::new(crate::support::adapter::BINARY);
    command.arg("controller").env_clear();
    for var in pod.containers[0].env.iter().flatten() {
        if let Some(value) = &var.value {
            command.env(&var.name, value);
        }
    }
    let metrics_port = free_port();
    let log = dir.path().join("controller.log");
    command
        .env("KUBECONFIG", &account_kubeconfig)
        .env("METRICS_PORT", metrics_port.to_string())
        .env("POD_NAMESPACE", &release_ns)
        .env("POD_NAME", "local-controller")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut controller = Controller(command.spawn().expect("the controller starts"), log);

    // It takes the chart's leader Lease (the chart's Role allows it) ...
    let leases: Api<Lease> = Api::namespaced(client.clone(), &release_ns);
    eventually(
        "the controller to hold the chart's Lease",
        DEADLINE,
        async || {
            if let Ok(Some(status)) = controller.0.try_wait() {
                panic!(
                    "the controller exited with {status}:\n{}",
                    std::fs::read_to_string(&controller.1).unwrap_or_default()
                );
            }
            let lease = leases.get_opt("dynamodb-source-controller").await.ok()??;
            (lease.spec?.holder_identity.as_deref() == Some("local-controller")).then_some(())
        },
    )
    .await;

    // ... and turns a sample source, applied as it is, into an adapter Deployment.
    cluster.kubectl(&[
        "create",
        "service",
        "clusterip",
        "order-events",
        "--tcp=80:8080",
        "-n",
        &sources_ns,
    ]);
    let sample = repo_path("config/samples/awsdynamodbsource-service-sink.yaml");
    cluster.kubectl(&["apply", "-n", &sources_ns, "-f", sample.to_str().unwrap()]);
    let adapters: Api<Deployment> = Api::namespaced(client.clone(), &sources_ns);
    let adapter = eventually(
        "the sample source's adapter Deployment",
        DEADLINE,
        async || {
            adapters
                .get_opt("awsdynamodbsource-orders-to-service")
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    let container = &adapter.spec.template.spec.expect("a pod spec").containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("example.invalid/dynamodb-source:test"),
        "ADAPTER_IMAGE defaults to the chart's image"
    );
    let sink = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "K_SINK")
        .and_then(|e| e.value.clone());
    assert_eq!(
        sink,
        Some(format!(
            "http://order-events.{sources_ns}.svc.cluster.local/dynamodb"
        ))
    );
    if cluster.kwok {
        eventually("the sample source to be Ready", DEADLINE, async || {
            let out = Command::new("kubectl")
                .env("KUBECONFIG", &cluster.kubeconfig)
                .args([
                    "get",
                    "awsdynamodbsources",
                    "orders-to-service",
                    "-n",
                    &sources_ns,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        })
        .await;
    }
    drop(controller);

    // Uninstall removes what the chart made; the CRD (crds/) and the sources stay.
    helm_ok(
        &[
            "uninstall",
            release,
            "--namespace",
            &release_ns,
            "--wait",
            "--timeout",
            "120s",
        ],
        kubeconfig,
    );
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    eventually("the chart's objects to be gone", DEADLINE, async || {
        let gone = deployments.get_opt(&controller_name).await.ok()?.is_none()
            && cluster_roles
                .get_opt(&controller_name)
                .await
                .ok()?
                .is_none()
            && cluster_roles
                .get_opt(&format!("{prefix}-addressable-resolver"))
                .await
                .ok()?
                .is_none()
            && bindings.get_opt(&controller_name).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let left = cluster.kubectl(&["get", "awsdynamodbsources", "-n", &sources_ns, "-o", "name"]);
    assert_eq!(
        left.trim(),
        "awsdynamodbsource.sources.triggermesh.io/orders-to-service"
    );
}

/// The AWSDynamoDBSource manifests the README and the migration guide show (YAML code
/// blocks and `<<'YAML'` here-documents).
fn documented_sources(markdown: &str) -> Vec<Value> {
    let mut blocks = Vec::new();
    // The block and the indentation of its opening line (inside a list item).
    let mut current: Option<(String, usize)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        match &mut current {
            None if trimmed == "```yaml" || trimmed.ends_with("<<'YAML'") => {
                current = Some((String::new(), line.len() - line.trim_start().len()));
            }
            Some((block, _)) if trimmed == "```" || trimmed == "YAML" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some((block, indent)) => {
                block.push_str(line.get(*indent..).unwrap_or(""));
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
        .iter()
        .flat_map(|b| parse_yaml(b))
        .filter(|o| o["kind"] == "AWSDynamoDBSource")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_source_manifests_are_accepted_by_the_crd() {
    let cluster = cluster::shared();
    let ns = cluster.namespace("docs").await;
    let crds = repo_path(&format!("{CHART}/crds"));
    cluster.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    cluster.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=120s",
        "crd/awsdynamodbsources.sources.triggermesh.io",
    ]);
    for doc in ["README.md", "docs/migrating-from-triggermesh.md"] {
        let text = std::fs::read_to_string(repo_path(doc)).expect("read");
        let sources = documented_sources(&text);
        assert!(!sources.is_empty(), "{doc} shows no source manifest");
        for mut source in sources {
            source["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("namespace");
            let out = strict_dry_run(cluster, &ns, &source);
            assert!(
                out.status.success(),
                "{doc}: {} is rejected: {}",
                source["metadata"]["name"],
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The check can fail: a misspelt field is rejected.
    let bad = json!({
        "apiVersion": "sources.triggermesh.io/v1alpha1", "kind": "AWSDynamoDBSource",
        "metadata": {"name": "bad"},
        "spec": {"arn": "arn:aws:dynamodb:us-west-2:123456789012:table/orders",
                 "sink": {"uri": "http://x.example/"}, "startPosition": "LATEST"},
    });
    let out = strict_dry_run(cluster, &ns, &bad);
    assert!(!out.status.success(), "a misspelt field is rejected");
}

/// `kubectl apply --dry-run=server` of one manifest in `ns`, strict: an
/// unknown or misspelt field fails too. The caller judges the outcome.
fn strict_dry_run(cluster: &cluster::Cluster, ns: &str, manifest: &Value) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, manifest.to_string()).expect("write");
    Command::new("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args([
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            ns,
            "-f",
        ])
        .arg(&file)
        .output()
        .expect("kubectl runs")
}
