//! The validating admission webhook's HTTPS endpoint.
//!
//! Every replica serves it, the leader and the standbys alike, so admission
//! does not wait for an election. The serving certificate ([`certificate`])
//! is read again when its files change, so a rotated certificate
//! (cert-manager, a `helm upgrade`) is served without a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admission::{self, Verdict};
use crate::metrics::ControllerMetrics;

mod certificate;
use certificate::Reloading;

/// Where the API server sends `AWSDynamoDBSource` reviews (the chart's
/// `ValidatingWebhookConfiguration` names it).
pub const PATH: &str = "/validate-awsdynamodbsource";

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes under way at once; a connection beyond is closed. The API
/// server keeps a few connections open and re-uses them.
const MAX_HANDSHAKES: usize = 64;

/// Where to serve the webhook, and with which certificate.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub addr: SocketAddr,
    /// Holds `tls.crt` (the chain, leaf first) and `tls.key` (PEM).
    pub cert_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("reading {path}, of the webhook's serving certificate")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the webhook's serving certificate {0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("the webhook's serving key {path} cannot sign")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the webhook's serving key {path} does not match the certificate in {cert}")]
    Mismatch {
        path: PathBuf,
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the webhook's TLS settings (TLS 1.2 and 1.3 with the ring provider)")]
    Tls(#[source] rustls::Error),
    #[error("serving the admission webhook on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds, loads the certificate (both fail fast, before the controller
/// reconciles anything) and serves until `stop`.
pub(crate) async fn serve(
    settings: &WebhookSettings,
    metrics: ControllerMetrics,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), WebhookError> {
    let certificate = Arc::new(Reloading::load(&settings.cert_dir)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(WebhookError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpListener::bind(settings.addr)
        .await
        .map_err(|source| WebhookError::Bind {
            addr: settings.addr,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| WebhookError::Bind {
        addr: settings.addr,
        source,
    })?;
    let (handshaken, accepted) = mpsc::channel(64);
    tokio::spawn(handshakes(
        tcp,
        TlsAcceptor::from(Arc::new(tls)),
        handshaken,
        stop.clone(),
    ));
    tokio::spawn(certificate.clone().reload_until(stop.clone()));
    let app = Router::new()
        .route(PATH, post(validate))
        .with_state(metrics);
    let task = tokio::spawn(async move {
        let served = axum::serve(Handshaken { accepted, addr }, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "the admission webhook stopped");
        }
    });
    Ok((addr, task))
}

async fn validate(
    State(metrics): State<ControllerMetrics>,
    axum::Json(review): axum::Json<AdmissionReview<DynamicObject>>,
) -> axum::Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => {
            warn!(error = %e, "an AdmissionReview without a request");
            return axum::Json(AdmissionResponse::invalid(e).into_review());
        }
    };
    let (response, verdict) = admission::review(&request);
    metrics.admission(verdict);
    if verdict == Verdict::Denied {
        info!(
            namespace = request.namespace.as_deref().unwrap_or_default(),
            name = %request.name,
            reason = %response.result.message,
            "denied an AWSDynamoDBSource"
        );
    }
    axum::Json(response.into_review())
}

/// Accepts connections and runs each TLS handshake in a task of its own, so
/// a slow client holds up nobody else.
async fn handshakes(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: CancellationToken,
) {
    let handshaking = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, say: retrying at once would spin.
                    warn!(error = %e, "accepting a webhook connection; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = handshaking.clone().try_acquire_owned() else {
            debug!(%peer, "too many webhook TLS handshakes at once; closed a connection");
            continue;
        };
        let acceptor = acceptor.clone();
        let handshaken = handshaken.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = handshaken.send((tls, peer)).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "a webhook TLS handshake failed"),
                Err(_) => debug!(%peer, "a webhook TLS handshake timed out"),
            }
        });
    }
}

/// Errors of one connection, not of the listener (as axum's own listener
/// tells them apart).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Connections whose handshake is done, as axum takes them.
struct Handshaken {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Handshaken {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The acceptor stopped: so does serving, by graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
