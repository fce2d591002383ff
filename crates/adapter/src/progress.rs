//! The adapter's progress: updated by shard tasks as the sink acknowledges,
//! written to the checkpoint store by one writer so saves never race and a
//! burst of updates costs one write.
//!
//! Saves are at least `interval` apart. Saving as often as the store allows
//! meant hundreds of file writes with two fsyncs each per second under load
//! (an eighth of the adapter's CPU with eight busy shards), or as many writes
//! to the Kubernetes API, each an update every watcher of ConfigMaps sees.

use dynamodb_source_api::Report;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dynamodb_source_backoff::{Backoff, Growth, Jitter};
use dynamodb_source_stream::checkpoint::{
    AppliedReplay, Checkpoint, CheckpointError, CheckpointStore, ShardProgress,
};
use dynamodb_source_stream::label_enum;
use dynamodb_source_stream::merge::{self, Merge, Merged};
use dynamodb_source_stream::{SequenceNumber, ShardId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::lease::HeldShards;
use crate::settings::Replay;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

label_enum! {
    pub enum WriteResult {
        Ok => "ok",
        Error => "error",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WriteLabels {
    pub result: WriteResult,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ProgressMetrics {
    pub writes: Family<WriteLabels, Counter>,
}

impl ProgressMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynamodb_source_checkpoint_writes",
            "Checkpoint saves by result",
            self.writes.clone(),
        );
    }
}

struct State {
    checkpoint: Option<Checkpoint>,
    /// The replay recorded on the first checkpoint made at a first start
    /// (nothing was delivered yet, so there is nothing to replay).
    first_replay: Option<AppliedReplay>,
    /// Bumped by every change; the writer saves when it differs from `saved`.
    generation: u64,
    saved: u64,
    /// Shared with other replicas: shards proven gone since the last save,
    /// removed from the stored document by the next one.
    forgotten: BTreeSet<ShardId>,
    /// Shared: the next save writes every shard (a replay was applied).
    write_everything: bool,
}

pub(crate) struct Progress {
    state: Mutex<State>,
    changed: Notify,
    store: Arc<dyn CheckpointStore>,
    metrics: ProgressMetrics,
    interval: Duration,
    /// With shard leases: the shards this replica holds, the only ones it
    /// writes into the shared document (see [`dynamodb_source_stream::merge`]).
    shared: Option<HeldShards>,
}

impl Progress {
    /// `replay`, unless `loaded` recorded its token already, restarts every
    /// shard of `loaded` from the replay's point, and is saved at once so a
    /// restart does not apply it again.
    pub(crate) fn new(
        store: Arc<dyn CheckpointStore>,
        mut loaded: Option<Checkpoint>,
        metrics: ProgressMetrics,
        interval: Duration,
        replay: Option<&Replay>,
    ) -> Self {
        let now = now_unix();
        let mut generation = 0;
        let mut first_replay = None;
        if let Some(replay) = replay {
            match loaded.as_mut() {
                Some(checkpoint) => {
                    if checkpoint.replay(&replay.token, replay.from, now) {
                        info!(token = %replay.token, from = %replay.from, shards = checkpoint.shards.len(), "replaying: every shard starts again from the replay's point");
                        generation = 1;
                    }
                }
                None => {
                    info!(token = %replay.token, "first start: nothing was delivered to replay; the token is recorded");
                    first_replay = Some(AppliedReplay {
                        token: replay.token.clone(),
                        from: replay.from.to_string(),
                        applied_at: now,
                    });
                }
            }
        }
        let progress = Progress {
            state: Mutex::new(State {
                checkpoint: loaded,
                first_replay,
                generation,
                saved: 0,
                forgotten: BTreeSet::new(),
                write_everything: generation > 0,
            }),
            changed: Notify::new(),
            store,
            metrics,
            interval,
            shared: None,
        };
        if generation > 0 {
            progress.commit();
        }
        progress
    }

    /// Shares the stored document with other replicas: only the shards in
    /// `held` are written, the others are taken from the store.
    pub(crate) fn shared_with(mut self, held: HeldShards) -> Self {
        self.shared = Some(held);
        self
    }

    /// Takes what other replicas saved of the shards this one does not hold
    /// (finished parents, positions of shards about to be taken).
    pub(crate) async fn refresh(&self) -> Result<(), CheckpointError> {
        let Some(held) = &self.shared else {
            return Ok(());
        };
        let Some(stored) = self.store.load().await? else {
            return Ok(());
        };
        let mut state = self.lock();
        match state.checkpoint.as_mut() {
            Some(local) => merge::adopt(local, &stored, |s| held.contains(s)),
            // Written by other replicas since this one started.
            None => state.checkpoint = Some(stored),
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-updated checkpoint
        // (updates are single assignments), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a change in memory; it is saved at the next [`Progress::commit`].
    fn stage(&self, change: impl FnOnce(&mut Checkpoint)) {
        let mut state = self.lock();
        if let Some(checkpoint) = state.checkpoint.as_mut() {
            change(checkpoint);
            state.generation += 1;
        }
    }

    /// Applies a change and has it saved now.
    fn update(&self, change: impl FnOnce(&mut Checkpoint)) {
        self.stage(change);
        self.commit();
    }

    /// Asks the writer to save what was staged. Shard tasks call it once per
    /// batch rather than per record, and the writer saves at most once per
    /// interval: a crash repeats what was acknowledged since the last save.
    pub(crate) fn commit(&self) {
        self.changed.notify_one();
    }

    /// The replay the checkpoint records, for the summary.
    pub(crate) fn last_replay(&self) -> Option<AppliedReplay> {
        let state = self.lock();
        state
            .checkpoint
            .as_ref()
            .and_then(|c| c.replay.clone())
            .or_else(|| state.first_replay.clone())
    }

    /// Whether `shard` was read to its end, by this replica or (as last
    /// read from the shared document) another.
    pub(crate) fn is_finished(&self, shard: &ShardId) -> bool {
        self.lock()
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.is_finished(shard))
    }

    pub(crate) fn snapshot(&self) -> Option<Checkpoint> {
        self.lock().checkpoint.clone()
    }

    /// Starts tracking a stream afresh (first start, or the table's stream
    /// changed), keeping the replay recorded so far.
    pub(crate) fn replace(&self, mut checkpoint: Checkpoint) {
        let mut state = self.lock();
        let recorded = state
            .checkpoint
            .as_ref()
            .and_then(|c| c.replay.clone())
            .or_else(|| state.first_replay.take());
        checkpoint.replay = checkpoint.replay.or(recorded);
        state.checkpoint = Some(checkpoint);
        state.generation += 1;
        drop(state);
        self.changed.notify_one();
    }

    /// Records an acknowledgement; saved at the next commit.
    pub(crate) fn advance(&self, shard: &ShardId, sequence_number: &SequenceNumber) {
        self.stage(|c| c.advance(shard, sequence_number));
    }

    pub(crate) fn finish(&self, shard: &ShardId) {
        self.update(|c| c.finish(shard));
    }

    pub(crate) fn record(&self, entries: impl IntoIterator<Item = (ShardId, ShardProgress)>) {
        self.update(|c| c.shards.extend(entries));
    }

    /// Forgets a shard the API says is gone; its children no longer wait.
    pub(crate) fn forget(&self, shard: &ShardId) {
        self.lock().forgotten.insert(shard.clone());
        self.update(|c| c.forget(shard));
    }

    /// Notes which shards one DescribeStream answer listed (see
    /// [`Checkpoint::note_listing`]); saved only when that changed something.
    pub(crate) fn note_listing(&self, listed: impl Fn(&ShardId) -> bool, now: i64) {
        let mut state = self.lock();
        let before: BTreeSet<ShardId> = state
            .checkpoint
            .as_ref()
            .map(|c| c.shards.keys().cloned().collect())
            .unwrap_or_default();
        let changed = state
            .checkpoint
            .as_mut()
            .is_some_and(|checkpoint| checkpoint.note_listing(listed, now));
        if changed {
            let kept: BTreeSet<ShardId> = state
                .checkpoint
                .as_ref()
                .map(|c| c.shards.keys().cloned().collect())
                .unwrap_or_default();
            state.forgotten.extend(before.difference(&kept).cloned());
            state.generation += 1;
            drop(state);
            self.commit();
        }
    }

    /// Saves the newest state if it changed since the last save.
    pub(crate) async fn flush(&self) -> Result<(), CheckpointError> {
        let (checkpoint, generation, forgotten, everything) = {
            let state = self.lock();
            if state.generation == state.saved {
                return Ok(());
            }
            match &state.checkpoint {
                Some(checkpoint) => (
                    checkpoint.clone(),
                    state.generation,
                    state.forgotten.clone(),
                    state.write_everything,
                ),
                None => return Ok(()),
            }
        };
        let saved = match &self.shared {
            None => self.store.save(&checkpoint).await,
            Some(held) => {
                let what = if everything {
                    Merge::Everything
                } else {
                    Merge::Held
                };
                let contains = |s: &ShardId| held.contains(s);
                self.store
                    .save_merged(&checkpoint, what, &contains, &forgotten)
                    .await
                    .map(|(stored, merged)| {
                        if let Merged::Stale(why) = &merged {
                            warn!(reason = %why, "this replica's progress is not saved: the shared checkpoint moved on");
                        }
                        let mut state = self.lock();
                        state.write_everything &= !everything;
                        state.forgotten.retain(|s| !forgotten.contains(s));
                        if let Some(local) = state.checkpoint.as_mut() {
                            merge::adopt(local, &stored, |s| held.contains(s));
                        }
                    })
            }
        };
        match saved {
            Ok(()) => {
                self.metrics
                    .writes
                    .get_or_create(&WriteLabels {
                        result: WriteResult::Ok,
                    })
                    .inc();
                let mut state = self.lock();
                state.saved = state.saved.max(generation);
                debug!(generation, "checkpoint saved");
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .writes
                    .get_or_create(&WriteLabels {
                        result: WriteResult::Error,
                    })
                    .inc();
                Err(e)
            }
        }
    }

    /// Saves after changes until `stop`, at most once per interval, retrying
    /// failed saves. Changes made meanwhile are saved together at the end of
    /// the interval, so the last one is never left unsaved for longer.
    pub(crate) async fn write_loop(&self, stop: CancellationToken) {
        // 200 ms more after each failed save in a row, up to 10 s.
        let mut failures = Backoff::new(
            Growth::Linear,
            Duration::from_millis(200),
            Duration::from_secs(10),
            Jitter::None,
        );
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = stop.cancelled() => return,
            }
            loop {
                match self.flush().await {
                    Ok(()) => {
                        failures.reset();
                        tokio::select! {
                            _ = tokio::time::sleep(self.interval) => {}
                            _ = stop.cancelled() => return,
                        }
                        break;
                    }
                    Err(e) => {
                        let pause = failures.next_wait();
                        error!(error = %Report(&e), ?pause, "saving the checkpoint failed; delivery goes on and the save is retried");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use dynamodb_source_api::StreamArn;

    /// Keeps every saved document, in order.
    #[derive(Default)]
    struct Saves(Mutex<Vec<Checkpoint>>);

    #[async_trait]
    impl CheckpointStore for Saves {
        fn location(&self) -> String {
            "memory".to_owned()
        }
        async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
            Ok(None)
        }
        async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
            self.0.lock().expect("lock").push(checkpoint.clone());
            Ok(())
        }
    }

    fn saved(store: &Saves) -> Vec<Option<SequenceNumber>> {
        let shard = ShardId::new("shardId-1");
        store
            .0
            .lock()
            .expect("lock")
            .iter()
            .map(|c| match c.progress(&shard) {
                Some(ShardProgress::After(seq)) => Some(seq.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn changes_within_an_interval_are_saved_together_at_its_end() {
        let stream: StreamArn =
            "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
                .parse()
                .expect("stream ARN");
        let store = Arc::new(Saves::default());
        let progress = Arc::new(Progress::new(
            store.clone(),
            Some(Checkpoint::new(stream)),
            ProgressMetrics::default(),
            Duration::from_secs(1),
            None,
        ));
        let stop = CancellationToken::new();
        let writer = tokio::spawn({
            let (progress, stop) = (progress.clone(), stop.clone());
            async move { progress.write_loop(stop).await }
        });
        let shard = ShardId::new("shardId-1");
        let seq = |n: u64| SequenceNumber::parse(&format!("{n:021}")).expect("digits");
        let step = Duration::from_millis(100);

        progress.advance(&shard, &seq(1));
        progress.commit();
        tokio::time::sleep(step).await;
        assert_eq!(
            saved(&store),
            vec![Some(seq(1))],
            "the first change at once"
        );

        for n in 2..=5 {
            progress.advance(&shard, &seq(n));
            progress.commit();
            tokio::time::sleep(step).await;
        }
        assert_eq!(saved(&store).len(), 1, "nothing more within the interval");

        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            saved(&store),
            vec![Some(seq(1)), Some(seq(5))],
            "the rest in one save when the interval ends"
        );

        stop.cancel();
        writer.await.expect("writer");
    }
}
