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
            response.headers_mut().remove("content-length");
            let inner = response.take_body();
            *response.body_mut() = SdkBody::from_body_1_x(Captured {
                inner,
                read: Vec::new(),
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
