//! A real Kubernetes control plane on loopback (tests/cluster/up: etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok), shared by
//! every test of one test binary, and `kube::Client`s to talk to it as the
//! admin or as a ServiceAccount.
//!
//! Lifecycle: the first test that calls [`shared`] starts the cluster (about
//! 9 s with cached binaries); the other tests of the binary wait for it and
//! reuse it. Statics are never dropped, so a `Drop` guard cannot stop it, and a
//! cluster per test would cost 9 s and ~550 MB each. Instead `up` runs under a
//! small supervisor shell in its own session ([`SUPERVISOR`]) that, after `up`,
//! blocks reading a pipe whose only write end this process holds, and runs
//! `tests/cluster/down DIR` at end-of-file. The kernel closes that pipe however
//! the process ends (tests passed, a test panicked, `panic = abort`, SIGKILL,
//! even during `up`), so the cluster is always stopped, with no atexit hook and
//! no polling; in its own session, the supervisor is not hit by a Ctrl-C to the
//! test's process group. `down` runs after the binary has exited (it takes a
//! few seconds), in the background.
//!
//! Environment:
//! - `DYNAMODB_SOURCE_CLUSTER_DIR` together with `KUBECONFIG` (as printed by
//!   `eval "$(tests/cluster/up)"`): reuse that running cluster instead of
//!   starting one; it is neither stopped nor cleaned (namespaces created by
//!   tests remain). `KUBECONFIG` alone (a developer's real cluster) is ignored.
//! - `DYNAMODB_SOURCE_CLUSTER_KEEP=1`: keep the cluster this binary started
//!   (not stopped); its directory is printed (test output) so it can be
//!   inspected and stopped with `tests/cluster/down DIR`.
//! - The variables of tests/cluster/up (`DYNAMODB_SOURCE_CLUSTER_KWOK`,
//!   `DYNAMODB_SOURCE_CLUSTER_TIMEOUT`, ...) are passed through to it.
//!
//! Clients are built per test: a `kube::Client` is bound to the tokio runtime
//! it was created on, and every `#[tokio::test]` has its own runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::repo_path;

/// Per-condition deadline for tests against the cluster (generous: a 2-core
/// machine runs the control plane and the tests side by side).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The field manager tests use for server-side apply.
pub const FIELD_MANAGER: &str = "dynamodb-source-tests";

/// Runs in its own session (`setsid`), so neither the death of the test process
/// nor a Ctrl-C to its process group reaches it: `$0` = up, `$1` = file for up's
/// stderr (a file, not a pipe to us, so up never dies of SIGPIPE halfway),
/// `$2` = `true` to keep the cluster, `$3` = down, `$4` = up's arguments. It prints up's `export` lines,
/// closes its stdout, then blocks on its stdin, whose write end only the test
/// process holds: end-of-file means that process is gone (however it ended,
/// even killed while `up` was still running); then it removes the log and stops
/// the cluster, if `up` started one.
const SUPERVISOR: &str = r#"
trap '' PIPE
out=$("$0" $4 </dev/null 2>"$1")
printf '%s\n' "$out"
exec >/dev/null 2>&1
cat >/dev/null
rm -f "$1"
[ -n "$out" ] || exit
eval "$out"
"$2" && exit
exec "$3" "$DYNAMODB_SOURCE_CLUSTER_DIR"
"#;

/// A running control plane.
#[derive(Debug)]
pub struct Cluster {
    /// `$DYNAMODB_SOURCE_CLUSTER_DIR`: kubeconfig, pki/, logs/.
    pub dir: PathBuf,
    /// The admin kubeconfig (client certificate, `system:masters`).
    pub kubeconfig: PathBuf,
    /// Whether kwok runs a fake node (pods become Running); otherwise pods stay Pending.
    pub kwok: bool,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
static REAL_NODE: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Write ends of the lifeline pipes (one per cluster started); held (never
/// dropped) until the process ends.
static LIFELINES: Mutex<Vec<ChildStdin>> = Mutex::new(Vec::new());

/// The cluster of this test binary: started on first use, or the one given by
/// the environment. Blocks the calling thread while `up` runs.
pub fn shared() -> &'static Cluster {
    match SHARED.get_or_init(|| Cluster::from_env().unwrap_or_else(|| Cluster::start(""))) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e}"),
    }
}

