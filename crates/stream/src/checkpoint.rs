//! Durable progress: for each shard, the last record every event up to which
//! the sink acknowledged.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use dynamodb_source_api::StreamArn;
use serde::{Deserialize, Serialize};

use crate::ids::{SequenceNumber, ShardId};
use crate::merge::{Merge, Merged};

/// How far one shard has been delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ShardProgress {
    /// Every record up to and including this one was acknowledged (or dead-lettered).
    After(SequenceNumber),
    /// The shard was opened at `LATEST` at this time (Unix seconds) and nothing has
    /// been delivered since. `LATEST` cannot be resumed, so a restart reads from
    /// `TRIM_HORIZON` and skips records created before this second.
    LatestSince(i64),
    /// Read to its end; its children may be read.
    Finished,
    /// A replay restarted the shard: it is read from `TRIM_HORIZON`, and
    /// records created before this time (Unix milliseconds; `None`: none) are
    /// only checkpointed past. The first delivery replaces it with `After`.
    Replay(Option<i64>),
}

/// Where a replay starts: the oldest record the stream holds, or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    TrimHorizon,
    /// Records created at or after this time (Unix milliseconds).
    Time(i64),
}

/// A replay's `from` that is neither `TRIM_HORIZON` nor an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error(
    "{value:?} is neither TRIM_HORIZON nor an RFC 3339 time in UTC such as 2024-05-01T12:00:00Z"
)]
pub struct ReplayFromError {
    pub value: String,
    #[source]
    pub source: aws_smithy_types::date_time::DateTimeParseError,
}

impl std::str::FromStr for ReplayFrom {
    type Err = ReplayFromError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "TRIM_HORIZON" {
            return Ok(ReplayFrom::TrimHorizon);
        }
        let time =
            aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
                .map_err(|source| ReplayFromError {
                    value: s.to_owned(),
                    source,
                })?;
        Ok(ReplayFrom::Time(
            time.secs() * 1000 + i64::from(time.subsec_nanos() / 1_000_000),
        ))
    }
}

impl std::fmt::Display for ReplayFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayFrom::TrimHorizon => f.write_str("TRIM_HORIZON"),
            ReplayFrom::Time(millis) => {
                let time = aws_smithy_types::DateTime::from_millis(*millis);
                match time.fmt(aws_smithy_types::date_time::Format::DateTime) {
                    Ok(text) => f.write_str(&text),
                    Err(_) => write!(f, "{millis} ms after the epoch"),
                }
            }
        }
    }
}

/// The replay a checkpoint last applied, so that a restart does not apply it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppliedReplay {
    /// The replay's token, as the source's spec gave it.
    pub token: String,
    /// `TRIM_HORIZON` or the RFC 3339 time it replayed from.
    pub from: String,
    /// When it was applied (Unix seconds).
    pub applied_at: i64,
}

/// The progress of a source through one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// The format of this document; a newer one is refused rather than misread.
    pub version: u32,
    pub stream_arn: StreamArn,
    #[serde(default)]
    pub shards: BTreeMap<ShardId, ShardProgress>,
    /// Finished shards that DescribeStream stopped listing, and since when
    /// (Unix seconds). One answer that leaves a shard out proves nothing (the
    /// API is eventually consistent, a page can come back short), so a
    /// finished shard is forgotten only after [`Checkpoint::FORGET_UNLISTED_AFTER`]
    /// of not being listed: by then it was trimmed and cannot come back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unlisted_since: BTreeMap<ShardId, i64>,
    /// The last replay applied. Absent until one is: a checkpoint of a source
    /// that never replayed reads the same in older adapters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<AppliedReplay>,
}

impl Checkpoint {
    pub const VERSION: u32 = 1;
    /// How long a finished shard must go unlisted before it is forgotten:
    /// the stream's 24-hour retention, and an hour for the API's lag.
    pub const FORGET_UNLISTED_AFTER: i64 = 25 * 3600;

    pub fn new(stream_arn: StreamArn) -> Self {
        Checkpoint {
            version: Self::VERSION,
            stream_arn,
            shards: BTreeMap::new(),
            unlisted_since: BTreeMap::new(),
            replay: None,
        }
    }

