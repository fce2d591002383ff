//! One HTTP attempt to deliver an event, and what its answer means.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cloudevents::Event;
use http::header::{AUTHORIZATION, HOST, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{Method, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use url::Url;

use crate::binary::{self, BinaryEvent, EncodeError, ExtensionHeaders};
use crate::connection::{Answer, Connection, Connector};
use crate::endpoint::Endpoint;
use dynamodb_source_api::Report;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("K_CA_CERTS holds no usable PEM certificate")]
    CaCerts(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("building the HTTP client")]
    Client(#[source] rustls::Error),
    /// `url` is shown without its userinfo.
    #[error("{url} cannot be used as an HTTP request target: {reason}")]
    Url { url: Url, reason: String },
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: the sink has the event.
    Acknowledged(u16),
    /// A network failure, a timeout, 408, 429 or 5xx: worth trying again.
    Retryable {
        status: Option<u16>,
        retry_after: Option<Duration>,
        reason: String,
    },
    /// Any other answer: the sink refuses this event, retrying will not help.
    Rejected { status: u16, body: String },
}

/// How much of a refusing sink's answer is kept for logs and dead letters.
const BODY_LIMIT: usize = 1024;

/// How much of an answer is read: an accepting sink's is dropped so that its
/// connection can carry the next event (a longer answer costs the connection),
/// a refusing sink's is kept up to [`BODY_LIMIT`].
const DRAIN_LIMIT: usize = 64 * 1024;

/// Builds what dials the sink and the dead-letter sink: TCP with TCP_NODELAY
/// (events are small and each waits for its answer), and HTTPS through rustls
/// with the public web roots plus `K_CA_CERTS`.
///
/// Each shard task then keeps its own HTTP/1.1 connection
/// ([`Connection`]) rather than sharing a client: reqwest spent about 15 us
/// of CPU per POST on the throughput benchmark, hyper-util's pooled client 7
/// us, and a connection driven by its shard's task less again (no pool, no
/// hand-over to a connection task). BENCHMARKS.md has the figures.
pub fn connector(extra_ca_pem: Option<&[u8]>) -> Result<Connector, SinkError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let mut added = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| SinkError::CaCerts(Box::new(e)))?;
            roots
                .add(cert)
                .map_err(|e| SinkError::CaCerts(Box::new(e)))?;
            added += 1;
        }
        if added == 0 {
            return Err(SinkError::CaCerts("no certificate found".into()));
        }
    }
    // The provider is named here, not taken from the process default, so a
    // library user (or a test) need not install one first.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(SinkError::Client)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(https)
}

/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An event encoded once as its request's headers and body (binary content
/// mode): every attempt sends the same bytes.
#[derive(Debug)]
pub struct Encoded {
    headers: HeaderMap,
    body: Bytes,
}

