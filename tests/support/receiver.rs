//! An HTTP sink on loopback that records every request and answers as the
//! test tells it to (status, headers, delay), to play a healthy or failing sink.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status this receiver answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn id(&self) -> String {
        self.header("ce-id").unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// Decides the reply from the request's index (0-based, all requests) and its headers.
pub type Behaviour = Arc<dyn Fn(usize, &HeaderMap) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    log: Arc<Mutex<Vec<Received>>>,
    count: Arc<Mutex<usize>>,
}

pub struct Receiver {
    pub url: String,
    pub port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    stop: Option<oneshot::Sender<()>>,
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let index = {
        let mut count = shared.count.lock().expect("lock");
        *count += 1;
        *count - 1
    };
    let reply = (shared.behaviour)(index, &headers);
    // Logged on arrival: a client that gives up on a slow reply drops this handler.
    shared.log.lock().expect("lock").push(Received {
        at: Instant::now(),
        headers,
        body,
        status: reply.status,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = StatusCode::from_u16(reply.status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

impl Receiver {
    pub async fn accepting() -> Receiver {
        Receiver::start(0, Arc::new(|_, _| Reply::status(202))).await
    }

    pub async fn start(port: u16, behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        Receiver::serve(listener, "http", behaviour)
    }

    /// An HTTPS receiver presenting `server` (see [`super::tls`]).
    pub async fn start_tls(server: &super::tls::ServerCert, behaviour: Behaviour) -> Receiver {
        let tcp = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the receiver");
        let listener = TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(server.config()),
        };
        Receiver::serve(listener, "https", behaviour)
    }

    fn serve<L>(listener: L, scheme: &str, behaviour: Behaviour) -> Receiver
    where
        L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    {
        let port = listener.local_addr().expect("local addr").port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            behaviour,
            log: log.clone(),
            count: Arc::new(Mutex::new(0)),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            url: format!("{scheme}://127.0.0.1:{port}/"),
            port,
            log,
            stop: Some(stop),
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().expect("lock").clone()
    }

    /// Requests this receiver answered with 2xx, in arrival order.
    pub fn acknowledged(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    pub fn acknowledged_ids(&self) -> Vec<String> {
        self.acknowledged().iter().map(Received::id).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// TLS over a loopback listener. A client that refuses the certificate fails
/// its handshake; the listener goes on to the next connection.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
