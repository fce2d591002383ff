//! The controller binary as a separate process, authenticated only as the
//! ServiceAccount of `config/rbac/`, so its RBAC is what the tests prove.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::cluster::{self, Cluster};
use super::{eventually, free_port, repo_path};

pub const NAMESPACE: &str = "dynamodb-source";
pub const ACCOUNT: &str = "dynamodb-source-controller";
pub const ADAPTER_IMAGE: &str = "example.invalid/dynamodb-source:test";

/// Installs the CRD and the controller's namespace and RBAC from `config/`, once.
pub fn install(cluster: &Cluster) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let config = repo_path("config");
        let path = |p: &str| config.join(p).display().to_string();
        cluster.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &path("crd/awsdynamodbsources.yaml"),
        ]);
        cluster.kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &path("manager/namespace.yaml"),
        ]);
        cluster.kubectl(&["apply", "--server-side", "-k", &path("rbac")]);
        cluster.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=120s",
            "crd/awsdynamodbsources.sources.triggermesh.io",
        ]);
    });
}

/// A kubeconfig holding only a token of the controller's ServiceAccount.
pub async fn kubeconfig(cluster: &Cluster, dir: &Path) -> PathBuf {
    cluster
        .service_account_kubeconfig(NAMESPACE, ACCOUNT, dir)
        .await
}

pub struct ControllerProcess {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts a controller watching `namespace`; with `identity`, it takes part
    /// in leader election on `lease`.
    pub fn spawn(
        kubeconfig: &Path,
        namespace: &str,
        leader: Option<(&str, &str)>,
        log: PathBuf,
    ) -> ControllerProcess {
        ControllerProcess::spawn_with(kubeconfig, namespace, leader, log, &[])
    }

    /// [`ControllerProcess::spawn`], with more environment.
    pub fn spawn_with(
        kubeconfig: &Path,
        namespace: &str,
        leader: Option<(&str, &str)>,
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> ControllerProcess {
        let metrics_port = free_port();
        let mut command = Command::new(super::adapter::BINARY);
        command
            .arg("controller")
            .env_clear()
            .env("KUBECONFIG", kubeconfig)
            .env("ADAPTER_IMAGE", ADAPTER_IMAGE)
            .env("WATCH_NAMESPACE", namespace)
            .env("METRICS_PORT", metrics_port.to_string())
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info,kube=warn")
            .env("POD_NAMESPACE", NAMESPACE);
        match leader {
            Some((lease, identity)) => {
                command.env("LEASE_NAME", lease).env("POD_NAME", identity);
            }
            None => {
                command.env("LEADER_ELECT", "false");
            }
        }
        command.envs(env.iter().copied());
        let child = command
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("the controller starts");
        ControllerProcess {
            child,
            metrics_port,
            log,
        }
    }

    #[allow(
        dead_code,
        reason = "used by the benchmarks, which include this module"
    )]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = super::local_get(self.metrics_port, "/metrics").await?;
        super::sample(&body, sample)
    }

    pub async fn wait_serving(&mut self) {
        eventually(
            "the controller to serve metrics",
            cluster::DEADLINE,
            async || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("the controller exited with {status}:\n{}", self.logs());
                }
                self.metric("dynamodb_source_controller_leader")
                    .await
                    .map(|_| ())
            },
        )
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
