//! Reading one shard: iterators acquired and re-acquired from the last
//! position handed out, throttling absorbed with backoff, trimmed data reported.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use dynamodb_source_api::{Report, StreamArn};
use dynamodb_source_backoff::Backoff;
use tracing::{info, warn};

use crate::client::{StreamClient, StreamError};
use crate::ids::{SequenceNumber, ShardId};
use crate::lineage::{Assignment, StartAt};
use crate::listing::{Listed, Listing};
use crate::metrics::{CallResult, StreamMetrics};
use crate::read_size::{ReadSize, Share};
use crate::record::{MalformedRecord, StreamRecord};

/// Records prepared between two yields in the adapter, so that the shards
/// read on one thread take turns (about 0.3 ms of work). A page is parsed as
/// one piece, in one pass ([`crate::wire`]).
pub const TURN: usize = 32;

/// The records of one GetRecords call, in shard order.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Result<StreamRecord, MalformedRecord>>,
    /// The shard is closed and these were its last records.
    pub end_of_shard: bool,
    /// Set when records were trimmed before they could be read and reading
    /// went on from the oldest record still held.
    pub trimmed: Option<String>,
    /// Records created before this Unix second are only checkpointed past, not
    /// delivered: they predate a `LATEST` start that had to be replaced.
    pub skip_created_before: Option<i64>,
    /// Records created before this time (Unix milliseconds) are only
    /// checkpointed past: they predate the replay being read.
    pub replay_from_millis: Option<i64>,
}

impl Batch {
    /// Whether `record` predates where this shard's reading logically starts.
    pub fn skips(&self, record: &StreamRecord) -> bool {
        let before_start = self
            .skip_created_before
            .zip(record.approximate_creation)
            .is_some_and(|(since, created)| created_before(created.secs(), since));
        let before_replay = self
            .replay_from_millis
            .zip(record.approximate_creation)
            .is_some_and(|(from, created)| {
                created.secs() * 1000 + i64::from(created.subsec_nanos() / 1_000_000) < from
            });
        before_start || before_replay
    }
}

/// The shard cannot be read any more (it, or its stream, no longer exists).
#[derive(Debug, thiserror::Error)]
#[error("shard {shard} cannot be read")]
pub struct ShardGone {
    pub shard: ShardId,
    #[source]
    pub source: StreamError,
}

/// Reads one shard batch by batch.
///
/// Every record handed out is delivered (or the whole task is abandoned and
/// resumes from the checkpoint), so the position of the last record handed out
/// is the position to resume from when an iterator has to be acquired again,
/// even while earlier batches are still being delivered.
#[derive(Debug)]
pub struct ShardReader {
    client: StreamClient,
    stream: StreamArn,
    shard: ShardId,
    start: StartAt,
    last: Option<SequenceNumber>,
    iterator: Option<String>,
    /// Consecutive failures of the current iterator.
    iterator_failures: u32,
    /// When the `LATEST` iterator was opened (Unix seconds).
    latest_opened_at: Option<i64>,
    skip_created_before: Option<i64>,
    replay_from_millis: Option<i64>,
    trimmed: Option<String>,
    /// Waits after API errors: 100 ms doubling to 20 s, each between half
    /// and all of that.
    pause: Backoff,
    metrics: StreamMetrics,
    size: Share,
    /// What discovery last saw, to confirm that a shard really ended.
    listing: Arc<Listing>,
    /// The listing generation at which this shard, not listed, last seemed
    /// to end (see [`crate::listing`]).
    unlisted_end: Option<u64>,
    /// Whether an end the listing did not confirm was already logged.
    doubted_end: bool,
    /// Dropped once the shard's first iterator is held: whoever gave it
    /// learns that this shard's starting position is established.
    positioned: Option<Box<dyn Any + Send + Sync>>,
}

/// How far apart our clock and DynamoDB's may be. Skipping records "created
/// before a start" uses this much slack, so clock skew can only cause extra
/// deliveries of older records, never a skipped new one.
pub const CLOCK_SKEW_ALLOWANCE_SECS: i64 = 60;

