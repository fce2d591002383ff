//! An HTTP sink on loopback that records every request and answers as the
//! test tells it to (status, headers, delay), to play a healthy or failing sink.
//! It also counts the requests it is answering at any moment, and the most it
//! ever answered at once, so a test can tell sends that overlapped from sends
//! made one after another.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// An on/off switch a test flips while the receiver runs; behaviours read it
/// at each request.
#[derive(Debug, Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn new(on: bool) -> Switch {
        Switch(Arc::new(AtomicBool::new(on)))
    }

    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// 202 after a delay drawn for each request from `delays` (uniformly, to the
/// microsecond). The delay is a function of `seed` and the request's index
/// alone, so a run is repeatable as far as the order of arrival allows.
pub fn random_delays(seed: u64, delays: Range<Duration>) -> Behaviour {
    let span = delays.end.saturating_sub(delays.start).as_micros() as u64;
    Arc::new(move |index, _| {
        let draw = splitmix64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let extra = if span == 0 { 0 } else { draw % span };
        Reply::status(202).delay(delays.start + Duration::from_micros(extra))
    })
}

/// Answers `status` to every request whose `ce-partitionkey` is `key` (e.g.
/// `pk=k0`) while `failing` is on; every other request, and that key's once
/// `failing` is off, is answered as `otherwise` says.
pub fn failing_key(key: &str, status: u16, failing: Switch, otherwise: Behaviour) -> Behaviour {
    let key = key.to_owned();
    Arc::new(move |index, headers| {
        let ours = headers
            .get("ce-partitionkey")
            .is_some_and(|v| v.as_bytes() == key.as_bytes());
        if ours && failing.is_on() {
            Reply::status(status)
        } else {
            otherwise(index, headers)
        }
    })
}

/// A well-mixed 64-bit value from `x` (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Requests being answered now, and the most there ever were at once.
#[derive(Debug, Default)]
struct Open {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Holds one request open, from its arrival until its handler returns the
/// answer or is dropped because the client went away.
struct OpenRequest(Arc<Open>);

impl OpenRequest {
    fn new(open: &Arc<Open>) -> OpenRequest {
        let now = open.now.fetch_add(1, Ordering::SeqCst) + 1;
        open.peak.fetch_max(now, Ordering::SeqCst);
        OpenRequest(open.clone())
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Shared {
    behaviour: Behaviour,
    log: Arc<Mutex<Vec<Received>>>,
    open: Arc<Open>,
}

pub struct Receiver {
    pub url: String,
    pub port: u16,
    log: Arc<Mutex<Vec<Received>>>,
    open: Arc<Open>,
    stop: Option<oneshot::Sender<()>>,
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    // Closed before the answer is written, so a client that waits for it
    // before its next request never has two open here.
    let _open = OpenRequest::new(&shared.open);
    // Numbered and logged under one lock, so a request's index is its place
    // in the log even when requests arrive together; logged on arrival,
    // because a client that gives up on a slow reply drops this handler.
    let reply = {
        let mut log = shared.log.lock().expect("lock");
        let reply = (shared.behaviour)(log.len(), &headers);
        log.push(Received {
            at: Instant::now(),
            headers,
            body,
            status: reply.status,
        });
        reply
    };
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
        let open = Arc::new(Open::default());
        let shared = Shared {
            behaviour,
            log: log.clone(),
            open: open.clone(),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let stop = super::serve_until_stopped(listener, app);
        Receiver {
            url: format!("{scheme}://127.0.0.1:{port}/"),
            port,
            log,
            open,
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

    /// Requests arrived and not answered yet.
    pub fn open_requests(&self) -> usize {
        self.open.now.load(Ordering::SeqCst)
    }

    /// The most requests that were ever open at once.
    pub fn peak_open_requests(&self) -> usize {
        self.open.peak.load(Ordering::SeqCst)
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
