//! One shard's task: read batches, deliver their records, record progress,
//! until the shard ends, disappears or shutdown comes.
//!
//! Two stages per shard: one reads the next batch and turns it into encoded
//! requests on the reading thread ([`crate::reading`]) while the other
//! delivers on the adapter's main thread. Delivery sends the records of
//! different items at the same time, up to the shard's parallelism, and the
//! records of one item one after another in stream order ([`Window`]); only
//! delivery touches the checkpoint, and it never passes an unsettled record.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dynamodb_source_api::{EventNameFilter, FilterPatterns, StreamArn};
use dynamodb_source_backoff::{Backoff, Growth, Jitter};
use dynamodb_source_delivery::metrics::{DeliveryMetrics, EventResult};
use dynamodb_source_delivery::{Connections, Deliverer, EventError, Outcome, Pacing, Prepared};
use dynamodb_source_stream::metrics::StreamMetrics;
use dynamodb_source_stream::reader::{self, Batch, ShardGone, ShardReader};
use dynamodb_source_stream::{
    Held, MalformedRecord, RecordsHeld, SequenceNumber, ShardId, StreamRecord,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{Instrument, Span, error, info};

use crate::connection_pool::{Checkout, ConnectionPool};
use crate::progress::Progress;
use crate::window::Window;

/// Records a shard holds between the oldest unsettled one and the newest
/// read, settled or not; when the window is full the shard stops reading.
/// It bounds how far other keys run ahead of one whose record is retried.
const WINDOW: usize = 1000;

/// Settled records go to the reading thread to be freed in groups of this
/// many, so a busy shard wakes that thread once per group, not once per
/// event. Their permits come back only with them, so a smaller group goes
/// when the shard has nothing in flight, when the budget of records runs
/// low, or [`FREE_WAIT`] after its first record settled: sends that are
/// slow, or paused by a sink's `Retry-After`, must not keep a group's
/// permits from the other shards.
const FREE_GROUP: usize = 32;
/// The longest a settled record waits for its group to fill.
const FREE_WAIT: Duration = Duration::from_millis(10);

/// Why a shard task ended.
#[derive(Debug)]
pub(crate) enum ShardExit {
    /// Read to its end; its children may start.
    Finished,
    /// The shard (or its stream) no longer exists.
    Gone(ShardGone),
    /// Shutdown.
    Cancelled,
}

/// What every shard task shares.
pub(crate) struct Shared {
    /// Makes the events too (`Deliverer::factory`).
    pub deliverer: Deliverer,
    pub filter: EventNameFilter,
    /// `FILTER_PATTERNS`: looked at only when the event name passes.
    pub patterns: FilterPatterns,
    pub progress: Arc<Progress>,
    pub stream_metrics: StreamMetrics,
    pub delivery_metrics: DeliveryMetrics,
    pub idle_poll_max: Duration,
    /// Events on the source, when the adapter knows it (in a cluster).
    pub events: Option<crate::source_events::SourceEvents>,
    /// The runtime of the reading thread ([`crate::reading`]).
    pub reading: Handle,
    /// Events in flight per shard at most.
    pub parallelism: usize,
    /// Records held by all shards together.
    pub held: RecordsHeld,
    /// Connections to the sink, all shards together.
    pub pool: ConnectionPool<Connections>,
    /// Where settled records go to be freed.
    pub freer: Freer,
}

/// Frees settled records on the reading thread, which allocated them.
///
/// glibc frees a block through the lock of the arena it came from, so when
/// the delivery thread freed what the reading thread allocated, the two
/// queued on that lock (8-10% of each thread's samples were futex waits
/// inside malloc and free; BENCHMARKS.md). Records once went back to their
/// own shard's reading task in groups of 64, freed only between two reads,
/// which kept up to 64 delivered events per shard alive outside the records
/// budget; now each shard hands what it settled, in groups of
/// [`FREE_GROUP`], to one task on the reading thread that frees it at once.
///
/// The records' permits travel with them and go back only once they are
/// freed. Released at settling instead, they let the reading thread read on
/// while its own freeing task, one among hundreds of shard readers, fell
/// behind: with 300 shards the queue held tens of thousands of delivered
/// events and peak RSS was 79-83 MiB against a budget of 2,000 records.
#[derive(Clone)]
pub(crate) struct Freer(mpsc::UnboundedSender<Spent>);

/// Settled records and their permits.
struct Spent {
    records: Vec<Work>,
    held: Held,
}

impl Freer {
    /// Starts the freeing task on the reading thread's runtime.
    pub(crate) fn start(reading: &Handle) -> Freer {
        let (spent, mut freed) = mpsc::unbounded_channel::<Spent>();
        reading.spawn(async move {
            while let Some(Spent { records, held }) = freed.recv().await {
                drop(records);
                drop(held);
            }
        });
        Freer(spent)
    }

    fn free(&self, records: Vec<Work>, held: Held) {
        // The task ends only with the reading runtime; after that, dropping
        // here is all that is left to do.
        let _ = self.0.send(Spent { records, held });
    }
}

pub(crate) struct ShardTask {
    pub reader: ShardReader,
    pub stream: StreamArn,
    pub shared: Arc<Shared>,
    pub cancel: CancellationToken,
}

/// One record of a batch, as delivery takes it.
struct Entry {
    /// Where the checkpoint may move once it is settled; a malformed record
    /// may have none.
    sequence: Option<SequenceNumber>,
    /// The item key's hash: records with equal keys are sent in order. `None`
    /// for records that order with nothing (malformed ones).
    key: Option<u64>,
    taken: Taken,
}

/// Whether a record is delivered or passed over.
// Nearly every record is delivered: boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Taken {
    Deliver(Work),
    /// Checkpointed past without delivery: it predates a replaced `LATEST` start.
    Skip,
    /// Checkpointed past without delivery: `EVENT_NAMES` or `FILTER_PATTERNS` leave it out.
    Filtered,
}

