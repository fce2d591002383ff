//! An HTTPS sink signed by a private authority: `K_CA_CERTS` makes the
//! adapter trust it, and without it the adapter refuses the sink (and keeps
//! the events) rather than sending anywhere unverified.

use std::sync::Arc;
use std::time::Duration;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::fake_streams::{Change, FakeStreams, Written, written_per_key};
use crate::support::receiver::{Receiver, Reply};
use crate::support::tls::ServerCert;
use crate::support::{assert_delivered, eventually};

const WITHIN: Duration = Duration::from_secs(30);

struct Rig {
    fake: FakeStreams,
    sink: Receiver,
    cert: ServerCert,
    dir: tempfile::TempDir,
    written: Vec<Written>,
}

/// A stream holding `n` records and an HTTPS sink with a private certificate.
async fn rig(table: &str, n: usize) -> Rig {
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream(table);
    let shard = fake.add_shard(&stream, None);
    let written = fake.append(
        &shard,
        (0..n).map(|i| Change::insert(format!("k{i}"), i as i64)),
    );
    let cert = ServerCert::new();
    let sink = Receiver::start_tls(&cert, Arc::new(|_, _| Reply::status(202))).await;
    Rig {
        fake,
        sink,
        cert,
        dir: tempfile::tempdir().expect("tempdir"),
        written,
    }
}

impl Rig {
    fn env(&self, table: &str) -> AdapterEnv {
        AdapterEnv::new(
            &self.sink.url,
            &self.fake.table_arn(table),
            &self.fake.endpoint,
            &self.dir.path().join("checkpoint.json"),
        )
        .set("DELIVERY_BACKOFF_DELAY", "PT0.05S")
    }
}

#[tokio::test]
async fn trusts_an_https_sink_signed_by_the_authority_in_k_ca_certs() {
    let rig = rig("tls-trusted", 5).await;
    assert!(rig.sink.url.starts_with("https://"), "{}", rig.sink.url);
    let env = rig.env("tls-trusted").set("K_CA_CERTS", &rig.cert.ca_pem);
    let mut adapter = AdapterProcess::spawn(&env, rig.dir.path());
    adapter.wait_ready().await;
    let received = eventually("every record at the HTTPS sink", WITHIN, async || {
        let received = rig.sink.acknowledged();
        (received.len() >= rig.written.len()).then_some(received)
    })
    .await;
    assert_delivered(
        &received,
        &written_per_key(&rig.written),
        "every record once, in order per key, over TLS",
    );
    assert!(adapter.terminate(WITHIN).await.success());
}

#[tokio::test]
async fn refuses_an_https_sink_it_cannot_verify_and_keeps_the_events() {
    let rig = rig("tls-untrusted", 3).await;
    let mut adapter = AdapterProcess::spawn(&rig.env("tls-untrusted"), rig.dir.path());
    // Failed handshakes count as retryable attempts without a status.
    eventually(
        "failed attempts against the unverified sink",
        WITHIN,
        async || {
            let failed = adapter
                .metric(
                    "dynamodb_source_delivery_attempts_total{outcome=\"retryable\",code=\"none\"}",
                )
                .await;
            (failed >= 3.0).then_some(())
        },
    )
    .await;
    assert!(
        rig.sink.requests().is_empty(),
        "nothing reached a sink whose certificate was not verified"
    );
    assert!(
        adapter.logs().contains("certificate"),
        "the log says why: {}",
        adapter.logs()
    );
    assert!(adapter.terminate(WITHIN).await.success());
    // Nothing was acknowledged, so the checkpoint holds no position past a record.
    let position = crate::support::checkpointed(&rig.dir.path().join("checkpoint.json"));
    assert_eq!(position, None, "checkpointed past an unacknowledged record");
}
