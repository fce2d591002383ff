//! Sink faults: retries, Retry-After, dead letters, timeouts, a sink that is
//! down, and a checkpoint that never passes an unacknowledged record; and
//! strict one-at-a-time delivery with `DELIVERY_PARALLELISM=1`.
//!
//! Records of different item keys are delivered concurrently (issue 17), so
//! what the sink gets is checked as every record exactly once and, per item
//! key, in stream order; which record meets a scripted failure is whichever
//! the sink saw first, not necessarily the first written.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::moto::Moto;
use crate::support::receiver::{Receiver, Reply};
use crate::support::{PerKey, assert_delivered, eventually, first_arrivals, seq_key};

struct Setup {
    moto: Moto,
    dir: tempfile::TempDir,
    arn: String,
    table: String,
}

async fn setup(table: &str) -> Setup {
    let moto = Moto::start().await;
    let arn = moto.create_table(table, "NEW_AND_OLD_IMAGES");
    Setup {
        moto,
        dir: tempfile::tempdir().expect("tempdir"),
        arn,
        table: table.to_owned(),
    }
}

impl Setup {
    fn env(&self, sink: &str) -> AdapterEnv {
        AdapterEnv::new(
            sink,
            &self.arn,
            &self.moto.endpoint,
            &self.dir.path().join("cp.json"),
        )
        .set("DELIVERY_BACKOFF_DELAY", "PT0.05S")
    }

    fn write(&self, ops: usize, seed: usize) {
        self.moto.python(&[
            "workload",
            &self.table,
            "4",
            &ops.to_string(),
            &seed.to_string(),
        ]);
    }

    async fn truth(&self) -> Vec<String> {
        self.moto
            .stream_records(&self.table)
            .await
            .iter()
            .map(|r| r.event_id().expect("id").to_owned())
            .collect()
    }

    /// The stream's records per item key, in stream order.
    async fn truth_per_key(&self) -> PerKey {
        crate::support::records_per_key(&self.moto.stream_records(&self.table).await)
    }

    async fn sequence_of(&self, id: &str) -> String {
        self.moto
            .stream_records(&self.table)
            .await
            .iter()
            .find(|r| r.event_id() == Some(id))
            .and_then(|r| r.dynamodb()?.sequence_number().map(str::to_owned))
            .expect("record")
    }

    fn checkpointed(&self) -> Option<String> {
        crate::support::checkpointed(&self.dir.path().join("cp.json"))
    }
}

/// Numeric order of decimal sequence numbers.
async fn wait_for_all(sink: &Receiver, truth: &[String]) {
    eventually(
        "every record acknowledged",
        Duration::from_secs(60),
        async || {
            let acked = sink.acknowledged_ids();
            truth.iter().all(|id| acked.contains(id)).then_some(())
        },
    )
    .await;
}

/// `per_key` without the event `id`.
fn without(per_key: &PerKey, id: &str) -> PerKey {
    per_key
        .iter()
        .map(|(key, ids)| {
            (
                key.clone(),
                ids.iter().filter(|i| *i != id).cloned().collect(),
            )
        })
        .filter(|(_, ids): &(_, Vec<String>)| !ids.is_empty())
        .collect()
}

