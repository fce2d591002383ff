//! Durable progress: for each shard, the last record every event up to which
//! the sink acknowledged.

use std::collections::BTreeMap;

use async_trait::async_trait;
use dynamodb_source_api::StreamArn;
use serde::{Deserialize, Serialize};

use crate::ids::{SequenceNumber, ShardId};

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
        }
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
        match self.shards.get(shard) {
            Some(ShardProgress::Finished) => {}
            Some(ShardProgress::After(current)) if current >= sequence_number => {}
            _ => {
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

    /// Stores the summary of how the adapter keeps up, where the controller
    /// reads it. Stores nobody reads it from (a file) keep nothing.
    async fn save_summary(
        &self,
        _summary: &dynamodb_source_api::summary::StreamSummary,
    ) -> Result<(), CheckpointError> {
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
}