impl Encoded {
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body: the event's data.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// A CloudEvents HTTP endpoint (binary content mode).
#[derive(Debug, Clone)]
pub struct Sink {
    connector: Connector,
    /// Where events go; its URL has no userinfo, which became `authorization`.
    endpoint: Endpoint,
    /// `url` as hyper takes it, parsed once: to dial.
    target: Uri,
    /// The request target: `url`'s path and query.
    path: Uri,
    /// The `Host` header, set on each event when it is encoded.
    host: HeaderValue,
    extensions: Arc<ExtensionHeaders>,
}

static AGENT: HeaderValue =
    HeaderValue::from_static(concat!("dynamodb-source/", env!("CARGO_PKG_VERSION")));

impl Sink {
    pub fn new(connector: Connector, endpoint: Endpoint) -> Result<Self, SinkError> {
        let url = endpoint.url();
        let unusable = |reason: String| SinkError::Url {
            url: url.clone(),
            reason,
        };
        let target = url
            .as_str()
            .parse::<Uri>()
            .map_err(|e| unusable(e.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| unusable("it names no host".to_owned()))?;
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let host = HeaderValue::try_from(host).map_err(|e| unusable(e.to_string()))?;
        let path = target
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .map_err(|e| unusable(e.to_string()))?;
        Ok(Sink {
            connector,
            endpoint,
            target,
            path,
            host,
            extensions: Arc::default(),
        })
    }

    /// A connection of one task's own; it dials on first use.
    pub fn connection(&self) -> Connection {
        Connection::new(self.connector.clone(), self.target.clone())
    }

    /// The sink's URL without userinfo: what logs and dead letters show.
    pub fn url(&self) -> &Url {
        self.endpoint.url()
    }

    /// Encodes `event` as a request (binary content mode), once, so that
    /// retries resend the same bytes.
    pub fn prepare(&self, event: Event) -> Result<Encoded, EncodeError> {
        let BinaryEvent { mut headers, body } =
            binary::encode(event, &self.extensions, self.headers_added())?;
        self.add_headers(&mut headers);
        Ok(Encoded { headers, body })
    }

    /// How many headers [`Sink::add_headers`] adds to an event's.
    pub fn headers_added(&self) -> usize {
        2 + usize::from(self.endpoint.authorization().is_some())
    }

    /// Adds the headers every request to this sink carries to an event's.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        headers.insert(USER_AGENT, AGENT.clone());
        headers.insert(HOST, self.host.clone());
        if let Some(authorization) = self.endpoint.authorization() {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
    }

    /// One attempt with an event's headers and body on `connection` (one of
    /// this sink's), answered within `timeout`.
    pub async fn send(
        &self,
        connection: &mut Connection,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Attempt {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = headers;
        // The answer is read to its end (an accepting sink's is usually empty)
        // so that the connection can carry the next event.
        let exchange = connection.exchange(request, DRAIN_LIMIT);
        let Answer { head, body } = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                return Attempt::Retryable {
                    status: None,
                    retry_after: None,
                    reason: Report(&e).to_string(),
                };
            }
            Err(_) => {
                return Attempt::Retryable {
                    status: None,
                    retry_after: None,
                    reason: format!("no answer within {timeout:?}"),
                };
            }
        };
        let status = head.status;
        if status.is_success() {
            return Attempt::Acknowledged(status.as_u16());
        }
        let retry_after = head
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = body
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        body.truncate(body.floor_char_boundary(BODY_LIMIT));
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            Attempt::Retryable {
                status: Some(status.as_u16()),
                retry_after,
                reason: format!("HTTP {status}: {body}"),
            }
        } else {
            Attempt::Rejected {
                status: status.as_u16(),
                body,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_has_the_port_only_when_it_is_not_the_default() {
        let connector = connector(None).expect("connector");
        let host = |url: &str| {
            let sink =
                Sink::new(connector.clone(), Endpoint::parse(url).expect("url")).expect("sink");
            use cloudevents::EventBuilder;
            let event = cloudevents::EventBuilderV10::new()
                .id("1")
                .source("s")
                .ty("t")
                .build()
                .expect("event");
            let encoded = sink.prepare(event).expect("encoded");
            encoded.headers()[HOST].to_str().expect("ascii").to_owned()
        };
        assert_eq!(
            host("http://sink.default.svc:8080/x"),
            "sink.default.svc:8080"
        );
        assert_eq!(host("http://sink.default.svc/"), "sink.default.svc");
        assert_eq!(host("https://sink.example:443/"), "sink.example");
        assert_eq!(host("http://[::1]:9000/"), "[::1]:9000");
    }

    /// An event's headers are made with room for exactly the headers the
    /// sink adds: adding them never grows the map (which doubles it).
    #[test]
    fn the_sink_headers_fit_in_the_room_made_for_them() {
        let connector = connector(None).expect("connector");
        for url in ["http://sink:8080/", "http://user:secret@sink:8080/"] {
            let sink =
                Sink::new(connector.clone(), Endpoint::parse(url).expect("url")).expect("sink");
            use cloudevents::EventBuilder;
            for extensions in 0..12 {
                let mut builder = cloudevents::EventBuilderV10::new()
                    .id("1")
                    .source("s")
                    .ty("t");
                for n in 0..extensions {
                    builder = builder.extension(&format!("x{n}"), "v");
                }
                let event = builder.build().expect("event");
                let BinaryEvent { mut headers, .. } =
                    binary::encode(event, &ExtensionHeaders::default(), sink.headers_added())
                        .expect("encoded");
                let capacity = headers.capacity();
                sink.add_headers(&mut headers);
                assert_eq!(headers.capacity(), capacity, "{url} {extensions}");
                assert_eq!(headers.len(), 4 + extensions + sink.headers_added());
            }
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