/// What delivery does with one record it sends somewhere.
// Nearly every record is `Send`: boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    /// Ready to send.
    Send(Prepared),
    /// A record whose event could not be built.
    Unbuildable {
        record: Box<StreamRecord>,
        error: EventError,
    },
    Malformed(Box<MalformedRecord>),
}

/// The key of a record's item, from its `subject` as its request carries it
/// (the rendered item key); records without one share a key, so they keep
/// their order too.
fn key_of(subject: Option<&[u8]>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    subject.hash(&mut hasher);
    hasher.finish()
}

/// A batch turned into items, in read order.
struct Ready {
    items: Vec<Entry>,
    end_of_shard: bool,
    trimmed: Option<String>,
    /// When the newest record of the batch was written, for the iterator age.
    newest: Option<f64>,
    /// Permits for the batch's records.
    held: Held,
}

/// Whether the patterns pass `record`, looked at as the `AWS` payload format
/// presents it (whatever format the events use), as Lambda filters it.
fn admitted_by_patterns(
    patterns: &FilterPatterns,
    record: &StreamRecord,
    stream: &StreamArn,
) -> bool {
    if patterns.is_empty() {
        return true;
    }
    match dynamodb_source_delivery::format::aws::to_value(record, stream) {
        Ok(view) => patterns.admits(&view),
        // A record that cannot be seen as JSON goes on to delivery, whose
        // encoding reports it (and dead-letters it) rather than dropping it here.
        Err(_) => true,
    }
}

