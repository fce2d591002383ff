//! The validating admission webhook's HTTPS endpoint.
//!
//! Every replica serves it, the leader and the standbys alike, so admission
//! does not wait for an election. The serving certificate is `tls.crt` and
//! `tls.key` in a directory (a mounted `kubernetes.io/tls` Secret); it is read
//! again when those files change, so a rotated certificate (cert-manager, a
//! `helm upgrade`) is served without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admission::{self, Verdict};
use crate::metrics::ControllerMetrics;

/// Where the API server sends `AWSDynamoDBSource` reviews (the chart's
/// `ValidatingWebhookConfiguration` names it).
pub const PATH: &str = "/validate-awsdynamodbsource";

/// How often the certificate files are checked for a change. A mounted
/// Secret itself is refreshed by the kubelet within about a minute.
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to serve the webhook, and with which certificate.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub addr: SocketAddr,
    /// Holds `tls.crt` (the chain, leaf first) and `tls.key` (PEM).
    pub cert_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("reading the webhook's certificate file {path}")]
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
    #[error("the TLS settings of the webhook")]
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
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "accepting a webhook connection");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let handshaken = handshaken.clone();
        tokio::spawn(async move {
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

/// The serving certificate, swapped when its files change.
#[derive(Debug)]
struct Reloading {
    dir: PathBuf,
    current: RwLock<(Files, Arc<CertifiedKey>)>,
}

/// The certificate files' bytes as last loaded, to notice a change.
#[derive(Debug, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Reloading {
    fn load(dir: &Path) -> Result<Reloading, WebhookError> {
        let files = Files::read(dir)?;
        let key = files.certified_key(dir)?;
        Ok(Reloading {
            dir: dir.to_owned(),
            current: RwLock::new((files, Arc::new(key))),
        })
    }

    async fn reload_until(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => self.reload(),
            }
        }
    }

    fn reload(&self) {
        let loaded = Files::read(&self.dir).and_then(|files| {
            let unchanged = self.current.read().is_ok_and(|current| current.0 == files);
            if unchanged {
                return Ok(None);
            }
            let key = files.certified_key(&self.dir)?;
            Ok(Some((files, key)))
        });
        match loaded {
            Ok(None) => {}
            Ok(Some((files, key))) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (files, Arc::new(key));
                    info!(dir = %self.dir.display(), "loaded the webhook's new serving certificate");
                }
            }
            Err(e) => warn!(
                error = %dynamodb_source_api::Report(&e),
                "kept the webhook's serving certificate: its files do not load"
            ),
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.1.clone())
    }
}

impl Files {
    fn read(dir: &Path) -> Result<Files, WebhookError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| WebhookError::Read {
                path,
                source: rustls::pki_types::pem::Error::Io(e),
            })
        };
        Ok(Files {
            cert: read("tls.crt")?,
            key: read("tls.key")?,
        })
    }

    fn certified_key(&self, dir: &Path) -> Result<CertifiedKey, WebhookError> {
        let cert_path = dir.join("tls.crt");
        let key_path = dir.join("tls.key");
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| WebhookError::Read {
                path: cert_path.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(WebhookError::NoCertificate(cert_path));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&self.key).map_err(|source| WebhookError::Read {
                path: key_path.clone(),
                source,
            })?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
            WebhookError::Key {
                path: key_path.clone(),
                source,
            }
        })?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|source| WebhookError::Mismatch {
                path: key_path,
                cert: cert_path,
                source,
            })?;
        Ok(certified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name`: (certificate PEM, key PEM).
    fn self_signed(name: &str) -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("a certificate");
        (cert.pem(), signing_key.serialize_pem())
    }

    fn write(dir: &Path, (cert, key): &(String, String)) {
        std::fs::write(dir.join("tls.crt"), cert).expect("write tls.crt");
        std::fs::write(dir.join("tls.key"), key).expect("write tls.key");
    }

    fn served(certificate: &Reloading) -> Vec<u8> {
        certificate.current.read().expect("lock").1.cert[0].to_vec()
    }

    fn der((cert, _): &(String, String)) -> Vec<u8> {
        CertificateDer::from_pem_slice(cert.as_bytes())
            .expect("PEM")
            .to_vec()
    }

    #[test]
    fn a_changed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = self_signed("webhook.a.svc");
        write(dir.path(), &first);
        let certificate = Reloading::load(dir.path()).expect("loads");
        assert_eq!(served(&certificate), der(&first));

        let second = self_signed("webhook.b.svc");
        write(dir.path(), &second);
        certificate.reload();
        assert_eq!(served(&certificate), der(&second), "the new one is served");

        std::fs::write(dir.path().join("tls.key"), "not a key").expect("write");
        certificate.reload();
        assert_eq!(served(&certificate), der(&second), "the old one is kept");

        // A key of another certificate: half a rotation.
        std::fs::write(dir.path().join("tls.key"), &first.1).expect("write");
        certificate.reload();
        assert_eq!(served(&certificate), der(&second), "the old one is kept");
    }

    #[test]
    fn a_missing_or_mismatched_certificate_fails_naming_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Reloading::load(dir.path()).expect_err("no files");
        assert!(error.to_string().ends_with("tls.crt"), "{error}");
        let (cert, _) = self_signed("webhook.a.svc");
        let (_, other_key) = self_signed("webhook.b.svc");
        write(dir.path(), &(cert, other_key));
        let error = Reloading::load(dir.path()).expect_err("mismatched");
        assert!(matches!(error, WebhookError::Mismatch { .. }), "{error}");
        write(dir.path(), &(String::new(), String::new()));
        let error = Reloading::load(dir.path()).expect_err("empty");
        assert!(matches!(error, WebhookError::NoCertificate(_)), "{error}");
    }
}
