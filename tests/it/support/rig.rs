//! The adapter binary against the scripted fake of the DynamoDB Streams API
//! and a loopback sink: what the adapter_* test modules share.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::adapter::{AdapterEnv, AdapterProcess};
use super::fake_streams::{FakeStreams, Written, ids, written_per_key};
use super::receiver::Receiver;
use super::{assert_delivered, eventually};

/// How many lines of each adapter log a failing test shows, and how many
/// characters of each line.
const LOG_TAIL_LINES: usize = 80;
const LOG_LINE_CHARS: usize = 400;

/// A fake Streams API, a sink, and a directory for the checkpoint and the
/// adapter's logs, for one table.
pub struct Rig {
    pub table: String,
    pub fake: FakeStreams,
    pub sink: Receiver,
    pub env: AdapterEnv,
    /// The table's stream, enabled by the first [`Rig::stream`].
    stream: OnceLock<String>,
    /// Kept when a test fails, so the adapter's logs can be read afterwards.
    dir: Option<tempfile::TempDir>,
    /// The longest any single wait of the rig may take.
    within: Duration,
}

impl Rig {
    /// A rig whose sink accepts everything; its waits give up after `within`.
    pub async fn new(table: &str, within: Duration) -> Rig {
        Rig::with_sink(table, Receiver::accepting().await, within).await
    }

    pub async fn with_sink(table: &str, sink: Receiver, within: Duration) -> Rig {
        let fake = FakeStreams::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let checkpoint = dir.path().join("checkpoint.json");
        let env = AdapterEnv::new(
            &sink.url,
            &fake.table_arn(table),
            &fake.endpoint,
            &checkpoint,
        );
        Rig {
            table: table.to_owned(),
            fake,
            sink,
            env,
            stream: OnceLock::new(),
            dir: Some(dir),
            within,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the rig's directory").path()
    }

    /// Sets one of the adapter's environment variables.
    pub fn set(&mut self, name: &str, value: &str) {
        self.env = self.env.clone().set(name, value);
    }

    /// The table's stream, enabled at the first call.
    pub fn stream(&self) -> &str {
        self.stream
            .get_or_init(|| self.fake.enable_stream(&self.table))
    }

    /// A new open shard on the table's stream.
    pub fn add_shard(&self) -> String {
        self.fake.add_shard(self.stream(), None)
    }

    /// The table's stream and a new open shard on it.
    pub fn stream_with_shard(&self) -> (String, String) {
        let shard = self.add_shard();
        (self.stream().to_owned(), shard)
    }

    pub fn spawn(&self) -> AdapterProcess {
        AdapterProcess::spawn(&self.env, self.dir())
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir().join("checkpoint.json")
    }

    /// The checkpoint file, if there is one.
    pub fn checkpoint(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.checkpoint_path()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The checkpoint file's `shards.<shard>.after`, if it holds one.
    pub fn after(&self, shard: &str) -> Option<String> {
        self.checkpoint()?["shards"][shard]["after"]
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until the checkpoint marks `shard` finished; `what` names it.
    pub async fn finished(&self, shard: &str, what: &str) {
        eventually(
            &format!("{what} finished in the checkpoint"),
            self.within,
            async || {
                self.checkpoint()
                    .is_some_and(|c| c["shards"][shard] == "finished")
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until the sink acknowledged at least `n` requests.
    pub async fn delivered(&self, n: usize) {
        acknowledged_by(&self.sink, n, "the sink", self.within).await;
    }

    /// Starts the adapter and waits until the sink has every record of
    /// `written`, once each and in order per item key; `after` names the
    /// fault survived.
    pub async fn deliver_all(&self, written: &[Written], after: &str) -> AdapterProcess {
        let mut adapter = self.spawn();
        adapter.wait_ready().await;
        self.delivered(written.len()).await;
        assert_delivered(
            &self.sink.acknowledged(),
            &written_per_key(written),
            &format!("every record once, in order per key, after {after}"),
        );
        adapter
    }

    /// Starts the adapter and waits until the sink acknowledged every record
    /// of `written` and the checkpoint holds the last of each shard.
    pub async fn run_until_settled(&self, written: &[Written]) -> AdapterProcess {
        let mut adapter = self.spawn();
        adapter.wait_ready().await;
        self.all_acknowledged(written, self.within).await;
        self.checkpointed_to_the_end(written).await;
        adapter
    }

    /// Waits until the sink acknowledged every record of `written`.
    pub async fn all_acknowledged(&self, written: &[Written], within: Duration) {
        let wanted: HashSet<String> = ids(written).into_iter().collect();
        eventually(
            &format!("{} records acknowledged by the sink", wanted.len()),
            within,
            async || {
                let acked: HashSet<String> = self.sink.acknowledged_ids().into_iter().collect();
                wanted.is_subset(&acked).then_some(())
            },
        )
        .await;
    }

    /// Waits until the checkpoint of every shard in `written` holds its last
    /// record: then everything was settled and nothing more will be sent.
    pub async fn checkpointed_to_the_end(&self, written: &[Written]) {
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for w in written {
            last.insert(&w.shard, &w.sequence_number);
        }
        eventually(
            "the checkpoint at the last record of every shard",
            self.within,
            async || {
                last.iter()
                    .all(|(shard, seq)| self.after(shard).as_deref() == Some(*seq))
                    .then_some(())
            },
        )
        .await;
    }
}

impl Drop for Rig {
    /// A failing test keeps its directory and shows the tail of the adapter's
    /// logs and what the fake was asked.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("fake Streams API calls: {:?}", self.fake.call_counts());
        let Some(dir) = self.dir.take() else {
            return;
        };
        let dir = dir.keep();
        eprintln!("the adapter's logs are kept in {}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                eprintln!("--- {} (last {} lines)", path.display(), tail.len());
                for line in tail {
                    eprintln!("{}", line.chars().take(LOG_LINE_CHARS).collect::<String>());
                }
            }
        }
    }
}

/// Waits until `receiver` acknowledged at least `n` requests; `what` names it.
pub async fn acknowledged_by(receiver: &Receiver, n: usize, what: &str, within: Duration) {
    eventually(
        &format!("{n} events acknowledged by {what}"),
        within,
        async || (receiver.acknowledged().len() >= n).then_some(()),
    )
    .await;
}
