//! Test support: real peers on loopback (moto's server, HTTP receivers), the
//! adapter binary as a separate process, and waiting on conditions with
//! deadlines instead of sleeping.

pub mod adapter;
pub mod cluster;
pub mod controller;
pub mod fake_streams;
pub mod leases;
pub mod moto;
pub mod node;
pub mod receiver;
pub mod rig;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use receiver::Received;

/// A free TCP port on 127.0.0.1 for another process to bind, below the
/// kernel's ephemeral range (as `tests/cluster/up` picks its own): a port the
/// kernel hands out for `:0` can become an outgoing connection's source port
/// between this check and the other process's bind, and the suite makes
/// thousands of connections. Below that range only a test can take it, and a
/// port is handed out once per test binary.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let (lo, hi) = below_ephemeral_range();
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let span = u64::from(hi - lo) + 1;
    for _ in 0..10_000 {
        // std's per-process random hash keys as the randomness: no other crate.
        let random = RandomState::new().hash_one(given.len());
        let port = lo + u16::try_from(random % span).unwrap_or(0);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in {lo}-{hi} after 10,000 tries");
}

/// The ports from 20000 up to the kernel's ephemeral range, or 10000-19999
/// where that range starts too low to leave a thousand.
fn below_ephemeral_range() -> (u16, u16) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let hi = first_ephemeral.saturating_sub(1);
    if hi > 21_000 {
        (20_000, hi)
    } else {
        (10_000, 19_999)
    }
}

/// Serves `app` on `listener` in the background until the returned sender
/// is used or dropped (the loopback peers stop when they are dropped).
pub fn serve_until_stopped<L>(listener: L, app: axum::Router) -> tokio::sync::oneshot::Sender<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    stop
}

/// Polls `check` until it returns `Some`, failing the test after `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python virtualenv holding the test peers (`make venv`).
pub fn venv() -> PathBuf {
    std::env::var_os("DYNAMODB_SOURCE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"))
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The value of one sample in Prometheus text, e.g. `name_total{result="ok"}`.
pub fn sample(metrics: &str, sample: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(sample)
            .and_then(|rest| rest.trim().split(' ').next())
            .and_then(|v| v.parse().ok())
    })
}

/// Orders sequence numbers (decimal strings of any length) numerically; the
/// tests' own oracle, independent of the product's `SequenceNumber`.
pub fn seq_key(s: &str) -> (usize, String) {
    let trimmed = s.trim_start_matches('0');
    (trimmed.len(), trimmed.to_owned())
}

/// The position a file checkpoint holds for a shard (`after`, the last
/// delivered sequence number); `None` while nothing was checkpointed past.
/// The tests that use it read one shard.
pub fn checkpointed(path: &std::path::Path) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["shards"]
        .as_object()?
        .values()
        .find_map(|p| p["after"].as_str().map(str::to_owned))
}

/// Peak resident set size of a process, from /proc (Linux), in KiB.
#[allow(
    dead_code,
    reason = "used by the benchmarks, which include this module"
)]
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `GET http://127.0.0.1:{port}{path}`: the status and body, or `None` when
/// nothing answers within 10 s (the processes' /metrics, /healthz, /readyz). A
/// refused connection fails at once; the timeout is for a process the loaded
/// machine has not scheduled, whose metrics would otherwise read as zero.
pub async fn local_get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

// What delivery promises (issue 17): every record exactly once, and the
// records of one item key in stream order. Records of different keys are
// delivered concurrently, so the arrival order across keys, and across the
// records of one shard, is not promised (except with DELIVERY_PARALLELISM=1).

/// The header an event's item key travels in: its `partitionkey` attribute,
/// e.g. `pk=k0`; absent for a record without `Keys`.
pub const PARTITION_KEY_HEADER: &str = "ce-partitionkey";

/// One event by its item key (as `partitionkey` renders it; `None`: a record
/// without a key) and its id, as it arrived or as it was written.
pub type Keyed = (Option<String>, String);

/// Event ids per item key, each key's in order (stream order for what was
/// written, arrival order for what arrived). The `None` key holds the events
/// without a key: the adapter orders those among themselves too.
pub type PerKey = BTreeMap<Option<String>, Vec<String>>;

/// The `partitionkey` of an item whose key is one attribute `name` holding
/// `value` (a string or a number), rendered as the adapter renders it
/// (crates/delivery/src/key.rs, then as a header): `name=value`, with `%`,
/// `,` and `=` percent-encoded, and so is any byte outside printable ASCII.
pub fn item_key(name: &str, value: &str) -> String {
    item_key_of([(name, value)])
}

