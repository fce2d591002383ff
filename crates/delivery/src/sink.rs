//! One HTTP attempt to deliver an event, and what its answer means.

use std::time::{Duration, SystemTime};

use cloudevents::Event;
use cloudevents::binding::reqwest::RequestBuilderExt;
use reqwest::StatusCode;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("K_CA_CERTS holds no usable PEM certificate: {0}")]
    CaCerts(String),
    #[error("building the HTTP client: {0}")]
    Client(String),
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

/// A CloudEvents HTTP endpoint (binary content mode).
#[derive(Debug, Clone)]
pub struct Sink {
    client: reqwest::Client,
    url: Url,
}

/// Builds the HTTP client shared by the sink and the dead-letter sink.
pub fn http_client(extra_ca_pem: Option<&[u8]>) -> Result<reqwest::Client, SinkError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("dynamodb-source/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60));
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| SinkError::CaCerts(e.to_string()))?;
        if certs.is_empty() {
            return Err(SinkError::CaCerts("no certificate found".to_owned()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| SinkError::Client(e.to_string()))
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl Sink {
    pub fn new(client: reqwest::Client, url: Url) -> Self {
        Sink { client, url }
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Encodes `event` as an HTTP request (binary content mode) once, so that
    /// retries resend the same bytes without encoding again.
    pub fn prepare(&self, event: Event, timeout: Duration) -> Result<reqwest::Request, String> {
        let builder = self
            .client
            .post(self.url.clone())
            .timeout(timeout)
            .event(event)
            .map_err(|e| format!("the event could not be encoded: {e}"))?;
        builder
            .build()
            .map_err(|e| format!("the request could not be built: {e}"))
    }

    pub async fn send(&self, event: Event, timeout: Duration) -> Attempt {
        match self.prepare(event, timeout) {
            Ok(request) => self.send_prepared(&request).await,
            Err(body) => Attempt::Rejected { status: 0, body },
        }
    }

    /// One attempt with a prepared request.
    pub async fn send_prepared(&self, request: &reqwest::Request) -> Attempt {
        let Some(request) = request.try_clone() else {
            return Attempt::Rejected {
                status: 0,
                body: "the request body cannot be replayed".to_owned(),
            };
        };
        let timeout = request
            .timeout()
            .copied()
            .unwrap_or(Duration::from_secs(30));
        let response = match self.client.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Retryable {
                    status: None,
                    retry_after: None,
                    reason: if e.is_timeout() {
                        format!("no answer within {timeout:?}")
                    } else {
                        // Walk the chain: reqwest's top-level message hides the cause.
                        let mut reason = e.to_string();
                        let mut source = std::error::Error::source(&e);
                        while let Some(cause) = source {
                            reason.push_str(": ");
                            reason.push_str(&cause.to_string());
                            source = cause.source();
                        }
                        reason
                    },
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Acknowledged(status.as_u16());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = response.text().await.unwrap_or_default();
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