/// A second cluster of this test binary, with a real node (`up --node=real`: a
/// kubelet, containerd and runc) instead of kwok, for the tests that run pods;
/// started on first use, stopped like [`shared`]'s. `DYNAMODB_SOURCE_REAL_NODE_DIR`
/// with `DYNAMODB_SOURCE_REAL_NODE_KUBECONFIG` reuse a running one (from
/// `eval "$(tests/cluster/up --node=real)"`).
pub fn real_node() -> &'static Cluster {
    let reuse = || {
        let dir = non_empty_env("DYNAMODB_SOURCE_REAL_NODE_DIR")?;
        let kubeconfig = non_empty_env("DYNAMODB_SOURCE_REAL_NODE_KUBECONFIG")?;
        Some(Ok(Cluster {
            dir: PathBuf::from(dir),
            kubeconfig: PathBuf::from(kubeconfig),
            kwok: false,
        }))
    };
    match REAL_NODE.get_or_init(|| reuse().unwrap_or_else(|| Cluster::start("--node=real"))) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e}"),
    }
}

/// Installs rustls' ring provider (the binary does the same); idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Cluster {
    fn from_env() -> Option<Result<Cluster, String>> {
        let dir = non_empty_env("DYNAMODB_SOURCE_CLUSTER_DIR")?;
        let kubeconfig = non_empty_env("KUBECONFIG")?;
        let cluster = Cluster {
            dir: PathBuf::from(dir),
            kubeconfig: PathBuf::from(kubeconfig),
            kwok: non_empty_env("DYNAMODB_SOURCE_CLUSTER_KWOK").as_deref() != Some("0"),
        };
        for file in [&cluster.kubeconfig, &cluster.ca_file()] {
            if !file.is_file() {
                return Some(Err(format!(
                    "DYNAMODB_SOURCE_CLUSTER_DIR and KUBECONFIG are set but {} does not exist: \
                     unset both to let the tests start their own cluster",
                    file.display()
                )));
            }
        }
        Some(Ok(cluster))
    }

    /// Runs `up ARGS` under a supervisor (see [`SUPERVISOR`]) and reads its `export` lines.
    fn start(args: &str) -> Result<Cluster, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let up = repo_path("tests/cluster/up");
        let down = repo_path("tests/cluster/down");
        let keep = std::env::var_os("DYNAMODB_SOURCE_CLUSTER_KEEP").is_some_and(|v| v == "1");
        let up_log = std::env::temp_dir().join(format!(
            "dynamodb-source-cluster-up.{}.{}.log",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let started = Instant::now();
        let mut supervisor = Command::new("setsid")
            .args(["bash", "-c", SUPERVISOR])
            .arg(&up)
            .arg(&up_log)
            .arg(if keep { "true" } else { "false" })
            .arg(&down)
            .arg(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run setsid bash (to supervise {}): {e}",
                    up.display()
                )
            })?;
        let lifeline = supervisor.stdin.take().expect("piped stdin");
        // The supervisor closes its stdout once `up` has finished.
        let mut stdout = String::new();
        let read = std::io::Read::read_to_string(
            &mut supervisor.stdout.take().expect("piped stdout"),
            &mut stdout,
        );
        let up_stderr = std::fs::read_to_string(&up_log).unwrap_or_default();
        let var = |name: &str| {
            export_value(&stdout, name).ok_or_else(|| {
                format!(
                    "{} failed (read: {read:?}; stdout: {stdout:?}); its stderr:\n{up_stderr}",
                    up.display()
                )
            })
        };
        let cluster = Cluster {
            dir: PathBuf::from(var("DYNAMODB_SOURCE_CLUSTER_DIR")?),
            kubeconfig: PathBuf::from(var("KUBECONFIG")?),
            kwok: var("DYNAMODB_SOURCE_CLUSTER_KWOK")? != "0",
        };
        // Held until the process ends; then the supervisor runs `down`.
        LIFELINES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lifeline);
        if keep {
            eprintln!(
                "cluster kept (DYNAMODB_SOURCE_CLUSTER_KEEP=1): stop it with tests/cluster/down {}",
                cluster.dir.display()
            );
        }
        eprintln!(
            "cluster up in {:.1?} at {}",
            started.elapsed(),
            cluster.dir.display()
        );
        Ok(cluster)
    }

    /// The cluster CA (PEM), which signed the apiserver's serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// A client configuration for the admin (`system:masters`).
    pub async fn admin_config(&self) -> Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.kubeconfig.display()));
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("load {}: {e}", self.kubeconfig.display()))
    }

    /// A client acting as the cluster admin.
    pub async fn admin(&self) -> Client {
        install_crypto_provider();
        Client::try_from(self.admin_config().await).expect("admin client")
    }

    /// A client authenticated only by a bearer token minted for the
    /// ServiceAccount `namespace/name` (which must exist) through the
    /// TokenRequest API: what that account's RBAC allows and nothing more.
    pub async fn service_account(&self, namespace: &str, name: &str) -> Client {
        let token = self.service_account_token(namespace, name).await;
        let server = self.admin_config().await.cluster_url;
        let mut config = Config::new(server);
        config.default_namespace = namespace.to_owned();
        config.root_cert = Some(pem_certificates(&self.ca_file()));
        config.auth_info =
            serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))
                .expect("an AuthInfo with a token");
        install_crypto_provider();
        Client::try_from(config).expect("service account client")
    }

    /// A one-hour token for the ServiceAccount `namespace/name`, audience = the apiserver's.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin().await, namespace);
        // No audiences: the apiserver's own (its issuer).
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
        issued
            .status
            .and_then(|status| status.token)
            .expect("a token in the TokenRequest status")
    }

    /// A kubeconfig file in `dir` holding only a token of the ServiceAccount
    /// `namespace/name`, for a process (the controller binary) to run as it.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        dir: &Path,
    ) -> PathBuf {
        let token = self.service_account_token(namespace, name).await;
        let server = self.admin_config().await.cluster_url.to_string();
        let path = dir.join(format!("{namespace}.{name}.kubeconfig"));
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": self.ca_file()}}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
            "current-context": "test",
        });
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        path
    }

    /// Runs kubectl as the admin and returns its stdout; fails the test on error.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates (server-side apply) a namespace named `prefix-<unique suffix>`,
    /// labelled with the prefix, and returns its name. Namespaces are not
    /// deleted: the cluster is thrown away with them.
    pub async fn namespace(&self, prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect::<String>()
            .trim_matches('-')
            .to_owned();
        let name = format!("{prefix}-{:x}-{n}", nanos % (1 << 40));
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "dynamodb-source.test/prefix": prefix } },
        }))
        .expect("a Namespace");
        Api::<Namespace>::all(self.admin().await)
            .patch(&name, &apply_params(), &Patch::Apply(&namespace))
            .await
            .unwrap_or_else(|e| panic!("apply namespace {name}: {e}"));
        name
    }
}