/// A sink that answers 503 to every attempt at the first event it is sent
/// (whichever that is) and 202 to everything else; and that event's id, once
/// it came.
fn sink_failing_the_first_event() -> (
    crate::support::receiver::Behaviour,
    Arc<Mutex<Option<String>>>,
) {
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let chosen = first.clone();
    let behaviour: crate::support::receiver::Behaviour = Arc::new(move |_, headers| {
        let id = headers
            .get("ce-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut first = chosen.lock().expect("lock");
        if first.get_or_insert_with(|| id.to_owned()) == id {
            Reply::status(503)
        } else {
            Reply::status(202)
        }
    });
    (behaviour, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429_are_retried_until_delivered_in_order() {
    let s = setup("retry-5xx").await;
    let sink = Receiver::start(
        0,
        Arc::new(|i, _| match i {
            0..=2 => Reply::status(503),
            3 | 4 => Reply::status(429),
            5 => Reply::status(500),
            _ => Reply::status(202),
        }),
    )
    .await;
    let mut adapter = AdapterProcess::spawn(&s.env(&sink.url), s.dir.path());
    adapter.wait_ready().await;
    s.write(8, 1);
    let truth = s.truth().await;
    wait_for_all(&sink, &truth).await;
    assert_delivered(
        &sink.acknowledged(),
        &s.truth_per_key().await,
        "each record acknowledged once, in order per key",
    );
    assert!(
        sink.requests().len() >= truth.len() + 6,
        "the failures were retried"
    );
    let retried = adapter
        .metric("dynamodb_source_delivery_attempts_total{outcome=\"retryable\",code=\"503\"}")
        .await;
    assert_eq!(retried, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let s = setup("retry-after").await;
    let sink = Receiver::start(
        0,
        Arc::new(|i, _| match i {
            0 => Reply::status(503).header("retry-after", "2"),
            _ => Reply::status(202),
        }),
    )
    .await;
    let mut adapter = AdapterProcess::spawn(&s.env(&sink.url), s.dir.path());
    adapter.wait_ready().await;
    s.write(1, 2);
    let truth = s.truth().await;
    wait_for_all(&sink, &truth).await;
    let requests = sink.requests();
    let gap = requests[1].at.duration_since(requests[0].at);
    // The backoff alone would retry after ~50 ms.
    assert!(
        gap >= Duration::from_millis(1900),
        "retried after {gap:?}, Retry-After said 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_event_goes_to_the_dead_letter_sink_at_once_and_the_rest_follow() {
    let s = setup("rejected").await;
    let dead_letters = Receiver::accepting().await;
    let sink = Receiver::start(
        0,
        Arc::new(|i, _| {
            if i == 0 {
                Reply::status(400)
            } else {
                Reply::status(202)
            }
        }),
    )
    .await;
    let env = s
        .env(&sink.url)
        .set("K_DEAD_LETTER_SINK", &dead_letters.url);
    let mut adapter = AdapterProcess::spawn(&env, s.dir.path());
    adapter.wait_ready().await;
    s.write(6, 3);
    let truth = s.truth().await;
    eventually("the rest delivered", Duration::from_secs(60), async || {
        (sink.acknowledged().len() + 1 >= truth.len() && !dead_letters.requests().is_empty())
            .then_some(())
    })
    .await;
    // The first request the sink saw was refused: the first record of its
    // key, though records of other keys may have been sent with it.
    let rejected = sink.requests()[0].id();
    assert!(truth.contains(&rejected), "{rejected} is a stream record");
    let dead = dead_letters.acknowledged();
    assert_eq!(dead.len(), 1, "exactly the rejected event is dead-lettered");
    assert_eq!(dead[0].id(), rejected);
    assert_eq!(dead[0].header("ce-knativeerrorcode"), Some("400"));
    assert_eq!(
        dead[0].header("ce-knativeerrordest"),
        Some(sink.url.as_str())
    );
    assert_eq!(
        sink.requests()
            .iter()
            .filter(|r| r.id() == rejected)
            .count(),
        1,
        "a 400 is not retried"
    );
    let truth_per_key = s.truth_per_key().await;
    assert_eq!(
        truth_per_key
            .values()
            .find(|ids| ids.contains(&rejected))
            .map(|ids| &ids[0]),
        Some(&rejected),
        "the refused record is the first of its key"
    );
    assert_delivered(
        &sink.acknowledged(),
        &without(&truth_per_key, &rejected),
        "the rest acknowledged once each, in order per key",
    );
    adapter
        .wait_metric(
            "dynamodb_source_dead_lettered_total{reason=\"rejected\"}",
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_go_to_the_dead_letter_sink() {
    let s = setup("exhausted").await;
    let dead_letters = Receiver::accepting().await;
    // Every attempt at the first event the sink sees fails; the others,
    // possibly sent alongside it, succeed.
    let (behaviour, failing) = sink_failing_the_first_event();
    let sink = Receiver::start(0, behaviour).await;
    let env = s
        .env(&sink.url)
        .set("K_DEAD_LETTER_SINK", &dead_letters.url)
        .set("DELIVERY_RETRY", "2");
    let mut adapter = AdapterProcess::spawn(&env, s.dir.path());
    adapter.wait_ready().await;
    s.write(3, 4);
    let truth = s.truth().await;
    eventually(
        "the failing event dead-lettered and the rest delivered",
        Duration::from_secs(60),
        async || {
            (sink.acknowledged().len() + 1 >= truth.len() && !dead_letters.requests().is_empty())
                .then_some(())
        },
    )
    .await;
    let failing = failing
        .lock()
        .expect("lock")
        .clone()
        .expect("a first event");
    assert!(truth.contains(&failing), "{failing} is a stream record");
    assert_eq!(dead_letters.acknowledged_ids(), vec![failing.clone()]);
    assert_eq!(
        dead_letters.acknowledged()[0].header("ce-knativeerrorcode"),
        Some("503")
    );
    assert_eq!(
        sink.requests().iter().filter(|r| r.id() == failing).count(),
        3,
        "1 attempt + 2 retries"
    );
    assert_delivered(
        &sink.acknowledged(),
        &without(&s.truth_per_key().await, &failing),
        "the rest acknowledged once each, in order per key",
    );
    adapter
        .wait_metric(
            "dynamodb_source_dead_lettered_total{reason=\"retries_exhausted\"}",
            1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_times_out_is_retried_and_nothing_is_lost() {
    let s = setup("timeout").await;
    let sink = Receiver::start(
        0,
        Arc::new(|i, _| {
            if i == 0 {
                Reply::status(202).delay(Duration::from_secs(20))
            } else {
                Reply::status(202)
            }
        }),
    )
    .await;
    // Long enough that no other attempt times out on a loaded machine (each would
    // be sent again and break the exact count per key below).
    let env = s.env(&sink.url).set("DELIVERY_TIMEOUT", "PT5S");
    let mut adapter = AdapterProcess::spawn(&env, s.dir.path());
    adapter.wait_ready().await;
    s.write(5, 5);
    let truth = s.truth().await;
    wait_for_all(&sink, &truth).await;
    // The first request timed out (its late 202 never reached the adapter);
    // per key, it is sent again before anything else of its key, and every
    // other record once, in order. The receiver logs the timed-out request
    // with the status it was going to answer, so all requests are compared.
    let timed_out = sink.requests()[0].id();
    // The others, of other keys, need not wait for its retry.
    eventually(
        "the timed-out event sent again",
        Duration::from_secs(60),
        async || {
            (sink
                .requests()
                .iter()
                .filter(|r| r.id() == timed_out)
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await;
    let requests = sink.requests();
    let mut expected = s.truth_per_key().await;
    let of_key = expected
        .values_mut()
        .find(|ids| ids.contains(&timed_out))
        .expect("the timed-out event is a stream record");
    assert_eq!(
        of_key[0], timed_out,
        "the first request is the first of its key"
    );
    of_key.insert(0, timed_out.clone());
    assert_eq!(
        crate::support::received_per_key(&requests),
        expected,
        "after the timeout, the same event was retried before the rest of its key; \
         per key, every other record once, in order"
    );
    assert!(
        adapter
            .metric("dynamodb_source_delivery_attempts_total{outcome=\"retryable\",code=\"none\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_for_a_while_loses_nothing() {
    let s = setup("down").await;
    let port = crate::support::free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let adapter = AdapterProcess::spawn(&s.env(&url), s.dir.path());
    s.write(6, 6);
    eventually(
        "failed attempts while the sink is down",
        Duration::from_secs(60),
        async || {
            (adapter
                .metric(
                    "dynamodb_source_delivery_attempts_total{outcome=\"retryable\",code=\"none\"}",
                )
                .await
                >= 3.0)
                .then_some(())
        },
    )
    .await;
    let sink = Receiver::start(port, Arc::new(|_, _| Reply::status(202))).await;
    let truth = s.truth().await;
    wait_for_all(&sink, &truth).await;
    assert_delivered(
        &sink.acknowledged(),
        &s.truth_per_key().await,
        "every record once, in order per key, once the sink is up",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_never_passes_an_unacknowledged_record() {
    let s = setup("unacked").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    // The first two requests are acknowledged, every other one fails until
    // the sink turns healthy. Records of different keys are sent together,
    // so which two records were acknowledged is whichever came first.
    let sink = Receiver::start(
        0,
        Arc::new(move |i, _| {
            if i < 2 || flag.load(Ordering::SeqCst) {
                Reply::status(202)
            } else {
                Reply::status(503)
            }
        }),
    )
    .await;
    let mut adapter = AdapterProcess::spawn(&s.env(&sink.url), s.dir.path());
    adapter.wait_ready().await;
    s.write(6, 7);
    let truth = s.truth().await;
    // The oldest record not acknowledged: everything of its key before it
    // was, so it is being sent, and fails again and again.
    let (acked, failing) = eventually(
        "the oldest unacknowledged record failing repeatedly",
        Duration::from_secs(60),
        async || {
            let requests = sink.requests();
            let acked: HashSet<String> = sink.acknowledged_ids().into_iter().collect();
            let failing = truth.iter().find(|id| !acked.contains(*id))?;
            (acked.len() == 2 && requests.iter().filter(|r| &r.id() == failing).count() >= 3)
                .then(|| (acked, failing.clone()))
        },
    )
    .await;
    let position = truth
        .iter()
        .position(|id| *id == failing)
        .expect("in truth");
    let delivered_prefix = &truth[..position];
    let acked_seq = match delivered_prefix.last() {
        Some(id) => s.sequence_of(id).await,
        None => String::new(),
    };
    let failing_seq = s.sequence_of(&failing).await;
    let assert_checkpoint = |when: &str| {
        let checkpointed = s.checkpointed().unwrap_or_default();
        assert!(
            seq_key(&checkpointed) < seq_key(&failing_seq),
            "{when}: checkpoint {checkpointed} passed the unacknowledged {failing_seq}"
        );
        checkpointed
    };
    assert_checkpoint("while failing");
    let status = adapter.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    assert_eq!(
        assert_checkpoint("after shutdown"),
        acked_seq,
        "at the last record before which every record was acknowledged \
         (acknowledged: {acked:?}, the stream: {truth:?})"
    );

    healthy.store(true, Ordering::SeqCst);
    let before_restart = sink.requests().len();
    let mut adapter = AdapterProcess::spawn(&s.env(&sink.url), s.dir.path());
    adapter.wait_ready().await;
    wait_for_all(&sink, &truth).await;
    let resent: Vec<String> = sink.requests()[before_restart..]
        .iter()
        .map(|r| r.id())
        .filter(|id| delivered_prefix.contains(id))
        .collect();
    assert_eq!(
        resent,
        Vec::<String>::new(),
        "resumed at the checkpoint: nothing before it is sent again"
    );
    let acknowledged = sink.acknowledged();
    assert_delivered(
        &first_arrivals(&acknowledged),
        &s.truth_per_key().await,
        "resumed at the unacknowledged record: every record, first acknowledgements in order per key",
    );
    // Only records acknowledged past the checkpoint before the restart may
    // be acknowledged again.
    let mut seen = HashSet::new();
    let repeated: HashSet<String> = acknowledged
        .iter()
        .map(|r| r.id())
        .filter(|id| !seen.insert(id.clone()))
        .collect();
    let allowed: HashSet<String> = acked
        .iter()
        .filter(|id| !delivered_prefix.contains(*id))
        .cloned()
        .collect();
    assert!(
        repeated.is_subset(&allowed),
        "acknowledged twice: {repeated:?}; only those acknowledged past the checkpoint may be: {allowed:?}"
    );
}

/// `DELIVERY_PARALLELISM=1` is the strict per-shard order TriggerMesh's
/// source delivered in: records of every key in exact stream order, one
/// request at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_one_delivers_a_shard_strictly_in_stream_order_one_request_at_a_time() {
    let s = setup("strict").await;
    // Written before the adapter starts, so that they are read in one batch,
    // whose records of different keys would otherwise be sent together.
    s.write(24, 8);
    let truth = s.truth().await;
    let keys = s.truth_per_key().await;
    assert!(
        keys.len() >= 3,
        "the workload wrote several keys: {:?}",
        keys.keys()
    );
    // Every answer takes a while: a second request while one is open would
    // arrive less than this after it.
    let answer_delay = Duration::from_millis(40);
    let sink = Receiver::start(
        0,
        Arc::new(move |_, _| Reply::status(202).delay(answer_delay)),
    )
    .await;
    let env = s.env(&sink.url).set("DELIVERY_PARALLELISM", "1");
    let mut adapter = AdapterProcess::spawn(&env, s.dir.path());
    adapter.wait_ready().await;
    wait_for_all(&sink, &truth).await;

    assert_eq!(
        sink.acknowledged_ids(),
        truth,
        "every record once, in exact stream order across keys"
    );
    let requests = sink.requests();
    assert_eq!(requests.len(), truth.len(), "no request repeated");
    // `at` is when a request arrived; its answer left `answer_delay` later.
    let overlapping: Vec<(usize, Duration)> = requests
        .windows(2)
        .enumerate()
        .map(|(n, pair)| (n + 1, pair[1].at.duration_since(pair[0].at)))
        .filter(|(_, gap)| *gap < answer_delay)
        .collect();
    assert_eq!(
        overlapping,
        Vec::new(),
        "requests (index, time since the one before) that arrived while the one before was \
         still unanswered ({answer_delay:?} to answer)"
    );
    assert!(adapter.terminate(Duration::from_secs(30)).await.success());
}
