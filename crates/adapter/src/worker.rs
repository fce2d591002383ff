//! One shard's task: read a batch, deliver its records in order, record
//! progress, repeat until the shard ends, disappears or shutdown comes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dynamodb_source_api::{EventNameFilter, StreamArn};
use dynamodb_source_delivery::metrics::{DeliveryMetrics, EventResult};
use dynamodb_source_delivery::{Deliverer, EventFactory, Outcome};
use dynamodb_source_stream::metrics::{ShardLabels, StreamMetrics};
use dynamodb_source_stream::reader::ShardGone;
use dynamodb_source_stream::{Batch, MalformedRecord, ShardId, ShardReader, StreamRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::progress::Progress;

/// Why a shard task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardExit {
    /// Read to its end; its children may start.
    Finished,
    /// The shard (or its stream) no longer exists.
    Gone(String),
    /// Shutdown.
    Cancelled,
}

/// What every shard task shares.
pub struct Shared {
    pub factory: EventFactory,
    pub deliverer: Deliverer,
    pub filter: EventNameFilter,
    pub progress: Arc<Progress>,
    pub stream_metrics: StreamMetrics,
    pub delivery_metrics: DeliveryMetrics,
    pub idle_poll_max: Duration,
    /// Events on the source, when the adapter knows it (in a cluster).
    pub events: Option<crate::events::SourceEvents>,
}

pub struct ShardTask {
    pub reader: ShardReader,
    pub stream: StreamArn,
    pub shared: Arc<Shared>,
    pub cancel: CancellationToken,
}

enum Step {
    Continue,
    Stop,
}

impl ShardTask {
    /// Reads ahead while delivering: the next batch is fetched while this one
    /// is delivered (one batch in hand at most), so GetRecords latency does not
    /// add to delivery time. Order is kept: batches arrive in read order.
    pub async fn run(self) -> ShardExit {
        let ShardTask {
            reader,
            stream,
            shared,
            cancel,
        } = self;
        let shard = reader.shard().clone();
        let (batches, mut ready) = mpsc::channel::<Result<Batch, ShardGone>>(1);
        let read_ahead = tokio::spawn(read_ahead(reader, batches, shared.clone(), cancel.clone()));
        let delivery = Delivery {
            shard: shard.clone(),
            stream,
            shared,
            cancel,
        };
        let exit = delivery.run(&mut ready).await;
        read_ahead.abort();
        exit
    }
}

/// Reads batches into `batches` until the shard ends, disappears, or delivery stops.
async fn read_ahead(
    mut reader: ShardReader,
    batches: mpsc::Sender<Result<Batch, ShardGone>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut idle = Duration::ZERO;
    loop {
        let batch = tokio::select! {
            batch = reader.next_batch() => batch,
            _ = cancel.cancelled() => return,
        };
        let last = match &batch {
            Ok(batch) => batch.end_of_shard,
            Err(_) => true,
        };
        let empty = matches!(&batch, Ok(b) if b.records.is_empty());
        if batches.send(batch).await.is_err() || last {
            return;
        }
        if empty {
            shared
                .stream_metrics
                .iterator_age_seconds
                .get_or_create(&ShardLabels {
                    shard: reader.shard().to_string(),
                })
                .set(0.0);
            // Idle shards are polled less and less often, down to one read per
            // `idle_poll_max`, which bounds the latency this adds.
            idle = (idle * 2).clamp(Duration::from_millis(50), shared.idle_poll_max);
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = cancel.cancelled() => return,
            }
        } else {
            idle = Duration::ZERO;
        }
    }
}