/// Whether a record created at `created` (Unix seconds) predates a start at `since`.
pub fn created_before(created: i64, since: i64) -> bool {
    created < since.saturating_sub(CLOCK_SKEW_ALLOWANCE_SECS)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl ShardReader {
    /// Reads `assignment`'s shard from where it says. Records created before
    /// its `skip_created_before` are handed out for checkpointing only (see
    /// [`Batch::skips`]).
    pub fn new(
        client: StreamClient,
        stream: StreamArn,
        assignment: Assignment,
        metrics: StreamMetrics,
        size: &ReadSize,
        listing: Arc<Listing>,
    ) -> Self {
        ShardReader {
            client,
            stream,
            shard: assignment.shard,
            start: assignment.start,
            last: None,
            iterator: None,
            iterator_failures: 0,
            latest_opened_at: None,
            skip_created_before: assignment.skip_created_before,
            replay_from_millis: assignment.replay_from_millis,
            trimmed: None,
            pause: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(20)),
            metrics,
            size: size.join(),
            listing,
            unlisted_end: None,
            doubted_end: false,
            positioned: None,
        }
    }

    /// `guard` is dropped once the shard's first iterator is held (or the
    /// reader is dropped): readiness waits for every shard's starting
    /// position, so a `LATEST` start skips nothing written after it.
    pub fn with_position_guard(mut self, guard: Box<dyn Any + Send + Sync>) -> Self {
        self.positioned = Some(guard);
        self
    }

    /// How many records the next GetRecords call asks for.
    pub fn read_limit(&self) -> usize {
        usize::try_from(self.size.limit()).unwrap_or(1)
    }

    pub fn shard(&self) -> &ShardId {
        &self.shard
    }

    fn position(&self) -> StartAt {
        match &self.last {
            Some(seq) => StartAt::After(seq.clone()),
            None => self.start.clone(),
        }
    }

    /// Drops the iterator so the next read acquires one from the last position.
    ///
    /// A `LATEST` iterator cannot be re-acquired at the same place: a new one
    /// would skip whatever was written in between. Until a record was read it
    /// is replaced by `TRIM_HORIZON`, skipping records created before the
    /// original start.
    fn reacquire(&mut self) {
        self.iterator = None;
        self.iterator_failures = 0;
        if let (None, StartAt::Latest, Some(opened)) =
            (&self.last, &self.start, self.latest_opened_at)
        {
            self.start = StartAt::TrimHorizon;
            self.skip_created_before = Some(opened);
        }
    }

    /// The next batch (possibly empty) of at most `limit` records. Retries
    /// every passing failure itself; returns an error only when the shard is gone.
    pub async fn next_batch(&mut self, limit: usize) -> Result<Batch, ShardGone> {
        let limit = i32::try_from(limit.clamp(1, crate::read_size::API_MAX)).unwrap_or(1);
        loop {
            let iterator = match self.iterator.clone() {
                Some(iterator) => iterator,
                None => {
                    let position = self.position();
                    let opened_at = now_unix();
                    match self
                        .client
                        .iterator(&self.stream, &self.shard, &position)
                        .await
                    {
                        Ok(iterator) => {
                            if position == StartAt::Latest && self.latest_opened_at.is_none() {
                                self.latest_opened_at = Some(opened_at);
                            }
                            self.positioned = None;
                            self.iterator = Some(iterator.clone());
                            iterator
                        }
                        Err(err) => {
                            self.on_error(err).await?;
                            continue;
                        }
                    }
                }
            };
            match self.client.records(&iterator, limit).await {
                Ok(page) => {
                    self.metrics.call(CallResult::Ok);
                    self.pause.reset();
                    self.iterator_failures = 0;
                    self.iterator = page.next_iterator.clone();
                    let mut records = page.records;
                    // The newest sequence number before each record, for the
                    // place of a malformed record that has none of its own.
                    let mut last_numbered: Option<usize> = None;
                    let mut unnumbered = 0u32;
                    for n in 0..records.len() {
                        if let Ok(_)
                        | Err(MalformedRecord {
                            sequence_number: Some(_),
                            ..
                        }) = &records[n]
                        {
                            last_numbered = Some(n);
                            unnumbered = 0;
                            continue;
                        }
                        unnumbered += 1;
                        let after = match last_numbered.map(|i| &records[i]) {
                            Some(Ok(r)) => Some(&r.sequence_number),
                            Some(Err(m)) => m.sequence_number.as_ref(),
                            None => self.last.as_ref(),
                        };
                        let place = format!(
                            "{}-{}-{unnumbered}",
                            self.shard,
                            after.map_or("start", SequenceNumber::as_str)
                        );
                        if let Err(malformed) = &mut records[n] {
                            malformed.place = Some(place);
                        }
                    }
                    self.metrics.records_read.inc_by(records.len() as u64);
                    if let Some(seq) = records.iter().rev().find_map(|r| match r {
                        Ok(record) => Some(record.sequence_number.clone()),
                        Err(malformed) => malformed.sequence_number.clone(),
                    }) {
                        self.last = Some(seq);
                    }
                    let end_of_shard = page.next_iterator.is_none() && self.confirm_end();
                    return Ok(Batch {
                        records,
                        end_of_shard,
                        trimmed: self.trimmed.take(),
                        skip_created_before: self.skip_created_before,
                        replay_from_millis: self.replay_from_millis,
                    });
                }
                Err(err) => self.on_error(err).await?,
            }
        }
    }

    /// Whether an answer without `NextShardIterator` is the shard's end (see
    /// [`crate::listing`]). When it is not confirmed, the next read takes a
    /// fresh iterator from the last record handed out, and discovery is asked
    /// for a new listing.
    fn confirm_end(&mut self) -> bool {
        let (generation, listed) = self.listing.lookup(&self.shard);
        let confirmed = match listed {
            Listed::Closed => true,
            Listed::Open => false,
            Listed::Absent => self.unlisted_end.is_some_and(|seen| generation > seen),
        };
        if confirmed {
            return true;
        }
        if listed == Listed::Absent && self.unlisted_end.is_none() {
            self.unlisted_end = Some(generation);
        }
        if !self.doubted_end {
            self.doubted_end = true;
            info!(?listed, position = ?self.position(),
                "GetRecords says the shard ended but the stream's listing does not confirm it yet; reading on from a fresh iterator");
        }
        self.listing.request();
        self.reacquire();
        false
    }

    async fn on_error(&mut self, err: StreamError) -> Result<(), ShardGone> {
        match &err {
            StreamError::ExpiredIterator(_) => {
                self.metrics.call(CallResult::Expired);
                info!(position = ?self.position(), "shard iterator expired, acquiring a new one");
                self.reacquire();
            }
            StreamError::TrimmedData(_) => {
                self.metrics.call(CallResult::Trimmed);
                self.metrics.trimmed.inc();
                warn!(position = ?self.position(), error = %Report(&err),
                    "records were trimmed before they could be read; continuing from TRIM_HORIZON");
                self.trimmed = Some(format!(
                    "shard {} position {:?} was past the stream's retention: {}",
                    self.shard,
                    self.position(),
                    Report(&err)
                ));
                self.start = StartAt::TrimHorizon;
                self.last = None;
                self.latest_opened_at = None;
                self.iterator = None;
            }
            StreamError::NotFound(_) => {
                self.metrics.call(CallResult::NotFound);
                return Err(ShardGone {
                    shard: self.shard.clone(),
                    source: err,
                });
            }
            StreamError::Throttled(_) => {
                self.metrics.call(CallResult::Throttled);
                let pause = self.pause.next_wait();
                info!(?pause, error = %Report(&err), "throttled, backing off");
                tokio::time::sleep(pause).await;
            }
            StreamError::Transient(_) | StreamError::Other(_) => {
                self.metrics.call(CallResult::Error);
                let pause = self.pause.next_wait();
                warn!(?pause, error = %Report(&err), "reading the shard failed, retrying");
                // Retry the same iterator (still valid for 15 minutes) unless it
                // keeps failing, in which case it may be the cause.
                self.iterator_failures = self.iterator_failures.saturating_add(1);
                if self.iterator_failures >= 3 {
                    self.reacquire();
                }
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }
}
