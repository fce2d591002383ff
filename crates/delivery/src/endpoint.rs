//! A sink's address as configured, split once into where to send and how to
//! authenticate.
//!
//! Userinfo in `K_SINK` or `K_DEAD_LETTER_SINK` (`http://user:password@host/`)
//! is how many webhook sinks are addressed. It is taken out of the URL here
//! and sent as HTTP Basic authorization (RFC 7617) on every request, so the
//! URL that the rest of the adapter holds, logs and puts on dead-lettered
//! events has no credentials left in it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_api::secret_url;
use http::HeaderValue;
use url::Url;

/// Why a sink address cannot be used. Messages show the address with its
/// userinfo redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{shown:?} is not a URL")]
    NotAUrl {
        shown: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{shown:?} is not an http(s) URL with a host")]
    NotHttp { shown: String },
    #[error("the userinfo of {shown:?} is not valid percent-encoded UTF-8")]
    Userinfo { shown: String },
}

/// An http(s) sink: its URL without userinfo, and the `Authorization` header
/// its userinfo stood for.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: Url,
    /// Marked sensitive, so http's and hyper's `Debug` never print it.
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    pub fn parse(value: &str) -> Result<Endpoint, EndpointError> {
        let shown = || secret_url::redact_text(value).into_owned();
        let url = Url::parse(value).map_err(|source| EndpointError::NotAUrl {
            shown: shown(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(EndpointError::NotHttp {
                shown: secret_url::without_userinfo(&url).to_string(),
            });
        }
        let authorization = if secret_url::has_userinfo(&url) {
            let decode = |part: &str| {
                percent_decode(part).ok_or_else(|| EndpointError::Userinfo {
                    shown: secret_url::without_userinfo(&url).to_string(),
                })
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or_default())?;
            let credentials = STANDARD.encode(format!("{user}:{password}"));
            let mut header =
                HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
                    EndpointError::Userinfo {
                        shown: secret_url::without_userinfo(&url).to_string(),
                    }
                })?;
            header.set_sensitive(true);
            Some(header)
        } else {
            None
        };
        Ok(Endpoint {
            url: secret_url::without_userinfo(&url),
            authorization,
        })
    }

    /// The address without credentials: safe to log and to show.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `Authorization: Basic ...` when the configured URL had userinfo.
    pub fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }
}

impl From<Url> for Endpoint {
    /// For URLs built in code; userinfo, if any, is dropped, not sent.
    fn from(url: Url) -> Self {
        Endpoint {
            url: secret_url::without_userinfo(&url),
            authorization: None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.url, f)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url.as_str())
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| secret_url::REDACTED),
            )
            .finish()
    }
}

/// RFC 3986 percent-decoding of one userinfo part, as UTF-8.
fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_authorization_and_leaves_the_url() {
        let endpoint = Endpoint::parse("https://hook:pa%40ss%3Aw0rd@sink.example/in").expect("ok");
        assert_eq!(endpoint.url().as_str(), "https://sink.example/in");
        assert_eq!(endpoint.to_string(), "https://sink.example/in");
        let header = endpoint.authorization().expect("basic");
        assert!(header.is_sensitive());
        let expected = format!("Basic {}", STANDARD.encode("hook:pa@ss:w0rd"));
        assert_eq!(header.to_str().expect("ascii"), expected);
        let debug = format!("{endpoint:?}");
        assert!(!debug.contains("w0rd"), "{debug}");
        assert!(!debug.contains(&expected), "{debug}");
    }

    #[test]
    fn a_url_without_userinfo_sends_no_authorization() {
        let endpoint = Endpoint::parse("http://127.0.0.1:8080/").expect("ok");
        assert_eq!(endpoint.authorization(), None);
        let only_user = Endpoint::parse("http://token@sink/").expect("ok");
        assert_eq!(
            only_user.authorization().and_then(|h| h.to_str().ok()),
            Some(format!("Basic {}", STANDARD.encode("token:")).as_str())
        );
    }

    #[test]
    fn errors_never_show_the_password() {
        for bad in [
            "http://user:s3cret@bad host/",
            "ftp://user:s3cret@host/",
            "http://user:%zz-s3cret@host/",
        ] {
            let error = Endpoint::parse(bad).expect_err(bad).to_string();
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
