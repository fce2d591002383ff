//! Finds the table's stream and its shards, and keeps one task running per
//! readable shard, parents before children. Every shard the lineage allows
//! is read at once: none waits for another to close (an open shard may stay
//! open for hours). Memory is bounded by the records held
//! ([`dynamodb_source_stream::RecordsHeld`]), not by how many shards there are.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use dynamodb_source_api::{Report, SourceArn, StartingPosition, StreamArn};
use dynamodb_source_backoff::{Backoff, Growth, Jitter};
use dynamodb_source_stream::checkpoint::Checkpoint;
use dynamodb_source_stream::lineage::{self, Origin};
use dynamodb_source_stream::reader::ShardReader;
use dynamodb_source_stream::{
    Listing, ReadSize, ShardId, StreamClient, StreamError, StreamInfo, StreamStatus,
};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::health::Health;
use crate::lease::{Ended, Leases};
use crate::shard_task::{ShardExit, ShardTask, Shared};

pub(crate) struct Supervisor {
    pub client: StreamClient,
    pub arn: SourceArn,
    pub starting_position: StartingPosition,
    pub shared: Arc<Shared>,
    pub health: Arc<Health>,
    /// What each GetRecords call asks for, shared by the shards being read.
    pub read_size: ReadSize,
    pub discovery_interval: Duration,
    pub shutdown_timeout: Duration,
    /// Where shard tasks (delivery) run: the adapter's main thread, while
    /// discovery and reading run on the reading thread.
    pub delivery: Handle,
    /// The newest listing, which readers consult when a shard seems to end.
    pub listing: Arc<Listing>,
    /// With shard leases: only the shards this replica holds are read.
    pub leases: Option<Leases>,
}

struct Running {
    handle: JoinHandle<()>,
    cancel: CancellationToken,
}

/// The shards started by the first discovery that do not hold their
/// starting position yet; readiness waits until none is left.
struct FirstPositions {
    pending: AtomicUsize,
    health: Arc<Health>,
}

/// Dropped by a shard's reader once its first iterator is held.
struct PositionHeld(Arc<FirstPositions>);

impl Drop for PositionHeld {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            info!("every shard holds its starting position");
            self.0.health.positions_held();
        }
    }
}

