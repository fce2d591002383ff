//! The real node of `tests/cluster/up --node=real`: whether this machine can
//! run containers at all, the image built from the Dockerfile and loaded into
//! the node's containerd, namespaces whose pods run there, and the processes
//! of those pods as the host sees them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PostParams};

use super::cluster::Cluster;
use super::repo_path;

/// The image the tests build and run (a local name: never pulled, and not
/// `:latest`, whose default pull policy is Always).
pub const IMAGE: &str = "localhost/dynamodb-source:e2e";

/// The node `up --node=real` registers (`--hostname-override`).
pub const NODE_NAME: &str = "127.0.0.1";

/// The label `up --node=real`'s admission policy looks for: pods of these
/// namespaces run in the host's network namespace (the node's only network).
pub const HOST_NETWORK_LABEL: &str = "ddbsrc-node.test/host-network";

/// The effective user id of this process, from procfs.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Why this machine cannot run the real node (containerd, runc and a kubelet
/// run as root on Linux with cgroups), or `None` when it can. What it needs
/// beyond that is installed by `tests/cluster/up --node=real` itself.
pub fn cannot_run_containers() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return Some("the real node runs only on Linux".to_owned());
    }
    if euid() != Some(0) {
        return Some(
            "the real node needs root (containerd, runc and the kubelet run as root)".to_owned(),
        );
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Some("no cgroup filesystem at /sys/fs/cgroup".to_owned());
    }
    None
}

/// The cluster with the real node ([`super::cluster::real_node`]), or `None`
/// with the reason printed where this machine cannot run containers: the
/// test is then skipped.
pub fn real_node_or_skip() -> Option<&'static Cluster> {
    if let Some(reason) = cannot_run_containers() {
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(super::cluster::real_node())
}

/// Why this machine cannot build images with buildah (as root, with a private
/// vfs store), or `None`. A missing buildah is a failure, not a reason to
/// skip: `tests/cluster/node-deps` installs it (`make test` runs it).
pub fn cannot_build_images() -> Option<String> {
    if let Some(reason) = cannot_run_containers() {
        return Some(reason);
    }
    let found = Command::new("buildah").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "buildah is missing: run tests/cluster/node-deps (make test does)"
    );
    None
}

/// The node's containerd socket in the cluster directory.
fn containerd_socket(cluster: &Cluster) -> PathBuf {
    cluster.dir.join("node/containerd.sock")
}

/// [`IMAGE`], built once from the Dockerfile with the binary `make
/// image-binary` built (`scripts/build-image`) and imported into the real
/// node's containerd.
pub fn image(cluster: &Cluster) -> &'static str {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let binary = repo_path("target/image/dynamodb-source");
        assert!(
            binary.exists(),
            "{} not built: run make image-binary (make test does)",
            binary.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("image.tar");
        let out = Command::new(repo_path("scripts/build-image"))
            .args(["--tag", IMAGE, "--archive"])
            .arg(&archive)
            .output()
            .expect("scripts/build-image runs");
        assert!(
            out.status.success(),
            "scripts/build-image failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("ctr")
            .arg("--address")
            .arg(containerd_socket(cluster))
            .args(["-n", "k8s.io", "images", "import"])
            .arg(&archive)
            .output()
            .expect("ctr runs");
        assert!(
            out.status.success(),
            "ctr images import failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// Creates a namespace like [`Cluster::namespace`] whose pods run on the real
/// node (labelled for the host-network admission policy), with extra labels.
pub async fn namespace(cluster: &Cluster, prefix: &str, labels: &[(&str, &str)]) -> String {
    let name = cluster.namespace(prefix).await;
    let mut all = serde_json::Map::new();
    all.insert(HOST_NETWORK_LABEL.to_owned(), "true".into());
    for (k, v) in labels {
        all.insert((*k).to_owned(), (*v).into());
    }
    let patch = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": name, "labels": all },
    });
    Api::<Namespace>::all(cluster.admin().await)
        .patch(
            &name,
            &kube::api::PatchParams::apply("dynamodb-source-tests-node").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap_or_else(|e| panic!("label namespace {name}: {e}"));
    // The API server's admission sees the label through its namespace cache: a
    // pod created a moment later could still run unmutated. Ready means a dry
    // run of a pod and a Deployment comes out with the host network and Recreate.
    let client = cluster.admin().await;
    let pods = Api::<Pod>::namespaced(client.clone(), &name);
    let deployments = Api::<Deployment>::namespaced(client, &name);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let probe: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "probe" },
        "spec": { "containers": [{ "name": "probe", "image": "probe.invalid/probe" }] },
    }))
    .expect("a pod");
    let probe_deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "probe" },
        "spec": {
            "selector": { "matchLabels": { "app": "probe" } },
            "template": {
                "metadata": { "labels": { "app": "probe" } },
                "spec": { "containers": [{ "name": "probe", "image": "probe.invalid/probe" }] },
            },
        },
    }))
    .expect("a Deployment");
    super::eventually(
        &format!("the host-network admission policies apply in {name}"),
        super::cluster::DEADLINE,
        async || {
            let pod = pods.create(&dry_run, &probe).await.ok()?;
            let deployment = deployments.create(&dry_run, &probe_deployment).await.ok()?;
            let host_network = pod.spec?.host_network == Some(true);
            let recreate = deployment.spec.strategy?.type_.as_deref() == Some("Recreate");
            (host_network && recreate).then_some(())
        },
    )
    .await;
    name
}

