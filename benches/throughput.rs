//! End-to-end throughput of the adapter binary: a pre-filled stream on the
//! fake Streams API, a no-op sink answering 202, records per second from the
//! adapter's start until the sink counted every event, and the adapter's peak
//! resident memory. The baseline is the same number of identical POSTs (same
//! headers, same body) sent by a bare reqwest loop to the same sink, one loop
//! per shard: what the sink and loopback allow, so the gap is the adapter's.
//!
//! Run with `cargo bench --bench throughput`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use support::adapter::{AdapterEnv, AdapterProcess};
use support::eventually;
use support::fake_streams::{Change, FakeStreams};
use tokio::net::TcpListener;

const RECORDS: usize = 20_000;
const KEYS: usize = 100;
/// Bytes of payload per item, besides its key and a number.
const PADDING: usize = 200;

/// Counts requests, keeps the first one (to replay in the baseline), answers 202.
#[derive(Clone, Default)]
struct SinkState {
    count: Arc<AtomicUsize>,
    first: Arc<Mutex<Option<(HeaderMap, Bytes)>>>,
    /// When the first and the latest request arrived.
    span: Arc<Mutex<Option<(Instant, Instant)>>>,
}

async fn accept(State(state): State<SinkState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Instant::now();
    {
        let mut span = state.span.lock().expect("lock");
        *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
    }
    if state.count.fetch_add(1, Ordering::Relaxed) == 0 {
        *state.first.lock().expect("lock") = Some((headers, body));
    }
    StatusCode::ACCEPTED
}

struct Sink {
    url: String,
    state: SinkState,
}

impl Sink {
    async fn start() -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = SinkState::default();
        let app = Router::new().fallback(accept).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            url: format!("http://127.0.0.1:{port}/"),
            state,
        }
    }

    fn count(&self) -> usize {
        self.state.count.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.state.count.store(0, Ordering::Relaxed);
        *self.state.span.lock().expect("lock") = None;
    }

    fn span(&self) -> Duration {
        self.state
            .span
            .lock()
            .expect("lock")
            .map_or(Duration::ZERO, |(first, last)| last - first)
    }
}

/// Peak resident set size of a process, from /proc (Linux), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct Measured {
    scenario: String,
    records: usize,
    end_to_end: Duration,
    steady: Duration,
    peak_rss_kib: Option<u64>,
    baseline: Duration,
    body_bytes: usize,
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

/// Sends `n` copies of the first request the sink saw, `loops` loops at once.
async fn baseline(sink: &Sink, n: usize, loops: usize) -> Duration {
    let (headers, body) = sink
        .state
        .first
        .lock()
        .expect("lock")
        .clone()
        .expect("the sink saw a request");
    let mut replay = reqwest::header::HeaderMap::new();
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            replay.insert(name.clone(), value.clone());
        }
    }
    sink.reset();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..loops)
        .map(|i| {
            let client = client.clone();
            let url = sink.url.clone();
            let headers = replay.clone();
            let body = body.clone();
            let share = n / loops + usize::from(i < n % loops);
            tokio::spawn(async move {
                for _ in 0..share {
                    let response = client
                        .post(&url)
                        .headers(headers.clone())
                        .body(body.clone())
                        .send()
                        .await
                        .expect("the sink answers");
                    assert_eq!(response.status().as_u16(), 202);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("baseline loop");
    }
    let elapsed = started.elapsed();
    assert_eq!(sink.count(), n, "every baseline POST counted");
    elapsed
}

async fn run(scenario: &str, shards: usize) -> Measured {
    let per_shard = RECORDS / shards;
    let table = "bench";
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream(table);
    for s in 0..shards {
        let shard = fake.add_shard(&stream, None);
        fake.append(
            &shard,
            (0..per_shard)
                .map(|i| Change::modify(format!("key-{s}-{}", i % KEYS), i as i64).padded(PADDING)),
        );
    }
    let records = per_shard * shards;
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = AdapterEnv::new(
        &sink.url,
        &fake.table_arn(table),
        &fake.endpoint,
        &dir.path().join("checkpoint.json"),
    )
    .set("RUST_LOG", "warn");

    let started = Instant::now();
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    eventually(
        &format!("{scenario}: {records} events at the sink"),
        Duration::from_secs(600),
        async || (sink.count() >= records).then_some(()),
    )
    .await;
    let end_to_end = started.elapsed();
    let steady = sink.span();
    let peak_rss_kib = peak_rss_kib(adapter.pid());
    let status = adapter.terminate(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "{scenario}: the adapter exits 0: {status}"
    );
    assert_eq!(sink.count(), records, "{scenario}: no event twice");

    let body_bytes = sink
        .state
        .first
        .lock()
        .expect("lock")
        .as_ref()
        .map_or(0, |(_, body)| body.len());
    let baseline = baseline(&sink, records, shards).await;
    Measured {
        scenario: scenario.to_owned(),
        records,
        end_to_end,
        steady,
        peak_rss_kib,
        baseline,
        body_bytes,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime.block_on(async {
        vec![
            run("1 shard x 20000", 1).await,
            run("8 shards x 2500", 8).await,
        ]
    });
    println!();
    println!(
        "{:<18} {:>8} {:>10} {:>14} {:>14} {:>10} {:>16} {:>9}",
        "scenario",
        "records",
        "body (B)",
        "e2e (rec/s)",
        "steady (rec/s)",
        "RSS (MiB)",
        "baseline (req/s)",
        "adapter %"
    );
    for m in &results {
        let e2e = per_second(m.records, m.end_to_end);
        let steady = per_second(m.records, m.steady);
        let base = per_second(m.records, m.baseline);
        println!(
            "{:<18} {:>8} {:>10} {:>14.0} {:>14.0} {:>10} {:>16.0} {:>8.0}%",
            m.scenario,
            m.records,
            m.body_bytes,
            e2e,
            steady,
            m.peak_rss_kib
                .map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            base,
            100.0 * e2e / base,
        );
    }
    println!(
        "\ne2e: from spawning the adapter until the sink counted every event; steady: first to last event at the sink;\n\
         baseline: the same POSTs from a bare reqwest loop per shard; adapter %: e2e / baseline."
    );
}