    /// Applies the replay `token` unless this checkpoint already did: every
    /// shard it knows starts again from `from` (finished ones too, so children
    /// still wait for their parents), and the token is recorded. Returns
    /// whether the replay was applied.
    pub fn replay(&mut self, token: &str, from: ReplayFrom, now: i64) -> bool {
        if self.replay.as_ref().is_some_and(|r| r.token == token) {
            return false;
        }
        let skip_before = match from {
            ReplayFrom::TrimHorizon => None,
            ReplayFrom::Time(millis) => Some(millis),
        };
        for progress in self.shards.values_mut() {
            *progress = ShardProgress::Replay(skip_before);
        }
        self.replay = Some(AppliedReplay {
            token: token.to_owned(),
            from: from.to_string(),
            applied_at: now,
        });
        true
    }

    pub fn progress(&self, shard: &ShardId) -> Option<&ShardProgress> {
        self.shards.get(shard)
    }

    pub fn is_finished(&self, shard: &ShardId) -> bool {
        matches!(self.shards.get(shard), Some(ShardProgress::Finished))
    }

    /// Records that everything up to `sequence_number` was delivered.
    ///
    /// Never moves backwards and never reopens a finished shard: a late update
    /// from a task that was stopped must not undo progress.
    pub fn advance(&mut self, shard: &ShardId, sequence_number: &SequenceNumber) {
        // In place: this runs once per delivery round of every shard, and
        // a new entry would allocate and free a shard id and a number each time.
        match self.shards.get_mut(shard) {
            Some(ShardProgress::Finished) => {}
            Some(ShardProgress::After(current)) => {
                if *current < *sequence_number {
                    current.clone_from(sequence_number);
                }
            }
            Some(other) => *other = ShardProgress::After(sequence_number.clone()),
            None => {
                self.shards
                    .insert(shard.clone(), ShardProgress::After(sequence_number.clone()));
            }
        }
    }

    pub fn finish(&mut self, shard: &ShardId) {
        self.shards.insert(shard.clone(), ShardProgress::Finished);
    }

    /// Forgets a shard that is proven gone (the API answered ResourceNotFound
    /// when it was asked for directly): its children no longer wait for it.
    pub fn forget(&mut self, shard: &ShardId) {
        self.shards.remove(shard);
        self.unlisted_since.remove(shard);
    }

    /// Takes note of which shards one DescribeStream answer listed, at
    /// `now` (Unix seconds), so that the document does not grow forever.
    ///
    /// Only finished shards are ever forgotten here, and only once they have
    /// gone unlisted for [`Checkpoint::FORGET_UNLISTED_AFTER`]. A shard with
    /// progress left is kept whatever the listing says: it is read directly,
    /// and forgotten only when the API says it is gone ([`Checkpoint::forget`]).
    /// Returns whether anything changed.
    pub fn note_listing(&mut self, listed: impl Fn(&ShardId) -> bool, now: i64) -> bool {
        let before = (self.shards.len(), self.unlisted_since.clone());
        self.unlisted_since.retain(|shard, _| !listed(shard));
        for (shard, progress) in &self.shards {
            if *progress == ShardProgress::Finished && !listed(shard) {
                self.unlisted_since.entry(shard.clone()).or_insert(now);
            }
        }
        let expired: Vec<ShardId> = self
            .unlisted_since
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) >= Self::FORGET_UNLISTED_AFTER)
            .map(|(shard, _)| shard.clone())
            .collect();
        for shard in &expired {
            self.forget(shard);
        }
        before != (self.shards.len(), self.unlisted_since.clone())
    }
}

/// Why progress could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading checkpoint {location}")]
    Read {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing checkpoint {location}")]
    Write {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint {location} is corrupt; refusing to start over from LATEST, which would skip records: fix or remove it"
    )]
    Corrupt {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("checkpoint {location} has version {found}, this adapter understands {supported}")]
    Version {
        location: String,
        found: u32,
        supported: u32,
    },
    #[error("checkpoint {location} belongs to table {found}, not {expected}")]
    OtherTable {
        location: String,
        found: String,
        expected: String,
    },
    #[error("checkpoint {location} was changed by someone else: {reason}")]
    Conflict { location: String, reason: String },
    #[error("checkpoint {location}: {reason}")]
    Backend { location: String, reason: String },
}

