//! The adapter binary as a separate process, the way it runs in production.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

pub const BINARY: &str = env!("CARGO_BIN_EXE_dynamodb-source");

/// Environment for one adapter run; credentials are dummies and instance
/// metadata is off, so nothing leaves loopback.
#[derive(Debug, Clone)]
pub struct AdapterEnv {
    pub vars: BTreeMap<String, String>,
}

impl AdapterEnv {
    pub fn new(sink: &str, arn: &str, endpoint: &str, checkpoint: &Path) -> AdapterEnv {
        let mut vars = BTreeMap::new();
        for (k, v) in [
            ("K_SINK", sink),
            ("ARN", arn),
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("STARTING_POSITION", "TRIM_HORIZON"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("IDLE_POLL_MAX", "PT0.2S"),
            ("SHUTDOWN_TIMEOUT", "PT5S"),
        ] {
            vars.insert(k.to_owned(), v.to_owned());
        }
        vars.insert(
            "CHECKPOINT_FILE".to_owned(),
            checkpoint.display().to_string(),
        );
        AdapterEnv { vars }
    }

    pub fn set(mut self, name: &str, value: impl Into<String>) -> AdapterEnv {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// Leaves `name` unset, so the adapter takes its default.
    #[allow(
        dead_code,
        reason = "used by the benchmarks, which include this module"
    )]
    pub fn unset(mut self, name: &str) -> AdapterEnv {
        self.vars.remove(name);
        self
    }
}

pub struct AdapterProcess {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl AdapterProcess {
    /// Starts the adapter; its log goes to `log_dir/adapter-N.log`.
    pub fn spawn(env: &AdapterEnv, log_dir: &Path) -> AdapterProcess {
        let metrics_port = free_port();
        let n = std::fs::read_dir(log_dir).map(|d| d.count()).unwrap_or(0);
        let log = log_dir.join(format!("adapter-{n}.log"));
        // DYNAMODB_SOURCE_BIN runs another build (e.g. the profiling profile) instead.
        let binary = std::env::var_os("DYNAMODB_SOURCE_BIN").unwrap_or_else(|| BINARY.into());
        let child = Command::new(binary)
            .arg("adapter")
            .env_clear()
            .envs(&env.vars)
            .env("METRICS_PORT", metrics_port.to_string())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("the adapter starts");
        AdapterProcess {
            child,
            metrics_port,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        super::local_get(self.metrics_port, path).await
    }

    pub async fn wait_ready(&mut self) {
        let deadline = Duration::from_secs(60);
        eventually("the adapter to be ready", deadline, async || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the adapter exited with {status}:\n{}", self.logs());
            }
            matches!(self.get("/readyz").await, Some((200, _))).then_some(())
        })
        .await;
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one sample, e.g. `dynamodb_source_events_total{result="delivered"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        super::sample(&self.metrics().await, sample).unwrap_or(0.0)
    }

    /// Waits until one sample reads `value`: the adapter counts an outcome
    /// once it has read the peer's answer, which can be after the peer logged
    /// the request the test saw.
    pub async fn wait_metric(&self, sample: &str, value: f64) {
        let what = format!("{sample} to read {value}");
        eventually(&what, Duration::from_secs(60), async || {
            (self.metric(sample).await == value).then_some(())
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (within `within`).
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(within).await
    }

    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        eventually("the adapter to exit", within, async || {
            self.child.try_wait().ok().flatten()
        })
        .await
    }
}

impl Drop for AdapterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
