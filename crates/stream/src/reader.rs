//! Reading one shard: iterators acquired and re-acquired from the last
//! position handed out, throttling absorbed with backoff, trimmed data reported.

use std::time::Duration;

use dynamodb_source_api::StreamArn;
use rand::Rng;
use tracing::{info, warn};

use crate::client::{StreamClient, StreamError};
use crate::ids::{SequenceNumber, ShardId};
use crate::lineage::StartAt;
use crate::metrics::{CallResult, StreamMetrics};
use crate::record::{MalformedRecord, StreamRecord};

/// The records of one GetRecords call, in shard order.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Result<StreamRecord, MalformedRecord>>,
    /// The shard is closed and these were its last records.
    pub end_of_shard: bool,
    /// Set when records were trimmed before they could be read and reading
    /// went on from the oldest record still held.
    pub trimmed: Option<String>,
}

/// The shard cannot be read any more (it, or its stream, no longer exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard} cannot be read: {reason}")]
pub struct ShardGone {
    pub shard: ShardId,
    pub reason: String,
}

/// Exponential backoff with full jitter for API errors.
#[derive(Debug, Clone)]
struct Pause {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Pause {
    fn next(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Reads one shard batch by batch.
///
/// The caller delivers every record of a batch before asking for the next one,
/// so the position of the last record handed out is also the position to
/// resume from when an iterator has to be acquired again.
#[derive(Debug)]
pub struct ShardReader {
    client: StreamClient,
    stream: StreamArn,
    shard: ShardId,
    start: StartAt,
    last: Option<SequenceNumber>,
    iterator: Option<String>,
    trimmed: Option<String>,
    pause: Pause,
    metrics: StreamMetrics,
}

impl ShardReader {
    pub fn new(
        client: StreamClient,
        stream: StreamArn,
        shard: ShardId,
        start: StartAt,
        metrics: StreamMetrics,
    ) -> Self {
        ShardReader {
            client,
            stream,
            shard,
            start,
            last: None,
            iterator: None,
            trimmed: None,
            pause: Pause {
                base: Duration::from_millis(100),
                max: Duration::from_secs(20),
                attempt: 0,
            },
            metrics,
        }
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

    /// The next batch (possibly empty). Retries every passing failure itself;
    /// returns an error only when the shard is gone.
    pub async fn next_batch(&mut self) -> Result<Batch, ShardGone> {
        loop {
            let iterator = match self.iterator.clone() {
                Some(iterator) => iterator,
                None => {
                    let position = self.position();
                    match self
                        .client
                        .iterator(&self.stream, &self.shard, &position)
                        .await
                    {
                        Ok(iterator) => {
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
            match self.client.records(&iterator).await {
                Ok(page) => {
                    self.metrics.call(CallResult::Ok);
                    self.pause.reset();
                    self.iterator = page.next_iterator.clone();
                    let records: Vec<_> = page.records.iter().map(StreamRecord::try_from).collect();
                    self.metrics.records_read.inc_by(records.len() as u64);
                    if let Some(seq) = records.iter().rev().find_map(|r| match r {
                        Ok(record) => Some(record.sequence_number.clone()),
                        Err(malformed) => malformed.sequence_number.clone(),
                    }) {
                        self.last = Some(seq);
                    }
                    return Ok(Batch {
                        records,
                        end_of_shard: page.next_iterator.is_none(),
                        trimmed: self.trimmed.take(),
                    });
                }
                Err(err) => self.on_error(err).await?,
            }
        }
    }

    async fn on_error(&mut self, err: StreamError) -> Result<(), ShardGone> {
        match err {
            StreamError::ExpiredIterator(_) => {
                self.metrics.call(CallResult::Expired);
                info!(shard = %self.shard, position = ?self.position(), "shard iterator expired, acquiring a new one");
                self.iterator = None;
            }
            StreamError::TrimmedData(message) => {
                self.metrics.call(CallResult::Trimmed);
                self.metrics.trimmed.inc();
                warn!(shard = %self.shard, position = ?self.position(), %message,
                    "records were trimmed before they could be read; continuing from TRIM_HORIZON");
                self.trimmed = Some(format!(
                    "shard {} position {:?} was past the stream's retention: {message}",
                    self.shard,
                    self.position()
                ));
                self.start = StartAt::TrimHorizon;
                self.last = None;
                self.iterator = None;
            }
            StreamError::NotFound(reason) => {
                self.metrics.call(CallResult::NotFound);
                return Err(ShardGone {
                    shard: self.shard.clone(),
                    reason,
                });
            }
            StreamError::Throttled(message) => {
                self.metrics.call(CallResult::Throttled);
                let pause = self.pause.next();
                info!(shard = %self.shard, ?pause, %message, "throttled, backing off");
                tokio::time::sleep(pause).await;
            }
            StreamError::Transient(message) | StreamError::Other(message) => {
                self.metrics.call(CallResult::Error);
                let pause = self.pause.next();
                warn!(shard = %self.shard, ?pause, %message, "reading the shard failed, retrying");
                // An iterator that the server refuses may be the cause.
                self.iterator = None;
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_grows_to_its_bound_with_jitter_and_resets() {
        let mut pause = Pause {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            attempt: 0,
        };
        let first = pause.next();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..10 {
            assert!(pause.next() <= Duration::from_secs(2));
        }
        let late = pause.next();
        assert!(late >= Duration::from_secs(1), "{late:?}");
        pause.reset();
        assert!(pause.next() <= Duration::from_millis(100));
    }
}