/// [`item_key`] for a key of several attributes (sorted by name, joined by `,`).
pub fn item_key_of<'a>(attributes: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    fn escape(text: &str, out: &mut String) {
        for c in text.chars() {
            match c {
                '%' => out.push_str("%25"),
                ',' => out.push_str("%2C"),
                '=' => out.push_str("%3D"),
                c => out.push(c),
            }
        }
    }
    let sorted: BTreeMap<&str, &str> = attributes.into_iter().collect();
    let mut rendered = String::new();
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            rendered.push(',');
        }
        escape(name, &mut rendered);
        rendered.push('=');
        escape(value, &mut rendered);
    }
    // The header: bytes outside printable ASCII percent-encoded as UTF-8.
    let mut header = String::new();
    for byte in rendered.bytes() {
        if byte == b'\t' || (0x20..0x7f).contains(&byte) {
            header.push(byte as char);
        } else {
            header.push_str(&format!("%{byte:02X}"));
        }
    }
    header
}

/// Groups events by item key, keeping their order within each key.
pub fn per_key(events: impl IntoIterator<Item = Keyed>) -> PerKey {
    let mut grouped = PerKey::new();
    for (key, id) in events {
        grouped.entry(key).or_default().push(id);
    }
    grouped
}

/// Each request's item key (its `ce-partitionkey` header) and id, in arrival order.
pub fn keyed(received: &[Received]) -> Vec<Keyed> {
    received
        .iter()
        .map(|r| (r.header(PARTITION_KEY_HEADER).map(str::to_owned), r.id()))
        .collect()
}

/// The requests per item key, in arrival order, repeats included.
pub fn received_per_key(received: &[Received]) -> PerKey {
    per_key(keyed(received))
}

/// The first arrival of each id, in arrival order: what is left once
/// repeats are dropped (for tests that allow some, e.g. after a crash).
pub fn first_arrivals(received: &[Received]) -> Vec<Received> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.id()))
        .cloned()
        .collect()
}

/// The item key of a stream record read from moto, as `partitionkey` renders
/// it; `None` without `Keys`.
pub fn record_key(record: &aws_sdk_dynamodbstreams::types::Record) -> Option<String> {
    use aws_sdk_dynamodbstreams::types::AttributeValue;
    let keys = record.dynamodb()?.keys()?;
    let values: Vec<(&str, &str)> = keys
        .iter()
        .map(|(name, value)| match value {
            AttributeValue::S(v) | AttributeValue::N(v) => (name.as_str(), v.as_str()),
            other => panic!("the tests' tables have string or number keys, not {other:?}"),
        })
        .collect();
    Some(item_key_of(values))
}

/// moto's stream records per item key, in stream order: the truth to hold
/// a sink's arrivals to.
pub fn records_per_key<'a>(
    records: impl IntoIterator<Item = &'a aws_sdk_dynamodbstreams::types::Record>,
) -> PerKey {
    per_key(records.into_iter().map(|r| {
        (
            record_key(r),
            r.event_id().expect("a record has an eventID").to_owned(),
        )
    }))
}

fn show_key(key: &Option<String>) -> String {
    match key {
        Some(key) => format!("{key:?}"),
        None => "(no key)".to_owned(),
    }
}

