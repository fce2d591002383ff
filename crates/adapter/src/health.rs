//! What the adapter's readiness waits for: the stream was described, every
//! shard started first holds its starting position, and the sink answered
//! once. The endpoints themselves are `dynamodb_source_ops`.
//!
//! Holding positions matters for a first start at `LATEST`: a `LATEST`
//! iterator starts where the stream is when it is taken, so until every open
//! shard has one, what is written may be skipped. Readiness waits for them
//! (each shard's first GetShardIterator), so whatever is written once the
//! source shows Ready is delivered.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Health {
    stream_described: AtomicBool,
    sink_reachable: AtomicBool,
    positions_held: AtomicBool,
}

impl Health {
    pub(crate) fn stream_described(&self, yes: bool) {
        self.stream_described.store(yes, Ordering::Relaxed);
    }

    pub(crate) fn sink_reachable(&self) {
        self.sink_reachable.store(true, Ordering::Relaxed);
    }

    /// Every shard started at the first discovery holds its starting
    /// position. Once true it stays true: shards found later do not make a
    /// running adapter unready.
    pub(crate) fn positions_held(&self) {
        self.positions_held.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, or why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if !self.stream_described.load(Ordering::Relaxed) {
            return Err("the table's stream has not been described yet".to_owned());
        }
        if !self.positions_held.load(Ordering::Relaxed) {
            return Err("the shards' starting positions are not all held yet".to_owned());
        }
        if !self.sink_reachable.load(Ordering::Relaxed) {
            return Err("the sink has not been reachable yet".to_owned());
        }
        Ok(())
    }
}
