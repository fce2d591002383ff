//! One shard's task: read a batch, deliver its records in order, record
//! progress, repeat until the shard ends, disappears or shutdown comes.
//!
//! Two stages per shard: one reads the next batch and turns it into encoded
//! requests on the reading thread ([`crate::reading`]) while the other
//! delivers the current one on the adapter's main thread. Order is kept
//! (batches pass through in read order) and only delivery touches the
//! checkpoint.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dynamodb_source_api::{EventNameFilter, StreamArn};
use dynamodb_source_delivery::metrics::{DeliveryMetrics, EventResult};
use dynamodb_source_delivery::{
    Connections, Deliverer, EventError, EventFactory, Outcome, Prepared,
};
use dynamodb_source_stream::metrics::{ShardLabels, StreamMetrics};
use dynamodb_source_stream::reader::{self, ShardGone};
use dynamodb_source_stream::{
    Batch, MalformedRecord, SequenceNumber, ShardId, ShardReader, StreamRecord,
};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
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
    /// The runtime of the reading thread ([`crate::reading`]).
    pub reading: Handle,
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

/// What delivery does with one record of a batch.
// Nearly every item is `Send`: boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Item {
    /// Ready to send.
    Send {
        sequence: SequenceNumber,
        event: Prepared,
    },
    /// Checkpointed past without delivery: it predates a replaced `LATEST` start.
    Skip(SequenceNumber),
    /// Checkpointed past without delivery: `EVENT_NAMES` leaves it out.
    Filtered(SequenceNumber),
    /// A record whose event could not be built.
    Unbuildable {
        record: Box<StreamRecord>,
        error: EventError,
    },
    Malformed(Box<MalformedRecord>),
}

/// A batch turned into items, in read order.
struct Ready {
    items: Vec<Item>,
    end_of_shard: bool,
    trimmed: Option<String>,
    /// When the newest record of the batch was written, for the iterator age.
    newest: Option<f64>,
}

impl Ready {
    /// Each record is dropped as soon as its request is built, so a batch is
    /// not held twice.
    async fn prepare(mut batch: Batch, shared: &Shared, stream: &StreamArn) -> Ready {
        let records = std::mem::take(&mut batch.records);
        let newest = records
            .iter()
            .rev()
            .find_map(|r| r.as_ref().ok())
            .and_then(|r| r.approximate_creation)
            .map(|t| t.as_secs_f64());
        let mut items = Vec::with_capacity(records.len());
        for (n, record) in records.into_iter().enumerate() {
            if n % reader::TURN == reader::TURN - 1 {
                tokio::task::yield_now().await;
            }
            items.push(match record {
                Err(malformed) => Item::Malformed(Box::new(malformed)),
                Ok(record) => {
                    if batch.skips(&record) {
                        Item::Skip(record.sequence_number)
                    } else if !shared.filter.admits(record.event_name) {
                        Item::Filtered(record.sequence_number)
                    } else {
                        match shared.factory.build(&record, stream) {
                            Ok(event) => Item::Send {
                                sequence: record.sequence_number,
                                event: shared.deliverer.prepare(event),
                            },
                            Err(error) => Item::Unbuildable {
                                record: Box::new(record),
                                error,
                            },
                        }
                    }
                }
            });
        }
        Ready {
            items,
            end_of_shard: batch.end_of_shard,
            trimmed: batch.trimmed,
            newest,
        }
    }
}

impl ShardTask {
    /// Reads ahead while delivering: the next batch is fetched and encoded
    /// on the reading thread while this one is delivered (two batches at
    /// most), so neither GetRecords latency nor encoding adds to delivery
    /// time. Order is kept: batches arrive in read order. The task also
    /// drives its own connection to the sink, so an answer is read and the
    /// next request written in one poll.
    pub async fn run(self) -> ShardExit {
        let ShardTask {
            reader,
            stream,
            shared,
            cancel,
        } = self;
        let shard = reader.shard().clone();
        let (batches, mut ready) = mpsc::channel::<Result<Ready, ShardGone>>(1);
        let (spent, returned) = mpsc::unbounded_channel();
        let read = shared.reading.spawn(read_ahead(
            reader,
            stream,
            batches,
            returned,
            shared.clone(),
            cancel.clone(),
        ));
        // Whichever way delivery ends, reading for it stops too.
        let _read = AbortOnDropHandle::new(read);
        let mut delivery = Delivery {
            shard,
            connections: shared.deliverer.connections(),
            shared,
            cancel,
            spent,
        };
        delivery.run(&mut ready).await
    }
}