/// A process of a container of the real node, as the host sees it.
#[derive(Debug, Clone)]
pub struct HostProcess {
    /// `/proc/PID/status`.
    pub status: String,
    /// `/proc/PID/environ`, one `NAME=value` per entry.
    pub environ: Vec<String>,
}

impl HostProcess {
    /// A field of `/proc/PID/status`, e.g. `Uid` or `CapEff`.
    pub fn status_field(&self, name: &str) -> Option<String> {
        self.status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
    }

    /// The value of one environment variable.
    pub fn env(&self, name: &str) -> Option<String> {
        self.environ
            .iter()
            .find_map(|e| e.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
    }
}

/// The running `/dynamodb-source adapter` processes whose checkpoint is in
/// `namespace` (its `CHECKPOINT_NAMESPACE`).
pub fn adapter_processes(namespace: &str) -> Vec<HostProcess> {
    let wanted = format!("CHECKPOINT_NAMESPACE={namespace}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            if cmdline != b"/dynamodb-source\0adapter\0" {
                return None;
            }
            let environ: Vec<String> = std::fs::read(entry.path().join("environ"))
                .ok()?
                .split(|b| *b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect();
            if !environ.contains(&wanted) {
                return None;
            }
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            Some(HostProcess { status, environ })
        })
        .collect()
}

/// Prints what the node and some namespaces looked like when the test fails
/// (on drop while panicking): a pod that never became ready says why only in
/// its status, its events and the kubelet's log, all gone with the cluster.
pub struct FailureReport<'a> {
    cluster: &'a Cluster,
    namespaces: Vec<String>,
}

impl<'a> FailureReport<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        Self {
            cluster,
            namespaces: Vec::new(),
        }
    }

    /// Adds a namespace to the report.
    pub fn watch(&mut self, namespace: &str) {
        self.namespaces.push(namespace.to_owned());
    }

    fn render(&self) -> String {
        let mut out = String::from("==== the real node when the test failed\n");
        let mut kubectl = |args: &[&str]| {
            out.push_str(&format!("---- kubectl {}\n", args.join(" ")));
            match Command::new("kubectl")
                .env("KUBECONFIG", &self.cluster.kubeconfig)
                .args(args)
                .output()
            {
                Ok(o) => {
                    out.push_str(&String::from_utf8_lossy(&o.stdout));
                    out.push_str(&String::from_utf8_lossy(&o.stderr));
                }
                Err(e) => out.push_str(&format!("kubectl did not run: {e}\n")),
            }
        };
        // First what explains a Pending pod: CI output keeps a report's head and tail.
        kubectl(&["get", "nodes", "-o", "wide"]);
        kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} taints={.spec.taints} \
             conditions={range .status.conditions[*]}{.type}={.status}({.reason}) {end}{'\\n'}{end}",
        ]);
        for ns in &self.namespaces {
            kubectl(&["get", "deploy,rs,pods", "-o", "wide", "-n", ns]);
            kubectl(&["describe", "pods", "-n", ns]);
            kubectl(&["get", "events", "--sort-by=.lastTimestamp", "-n", ns]);
            kubectl(&[
                "logs",
                "-n",
                ns,
                "--all-containers",
                "--prefix",
                "--tail=40",
                "-l",
                "app.kubernetes.io/name",
            ]);
        }
        let kubelet_log = self.cluster.dir.join("logs").join("kubelet.log");
        out.push_str(&format!("---- evictions in {}\n", kubelet_log.display()));
        if let Ok(text) = std::fs::read_to_string(&kubelet_log) {
            for line in text
                .lines()
                .filter(|l| l.contains("eviction_manager"))
                .take(20)
            {
                out.push_str(line);
                out.push('\n');
            }
        }
        for log in ["kubelet", "containerd"] {
            let path = self.cluster.dir.join("logs").join(format!("{log}.log"));
            out.push_str(&format!("---- last lines of {}\n", path.display()));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let lines: Vec<&str> = text.lines().collect();
                    for line in &lines[lines.len().saturating_sub(60)..] {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                Err(e) => out.push_str(&format!("unreadable: {e}\n")),
            }
        }
        out
    }
}

impl Drop for FailureReport<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.render());
        }
    }
}
