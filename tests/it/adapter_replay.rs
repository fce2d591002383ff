//! `REPLAY_FROM` and `REPLAY_TOKEN` with the adapter binary: after records
//! were delivered, a replay from a time delivers again exactly the records
//! created from that time on, once per token; a restart with the same token
//! does not replay, a new token from TRIM_HORIZON replays everything.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use crate::support::adapter::{AdapterEnv, AdapterProcess};
use crate::support::eventually;
use crate::support::fake_streams::{Change, FakeStreams, Written};
use crate::support::receiver::Receiver;

const WITHIN: Duration = Duration::from_secs(30);

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// RFC 3339 in UTC, to the millisecond.
fn rfc3339(millis: i64) -> String {
    DateTime::from_millis(millis)
        .fmt(Format::DateTime)
        .expect("a representable time")
}

fn ids<'a>(records: impl IntoIterator<Item = &'a Written>) -> BTreeSet<String> {
    records.into_iter().map(|w| w.event_id.clone()).collect()
}

struct Rig {
    fake: FakeStreams,
    shard: String,
    sink: Receiver,
    dir: tempfile::TempDir,
}

impl Rig {
    fn env(&self) -> AdapterEnv {
        AdapterEnv::new(
            &self.sink.url,
            &self.fake.table_arn("orders"),
            &self.fake.endpoint,
            &self.dir.path().join("checkpoint.json"),
        )
    }

    fn checkpoint(&self) -> serde_json::Value {
        std::fs::read(self.dir.path().join("checkpoint.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Runs the adapter until `count` events arrived in all and the checkpoint
    /// is at `last` (every record before it settled, delivered or skipped),
    /// then stops it; returns the events of this run.
    async fn run(&self, env: AdapterEnv, count: usize, last: &str) -> BTreeSet<String> {
        let before = self.sink.acknowledged().len();
        let mut adapter = AdapterProcess::spawn(&env, self.dir.path());
        adapter.wait_ready().await;
        eventually(
            &format!("{count} events and the checkpoint at {last}"),
            WITHIN,
            async || {
                let at_last = self.checkpoint()["shards"][&self.shard]["after"] == last;
                (self.sink.acknowledged().len() >= count && at_last).then_some(())
            },
        )
        .await;
        assert!(adapter.terminate(WITHIN).await.success());
        let arrived = self.sink.acknowledged();
        assert_eq!(
            arrived.len(),
            count,
            "no more than expected: {}",
            adapter.logs()
        );
        arrived[before..].iter().map(|r| r.id()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_a_time_delivers_exactly_the_records_created_since_once_per_token() {
    let fake = FakeStreams::start().await;
    let stream = fake.enable_stream("orders");
    let shard = fake.add_shard(&stream, None);
    // Six records created at known times, ten minutes ago, around a replay
    // point at base + 2.5 s (to the millisecond).
    let base = unix_now() - 600;
    let from_millis = (base + 2) * 1000 + 500;
    let created = [0.0, 1.0, 2.499, 2.5, 3.2, 10.0];
    let written: Vec<Written> = created
        .iter()
        .enumerate()
        .map(|(i, offset)| {
            fake.append_edited(&shard, Change::insert(format!("k{i}"), i as i64), |json| {
                json["dynamodb"]["ApproximateCreationDateTime"] =
                    serde_json::json!(base as f64 + offset);
            })
        })
        .collect();
    let rig = Rig {
        fake,
        shard,
        sink: Receiver::accepting().await,
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let last = written.last().expect("records").sequence_number.clone();

    let first = rig.run(rig.env(), 6, &last).await;
    assert_eq!(first, ids(&written), "everything, once");

    let replay = rig
        .env()
        .set("REPLAY_FROM", rfc3339(from_millis))
        .set("REPLAY_TOKEN", "fix-1");
    let replayed = rig.run(replay.clone(), 9, &last).await;
    assert_eq!(
        replayed,
        ids(&written[3..]),
        "exactly the records created at or after {}",
        rfc3339(from_millis)
    );
    let recorded = &rig.checkpoint()["replay"];
    assert_eq!(recorded["token"], "fix-1", "{recorded}");
    assert_eq!(recorded["from"], rfc3339(from_millis));

    // A restart with the same token delivers only what is new.
    let new = rig.fake.append(&rig.shard, [Change::insert("k9", 9)]);
    let restarted = rig.run(replay, 10, &new[0].sequence_number).await;
    assert_eq!(restarted, ids(&new), "no second replay for the same token");

    // A new token from TRIM_HORIZON: everything the stream holds, again.
    let everything = rig
        .env()
        .set("REPLAY_FROM", "TRIM_HORIZON")
        .set("REPLAY_TOKEN", "fix-2");
    let again = rig.run(everything, 17, &new[0].sequence_number).await;
    assert_eq!(again, ids(written.iter().chain(&new)));
}

#[test]
fn a_replay_without_its_token_or_with_a_bad_time_exits_2_naming_the_setting() {
    for (env, setting) in [
        (vec![("REPLAY_FROM", "TRIM_HORIZON")], "REPLAY_TOKEN"),
        (vec![("REPLAY_TOKEN", "x")], "REPLAY_FROM"),
        (
            vec![("REPLAY_FROM", "2024-05-01 12:00"), ("REPLAY_TOKEN", "x")],
            "REPLAY_FROM",
        ),
    ] {
        let out = std::process::Command::new(crate::support::adapter::BINARY)
            .arg("adapter")
            .env_clear()
            .env("K_SINK", "http://127.0.0.1:9/")
            .env(
                "ARN",
                "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
            )
            .envs(env)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("invalid setting {setting}:")),
            "{stderr}"
        );
    }
}