/// Reads and prepares batches into `batches` until the shard ends,
/// disappears, or delivery stops. A batch is read only once the previous one
/// was taken, so a shard holds two batches at most: one being delivered, one
/// ready.
///
/// Delivered batches come back through `returned` to be freed here, on the
/// thread that allocated them: glibc frees across threads through the
/// allocating arena's lock, and the two threads then wait on each other
/// (a tenth of both threads' time with eight shards).
async fn read_ahead(
    mut reader: ShardReader,
    stream: StreamArn,
    batches: mpsc::Sender<Result<Ready, ShardGone>>,
    mut returned: mpsc::UnboundedReceiver<Ready>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut idle = Duration::ZERO;
    loop {
        let Ok(slot) = batches.reserve().await else {
            return;
        };
        while let Ok(spent) = returned.try_recv() {
            drop(spent);
        }
        let batch = tokio::select! {
            batch = reader.next_batch() => batch,
            _ = cancel.cancelled() => return,
        };
        let last = match &batch {
            Ok(batch) => batch.end_of_shard,
            Err(_) => true,
        };
        let empty = matches!(&batch, Ok(b) if b.records.is_empty());
        let ready = match batch {
            Ok(batch) => Ok(Ready::prepare(batch, &shared, &stream).await),
            Err(gone) => Err(gone),
        };
        slot.send(ready);
        if last {
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
    shared: Arc<Shared>,
    cancel: CancellationToken,
    connections: Connections,
    /// Delivered batches, back to the reading side to be freed.
    spent: mpsc::UnboundedSender<Ready>,
}

impl Delivery {
    fn observe_age(&self, created: f64) {
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
            .set((now - created).max(0.0));
    }

    async fn run(&mut self, ready: &mut mpsc::Receiver<Result<Ready, ShardGone>>) -> ShardExit {
        let shard = self.shard.clone();
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
            if let Some(newest) = batch.newest {
                self.observe_age(newest);
            }
            for item in &batch.items {
                if self.cancel.is_cancelled() {
                    self.shared.progress.commit();
                    return ShardExit::Cancelled;
                }
                let step = self.handle(item).await;
                if let Step::Stop = step {
                    self.shared.progress.commit();
                    return ShardExit::Cancelled;
                }
            }
            // A save per batch at most (the writer keeps them an interval
            // apart): a crash repeats what was acknowledged since the last one.
            self.shared.progress.commit();
            let end_of_shard = batch.end_of_shard;
            // Reading stops only after delivery has, so this fails only at the end.
            let _ = self.spent.send(batch);
            if end_of_shard {
                info!(shard = %shard, "shard read to its end");
                self.shared.progress.finish(&shard);
                return ShardExit::Finished;
            }
        }
    }

    async fn handle(&mut self, item: &Item) -> Step {
        let (outcome, sequence) = match item {
            Item::Skip(sequence) => (Outcome::Delivered, sequence),
            Item::Filtered(sequence) => {
                self.shared.delivery_metrics.event(EventResult::Filtered);
                (Outcome::Delivered, sequence)
            }
            Item::Send { sequence, event } => (
                self.shared
                    .deliverer
                    .send(&mut self.connections, event, &self.cancel)
                    .await,
                sequence,
            ),
            Item::Unbuildable { record, error } => {
                let reason = error.to_string();
                let event = self.shared.factory.malformed(
                    &record.event_id,
                    &reason,
                    &format!("{record:?}"),
                );
                error!(shard = %self.shard, id = %record.event_id, %error, "the record cannot be turned into an event");
                let outcome = self.dead_letter_malformed(event, &reason).await;
                (outcome, &record.sequence_number)
            }
            Item::Malformed(malformed) => return self.handle_malformed(malformed).await,
        };
        match outcome {
            Outcome::Cancelled => Step::Stop,
            Outcome::Delivered | Outcome::DeadLettered => {
                self.shared.progress.advance(&self.shard, sequence);
                Step::Continue
            }
        }
    }

    async fn handle_malformed(&mut self, malformed: &MalformedRecord) -> Step {
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
    async fn dead_letter_malformed(&mut self, event: cloudevents::Event, reason: &str) -> Outcome {
        if self.shared.deliverer.has_dead_letter_sink() {
            self.shared
                .deliverer
                .dead_letter_malformed(&mut self.connections, event, reason, &self.cancel)
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
