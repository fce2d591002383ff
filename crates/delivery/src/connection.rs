//! One HTTP/1.1 connection to a sink, owned by one shard's task and driven
//! inside it.
//!
//! A shard delivers one event at a time, so it never needs more than one
//! connection, and a pool gives it nothing but costs: with hyper-util's pooled
//! client every request was checked out of a shared pool, handed over a
//! channel to the connection's own task, written there, and its answer handed
//! back the same way. Here the shard's task polls the connection itself, so
//! an answer is read, and the next request written, in the same poll.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::response::Parts;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// Dials a sink: TCP, and TLS for `https` URLs.
pub type Connector = HttpsConnector<HttpConnector>;

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why an exchange failed. The connection is dropped after any of them.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connecting to {target}")]
    Connect {
        target: Uri,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("sending the request")]
    Send(#[source] hyper::Error),
    #[error("the connection closed before the answer was complete")]
    Closed,
}

/// An answer: its head, and its body when it was read whole (`None` when it
/// was longer than the limit or broke off).
pub struct Answer {
    pub head: Parts,
    pub body: Option<Bytes>,
}

/// The connection's state machine, which reads and writes when polled.
struct Driver {
    conn: http1::Connection<Io, Full<Bytes>>,
    /// Once it has ended it is not polled again.
    ended: bool,
}

impl Driver {
    /// Reads and writes what it can; true once the connection has ended.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended {
            self.ended = Pin::new(&mut self.conn).poll(cx).is_ready();
        }
        self.ended
    }
}

struct Open {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
}

impl Open {
    /// The connection once it can take a request, or `None` when it ended
    /// meanwhile (the sink closed it after its keep-alive ran out): found
    /// here, before a request is lost on it.
    async fn ready(mut self: Box<Self>) -> Option<Box<Open>> {
        let Open { sender, driver } = &mut *self;
        let ready = pin!(poll_fn(|cx| sender.poll_ready(cx)));
        match drive(driver, ready).await {
            Some(Ok(())) => Some(self),
            _ => None,
        }
    }

    /// Sends `request` and waits for the head of its answer.
    async fn send(mut self: Box<Self>, request: Request<Full<Bytes>>) -> Sent {
        let mut pending = pin!(self.sender.try_send_request(request));
        let settled = match drive(&mut self.driver, pending.as_mut()).await {
            Some(settled) => settled,
            None => {
                // The connection ended first: dropping it settles the request
                // with an error that says whether it was written.
                drop(self);
                return match pending.await {
                    Ok(_) => Sent::Failed(ExchangeError::Closed),
                    Err(failed) => Sent::refused(failed),
                };
            }
        };
        match settled {
            Ok(response) => Sent::Answered(self, response),
            Err(failed) => Sent::refused(failed),
        }
    }
}

/// What became of a request on a connection.
enum Sent {
    Answered(Box<Open>, Response<Incoming>),
    /// Never written: the connection could not take it.
    Unsent(Request<Full<Bytes>>, hyper::Error),
    Failed(ExchangeError),
}

impl Sent {
    /// The answer's head and the connection it came on; not being written is
    /// then a failure like any other.
    fn answered(self) -> Result<(Box<Open>, Response<Incoming>), ExchangeError> {
        match self {
            Sent::Answered(open, response) => Ok((open, response)),
            Sent::Unsent(_, error) => Err(ExchangeError::Send(error)),
            Sent::Failed(e) => Err(e),
        }
    }

    fn refused(mut failed: TrySendError<Request<Full<Bytes>>>) -> Sent {
        let request = failed.take_message();
        let error = failed.into_error();
        match request {
            Some(request) => Sent::Unsent(request, error),
            None => Sent::Failed(ExchangeError::Send(error)),
        }
    }
}

/// A connection to one sink, opened on first use and again after any failure.
pub struct Connection {
    connector: Connector,
    /// The sink's URL, to dial.
    target: Uri,
    /// Kept between exchanges only when the last one completed: a timed-out
    /// or failed exchange leaves the connection in an unknown state.
    open: Option<Box<Open>>,
}

