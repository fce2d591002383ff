//! Takes a successful GetRecords answer's body away from the SDK so that
//! [`crate::wire`] parses it instead (see there for why).
//!
//! The SDK still does everything else: signing, retries, timeouts, and every
//! error answer, which keeps its error codes for [`crate::StreamError`]. Only
//! a 200's body is kept aside, and the SDK is handed `{}` in its place.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body::{Body, Frame};

/// What the SDK parses instead of the records: an answer with no fields.
const EMPTY_ANSWER: &[u8] = b"{}";

/// The most reserved up front for a body, whatever its announced length.
const MAX_RESERVED: usize = 8 << 20;

/// Per call: the body of the call's successful answer, once it has arrived.
#[derive(Debug, Clone, Default)]
pub(crate) struct CaptureBody {
    slot: Arc<Mutex<Option<Bytes>>>,
}

impl CaptureBody {
    /// The body of the last successful attempt.
    pub(crate) fn take(&self) -> Option<Bytes> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "CaptureGetRecordsBody"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if response.status().as_u16() == 200 {
            // The body the SDK reads is no longer the one the length
            // describes. The SDK's own length check (a client-wide
            // interceptor, so it runs before this one) has already wrapped the
            // real body and still sees every byte of it.
            let length = response
                .headers_mut()
                .remove("content-length")
                .and_then(|length| length.parse::<usize>().ok())
                .unwrap_or(0);
            let inner = response.take_body();
            *response.body_mut() = SdkBody::from_body_1_x(Captured {
                inner,
                // Sized once from the length the server announced (about 2 KB
                // a record, up to 1,000 records a page) instead of doubling;
                // the cap keeps a lying header from reserving much.
                read: Vec::with_capacity(length.min(MAX_RESERVED)),
                slot: Some(self.slot.clone()),
            });
        }
        Ok(())
    }
}

/// Reads the real body to its end into `slot`, then yields [`EMPTY_ANSWER`].
/// A body cut short stays an error, so the SDK retries the call as before.
struct Captured {
    inner: SdkBody,
    read: Vec<u8>,
    slot: Option<Arc<Mutex<Option<Bytes>>>>,
}

impl Body for Captured {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.read.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    let Some(slot) = this.slot.take() else {
                        return Poll::Ready(None);
                    };
                    let body = Bytes::from(std::mem::take(&mut this.read));
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(EMPTY_ANSWER)))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The interception is the most fragile code of the crate: it depends on
    //! the SDK running its own length check before this interceptor, and on
    //! the SDK accepting `{}` for GetRecords. These tests go through the real
    //! SDK client and its HTTP stack against a loopback server.

    use std::time::Duration;

    use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::client::{StreamClient, StreamError};

    /// Answers every request on one connection with `status` and `body`.
    async fn server(status: &'static str, body: &'static str) -> String {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // One request: its head and its (small) body.
                    while let Ok(n) = socket.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&request);
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .and_then(|v| v.trim().parse::<usize>().ok())
                                })
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        format!("http://127.0.0.1:{port}")
    }

    fn client(endpoint: &str) -> StreamClient {
        let config = aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::for_tests())
            .endpoint_url(endpoint)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .timeout_config(
                aws_sdk_dynamodbstreams::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            )
            .retry_config(aws_sdk_dynamodbstreams::config::retry::RetryConfig::disabled())
            .build();
        StreamClient::new(aws_sdk_dynamodbstreams::Client::from_conf(config))
    }

    #[tokio::test]
    async fn a_successful_answer_reaches_the_parser_whole_despite_its_content_length() {
        let body = r#"{"Records":[{"eventID":"e1","dynamodb":{"SequenceNumber":"100"}},{"eventID":"e2"}],"NextShardIterator":"next"}"#;
        let endpoint = server("200 OK", body).await;
        let page = client(&endpoint)
            .records("iterator", 10)
            .await
            .expect("parsed");
        assert_eq!(page.records.len(), 2);
        // Neither has an eventName: malformed, each kept as its JSON.
        let first = page.records[0].as_ref().expect_err("no eventName");
        assert!(first.raw.contains("\"e1\""), "{}", first.raw);
        assert_eq!(page.next_iterator.as_deref(), Some("next"));
    }

    #[tokio::test]
    async fn an_error_answer_is_left_to_the_sdk_and_keeps_its_code() {
        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ExpiredIteratorException","message":"too old"}"#;
        let endpoint = server("400 Bad Request", body).await;
        let error = client(&endpoint)
            .records("iterator", 10)
            .await
            .expect_err("an error");
        assert!(
            matches!(error, StreamError::ExpiredIterator(_)),
            "{error:?}"
        );
    }
}