/// What breaks "every event of `expected` exactly once": ids that never
/// arrived, arrived more than once, were not expected, or arrived under
/// another key than they were written with. Empty when there is none.
pub fn exactly_once_problems(arrived: &[Keyed], expected: &PerKey) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expected_key: HashMap<&str, &Option<String>> = HashMap::new();
    for (key, ids) in expected {
        for id in ids {
            assert!(
                expected_key.insert(id.as_str(), key).is_none(),
                "the test expects the id {id} twice: {expected:#?}"
            );
        }
    }
    let mut arrivals: HashMap<&str, (usize, &Option<String>)> = HashMap::new();
    for (key, id) in arrived {
        arrivals.entry(id.as_str()).or_insert((0, key)).0 += 1;
    }
    let mut missing: Vec<String> = expected
        .iter()
        .flat_map(|(key, ids)| ids.iter().map(move |id| (key, id)))
        .filter(|(_, id)| !arrivals.contains_key(id.as_str()))
        .map(|(key, id)| format!("{id} ({})", show_key(key)))
        .collect();
    if !missing.is_empty() {
        let lost = missing.len();
        missing.truncate(20);
        problems.push(format!(
            "never arrived (lost): {lost} of {} written: {missing:?}",
            expected_key.len()
        ));
    }
    let mut seen = HashSet::new();
    let repeated: Vec<String> = arrived
        .iter()
        .filter(|(_, id)| arrivals[id.as_str()].0 > 1 && seen.insert(id.as_str()))
        .map(|(key, id)| format!("{id} ({}) x{}", show_key(key), arrivals[id.as_str()].0))
        .collect();
    if !repeated.is_empty() {
        problems.push(format!("arrived more than once (duplicates): {repeated:?}"));
    }
    let mut seen = HashSet::new();
    let unexpected: Vec<String> = arrived
        .iter()
        .filter(|(_, id)| !expected_key.contains_key(id.as_str()) && seen.insert(id.as_str()))
        .map(|(key, id)| format!("{id} ({})", show_key(key)))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!("arrived but never written: {unexpected:?}"));
    }
    let mut seen = HashSet::new();
    let rekeyed: Vec<String> = arrived
        .iter()
        .filter(|(key, id)| {
            expected_key
                .get(id.as_str())
                .is_some_and(|expected| *expected != key)
                && seen.insert(id.as_str())
        })
        .map(|(key, id)| {
            format!(
                "{id} arrived as {} but was written as {}",
                show_key(key),
                show_key(expected_key[id.as_str()])
            )
        })
        .collect();
    if !rekeyed.is_empty() {
        problems.push(format!("arrived under another key: {rekeyed:?}"));
    }
    problems
}

/// What breaks "the events of each key in the order `expected` lists them",
/// among the arrivals of the ids `expected` holds (others are ignored, so
/// that independent shards that share keys can be checked one by one);
/// repeats count as arrivals. Empty when there is none.
pub fn key_order_problems(arrived: &[Keyed], expected: &PerKey) -> Vec<String> {
    let wanted: HashSet<&String> = expected.values().flatten().collect();
    let arrived = per_key(
        arrived
            .iter()
            .filter(|(_, id)| wanted.contains(id))
            .cloned(),
    );
    let keys: BTreeSet<&Option<String>> = expected.keys().chain(arrived.keys()).collect();
    let mut problems = Vec::new();
    for key in keys {
        let empty = Vec::new();
        let want = expected.get(key).unwrap_or(&empty);
        let got = arrived.get(key).unwrap_or(&empty);
        if want != got {
            // Each arrival as its place in the key's stream order, `?` for
            // an id not written with this key.
            let places: Vec<String> = got
                .iter()
                .map(|id| {
                    want.iter()
                        .position(|w| w == id)
                        .map_or("?".to_owned(), |p| p.to_string())
                })
                .collect();
            problems.push(format!(
                "key {}: {} written, {} arrived, in the order [{}] of the written ones\n    written: {want:?}\n    arrived: {got:?}",
                show_key(key),
                want.len(),
                got.len(),
                places.join(", ")
            ));
        }
    }
    problems
}

fn fail_on(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// Asserts what delivery promises of `arrived` (in arrival order): every
/// event of `expected` exactly once (nothing lost, repeated or invented), and
/// the events of each item key in the order `expected` lists them (stream
/// order). The order across keys is not checked. `what` says what was
/// expected, for the message.
pub fn assert_delivered_keyed(arrived: &[Keyed], expected: &PerKey, what: &str) {
    let mut problems = exactly_once_problems(arrived, expected);
    problems.extend(key_order_problems(arrived, expected));
    fail_on(problems, what);
}

/// [`assert_delivered_keyed`] for a receiver's requests, e.g.
/// `assert_delivered(&sink.acknowledged(), &written_per_key(&written), "...")`.
pub fn assert_delivered(received: &[Received], expected: &PerKey, what: &str) {
    assert_delivered_keyed(&keyed(received), expected, what);
}

/// Asserts only that every event of `expected` arrived once and nothing else did.
pub fn assert_exactly_once(received: &[Received], expected: &PerKey, what: &str) {
    fail_on(exactly_once_problems(&keyed(received), expected), what);
}

/// Asserts only the per-key order of the events `expected` holds; events not
/// in it are ignored and repeats count (pass [`first_arrivals`] to ignore them).
pub fn assert_key_order(received: &[Received], expected: &PerKey, what: &str) {
    fail_on(key_order_problems(&keyed(received), expected), what);
}
