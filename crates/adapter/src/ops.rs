//! Operations endpoints: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What readiness waits for: the stream was described and the sink answered once.
#[derive(Debug, Default)]
pub struct Health {
    stream_described: AtomicBool,
    sink_reachable: AtomicBool,
}

impl Health {
    pub fn stream_described(&self, yes: bool) {
        self.stream_described.store(yes, Ordering::Relaxed);
    }

    pub fn sink_reachable(&self) {
        self.sink_reachable.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, or why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.stream_described.load(Ordering::Relaxed) {
            return Err("the table's stream has not been described yet");
        }
        if !self.sink_reachable.load(Ordering::Relaxed) {
            return Err("the sink has not been reachable yet");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("encoding metrics: {e}"),
        ),
    }
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Binds the operations endpoints; serving stops when `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { registry, health });
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the operations server failed");
        }
    });
    Ok((local, task))
}
