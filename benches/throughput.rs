//! End-to-end throughput of the adapter binary: a pre-filled stream on the
//! fake Streams API, a sink answering 202, records per second from the
//! adapter's start until the sink answered every event, and the adapter's
//! peak resident memory and CPU per event.
//!
//! At a 0 ms sink (the default) the yardstick is a baseline: the same number
//! of identical POSTs (same headers, same body) sent by a bare reqwest loop
//! to the same sink, one loop per shard, run as a separate process like the
//! adapter: what the sink and loopback allow, so the gap is the adapter's.
//! With a sink that takes its time to answer (`BENCH_SINK_LATENCY_MS`), the
//! yardstick is the ceiling concurrency allows instead: events in flight
//! (`DELIVERY_PARALLELISM` per shard, and no more than the records the
//! adapter holds in all) divided by the sink's latency.
//!
//! Run with `cargo bench --bench throughput`; knobs (environment, comma
//! lists make a matrix):
//! - `BENCH_SHARDS` (default `1,8`): shards, the records spread evenly.
//! - `BENCH_SINK_LATENCY_MS` (default `0`): how long the sink waits before
//!   answering each request (each on its own, others meanwhile).
//! - `BENCH_RECORD`: `small` (a MODIFY of `pk`, `value` and a 200-byte
//!   string, both images: the record every earlier round measured) or
//!   `modify` (a production-like MODIFY, both images of an order with S, N,
//!   BOOL, NULL, SS, NS, L and M attributes, about 1 KB). Default: `small`
//!   at 0 ms, `modify` with a latency.
//! - `BENCH_KEYS`: distinct item keys per shard, written round-robin;
//!   default 100 at 0 ms (as every earlier round), 500 with a latency.
//! - `BENCH_RECORDS`: records in all; default 50,000 at 0 ms, with a latency
//!   about 10 s at the ceiling (2,000 to 100,000).
//! - `BENCH_ROUNDS`: rounds per scenario; default 5 at 0 ms, 3 with a latency.
//! - `BENCH_PARALLELISM`: sets the adapter's `DELIVERY_PARALLELISM` (its
//!   default, 20, otherwise); `BENCH_RECORDS_PER_READ` its `RECORDS_PER_READ`.
//! - `BENCH_BASELINE=hyper-util`: the baseline loops on hyper-util's client.
//! - `BENCH_PERF=FILE`: `perf record` (DWARF call graphs) of the adapter for
//!   each run, into FILE (the last run's is kept); with
//!   `DYNAMODB_SOURCE_BIN=target/profiling/dynamodb-source` for symbols.

// The benchmark uses a few of the test support helpers.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use support::adapter::{AdapterEnv, AdapterProcess};
use support::eventually;
use support::fake_streams::{Change, FakeStreams, Op};
use tokio::net::TcpListener;

/// Records of a 0 ms scenario, as in every earlier round.
const RECORDS: usize = 50_000;
/// Keys per shard at 0 ms, as in every earlier round, and with a latency.
const KEYS: usize = 100;
const KEYS_WITH_LATENCY: usize = 500;
/// Bytes of payload per `small` item, besides its key and a number.
const PADDING: usize = 200;
/// The adapter's defaults: events in flight per shard, records held by all
/// shards together (each event in flight is one of them), and connections
/// to the sink, one per event in flight, all shards together.
const PARALLELISM: usize = 20;
const RECORDS_HELD: usize = 2000;
const MAX_CONNECTIONS: usize = 128;
/// A latency scenario's records by default: this long at its ceiling.
const LATENCY_RUN: Duration = Duration::from_secs(10);

/// The shape of the records written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Small,
    Modify,
}

impl Shape {
    fn parse(s: &str) -> Shape {
        match s.trim() {
            "small" => Shape::Small,
            "modify" => Shape::Modify,
            other => panic!("BENCH_RECORD: small or modify, not {other:?}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Small => "small",
            Shape::Modify => "modify",
        }
    }

    fn change(self, key: String, value: i64) -> Change {
        match self {
            Shape::Small => Change::modify(key, value).padded(PADDING),
            Shape::Modify => Change::modify(key, value).rich(),
        }
    }
}

/// One scenario: the stream, the sink and the adapter's settings.
#[derive(Debug, Clone)]
struct Scenario {
    shards: usize,
    latency: Duration,
    shape: Shape,
    keys: usize,
    /// Per shard.
    records_per_shard: usize,
    parallelism: usize,
}

impl Scenario {
    fn records(&self) -> usize {
        self.records_per_shard * self.shards
    }