impl Ready {
    /// Each record is dropped as soon as its request is built, so a batch is
    /// not held twice.
    async fn prepare(mut batch: Batch, held: Held, shared: &Shared, stream: &StreamArn) -> Ready {
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
                Err(malformed) => Entry {
                    sequence: malformed.sequence_number.clone(),
                    key: None,
                    taken: Taken::Deliver(Work::Malformed(Box::new(malformed))),
                },
                Ok(record) => {
                    if batch.skips(&record) {
                        Entry {
                            sequence: Some(record.sequence_number),
                            key: None,
                            taken: Taken::Skip,
                        }
                    } else if !shared.filter.admits(record.event_name)
                        || !admitted_by_patterns(&shared.patterns, &record, stream)
                    {
                        Entry {
                            sequence: Some(record.sequence_number),
                            key: None,
                            taken: Taken::Filtered,
                        }
                    } else {
                        match shared.deliverer.prepare_record(&record, stream) {
                            Ok(prepared) => Entry {
                                sequence: Some(record.sequence_number),
                                key: Some(key_of(prepared.subject())),
                                taken: Taken::Deliver(Work::Send(prepared)),
                            },
                            Err(error) => Entry {
                                sequence: Some(record.sequence_number.clone()),
                                key: None,
                                taken: Taken::Deliver(Work::Unbuildable {
                                    record: Box::new(record),
                                    error,
                                }),
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
            held,
        }
    }
}

impl ShardTask {
    /// Reads ahead while delivering: the next batch is fetched and encoded
    /// on the reading thread while earlier ones are delivered, so neither
    /// GetRecords latency nor encoding adds to delivery time.
    pub(crate) async fn run(self) -> ShardExit {
        let ShardTask {
            reader,
            stream,
            shared,
            cancel,
        } = self;
        let shard = reader.shard().clone();
        let shard_name = shard.to_string();
        let (batches, mut ready) = mpsc::channel::<Result<Ready, ShardGone>>(1);
        // Reading runs on the reading thread in this task's span (shard, stream).
        let read = shared.reading.spawn(
            read_ahead(reader, stream, batches, shared.clone(), cancel.clone())
                .instrument(Span::current()),
        );
        // Whichever way delivery ends, reading for it stops too.
        let _read = AbortOnDropHandle::new(read);
        shared.stream_metrics.shards_read.inc();
        let mut delivery = Delivery {
            shard,
            held: Held::none(&shared.held),
            shared: shared.clone(),
            cancel,
            pacing: Arc::new(Pacing::default()),
            settled: Vec::new(),
            settled_held: Held::none(&shared.held),
        };
        let exit = delivery.run(&mut ready).await;
        shared.stream_metrics.shards_read.dec();
        shared.stream_metrics.forget_iterator_age(&shard_name);
        exit
    }
}

/// Reads and prepares batches into `batches` until the shard ends,
/// disappears, or delivery stops. A batch is read only once the previous one
/// was taken, and only with permits for its records ([`RecordsHeld`]).
async fn read_ahead(
    mut reader: ShardReader,
    stream: StreamArn,
    batches: mpsc::Sender<Result<Ready, ShardGone>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    // Idle shards are polled less and less often, 50 ms doubling to one read
    // per `idle_poll_max`, which bounds the latency this adds.
    let mut idle = Backoff::new(
        Growth::Exponential,
        Duration::from_millis(50),
        shared.idle_poll_max,
        Jitter::None,
    );
    loop {
        let Ok(slot) = batches.reserve().await else {
            return;
        };
        let mut held = tokio::select! {
            held = shared.held.acquire(reader.read_limit()) => held,
            _ = cancel.cancelled() => return,
        };
        // Boxed: the SDK call's future is kilobytes, and inline it would
        // make every shard's task that size, idle or not.
        let batch = tokio::select! {
            batch = Box::pin(reader.next_batch(held.count())) => batch,
            _ = cancel.cancelled() => return,
        };
        let last = match &batch {
            Ok(batch) => batch.end_of_shard,
            Err(_) => true,
        };
        let empty = matches!(&batch, Ok(b) if b.records.is_empty());
        let ready = match batch {
            Ok(batch) => {
                held.keep(batch.records.len());
                Ok(Ready::prepare(batch, held, &shared, &stream).await)
            }
            Err(gone) => Err(gone),
        };
        slot.send(ready);
        if last {
            return;
        }
        if empty {
            shared
                .stream_metrics
                .set_iterator_age(&reader.shard().to_string(), 0.0);
            tokio::select! {
                _ = tokio::time::sleep(idle.next_wait()) => {}
                _ = cancel.cancelled() => return,
            }
        } else {
            idle.reset();
        }
    }
}

/// A send that finished: its record and its place, the connections it
/// used, and how it went.
struct Done {
    index: u64,
    work: Work,
    checkout: Checkout<Connections>,
    outcome: Outcome,
}

type Sending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A shard's place in the queue for a connection of the pool.
type Connecting = Pin<Box<dyn Future<Output = Checkout<Connections>> + Send>>;

/// The connection `connecting` waits for; never ready without one.
async fn connected(connecting: &mut Option<Connecting>) -> Checkout<Connections> {
    match connecting {
        Some(connecting) => connecting.await,
        None => std::future::pending().await,
    }
}

/// Delivers one shard's records and records its progress.
struct Delivery {
    shard: ShardId,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    /// Permits of the records in the window.
    held: Held,
    pacing: Arc<Pacing>,
    /// Records whose sends ended, to be freed on the reading thread.
    settled: Vec<Work>,
    /// The permits of `settled`'s acknowledged and dead-lettered records.
    settled_held: Held,
}

/// How the last batch of a shard left it.
enum Ending {
    Reading,
    EndOfShard,
    Gone(ShardGone),
    /// The reading side stopped (shutdown).
    Stopped,
}

impl Delivery {
    fn observe_age(&self, created: f64) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.shared
            .stream_metrics
            .set_iterator_age(&self.shard.to_string(), (now - created).max(0.0));
    }

    async fn run(&mut self, ready: &mut mpsc::Receiver<Result<Ready, ShardGone>>) -> ShardExit {
        let mut window: Window<Work> = Window::default();
        let mut sending: FuturesUnordered<Sending> = FuturesUnordered::new();
        // A send starts only once it has a connection, and a shard waits for
        // one connection at a time: with every send of every shard waiting
        // in the pool's queue, 300 shards parked about 6,000 sends of some
        // 700 bytes each behind the pool's connections (4 MB of the heap).
        let mut connecting: Option<Connecting> = None;
        let mut checkout: Option<Checkout<Connections>> = None;
        // When the group of settled records goes at the latest ([`FREE_WAIT`]).
        let free_by = tokio::time::sleep(FREE_WAIT);
        tokio::pin!(free_by);
        let mut free_armed = false;
        let mut ending = Ending::Reading;
        let mut stopping = false;
        loop {
            let paced = self.pacing.held_until();
            // Shutdown may have come while this round's sends finished.
            stopping |= self.cancel.is_cancelled();
            if !stopping && paced.is_none() {
                while sending.len() < self.shared.parallelism && window.has_ready() {
                    let Some(connection) = checkout.take().or_else(|| {
                        self.shared
                            .pool
                            .try_take(|| self.shared.deliverer.connections())
                    }) else {
                        connecting.get_or_insert_with(|| self.connect());
                        break;
                    };
                    let Some((index, item)) = window.next() else {
                        checkout = Some(connection);
                        break;
                    };
                    sending.push(self.start(index, item, connection));
                }
            } else {
                // Paused or stopping: the place in the queue goes.
                connecting = None;
            }
            // A connection this round did not use goes back for others.
            if let Some(connection) = checkout.take() {
                self.shared.pool.give_back(connection);
            }
            if let Some(sequence) = window.advance() {
                self.shared.progress.advance(&self.shard, &sequence);
                self.shared.progress.commit();
            }
            if self.settled.len() >= FREE_GROUP
                || sending.is_empty()
                || self.shared.held.available() < FREE_GROUP
            {
                self.free_settled();
                free_armed = false;
            } else if !self.settled.is_empty() && !free_armed {
                free_by
                    .as_mut()
                    .reset(tokio::time::Instant::now() + FREE_WAIT);
                free_armed = true;
            }
            if sending.is_empty() {
                if stopping {
                    self.shared.progress.commit();
                    return ShardExit::Cancelled;
                }
                if window.unsettled() == 0 {
                    match std::mem::replace(&mut ending, Ending::Reading) {
                        Ending::Reading => {}
                        Ending::EndOfShard => {
                            info!("shard read to its end");
                            self.shared.progress.finish(&self.shard);
                            return ShardExit::Finished;
                        }
                        Ending::Gone(gone) => return ShardExit::Gone(gone),
                        Ending::Stopped => return ShardExit::Cancelled,
                    }
                }
            }
            // Sends close idle connections as they give theirs back; a shard
            // with none in flight does it for a pool nobody sends on.
            if sending.is_empty() {
                self.shared.pool.close_idle();
            }
            let room = matches!(ending, Ending::Reading) && !stopping && window.len() < WINDOW;
            let wait_pacing = paced.filter(|_| window.has_ready() && !stopping);
            tokio::select! {
                biased;
                Some(done) = sending.next(), if !sending.is_empty() => {
                    self.finish(&mut window, done, &mut stopping);
                }
                connection = connected(&mut connecting), if connecting.is_some() => {
                    connecting = None;
                    checkout = Some(connection);
                }
                () = &mut free_by, if free_armed => {
                    self.free_settled();
                    free_armed = false;
                }
                batch = ready.recv(), if room => match batch {
                    Some(Ok(batch)) => {
                        if batch.end_of_shard {
                            ending = Ending::EndOfShard;
                        }
                        self.take(&mut window, batch).await;
                    }
                    Some(Err(gone)) => ending = Ending::Gone(gone),
                    None => ending = Ending::Stopped,
                },
                _ = pace(wait_pacing), if wait_pacing.is_some() => {}
                _ = self.cancel.cancelled(), if !stopping => stopping = true,
            }
        }
    }

    /// Puts a batch's records into the window.
    async fn take(&mut self, window: &mut Window<Work>, batch: Ready) {
        let Ready {
            items,
            trimmed,
            newest,
            held,
            ..
        } = batch;
        if let Some(trimmed) = &trimmed {
            error!(%trimmed, "records were lost to the stream's 24-hour retention before they could be read");
            if let Some(events) = &self.shared.events {
                // Boxed: rare, and a Kubernetes call would otherwise size
                // every shard's delivery task.
                Box::pin(events.warn("TrimmedData", trimmed)).await;
            }
        }
        if let Some(newest) = newest {
            self.observe_age(newest);
        }
        self.held.absorb(held);
        let mut settled = 0;
        for Entry {
            sequence,
            key,
            taken,
        } in items
        {
            match taken {
                Taken::Skip => {
                    settled += 1;
                    window.push(sequence, None, None);
                }
                Taken::Filtered => {
                    settled += 1;
                    self.shared.delivery_metrics.event(EventResult::Filtered);
                    window.push(sequence, None, None);
                }
                Taken::Deliver(work) => window.push(sequence, key, Some(work)),
            }
        }
        self.held.release(settled);
    }

    /// Hands the settled records, with their permits, to the reading thread.
    fn free_settled(&mut self) {
        if !self.settled.is_empty() {
            let held = self.settled_held.split(self.settled_held.count());
            self.shared
                .freer
                .free(std::mem::take(&mut self.settled), held);
        }
    }

    /// Waits in the pool's queue for a connection.
    fn connect(&self) -> Connecting {
        let shared = self.shared.clone();
        Box::pin(async move { shared.pool.take(|| shared.deliverer.connections()).await })
    }

    /// Starts sending one record on `checkout`'s connection.
    fn start(&mut self, index: u64, work: Work, mut checkout: Checkout<Connections>) -> Sending {
        let shared = self.shared.clone();
        let pacing = self.pacing.clone();
        let cancel = self.cancel.clone();
        Box::pin(async move {
            shared.delivery_metrics.in_flight.inc();
            let connections = &mut checkout.connections;
            let outcome = match &work {
                Work::Send(event) => {
                    shared
                        .deliverer
                        .send(connections, event, &pacing, &cancel)
                        .await
                }
                Work::Unbuildable { record, error } => {
                    let reason = error.to_string();
                    let event = shared.deliverer.factory().malformed(
                        &record.event_id,
                        &reason,
                        &format!("{record:?}"),
                    );
                    error!(id = %record.event_id, %error, "the record cannot be turned into an event");
                    dead_letter_malformed(&shared, connections, event, &reason, &cancel).await
                }
                Work::Malformed(malformed) => {
                    error!(error = %malformed, raw = %malformed.raw, "malformed stream record");
                    let event = shared.deliverer.factory().from_malformed(malformed);
                    dead_letter_malformed(&shared, connections, event, &malformed.reason, &cancel)
                        .await
                }
            };
            shared.delivery_metrics.in_flight.dec();
            Done {
                index,
                work,
                checkout,
                outcome,
            }
        })
    }

    /// Takes a finished send's result: settles its record unless shutdown
    /// interrupted it.
    fn finish(&mut self, window: &mut Window<Work>, done: Done, stopping: &mut bool) {
        self.shared.pool.give_back(done.checkout);
        self.settled.push(done.work);
        match done.outcome {
            Outcome::Delivered | Outcome::DeadLettered => {
                window.settle(done.index);
                self.settled_held.absorb(self.held.split(1));
            }
            // Not acknowledged: read again after the restart.
            Outcome::Cancelled => *stopping = true,
        }
    }
}

/// Waits until a pause the sink asked for has passed.
async fn pace(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await,
        None => std::future::pending().await,
    }
}

/// A malformed record never becomes well formed: it goes to the dead-letter
/// sink, or, without one, is logged, counted and passed over so the shard
/// does not stall forever.
async fn dead_letter_malformed(
    shared: &Shared,
    connections: &mut Connections,
    event: cloudevents::Event,
    reason: &str,
    cancel: &CancellationToken,
) -> Outcome {
    if shared.deliverer.has_dead_letter_sink() {
        shared
            .deliverer
            .dead_letter_malformed(connections, event, reason, cancel)
            .await
    } else {
        shared.delivery_metrics.event(EventResult::Dropped);
        error!(
            reason,
            "no dead-letter sink configured: the malformed record is logged above and skipped"
        );
        Outcome::DeadLettered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_item_share_a_key_and_others_do_not() {
        assert_eq!(
            key_of(Some(b"pk=1".as_slice())),
            key_of(Some(b"pk=1".as_slice()))
        );
        assert_ne!(
            key_of(Some(b"pk=1".as_slice())),
            key_of(Some(b"pk=2".as_slice()))
        );
        assert_ne!(key_of(None), key_of(Some(b"".as_slice())));
    }

    #[test]
    fn settled_records_hold_their_permits_until_the_reading_thread_frees_them() {
        let budget = RecordsHeld::new(100);
        let reading = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let freer = Freer::start(reading.handle());
        let mut window = reading.block_on(budget.acquire(80));
        freer.free(Vec::new(), window.split(30));
        assert_eq!(
            budget.available(),
            20,
            "the reading thread has not run: nothing is freed, no permit is back"
        );
        reading.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                while budget.available() != 50 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the freeing task gives the permits back once it has freed the records");
        });
        drop(window);
        assert_eq!(budget.available(), 100);
    }
}