/// Where progress is kept: a file standalone, a Kubernetes object in a cluster.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// A human-readable location for logs and errors.
    fn location(&self) -> String;

    /// The saved progress, or `None` when the source has never run.
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError>;

    /// Replaces the saved progress; either the whole document is stored or none of it.
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;

    /// Merges what this replica may write of `local` into the stored
    /// document and stores the result (see [`crate::merge`]), retrying on
    /// conflicting writes of other replicas; returns the stored document and
    /// what the merge did. A store with one writer (a file) stores `local`.
    async fn save_merged(
        &self,
        local: &Checkpoint,
        what: Merge,
        held: &(dyn for<'s> Fn(&'s ShardId) -> bool + Sync),
        forgotten: &BTreeSet<ShardId>,
    ) -> Result<(Checkpoint, Merged), CheckpointError> {
        let _ = (what, held, forgotten);
        self.save(local).await?;
        Ok((local.clone(), Merged::Written))
    }

    /// Stores the summary of how the adapter keeps up, where the controller
    /// reads it. Stores nobody reads it from (a file) keep nothing.
    async fn save_summary(
        &self,
        _summary: &dynamodb_source_api::summary::StreamSummary,
    ) -> Result<(), CheckpointError> {
        Ok(())
    }

    /// Removes this replica's summary at a graceful stop, so that the
    /// controller does not count it with its successor's until it goes stale.
    async fn retire_summary(&self) -> Result<(), CheckpointError> {
        Ok(())
    }
}

