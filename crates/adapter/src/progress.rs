//! The adapter's progress: updated by shard tasks as the sink acknowledges,
//! written to the checkpoint store by one writer so saves never race and a
//! burst of updates costs one write.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dynamodb_source_stream::checkpoint::{
    Checkpoint, CheckpointError, CheckpointStore, ShardProgress,
};
use dynamodb_source_stream::label_enum;
use dynamodb_source_stream::{SequenceNumber, ShardId};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error};

label_enum! {
    pub enum WriteResult {
        Ok => "ok",
        Error => "error",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub result: WriteResult,
}

#[derive(Debug, Clone, Default)]
pub struct ProgressMetrics {
    pub writes: Family<WriteLabels, Counter>,
}

impl ProgressMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynamodb_source_checkpoint_writes",
            "Checkpoint saves by result",
            self.writes.clone(),
        );
    }
}

struct State {
    checkpoint: Option<Checkpoint>,
    /// Bumped by every change; the writer saves when it differs from `saved`.
    generation: u64,
    saved: u64,
}

pub struct Progress {
    state: Mutex<State>,
    changed: Notify,
    store: Arc<dyn CheckpointStore>,
    metrics: ProgressMetrics,
}

impl Progress {
    pub fn new(
        store: Arc<dyn CheckpointStore>,
        loaded: Option<Checkpoint>,
        metrics: ProgressMetrics,
    ) -> Self {
        Progress {
            state: Mutex::new(State {
                checkpoint: loaded,
                generation: 0,
                saved: 0,
            }),
            changed: Notify::new(),
            store,
            metrics,
        }
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
    /// batch rather than per record: saves stay cheap, and a crash repeats at
    /// most the batch that was in flight.
    pub fn commit(&self) {
        self.changed.notify_one();
    }

    pub fn snapshot(&self) -> Option<Checkpoint> {
        self.lock().checkpoint.clone()
    }

    /// Starts tracking a stream afresh (first start, or the table's stream changed).
    pub fn replace(&self, checkpoint: Checkpoint) {
        let mut state = self.lock();
        state.checkpoint = Some(checkpoint);
        state.generation += 1;
        drop(state);
        self.changed.notify_one();
    }

    /// Records an acknowledgement; saved at the next commit.
    pub fn advance(&self, shard: &ShardId, sequence_number: &SequenceNumber) {
        self.stage(|c| c.advance(shard, sequence_number));
    }

    pub fn finish(&self, shard: &ShardId) {
        self.update(|c| c.finish(shard));
    }

    pub fn record(&self, entries: impl IntoIterator<Item = (ShardId, ShardProgress)>) {
        self.update(|c| c.shards.extend(entries));
    }

    pub fn retain_shards(&self, listed: impl Fn(&ShardId) -> bool) {
        self.update(|c| c.retain_shards(listed));
    }

    /// Saves the newest state if it changed since the last save.
    pub async fn flush(&self) -> Result<(), CheckpointError> {
        let (checkpoint, generation) = {
            let state = self.lock();
            if state.generation == state.saved {
                return Ok(());
            }
            match &state.checkpoint {
                Some(checkpoint) => (checkpoint.clone(), state.generation),
                None => return Ok(()),
            }
        };
        match self.store.save(&checkpoint).await {
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

    /// Saves after every change until `stop`, retrying failed saves.
    pub async fn write_loop(&self, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = stop.cancelled() => return,
            }
            loop {
                match self.flush().await {
                    Ok(()) => {
                        failures = 0;
                        break;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let pause = Duration::from_millis(200).saturating_mul(failures.min(50));
                        error!(error = %e, ?pause, "saving the checkpoint failed; delivery goes on and the save is retried");
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
