//! Sink faults: retries, Retry-After, dead letters, timeouts, a sink that is
//! down, and a checkpoint that never passes an unacknowledged record.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::adapter::{AdapterEnv, AdapterProcess};
use support::moto::Moto;
use support::receiver::{Receiver, Reply};
use support::{eventually, seq_key};

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
        support::checkpointed(&self.dir.path().join("cp.json"))
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

/// First acknowledgement of each id, in order.
fn first_acks(sink: &Receiver) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    sink.acknowledged_ids()
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
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
    assert_eq!(
        sink.acknowledged_ids(),
        truth,
        "each record acknowledged once, in order"
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
        (sink.acknowledged().len() + 1 >= truth.len()).then_some(())
    })
    .await;
    let dead = dead_letters.acknowledged();
    assert_eq!(dead.len(), 1, "exactly the rejected event is dead-lettered");
    assert_eq!(dead[0].id(), truth[0]);
    assert_eq!(dead[0].header("ce-knativeerrorcode"), Some("400"));
    assert_eq!(
        dead[0].header("ce-knativeerrordest"),
        Some(sink.url.as_str())
    );
    assert_eq!(
        sink.requests()
            .iter()
            .filter(|r| r.id() == truth[0])
            .count(),
        1,
        "a 400 is not retried"
    );
    assert_eq!(sink.acknowledged_ids(), truth[1..].to_vec());
    assert_eq!(
        adapter
            .metric("dynamodb_source_dead_lettered_total{reason=\"rejected\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_go_to_the_dead_letter_sink() {
    let s = setup("exhausted").await;
    let dead_letters = Receiver::accepting().await;
    let sink = Receiver::start(
        0,
        Arc::new(|i, _| {
            if i < 3 {
                Reply::status(503)
            } else {
                Reply::status(202)
            }
        }),
    )
    .await;
    let env = s
        .env(&sink.url)
        .set("K_DEAD_LETTER_SINK", &dead_letters.url)
        .set("DELIVERY_RETRY", "2");
    let mut adapter = AdapterProcess::spawn(&env, s.dir.path());
    adapter.wait_ready().await;
    s.write(3, 4);
    let truth = s.truth().await;
    eventually("the rest delivered", Duration::from_secs(60), async || {
        (sink.acknowledged().len() + 1 >= truth.len()).then_some(())
    })
    .await;
    assert_eq!(dead_letters.acknowledged_ids(), vec![truth[0].clone()]);
    assert_eq!(
        dead_letters.acknowledged()[0].header("ce-knativeerrorcode"),
        Some("503")
    );
    assert_eq!(
        sink.requests()
            .iter()
            .filter(|r| r.id() == truth[0])
            .count(),
        3,
        "1 attempt + 2 retries"
    );
    assert_eq!(
        adapter
            .metric("dynamodb_source_dead_lettered_total{reason=\"retries_exhausted\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_times_out_is_retried_and_nothing_is_lost() {
    let s = setup("timeout").await;
    let sink = Receiver::start(
        0,
        Arc::new(|i, _| {
            if i == 0 {
                Reply::status(202).delay(Duration::from_secs(3))
            } else {
                Reply::status(202)
            }
        }),
    )
    .await;
    let env = s.env(&sink.url).set("DELIVERY_TIMEOUT", "PT0.5S");
    let mut adapter = AdapterProcess::spawn(&env, s.dir.path());
    adapter.wait_ready().await;
    s.write(5, 5);
    let truth = s.truth().await;
    wait_for_all(&sink, &truth).await;
    let ids: Vec<String> = sink.requests().iter().map(|r| r.id()).collect();
    let mut expected = vec![truth[0].clone()];
    expected.extend(truth.iter().cloned());
    assert_eq!(
        ids, expected,
        "after the timeout, the same event was retried first, then the rest in order"
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
    let port = support::free_port();
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
    assert_eq!(sink.acknowledged_ids(), truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_never_passes_an_unacknowledged_record() {
    let s = setup("unacked").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
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
    eventually(
        "the third record failing repeatedly",
        Duration::from_secs(60),
        async || {
            (sink
                .requests()
                .iter()
                .filter(|r| r.id() == truth[2])
                .count()
                >= 3)
                .then_some(())
        },
    )
    .await;
    let acked_seq = s.sequence_of(&truth[1]).await;
    let failing_seq = s.sequence_of(&truth[2]).await;
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
        "at the last acknowledged record"
    );

    healthy.store(true, Ordering::SeqCst);
    let mut adapter = AdapterProcess::spawn(&s.env(&sink.url), s.dir.path());
    adapter.wait_ready().await;
    wait_for_all(&sink, &truth).await;
    assert_eq!(
        first_acks(&sink),
        truth,
        "resumed at the unacknowledged record"
    );
}