/// Server-side apply as [`FIELD_MANAGER`], taking over conflicting fields.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The HTTP status of a Kubernetes API error (e.g. 403, 404), if it is one.
pub fn api_status(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The value of an `export NAME=VALUE` line as printed by `printf 'export NAME=%q'`
/// (plain words, or backslash-escaped ones).
pub fn export_value(stdout: &str, name: &str) -> Option<String> {
    let quoted = stdout.lines().find_map(|line| {
        line.strip_prefix("export ")?
            .strip_prefix(name)?
            .strip_prefix('=')
    })?;
    assert!(
        !quoted.starts_with("$'") && !quoted.starts_with('\''),
        "unsupported quoting in `export {name}={quoted}` (a TMPDIR with control characters?)"
    );
    let mut value = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        value.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(value)
}

fn pem_certificates(path: &Path) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .map(|cert| cert.expect("a PEM certificate").to_vec())
        .collect();
    assert!(!certs.is_empty(), "no certificate in {}", path.display());
    certs
}

/// Sums `apiserver_request_total` by (verb, resource, subresource).
#[allow(
    dead_code,
    reason = "used by the benchmarks, which include this module"
)]
pub async fn request_counts(client: &Client) -> HashMap<(String, String, String), f64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client
        .request_text(request)
        .await
        .expect("apiserver metrics");
    let mut counts = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        *counts
            .entry((label("verb"), label("resource"), label("subresource")))
            .or_insert(0.0) += value;
    }
    counts
}
