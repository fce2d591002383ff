//! The webhook's serving certificate: `tls.crt` and `tls.key` in a directory
//! (a mounted `kubernetes.io/tls` Secret), read again when they change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::WebhookError;

/// The file names of a `kubernetes.io/tls` Secret's keys.
const CERT_FILE: &str = "tls.crt";
const KEY_FILE: &str = "tls.key";

/// How often the certificate files are checked for a change. A mounted
/// Secret itself is refreshed by the kubelet within about a minute.
const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The serving certificate, swapped when its files change.
#[derive(Debug)]
pub(super) struct Reloading {
    dir: PathBuf,
    current: RwLock<(Files, Arc<CertifiedKey>)>,
}

/// The certificate files' bytes as last loaded, to notice a change.
#[derive(PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// Without the key: a `{:?}` of the TLS settings reaches this.
impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("cert_bytes", &self.cert.len())
            .finish_non_exhaustive()
    }
}

impl Reloading {
    pub(super) fn load(dir: &Path) -> Result<Reloading, WebhookError> {
        let files = Files::read(dir)?;
        let key = files.certified_key(dir)?;
        Ok(Reloading {
            dir: dir.to_owned(),
            current: RwLock::new((files, Arc::new(key))),
        })
    }

    pub(super) async fn reload_until(self: Arc<Self>, stop: CancellationToken) {
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
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
        })
    }

    fn certified_key(&self, dir: &Path) -> Result<CertifiedKey, WebhookError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
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
        std::fs::write(dir.join(CERT_FILE), cert).expect("write tls.crt");
        std::fs::write(dir.join(KEY_FILE), key).expect("write tls.key");
    }

    /// A directory holding a new certificate for `name`, loaded.
    fn loaded(name: &str) -> (tempfile::TempDir, (String, String), Reloading) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = self_signed(name);
        write(dir.path(), &pair);
        let certificate = Reloading::load(dir.path()).expect("loads");
        (dir, pair, certificate)
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        let (_dir, pair, certificate) = loaded("webhook.a.svc");
        let shown = format!("{certificate:?}");
        let key_body = pair.1.lines().nth(1).expect("a PEM line");
        assert!(!shown.contains(key_body), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
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
        let (dir, first, certificate) = loaded("webhook.a.svc");
        assert_eq!(served(&certificate), der(&first));

        let second = self_signed("webhook.b.svc");
        write(dir.path(), &second);
        certificate.reload();
        assert_eq!(served(&certificate), der(&second), "the new one is served");

        std::fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        certificate.reload();
        assert_eq!(served(&certificate), der(&second), "the old one is kept");

        // A key of another certificate: half a rotation.
        std::fs::write(dir.path().join(KEY_FILE), &first.1).expect("write");
        certificate.reload();
        assert_eq!(served(&certificate), der(&second), "the old one is kept");
    }

    #[test]
    fn a_missing_or_mismatched_certificate_fails_naming_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Reloading::load(dir.path()).expect_err("no files");
        assert!(error.to_string().contains("/tls.crt,"), "{error}");
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