    fn name(&self) -> String {
        let shards = if self.shards == 1 {
            "1 shard".to_owned()
        } else {
            format!("{} shards", self.shards)
        };
        format!(
            "{shards} x {}, {} ms, {}",
            self.records_per_shard,
            self.latency.as_millis(),
            self.shape.name()
        )
    }

    /// Events in flight at most: per shard, never more than held, nor than
    /// the connections.
    fn in_flight(&self) -> usize {
        (self.parallelism * self.shards)
            .min(RECORDS_HELD)
            .min(MAX_CONNECTIONS)
    }

    /// Events per second concurrency allows against the sink's latency.
    fn ceiling(&self) -> Option<f64> {
        (!self.latency.is_zero()).then(|| self.in_flight() as f64 / self.latency.as_secs_f64())
    }

    /// The throughput targets (events/s), where it sets one.
    fn target(&self) -> Option<f64> {
        match (self.shards, self.latency.as_millis()) {
            (1, 10) => Some(900.0),
            (8, 10) => Some(7200.0),
            _ => None,
        }
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|n| {
        n.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: a number, not {n:?}"))
    })
}

/// Counts requests, keeps the first one (to replay in the baseline), answers
/// 202 after its latency.
#[derive(Clone, Default)]
struct SinkState {
    count: Arc<AtomicUsize>,
    first: Arc<Mutex<Option<(HeaderMap, Bytes)>>>,
    /// When the first and the latest answer went out: the clock stops at the
    /// last event itself, not at the next poll of the count.
    span: Arc<Mutex<Option<(Instant, Instant)>>>,
    /// How long each request waits for its answer; others are taken meanwhile.
    latency: Duration,
    /// Requests waiting for their answer now, and the most at once.
    waiting: Arc<AtomicUsize>,
    most_waiting: Arc<AtomicUsize>,
    /// How long requests actually waited, in all (us): a timer's sleep
    /// ends on the runtime's next millisecond tick or later.
    waited_us: Arc<AtomicU64>,
}

async fn accept(State(state): State<SinkState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !state.latency.is_zero() {
        let now = state.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        state.most_waiting.fetch_max(now, Ordering::Relaxed);
        let asleep = Instant::now();
        tokio::time::sleep(state.latency).await;
        let waited = u64::try_from(asleep.elapsed().as_micros()).unwrap_or(u64::MAX);
        state.waited_us.fetch_add(waited, Ordering::Relaxed);
        state.waiting.fetch_sub(1, Ordering::Relaxed);
    }
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
    async fn start(latency: Duration) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = SinkState {
            latency,
            ..SinkState::default()
        };
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

    /// From `started` to the latest request.
    fn since(&self, started: Instant) -> Duration {
        self.state
            .span
            .lock()
            .expect("lock")
            .map_or(Duration::ZERO, |(_, last)| last - started)
    }
}

/// CPU time (user + system) a process has used so far, from /proc (Linux).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

struct Measured {
    scenario: Scenario,
    records: usize,
    end_to_end: Duration,
    steady: Duration,
    peak_rss_kib: Option<u64>,
    /// The adapter's RSS when half the events had been answered.
    half_rss_kib: Option<u64>,
    adapter_cpu: Option<Duration>,
    /// The adapter's CPU time, and the events the sink had, when a tenth of
    /// the events had arrived: what comes after is CPU per event without
    /// the process's start (runtime, SDK, TLS roots, the stream's shards).
    adapter_cpu_at_tenth: Option<(Duration, usize)>,
    /// None with a latency: the ceiling is the yardstick then.
    baseline: Option<Duration>,
    baseline_cpu: Option<Duration>,
    /// This process's CPU (the sink and the fake) while the adapter ran, and
    /// while the baseline ran (the sink alone).
    peers_cpu: Option<Duration>,
    baseline_peers_cpu: Option<Duration>,
    body_bytes: usize,
    /// Requests the sink held at once at most (with a latency).
    most_in_flight: usize,
    /// How long the sink held a request on average (with a latency).
    held: Duration,
    /// Shards the adapter read, of `scenario.shards`.
    shards_read: usize,
    /// GetRecords calls the fake answered.
    get_records: usize,
}

/// CPU this process used while `f` ran.
async fn own_cpu<T>(f: impl Future<Output = T>) -> (T, Option<Duration>) {
    let before = cpu_time("self");
    let out = f.await;
    let used = cpu_time("self")
        .zip(before)
        .map(|(after, before)| after - before);
    (out, used)
}

fn per_event(cpu: Option<Duration>, records: usize) -> String {
    cpu.map_or("?".to_owned(), |c| {
        format!("{:.1}", c.as_secs_f64() * 1e6 / records as f64)
    })
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

/// Sends `n` copies of the first request the sink saw, `loops` loops at once,
/// from a separate process (this benchmark re-run as a client), as the adapter
/// is one: both pay the same cross-process wake-ups on loopback.
async fn baseline(
    sink: &Sink,
    n: usize,
    loops: usize,
    dir: &std::path::Path,
) -> (Duration, Option<Duration>) {
    let (headers, body) = sink
        .state
        .first
        .lock()
        .expect("lock")
        .clone()
        .expect("the sink saw a request");
    let header_file = dir.join("baseline.headers");
    let body_file = dir.join("baseline.body");
    let lines: Vec<String> = headers
        .iter()
        .filter(|(name, _)| *name != "host" && *name != "content-length")
        .map(|(name, value)| format!("{}: {}", name, value.to_str().unwrap_or_default()))
        .collect();
    std::fs::write(&header_file, lines.join("\n")).expect("write headers");
    std::fs::write(&body_file, &body).expect("write body");
    sink.reset();
    let exe = std::env::current_exe().expect("this benchmark's path");
    let started = Instant::now();
    let out = tokio::process::Command::new(exe)
        .args([
            "baseline-client",
            &sink.url,
            &n.to_string(),
            &loops.to_string(),
        ])
        .arg(&header_file)
        .arg(&body_file)
        .output()
        .await
        .expect("the baseline client runs");
    let elapsed = sink.since(started);
    assert!(out.status.success(), "the baseline client succeeded");
    assert_eq!(sink.count(), n, "every baseline POST counted");
    let cpu = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis);
    (elapsed, cpu)
}

/// The baseline client: a bare loop of POSTs per shard, nothing else. On
/// reqwest by default (the yardstick); `BENCH_BASELINE=hyper-util`
/// runs the same loops on hyper-util's pooled client, the one the adapter
/// sends with, to show what reqwest's own layers cost.
fn baseline_client(args: &[String]) {
    let [url, n, loops, header_file, body_file] = args else {
        panic!("baseline-client URL N LOOPS HEADERS BODY");
    };
    let n: usize = n.parse().expect("N");
    let loops: usize = loops.parse().expect("LOOPS");
    let mut headers = HeaderMap::new();
    for line in std::fs::read_to_string(header_file)
        .expect("headers")
        .lines()
    {
        if let Some((name, value)) = line.split_once(": ") {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
    }
    let body = Bytes::from(std::fs::read(body_file).expect("body"));
    let hyper_util = std::env::var("BENCH_BASELINE").as_deref() == Ok("hyper-util");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let reqwest = reqwest::Client::new();
        let pooled =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<Bytes>>();
        let uri: http::Uri = url.parse().expect("URI");
        let tasks: Vec<_> = (0..loops)
            .map(|i| {
                let (reqwest, pooled) = (reqwest.clone(), pooled.clone());
                let (url, uri) = (url.clone(), uri.clone());
                let headers = headers.clone();
                let body = body.clone();
                let share = n / loops + usize::from(i < n % loops);
                tokio::spawn(async move {
                    for _ in 0..share {
                        let status = if hyper_util {
                            let mut request = http::Request::post(uri.clone())
                                .body(http_body_util::Full::new(body.clone()))
                                .expect("request");
                            *request.headers_mut() = headers.clone();
                            pooled
                                .request(request)
                                .await
                                .expect("the sink answers")
                                .status()
                        } else {
                            reqwest
                                .post(&url)
                                .headers(headers.clone())
                                .body(body.clone())
                                .send()
                                .await
                                .expect("the sink answers")
                                .status()
                        };
                        assert_eq!(status.as_u16(), 202);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("baseline loop");
        }
    });
    // The parent reads the client's CPU time (ms) from stdout.
    if let Some(cpu) = cpu_time("self") {
        println!("{}", cpu.as_millis());
    }
}

/// `perf record` of the adapter, when `BENCH_PERF` names a file.
fn start_perf(pid: u32) -> Option<tokio::process::Child> {
    let file = std::env::var("BENCH_PERF").ok()?;
    let child = tokio::process::Command::new("perf")
        .args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-o"])
        .arg(&file)
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("BENCH_PERF: perf runs");
    Some(child)
}

async fn stop_perf(perf: Option<tokio::process::Child>) {
    if let Some(mut perf) = perf {
        if let Some(pid) = perf.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        let _ = perf.wait().await;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn run(scenario: &Scenario) -> Measured {
    let name = scenario.name();
    let table = "bench";
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream(table);
    for s in 0..scenario.shards {
        let shard = fake.add_shard(&stream, None);
        fake.append(
            &shard,
            (0..scenario.records_per_shard).map(|i| {
                scenario
                    .shape
                    .change(format!("key-{s}-{}", i % scenario.keys), i as i64)
            }),
        );
    }
    let records = scenario.records();
    let sink = Sink::start(scenario.latency).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = AdapterEnv::new(
        &sink.url,
        &fake.table_arn(table),
        &fake.endpoint,
        &dir.path().join("checkpoint.json"),
    )
    .set("RUST_LOG", "warn")
    .unset("IDLE_POLL_MAX")
    // The fewest arenas operators bounding glibc's memory set, and the hard
    // case for the reading thread (adapter/src/reading.rs). The image sets
    // none; unset, the adapter measured the same events/s and peak RSS.
    .set("MALLOC_ARENA_MAX", "2");
    // IDLE_POLL_MAX: the adapter's default (1 s), as in production, not the
    // tests' 0.2 s, at which 300 drained shards would call GetRecords 1,500
    // times a second.
    // The adapter's default shares a budget of records among the shards;
    // BENCH_RECORDS_PER_READ fixes the size of every read instead.
    let env = match std::env::var("BENCH_RECORDS_PER_READ") {
        Ok(n) => env.set("RECORDS_PER_READ", &n),
        Err(_) => env,
    };
    let env = match std::env::var("BENCH_PARALLELISM") {
        Ok(n) => env.set("DELIVERY_PARALLELISM", &n),
        Err(_) => env,
    };

    let started = Instant::now();
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    let perf = start_perf(adapter.pid());
    let pid = adapter.pid();
    let mut half_rss_kib = None;
    let mut adapter_cpu_at_tenth = None;
    let ((), peers_cpu) = own_cpu(eventually(
        &format!("{name}: {records} events at the sink"),
        Duration::from_secs(900),
        async || {
            let count = sink.count();
            if adapter_cpu_at_tenth.is_none() && count >= records / 10 && count < records {
                adapter_cpu_at_tenth = cpu_time(&pid.to_string()).map(|cpu| (cpu, count));
            }
            if half_rss_kib.is_none() && count >= records / 2 {
                half_rss_kib = rss_kib(pid);
            }
            (count >= records).then_some(())
        },
    ))
    .await;
    let end_to_end = sink.since(started);
    let steady = sink.span();
    let peak_rss_kib = support::peak_rss_kib(pid);
    let adapter_cpu = cpu_time(&pid.to_string());
    stop_perf(perf).await;
    let status = adapter.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{name}: the adapter exits 0: {status}");
    assert_eq!(sink.count(), records, "{name}: no event twice");
    let shards_read = fake.first_reads().len();
    assert_eq!(shards_read, scenario.shards, "{name}: every shard read");

    let body_bytes = sink
        .state
        .first
        .lock()
        .expect("lock")
        .as_ref()
        .map_or(0, |(_, body)| body.len());
    let ((baseline, baseline_cpu), baseline_peers_cpu) = if scenario.latency.is_zero() {
        let ((elapsed, cpu), peers) =
            own_cpu(baseline(&sink, records, scenario.shards, dir.path())).await;
        ((Some(elapsed), cpu), peers)
    } else {
        ((None, None), None)
    };
    Measured {
        scenario: scenario.clone(),
        records,
        end_to_end,
        steady,
        peak_rss_kib,
        half_rss_kib,
        adapter_cpu,
        adapter_cpu_at_tenth,
        baseline,
        baseline_cpu,
        peers_cpu,
        baseline_peers_cpu,
        body_bytes,
        most_in_flight: sink.state.most_waiting.load(Ordering::Relaxed),
        held: Duration::from_micros(
            sink.state.waited_us.load(Ordering::Relaxed) / records.max(1) as u64,
        ),
        shards_read,
        get_records: fake.calls(Op::GetRecords),
    }
}

/// The scenarios the knobs ask for, in the order they run.
fn scenarios() -> Vec<Scenario> {
    let shard_counts: Vec<usize> = env_list("BENCH_SHARDS", "1,8")
        .iter()
        .map(|n| {
            n.parse()
                .expect("BENCH_SHARDS: a comma list of shard counts")
        })
        .collect();
    let latencies: Vec<Duration> = env_list("BENCH_SINK_LATENCY_MS", "0")
        .iter()
        .map(|n| {
            Duration::from_millis(
                n.parse()
                    .expect("BENCH_SINK_LATENCY_MS: a comma list of milliseconds"),
            )
        })
        .collect();
    let shapes: Option<Vec<Shape>> = std::env::var("BENCH_RECORD").ok().map(|_| {
        env_list("BENCH_RECORD", "")
            .iter()
            .map(|s| Shape::parse(s))
            .collect()
    });
    let parallelism = env_number("BENCH_PARALLELISM").unwrap_or(PARALLELISM);
    let mut out = Vec::new();
    for &shards in &shard_counts {
        for &latency in &latencies {
            let default_shape = if latency.is_zero() {
                Shape::Small
            } else {
                Shape::Modify
            };
            for &shape in shapes.as_deref().unwrap_or(&[default_shape]) {
                let keys = env_number("BENCH_KEYS").unwrap_or(if latency.is_zero() {
                    KEYS
                } else {
                    KEYS_WITH_LATENCY
                });
                let mut scenario = Scenario {
                    shards,
                    latency,
                    shape,
                    keys: keys.max(1),
                    records_per_shard: 0,
                    parallelism,
                };
                let records = env_number("BENCH_RECORDS").unwrap_or_else(|| {
                    scenario.ceiling().map_or(RECORDS, |ceiling| {
                        ((ceiling * LATENCY_RUN.as_secs_f64()) as usize).clamp(2_000, 100_000)
                    })
                });
                scenario.records_per_shard = (records / shards).max(1);
                out.push(scenario);
            }
        }
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("baseline-client") {
        baseline_client(&args[1..]);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The sink, the fake and the adapter share the machine's cores, so single
    // runs vary by 15%: each scenario runs BENCH_ROUNDS times (adapter, then
    // baseline, alternately) and the summary takes the median.
    let rounds = env_number("BENCH_ROUNDS");
    let scenarios = scenarios();
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for scenario in &scenarios {
            let rounds = rounds.unwrap_or(if scenario.latency.is_zero() { 5 } else { 3 });
            for _ in 0..rounds {
                results.push(run(scenario).await);
            }
        }
        results
    });
    let (at_zero, with_latency): (Vec<&Measured>, Vec<&Measured>) =
        results.iter().partition(|m| m.baseline.is_some());
    if !at_zero.is_empty() {
        print_against_baseline(&at_zero);
    }
    if !with_latency.is_empty() {
        print_against_ceiling(&with_latency);
    }
}

fn print_against_baseline(results: &[&Measured]) {
    println!();
    println!(
        "{:<30} {:>8} {:>10} {:>14} {:>14} {:>10} {:>16} {:>9} {:>14} {:>18} {:>22}",
        "scenario",
        "records",
        "body (B)",
        "e2e (rec/s)",
        "steady (rec/s)",
        "RSS (MiB)",
        "baseline (req/s)",
        "adapter %",
        "overhead (us)",
        "CPU/event (us)",
        "peers CPU/event (us)"
    );
    let base = |m: &Measured| per_second(m.records, m.baseline.unwrap_or_default());
    for m in results {
        let e2e = per_second(m.records, m.end_to_end);
        let steady = per_second(m.records, m.steady);
        println!(
            "{:<30} {:>8} {:>10} {:>14.0} {:>14.0} {:>10} {:>16.0} {:>8.0}% {:>14.1} {:>18} {:>22}",
            m.scenario.name(),
            m.records,
            m.body_bytes,
            e2e,
            steady,
            mib(m.peak_rss_kib),
            base(m),
            100.0 * e2e / base(m),
            1e6 * (1.0 / e2e - 1.0 / base(m)),
            format!(
                "{} vs {}",
                per_event(m.adapter_cpu, m.records),
                per_event(m.baseline_cpu, m.records)
            ),
            format!(
                "{} vs {}",
                per_event(m.peers_cpu, m.records),
                per_event(m.baseline_peers_cpu, m.records)
            ),
        );
    }
    println!();
    for runs in by_scenario(results) {
        let name = runs[0].scenario.name();
        let ratio = |m: &Measured| per_second(m.records, m.end_to_end) / base(m);
        let mut ratios: Vec<f64> = runs.iter().map(|m| ratio(m)).collect();
        ratios.sort_by(f64::total_cmp);
        let rate = median(
            runs.iter()
                .map(|m| per_second(m.records, m.end_to_end))
                .collect(),
        );
        let cpu = median_cpu_per_event(&runs);
        let after_start = median_cpu_per_event_after_start(&runs);
        let peak = runs.iter().filter_map(|m| m.peak_rss_kib).max();
        println!(
            "{name}: median {rate:.0} rec/s against a baseline of {:.0} req/s, adapter/baseline median {:.0}% (rounds {}), CPU/event median {cpu:.1} us ({after_start:.1} us after the first tenth), peak RSS {} MiB",
            median(runs.iter().map(|m| base(m)).collect()),
            100.0 * ratios[ratios.len() / 2],
            ratios
                .iter()
                .map(|r| format!("{:.0}%", 100.0 * r))
                .collect::<Vec<_>>()
                .join(" "),
            mib(peak),
        );
    }
    println!(
        "\ne2e: from spawning the adapter until the last event reached the sink; steady: first to last event at the sink;\n\
         baseline: the same POSTs from a bare reqwest loop per shard in a separate process; adapter %: e2e / baseline;\n\
         overhead: (1/adapter - 1/baseline) per event; CPU/event: the adapter's CPU time per event vs the baseline client's\n\
         (after the first tenth: the adapter's CPU from when a tenth of the events had arrived, over the events after it);\n\
         peers CPU/event: the sink's and the fake's (this process) while the adapter ran vs the sink's during the baseline."
    );
}

fn print_against_ceiling(results: &[&Measured]) {
    println!();
    println!(
        "{:<30} {:>8} {:>9} {:>12} {:>14} {:>10} {:>14} {:>9} {:>10} {:>14} {:>10} {:>15} {:>12} {:>11}",
        "scenario",
        "records",
        "body (B)",
        "e2e (rec/s)",
        "steady (rec/s)",
        "held (ms)",
        "ceiling (/s)",
        "of ceil.",
        "in flight",
        "RSS half/peak",
        "CPU/event",
        "peers CPU/event",
        "shards read",
        "GetRecords"
    );
    for m in results {
        let e2e = per_second(m.records, m.end_to_end);
        let ceiling = m.scenario.ceiling().unwrap_or(f64::NAN);
        println!(
            "{:<30} {:>8} {:>9} {:>12.0} {:>14.0} {:>10.2} {:>14.0} {:>8.0}% {:>10} {:>14} {:>10} {:>15} {:>12} {:>11}",
            m.scenario.name(),
            m.records,
            m.body_bytes,
            e2e,
            per_second(m.records, m.steady),
            m.held.as_secs_f64() * 1e3,
            ceiling,
            100.0 * e2e / ceiling,
            format!("{}/{}", m.most_in_flight, m.scenario.in_flight()),
            format!("{}/{}", mib(m.half_rss_kib), mib(m.peak_rss_kib)),
            per_event(m.adapter_cpu, m.records),
            per_event(m.peers_cpu, m.records),
            format!("{}/{}", m.shards_read, m.scenario.shards),
            m.get_records,
        );
    }
    println!();
    for runs in by_scenario(results) {
        let name = runs[0].scenario.name();
        let scenario = &runs[0].scenario;
        let rates: Vec<f64> = runs
            .iter()
            .map(|m| per_second(m.records, m.end_to_end))
            .collect();
        let rate = median(rates.clone());
        let cpu = median_cpu_per_event(&runs);
        let peak = runs.iter().filter_map(|m| m.peak_rss_kib).max();
        let target = scenario.target().map_or(String::new(), |t| {
            format!(
                ", target >= {t:.0}/s: {}",
                if rate >= t { "met" } else { "MISSED" }
            )
        });
        let held = median(runs.iter().map(|m| m.held.as_secs_f64() * 1e3).collect());
        println!(
            "{name}: median {rate:.0} rec/s (rounds {}), ceiling {:.0}/s ({} in flight / {} ms; the sink held each {held:.2} ms), CPU/event median {cpu:.1} us, peak RSS {} MiB{target}",
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            scenario.ceiling().unwrap_or(f64::NAN),
            scenario.in_flight(),
            scenario.latency.as_millis(),
            mib(peak),
        );
    }
    println!(
        "\ne2e: from spawning the adapter until the sink answered the last event; steady: first to last answer;\n\
         held: how long the sink actually held a request, on average (a sleep ends on a millisecond tick or later);\n\
         ceiling: events in flight at most (DELIVERY_PARALLELISM per shard, at most the {RECORDS_HELD} records held and {MAX_CONNECTIONS} connections) / the sink's latency;\n\
         in flight: requests the sink held at once at most, of that bound; RSS half/peak: the adapter's RSS when half the events\n\
         were answered, and its peak (VmHWM); CPU/event: the adapter's CPU time per event (us), start-up included;\n\
         peers CPU/event: the sink's and the fake's (this process); GetRecords: calls the fake answered."
    );
}

/// The adapter's CPU per event (us), the median of the runs.
/// The runs of each scenario, in the order the scenarios ran.
fn by_scenario<'a>(results: &[&'a Measured]) -> Vec<Vec<&'a Measured>> {
    let mut names: Vec<String> = results.iter().map(|m| m.scenario.name()).collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            results
                .iter()
                .copied()
                .filter(|m| m.scenario.name() == name)
                .collect()
        })
        .collect()
}

/// CPU per event from a tenth of the events to the last: the process's start
/// left out. /proc counts CPU in 10 ms ticks, so this wants 20,000 events or more.
fn median_cpu_per_event_after_start(runs: &[&Measured]) -> f64 {
    median(
        runs.iter()
            .filter_map(|m| {
                let (at, count) = m.adapter_cpu_at_tenth?;
                let used = m.adapter_cpu?.checked_sub(at)?;
                let events = m.records.checked_sub(count).filter(|&n| n > 0)?;
                Some(used.as_secs_f64() * 1e6 / events as f64)
            })
            .collect(),
    )
}

fn median_cpu_per_event(runs: &[&Measured]) -> f64 {
    median(
        runs.iter()
            .filter_map(|m| {
                m.adapter_cpu
                    .map(|c| c.as_secs_f64() * 1e6 / m.records as f64)
            })
            .collect(),
    )
}