impl Connection {
    pub fn new(connector: Connector, target: Uri) -> Self {
        Connection {
            connector,
            target,
            open: None,
        }
    }

    /// Boxed: a connection's state is about 2 KB, moved with every request otherwise.
    async fn connect(&mut self) -> Result<Box<Open>, ExchangeError> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| ExchangeError::Connect {
            target: self.target.clone(),
            source,
        };
        let io = self
            .connector
            .call(self.target.clone())
            .await
            .map_err(failed)?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| failed(Box::new(e)))?;
        Ok(Box::new(Open {
            sender,
            driver: Driver { conn, ended: false },
        }))
    }

    /// Sends `request` and reads its answer, the body up to `limit` bytes.
    ///
    /// A request that a reused connection could not take (the sink closed
    /// it just then) is sent again once on a new connection: the sink never
    /// saw it, so it is not an attempt.
    pub async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<Answer, ExchangeError> {
        let reused = match self.open.take() {
            Some(open) => open.ready().await,
            None => None,
        };
        let fresh = reused.is_none();
        let open = match reused {
            Some(open) => open,
            None => self.connect().await?,
        };
        let (mut open, response) = match open.send(request).await {
            Sent::Unsent(request, _) if !fresh => {
                self.connect().await?.send(request).await.answered()?
            }
            sent => sent.answered()?,
        };
        let (head, body) = response.into_parts();
        let read = pin!(Limited::new(body, limit).collect());
        match drive(&mut open.driver, read).await {
            Some(Ok(collected)) => {
                self.open = Some(open);
                Ok(Answer {
                    head,
                    body: Some(collected.to_bytes()),
                })
            }
            // The connection is dropped: unread bytes would be taken for the
            // next answer.
            Some(Err(_)) | None => Ok(Answer { head, body: None }),
        }
    }
}

/// Polls `work` and the connection it needs together, the connection first
/// so that what it reads is there for `work`; `None` when the connection
/// ended before `work` finished.
async fn drive<F: Future + ?Sized>(
    driver: &mut Driver,
    mut work: Pin<&mut F>,
) -> Option<F::Output> {
    poll_fn(|cx| {
        let ended = driver.poll(cx);
        match work.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if ended => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback HTTP/1.1 server answering 202 to every request; with
    /// `close_after_each` it closes each connection after one answer,
    /// without saying so, as a sink whose keep-alive ran out does.
    async fn server(close_after_each: bool) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        // Requests here carry a 2-byte body after their head.
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            if buffer.len() < end + 4 + 2 {
                                break;
                            }
                            buffer.drain(..end + 4 + 2);
                            let answer = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                            if close_after_each {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let uri = format!("http://127.0.0.1:{port}/").parse().expect("uri");
        (uri, connections)
    }

    fn request() -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from_static(b"{}")));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = "/".parse().expect("path");
        request
            .headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("sink"));
        request
    }

    async fn three_exchanges(close_after_each: bool) -> usize {
        let (uri, connections) = server(close_after_each).await;
        let mut connection = Connection::new(crate::sink::connector(None).expect("connector"), uri);
        for n in 0..3 {
            let answer = connection
                .exchange(request(), 1024)
                .await
                .unwrap_or_else(|e| panic!("exchange {n}: {e}"));
            assert_eq!(answer.head.status, 202);
            assert_eq!(answer.body.as_deref(), Some(&b""[..]));
        }
        connections.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn one_connection_carries_every_request() {
        assert_eq!(three_exchanges(false).await, 1);
    }

    #[tokio::test]
    async fn a_connection_the_sink_closed_is_replaced_without_a_failed_exchange() {
        assert_eq!(three_exchanges(true).await, 3);
    }

    #[tokio::test]
    async fn an_unreachable_sink_is_a_connect_error_naming_it() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let uri: Uri = format!("http://127.0.0.1:{port}/").parse().expect("uri");
        let mut connection = Connection::new(crate::sink::connector(None).expect("connector"), uri);
        let error = connection
            .exchange(request(), 1024)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&error, ExchangeError::Connect { target, .. } if target.port_u16() == Some(port)),
            "{error}"
        );
    }
}
