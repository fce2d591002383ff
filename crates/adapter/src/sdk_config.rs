//! The AWS SDK configuration: region, endpoint override, the standard
//! credential chain, and an optional role assumed through STS.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodbstreams::config::SharedCredentialsProvider;
use aws_smithy_http_client::tls;
use url::Url;

/// The SDK's own connect timeout, kept when the attempt timeout is set.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// How long one API call may wait for its answer. The SDK sets none: a call
/// over a connection that a NAT or load balancer dropped without a word would
/// then wait forever, and its shard with it. Stream calls answer in well under
/// a second; a timed-out attempt is retried like any transient failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a platform CA bundle may be: the variables rustls-native-certs
/// honours, and the usual Linux locations.
const CA_BUNDLE_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];
const CA_BUNDLE_PATHS: [&str; 4] = [
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/cert.pem",
];

/// Whether to load the platform's CA bundle too: where it exists or is named.
/// The image is FROM scratch and has none; asking for it there would only log
/// "no native root CA certificates found!" at every start.
fn platform_roots_present() -> bool {
    CA_BUNDLE_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
        || CA_BUNDLE_PATHS
            .iter()
            .any(|p| std::path::Path::new(p).exists())
}

/// One DER certificate as PEM, the form the SDK's trust store takes.
fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in encoded.as_bytes().chunks(64) {
        pem.extend_from_slice(line);
        pem.push(b'\n');
    }
    pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    pem
}

/// The roots the AWS SDK's HTTPS client trusts: Mozilla's, compiled in
/// (webpki-root-certs), so the binary verifies AWS endpoints in an image
/// with no CA bundle at all; plus the platform's bundle where there is one
/// (a private CA added to the system store, or SSL_CERT_FILE/SSL_CERT_DIR).
fn trust_store() -> tls::TrustStore {
    let mut store = tls::TrustStore::empty().with_native_roots(platform_roots_present());
    for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(pem(certificate.as_ref()));
    }
    store
}

/// Builds the SDK configuration. The HTTPS client uses rustls with the ring
/// provider, the one crypto backend in this build, and [`trust_store`].
pub(crate) async fn sdk_config(
    region: &str,
    endpoint: Option<&Url>,
    assume_role_arn: Option<&str>,
) -> SdkConfig {
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    let http_client = match tls::TlsContext::builder()
        .with_trust_store(trust_store())
        .build()
    {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(error) => {
            tracing::warn!(error = %dynamodb_source_api::Report(&error), "building the TLS trust store failed; using the platform's roots only");
            builder.build_https()
        }
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .http_client(http_client);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    let base = loader.load().await;
    match assume_role_arn {
        Some(role) => {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("dynamodb-source")
                .configure(&base)
                .build()
                .await;
            base.into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build()
        }
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_become_one_pem_certificate_each() {
        use base64::Engine;
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        assert!(roots.len() > 100, "Mozilla's roots: {}", roots.len());
        for root in roots {
            let pem = String::from_utf8(pem(root.as_ref())).expect("ASCII");
            let lines: Vec<&str> = pem.lines().collect();
            assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
            assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
            assert!(
                lines
                    .iter()
                    .all(|l| l.len() <= 64 || l.starts_with("-----"))
            );
            let body: String = lines[1..lines.len() - 1].concat();
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("base64");
            assert_eq!(der, root.as_ref(), "the same certificate");
        }
    }
}