/// Delivers batches in order and records progress.
struct Delivery {
    shard: ShardId,
    stream: StreamArn,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Delivery {
    fn observe_age(&self, record: &StreamRecord) {
        if let Some(created) = record.approximate_creation {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            self.shared
                .stream_metrics
                .iterator_age_seconds
                .get_or_create(&ShardLabels {
                    shard: self.shard.to_string(),
                })
                .set((now - created.as_secs_f64()).max(0.0));
        }
    }

    async fn run(&self, ready: &mut mpsc::Receiver<Result<Batch, ShardGone>>) -> ShardExit {
        let shard = &self.shard;
        loop {
            let batch = tokio::select! {
                batch = ready.recv() => batch,
                _ = self.cancel.cancelled() => return ShardExit::Cancelled,
            };
            let batch = match batch {
                Some(Ok(batch)) => batch,
                Some(Err(gone)) => return ShardExit::Gone(gone.reason),
                None => return ShardExit::Cancelled,
            };
            if let Some(trimmed) = &batch.trimmed {
                error!(shard = %shard, %trimmed, "records were lost to the stream's 24-hour retention before they could be read");
                if let Some(events) = &self.shared.events {
                    events.warn("TrimmedData", trimmed).await;
                }
            }
            if let Some(Ok(newest)) = batch.records.last() {
                self.observe_age(newest);
            }
            for record in &batch.records {
                if self.cancel.is_cancelled() {
                    self.shared.progress.commit();
                    return ShardExit::Cancelled;
                }
                let step = match record {
                    Ok(record) => self.handle(record, batch.skips(record)).await,
                    Err(malformed) => self.handle_malformed(malformed).await,
                };
                if let Step::Stop = step {
                    self.shared.progress.commit();
                    return ShardExit::Cancelled;
                }
            }
            // One save per batch: a crash repeats at most the batch in flight.
            self.shared.progress.commit();
            if batch.end_of_shard {
                info!(shard = %shard, "shard read to its end");
                self.shared.progress.finish(shard);
                return ShardExit::Finished;
            }
        }
    }

    async fn handle(&self, record: &StreamRecord, skip: bool) -> Step {
        let shard = &self.shard;
        if skip {
            self.shared.progress.advance(shard, &record.sequence_number);
            return Step::Continue;
        }
        if !self.shared.filter.admits(record.event_name) {
            self.shared.delivery_metrics.event(EventResult::Filtered);
            self.shared.progress.advance(shard, &record.sequence_number);
            return Step::Continue;
        }
        let outcome = match self.shared.factory.build(record, &self.stream) {
            Ok(event) => self.shared.deliverer.deliver(event, &self.cancel).await,
            Err(e) => {
                let event = self.shared.factory.malformed(
                    &record.event_id,
                    &e.to_string(),
                    &format!("{record:?}"),
                );
                error!(shard = %shard, id = %record.event_id, error = %e, "the record cannot be turned into an event");
                self.dead_letter_malformed(event, &e.to_string()).await
            }
        };
        match outcome {
            Outcome::Cancelled => Step::Stop,
            Outcome::Delivered | Outcome::DeadLettered => {
                self.shared.progress.advance(shard, &record.sequence_number);
                Step::Continue
            }
        }
    }

    async fn handle_malformed(&self, malformed: &MalformedRecord) -> Step {
        error!(shard = %self.shard, error = %malformed, raw = %malformed.raw, "malformed stream record");
        let event = self.shared.factory.from_malformed(malformed);
        match self.dead_letter_malformed(event, &malformed.reason).await {
            Outcome::Cancelled => Step::Stop,
            Outcome::Delivered | Outcome::DeadLettered => {
                if let Some(seq) = &malformed.sequence_number {
                    self.shared.progress.advance(&self.shard, seq);
                }
                Step::Continue
            }
        }
    }

    /// A malformed record never becomes well formed: it goes to the dead-letter
    /// sink, or, without one, is logged, counted and passed over so the shard
    /// does not stall forever.
    async fn dead_letter_malformed(&self, event: cloudevents::Event, reason: &str) -> Outcome {
        if self.shared.deliverer.has_dead_letter_sink() {
            self.shared
                .deliverer
                .dead_letter_malformed(event, reason, &self.cancel)
                .await
        } else {
            self.shared.delivery_metrics.event(EventResult::Dropped);
            error!(
                reason,
                "no dead-letter sink configured: the malformed record is logged above and skipped"
            );
            Outcome::DeadLettered
        }
    }
}
