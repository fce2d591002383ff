//! End-to-end throughput of the adapter binary: a pre-filled stream on the
//! fake Streams API, a no-op sink answering 202, records per second from the
//! adapter's start until the sink counted every event, and the adapter's peak
//! resident memory. The baseline is the same number of identical POSTs (same
//! headers, same body) sent by a bare reqwest loop to the same sink, one loop
//! per shard, run as a separate process like the adapter: what the sink and
//! loopback allow, so the gap is the adapter's.
//!
//! Run with `cargo bench --bench throughput`.

// The benchmark uses a few of the test support helpers.
#[allow(dead_code)]
#[path = "../tests/it/support/mod.rs"]
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

const RECORDS: usize = 50_000;
const KEYS: usize = 100;
/// Bytes of payload per item, besides its key and a number.
const PADDING: usize = 200;

/// Counts requests, keeps the first one (to replay in the baseline), answers 202.
#[derive(Clone, Default)]
struct SinkState {
    count: Arc<AtomicUsize>,
    first: Arc<Mutex<Option<(HeaderMap, Bytes)>>>,
    /// When the first and the latest request arrived: the clock stops at the
    /// last event itself, not at the next poll of the count.
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
    scenario: String,
    records: usize,
    end_to_end: Duration,
    steady: Duration,
    peak_rss_kib: Option<u64>,
    adapter_cpu: Option<Duration>,
    baseline: Duration,
    baseline_cpu: Option<Duration>,
    /// This process's CPU (the sink and the fake) while the adapter ran, and
    /// while the baseline ran (the sink alone).
    peers_cpu: Option<Duration>,
    baseline_peers_cpu: Option<Duration>,
    body_bytes: usize,
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
    .set("RUST_LOG", "warn")
    // The fewest arenas operators bounding glibc's memory set, and the hard
    // case for the reading thread (adapter/src/reading.rs). The image sets
    // none; unset, the adapter measured the same events/s and peak RSS.
    .set("MALLOC_ARENA_MAX", "2");
    // The adapter's default shares a budget of records among the shards;
    // BENCH_RECORDS_PER_READ fixes the size of every read instead.
    let env = match std::env::var("BENCH_RECORDS_PER_READ") {
        Ok(n) => env.set("RECORDS_PER_READ", &n),
        Err(_) => env,
    };

    let started = Instant::now();
    let mut adapter = AdapterProcess::spawn(&env, dir.path());
    let ((), peers_cpu) = own_cpu(eventually(
        &format!("{scenario}: {records} events at the sink"),
        Duration::from_secs(600),
        async || (sink.count() >= records).then_some(()),
    ))
    .await;
    let end_to_end = sink.since(started);
    let steady = sink.span();
    let peak_rss_kib = support::peak_rss_kib(adapter.pid());
    let adapter_cpu = cpu_time(&adapter.pid().to_string());
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
    let ((baseline, baseline_cpu), baseline_peers_cpu) =
        own_cpu(baseline(&sink, records, shards, dir.path())).await;
    Measured {
        scenario: scenario.to_owned(),
        records,
        end_to_end,
        steady,
        peak_rss_kib,
        adapter_cpu,
        baseline,
        baseline_cpu,
        peers_cpu,
        baseline_peers_cpu,
        body_bytes,
    }
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
    // BENCH_SHARDS=8 runs one scenario (e.g. under a profiler).
    let shard_counts: Vec<usize> = std::env::var("BENCH_SHARDS")
        .unwrap_or_else(|_| "1,8".to_owned())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("BENCH_SHARDS: a comma list of shard counts")
        })
        .collect();
    // The sink, the fake and the adapter share the machine's cores, so single
    // runs vary by 15%: each scenario runs BENCH_ROUNDS times (adapter, then
    // baseline, alternately) and the summary takes the median.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .map(|n| n.parse().expect("BENCH_ROUNDS: a number"))
        .unwrap_or(5);
    let results = runtime.block_on(async {
        let mut results = Vec::new();
        for shards in shard_counts {
            let scenario = if shards == 1 {
                format!("1 shard x {RECORDS}")
            } else {
                format!("{shards} shards x {}", RECORDS / shards)
            };
            for _ in 0..rounds {
                results.push(run(&scenario, shards).await);
            }
        }
        results
    });
    println!();
    println!(
        "{:<18} {:>8} {:>10} {:>14} {:>14} {:>10} {:>16} {:>9} {:>14} {:>18} {:>22}",
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
    for m in &results {
        let e2e = per_second(m.records, m.end_to_end);
        let steady = per_second(m.records, m.steady);
        let base = per_second(m.records, m.baseline);
        println!(
            "{:<18} {:>8} {:>10} {:>14.0} {:>14.0} {:>10} {:>16.0} {:>8.0}% {:>14.1} {:>18} {:>22}",
            m.scenario,
            m.records,
            m.body_bytes,
            e2e,
            steady,
            m.peak_rss_kib
                .map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            base,
            100.0 * e2e / base,
            1e6 * (1.0 / e2e - 1.0 / base),
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
    let mut scenarios: Vec<&str> = results.iter().map(|m| m.scenario.as_str()).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let runs: Vec<&Measured> = results.iter().filter(|m| m.scenario == scenario).collect();
        let ratio =
            |m: &Measured| per_second(m.records, m.end_to_end) / per_second(m.records, m.baseline);
        let mut ratios: Vec<f64> = runs.iter().map(|m| ratio(m)).collect();
        ratios.sort_by(f64::total_cmp);
        let mut rates: Vec<f64> = runs
            .iter()
            .map(|m| per_second(m.records, m.end_to_end))
            .collect();
        rates.sort_by(f64::total_cmp);
        let mut bases: Vec<f64> = runs
            .iter()
            .map(|m| per_second(m.records, m.baseline))
            .collect();
        bases.sort_by(f64::total_cmp);
        let peak = runs.iter().filter_map(|m| m.peak_rss_kib).max();
        println!(
            "{scenario}: median {:.0} rec/s against a baseline of {:.0} req/s, adapter/baseline median {:.0}% (rounds {}), peak RSS {} MiB",
            rates[rates.len() / 2],
            bases[bases.len() / 2],
            100.0 * ratios[ratios.len() / 2],
            ratios
                .iter()
                .map(|r| format!("{:.0}%", 100.0 * r))
                .collect::<Vec<_>>()
                .join(" "),
            peak.map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
        );
    }
    println!(
        "\ne2e: from spawning the adapter until the last event reached the sink; steady: first to last event at the sink;\n\
         baseline: the same POSTs from a bare reqwest loop per shard in a separate process; adapter %: e2e / baseline;\n\
         overhead: (1/adapter - 1/baseline) per event; CPU/event: the adapter's CPU time per event vs the baseline client's;\n\
         peers CPU/event: the sink's and the fake's (this process) while the adapter ran vs the sink's during the baseline."
    );
}
