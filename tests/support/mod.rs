//! Test support: real peers on loopback (moto's server, HTTP receivers), the
//! adapter binary as a separate process, and waiting on conditions with
//! deadlines instead of sleeping.
#![allow(dead_code)]

pub mod adapter;
pub mod cluster;
pub mod controller;
pub mod fake_streams;
pub mod moto;
pub mod receiver;
pub mod tls;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python virtualenv holding the test peers (`make venv`).
pub fn venv() -> PathBuf {
    std::env::var_os("DYNAMODB_SOURCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"))
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The value of one sample in Prometheus text, e.g. `name_total{result="ok"}`.
pub fn sample(metrics: &str, sample: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(sample)
            .and_then(|rest| rest.trim().split(' ').next())
            .and_then(|v| v.parse().ok())
    })
}

/// Orders sequence numbers (decimal strings of any length) numerically; the
/// tests' own oracle, independent of the product's `SequenceNumber`.
pub fn seq_key(s: &str) -> (usize, String) {
    let trimmed = s.trim_start_matches('0');
    (trimmed.len(), trimmed.to_owned())
}

/// The position a file checkpoint holds for a shard (`after`, the last
/// delivered sequence number); `None` while nothing was checkpointed past.
/// The tests that use it read one shard.
pub fn checkpointed(path: &std::path::Path) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["shards"]
        .as_object()?
        .values()
        .find_map(|p| p["after"].as_str().map(str::to_owned))
}

/// Peak resident set size of a process, from /proc (Linux), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `GET http://127.0.0.1:{port}{path}`: the status and body, or `None` when
/// nothing answers within 2 s (the processes' /metrics, /healthz, /readyz).
pub async fn local_get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}