/// Parses a stored document, with errors that name the store.
pub fn decode(location: &str, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(bytes).map_err(|source| CheckpointError::Corrupt {
            location: location.to_owned(),
            source,
        })?;
    if versioned.version != Checkpoint::VERSION {
        return Err(CheckpointError::Version {
            location: location.to_owned(),
            found: versioned.version,
            supported: Checkpoint::VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| CheckpointError::Corrupt {
        location: location.to_owned(),
        source,
    })
}

pub fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    // A struct of strings and maps with string keys always serializes.
    serde_json::to_vec_pretty(checkpoint).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamArn {
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
            .parse()
            .expect("valid")
    }

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).expect("digits")
    }

    #[test]
    fn checkpoint_never_moves_backwards() {
        let shard = ShardId::new("shardId-1");
        let mut checkpoint = Checkpoint::new(stream());
        checkpoint.advance(&shard, &seq("000000000000000000200"));
        checkpoint.advance(&shard, &seq("000000000000000000100"));
        assert_eq!(
            checkpoint.progress(&shard),
            Some(&ShardProgress::After(seq("000000000000000000200")))
        );
        checkpoint.finish(&shard);
        checkpoint.advance(&shard, &seq("000000000000000000300"));
        assert!(checkpoint.is_finished(&shard));
    }

    #[test]
    fn an_unlisted_shard_is_forgotten_only_when_finished_and_unlisted_past_the_retention() {
        let (done, open) = (ShardId::new("done"), ShardId::new("open"));
        let mut checkpoint = Checkpoint::new(stream());
        checkpoint.finish(&done);
        checkpoint.advance(&open, &seq("000000000000000000100"));
        let none_listed = |_: &ShardId| false;
        let t0 = 1_700_000_000;

        assert!(checkpoint.note_listing(none_listed, t0));
        assert!(checkpoint.is_finished(&done), "one answer proves nothing");
        assert!(checkpoint.progress(&open).is_some());
        assert_eq!(checkpoint.unlisted_since.get(&done), Some(&t0));
        assert_eq!(checkpoint.unlisted_since.get(&open), None);

        // Listed again: the clock starts over.
        checkpoint.note_listing(|s| *s == done, t0 + 10);
        assert!(checkpoint.unlisted_since.is_empty());
        checkpoint.note_listing(none_listed, t0 + 20);
        checkpoint.note_listing(none_listed, t0 + 20 + Checkpoint::FORGET_UNLISTED_AFTER - 1);
        assert!(checkpoint.is_finished(&done));
        checkpoint.note_listing(none_listed, t0 + 20 + Checkpoint::FORGET_UNLISTED_AFTER);
        assert_eq!(
            checkpoint.progress(&done),
            None,
            "finished and long unlisted"
        );
        assert!(checkpoint.unlisted_since.is_empty());
        assert!(
            checkpoint.progress(&open).is_some(),
            "progress left: kept until the API says the shard is gone"
        );
        checkpoint.forget(&open);
        assert_eq!(checkpoint.progress(&open), None);
    }

    #[test]
    fn document_round_trips_and_is_readable() {
        let mut checkpoint = Checkpoint::new(stream());
        checkpoint.advance(&ShardId::new("a"), &seq("000000000000000000001"));
        checkpoint.finish(&ShardId::new("b"));
        checkpoint
            .shards
            .insert(ShardId::new("c"), ShardProgress::LatestSince(1_700_000_000));
        let bytes = encode(&checkpoint);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(
            text.contains("\"after\": \"000000000000000000001\""),
            "{text}"
        );
        assert!(text.contains("\"b\": \"finished\""), "{text}");
        assert_eq!(decode("test", &bytes).expect("decodes"), checkpoint);
    }

    #[test]
    fn corrupt_or_future_documents_are_errors() {
        let err = decode("f.json", b"{\"version\": 1, \"streamArn\": ").expect_err("truncated");
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        let err = decode("f.json", b"{\"version\": 2, \"streamArn\": \"x\"}").expect_err("v2");
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn a_replay_restarts_every_shard_once_per_token() {
        let mut checkpoint = Checkpoint::new(stream());
        checkpoint.advance(&ShardId::new("a"), &seq("100"));
        checkpoint.finish(&ShardId::new("b"));
        let from: ReplayFrom = "2024-05-01T12:00:00.250Z".parse().expect("a time");
        assert_eq!(from, ReplayFrom::Time(1_714_564_800_250));
        assert!(checkpoint.replay("fix-1", from, 1_714_600_000));
        assert_eq!(
            checkpoint.progress(&ShardId::new("a")),
            Some(&ShardProgress::Replay(Some(1_714_564_800_250)))
        );
        assert_eq!(
            checkpoint.progress(&ShardId::new("b")),
            Some(&ShardProgress::Replay(Some(1_714_564_800_250))),
            "finished shards are read again too"
        );
        checkpoint.advance(&ShardId::new("a"), &seq("101"));
        assert!(
            !checkpoint.replay("fix-1", from, 1_714_600_100),
            "the same token again"
        );
        assert_eq!(
            checkpoint.progress(&ShardId::new("a")),
            Some(&ShardProgress::After(seq("101")))
        );
        let round_trip = decode("test", &encode(&checkpoint)).expect("reads back");
        assert_eq!(round_trip, checkpoint);
        assert_eq!(
            round_trip.replay.map(|r| r.from),
            Some("2024-05-01T12:00:00.25Z".to_owned())
        );
        assert!(checkpoint.replay("fix-2", ReplayFrom::TrimHorizon, 1_714_600_200));
        assert_eq!(
            checkpoint.progress(&ShardId::new("a")),
            Some(&ShardProgress::Replay(None))
        );
    }

    #[test]
    fn a_checkpoint_without_a_replay_is_written_as_before() {
        let checkpoint = Checkpoint::new(stream());
        let text = String::from_utf8(encode(&checkpoint)).expect("utf-8");
        assert!(!text.contains("replay"), "{text}");
        assert!("yesterday".parse::<ReplayFrom>().is_err());
        assert!(
            "2024-05-01T14:00:00+02:00".parse::<ReplayFrom>().is_err(),
            "UTC only, as the CRD admits"
        );
        assert!("2024-05-01".parse::<ReplayFrom>().is_err());
    }
}