/// Why the stream cannot be read yet; discovery retries with backoff.
#[derive(Debug, thiserror::Error)]
enum DiscoveryError {
    #[error("describing the table's stream")]
    Api(#[from] StreamError),
    #[error("table {table} has no stream: enable DynamoDB Streams on it")]
    NoStream { table: String },
    #[error("stream {stream} is {status:?} and has no shards")]
    NoShards {
        stream: StreamArn,
        status: StreamStatus,
    },
}

/// The shortest time between two discoveries that readers asked for.
const REQUESTED_DISCOVERY_GAP: Duration = Duration::from_secs(1);

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Supervisor {
    /// Runs until `cancel`; then gives shard tasks `shutdown_timeout` to finish
    /// their in-flight delivery before abandoning them.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(ShardId, ShardExit)>();
        let mut running: HashMap<ShardId, Running> = HashMap::new();
        let mut origin = match self.shared.progress.snapshot() {
            Some(_) => Origin::Resumed,
            None => Origin::FirstStart(self.starting_position),
        };
        // 2 s more after each failure in a row, up to a minute.
        let mut failures = Backoff::new(
            Growth::Linear,
            Duration::from_secs(2),
            Duration::from_secs(60),
            Jitter::None,
        );
        let mut first = true;
        let mut allowed = self.leases.as_ref().map(Leases::allowed);
        while !cancel.is_cancelled() {
            let wait = match self
                .discover(&mut origin, &mut running, &done_tx, &cancel, first)
                .await
            {
                Ok(()) => {
                    first = false;
                    failures.reset();
                    self.discovery_interval
                }
                Err(problem) => {
                    let wait = failures.next_wait();
                    warn!(problem = %Report(&problem), retry_in = ?wait, "the stream cannot be read yet");
                    wait
                }
            };
            let ended = |running: &mut HashMap<ShardId, Running>, shard: ShardId, exit| {
                running.remove(&shard);
                let how = match exit {
                    ShardExit::Gone(gone) => {
                        // ResourceNotFound for the shard itself: proven gone, so
                        // its progress is forgotten and its children go ahead.
                        warn!(shard = %shard, error = %Report(&gone), "shard is gone; its children no longer wait for it");
                        self.shared.progress.forget(&shard);
                        Ended::Done
                    }
                    ShardExit::Finished => Ended::Done,
                    ShardExit::Cancelled => Ended::Stopped,
                };
                if let Some(leases) = &self.leases {
                    leases.ended(shard, how);
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some((shard, exit)) = done_rx.recv() => {
                    ended(&mut running, shard, exit);
                    // Drain whatever else finished so one rediscovery covers them.
                    while let Ok((shard, exit)) = done_rx.try_recv() {
                        ended(&mut running, shard, exit);
                    }
                }
                Some(Ok(())) = async { match allowed.as_mut() {
                    Some(allowed) => Some(allowed.changed().await),
                    None => None,
                } } => {
                    // Shards taken or given up: start or stop their readers.
                    self.follow_leases(&running);
                }
                _ = self.listing.requested() => {
                    tokio::select! {
                        _ = tokio::time::sleep(REQUESTED_DISCOVERY_GAP) => {}
                        _ = cancel.cancelled() => break,
                    }
                }
                _ = cancel.cancelled() => break,
            }
        }
        info!(shards = running.len(), timeout = ?self.shutdown_timeout, "stopping shard tasks");
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        for (shard, task) in running {
            let abort = task.handle.abort_handle();
            if tokio::time::timeout_at(deadline, task.handle)
                .await
                .is_err()
            {
                warn!(shard = %shard, "abandoning an in-flight delivery at shutdown; it will be redelivered");
                abort.abort();
            }
        }
    }

    /// Stops the readers of shards whose lease is no longer held (they end,
    /// and the coordinator passes the lease on once their progress is saved).
    /// Shards newly held start at the next discovery, which reads the shared
    /// checkpoint first.
    fn follow_leases(&self, running: &HashMap<ShardId, Running>) {
        let Some(leases) = &self.leases else {
            return;
        };
        let allowed = leases.allowed().borrow().clone();
        for (shard, task) in running.iter() {
            if !allowed.contains(shard) && !task.cancel.is_cancelled() {
                info!(shard = %shard, "shard lease given up: reading stops");
                task.cancel.cancel();
            }
        }
    }

    /// The stream to read now: the pinned one, the one being drained, or the
    /// table's newest.
    async fn choose_stream(
        &self,
        origin: &mut Origin,
    ) -> Result<Option<(StreamArn, StreamInfo)>, StreamError> {
        if let SourceArn::Stream(pinned) = &self.arn {
            if self
                .shared
                .progress
                .snapshot()
                .is_some_and(|c| c.stream_arn != *pinned)
            {
                warn!(stream = %pinned, "the checkpoint belongs to another stream; starting this one afresh");
                self.shared
                    .progress
                    .replace(Checkpoint::new(pinned.clone()));
                *origin = Origin::FirstStart(self.starting_position);
            }
            let info = self.client.describe(pinned).await?;
            return Ok(Some((pinned.clone(), info)));
        }
        let table = self.arn.table().table();
        let newest = self.client.current_stream(table).await?;
        let checkpointed = self.shared.progress.snapshot().map(|c| c.stream_arn);
        match (checkpointed, newest) {
            (None, None) => Ok(None),
            (None, Some(newest)) => {
                let info = self.client.describe(&newest).await?;
                Ok(Some((newest, info)))
            }
            (Some(current), newest) => {
                let info = match self.client.describe(&current).await {
                    Ok(info) => Some(info),
                    Err(StreamError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                };
                let drained =
                    match &info {
                        None => true,
                        Some(info) => {
                            info.status == StreamStatus::Disabled
                                && self.shared.progress.snapshot().is_some_and(|c| {
                                    info.shards.iter().all(|s| c.is_finished(&s.id))
                                })
                        }
                    };
                match (info, newest) {
                    (Some(info), newest) if !drained || newest.as_ref() == Some(&current) => {
                        Ok(Some((current, info)))
                    }
                    (_, Some(newest)) => {
                        info!(old = %current, new = %newest, "the table's stream changed; the old one is read to its end, reading the new one from its beginning");
                        self.shared
                            .progress
                            .replace(Checkpoint::new(newest.clone()));
                        *origin = Origin::Resumed;
                        let info = self.client.describe(&newest).await?;
                        Ok(Some((newest, info)))
                    }
                    (Some(info), None) => Ok(Some((current, info))),
                    (None, None) => Ok(None),
                }
            }
        }
    }

    async fn discover(
        &self,
        origin: &mut Origin,
        running: &mut HashMap<ShardId, Running>,
        done: &mpsc::UnboundedSender<(ShardId, ShardExit)>,
        cancel: &CancellationToken,
        first: bool,
    ) -> Result<(), DiscoveryError> {
        let chosen = self.choose_stream(origin).await?;
        let Some((stream, info)) = chosen else {
            self.health.stream_described(false);
            return Err(DiscoveryError::NoStream {
                table: self.arn.table().to_string(),
            });
        };
        self.health.stream_described(true);
        if info.status != StreamStatus::Enabled && info.shards.is_empty() {
            return Err(DiscoveryError::NoShards {
                stream,
                status: info.status,
            });
        }
        if self.leases.is_some()
            && let Err(e) = self.shared.progress.refresh().await
        {
            warn!(error = %Report(&e), "reading the shared checkpoint failed; planning with what was read before");
        }
        if self.shared.progress.snapshot().is_none() {
            self.shared
                .progress
                .replace(Checkpoint::new(stream.clone()));
        }
        let Some(checkpoint) = self.shared.progress.snapshot() else {
            return Ok(());
        };
        self.listing.update(&info.shards);
        let listed: HashSet<&ShardId> = info.shards.iter().map(|s| &s.id).collect();
        self.shared
            .progress
            .note_listing(|id| listed.contains(id), now_unix());
        let busy: HashSet<ShardId> = running.keys().cloned().collect();
        let mut plan = lineage::plan(&info.shards, &checkpoint, &busy, *origin, now_unix());
        self.shared.progress.record(plan.record);
        *origin = Origin::Resumed;
        if let Some(leases) = &self.leases {
            let readable: BTreeSet<ShardId> = plan
                .start
                .iter()
                .map(|a| a.shard.clone())
                .chain(busy.iter().cloned())
                .collect();
            leases.readable(readable);
            let allowed = leases.allowed().borrow().clone();
            plan.start.retain(|a| allowed.contains(&a.shard));
        }

        let positions = first.then(|| {
            Arc::new(FirstPositions {
                // One more than the shards, released below once all started.
                pending: AtomicUsize::new(plan.start.len() + 1),
                health: self.health.clone(),
            })
        });
        for assignment in plan.start {
            info!(shard = %assignment.shard, start = ?assignment.start, "reading shard");
            let shard = assignment.shard.clone();
            let mut reader = ShardReader::new(
                self.client.clone(),
                stream.clone(),
                assignment,
                self.shared.stream_metrics.clone(),
                &self.read_size,
                self.listing.clone(),
            );
            if let Some(positions) = &positions {
                reader = reader.with_position_guard(Box::new(PositionHeld(positions.clone())));
            }
            let shard_cancel = cancel.child_token();
            let task = ShardTask {
                reader,
                stream: stream.clone(),
                shared: self.shared.clone(),
                cancel: shard_cancel.clone(),
            };
            let done = done.clone();
            let id = shard.clone();
            let span = info_span!("shard", shard = %id, stream = %stream);
            let handle = self.delivery.spawn(
                async move {
                    let exit = task.run().await;
                    let _ = done.send((id, exit));
                }
                .instrument(span),
            );
            running.insert(
                shard,
                Running {
                    handle,
                    cancel: shard_cancel,
                },
            );
        }
        if let Some(positions) = positions {
            drop(PositionHeld(positions));
        }
        Ok(())
    }
}
