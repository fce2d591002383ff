//! What the newest DescribeStream answer said about each shard, shared by
//! discovery, which writes it, and the shard readers, which consult it when
//! a shard seems to end.
//!
//! A GetRecords answer without `NextShardIterator` means the shard is closed
//! and read to its end, but one answer is not proof: a shard is marked
//! finished, which releases its children and is never undone, only when the
//! listing agrees (the shard has an ending sequence number), or, for a shard
//! the listing leaves out, when a fresh iterator taken after a newer listing
//! says the same again. Readers ask for a new listing rather than each
//! describing the stream: hundreds of shards closing together then cost one
//! DescribeStream round, not hundreds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::ids::ShardId;
use crate::lineage::Shard;

/// A shard as the newest listing shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Open,
    Closed,
    /// Not in the newest answer.
    Absent,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every listing, so a reader can tell a newer one from the
    /// one it already saw.
    generation: u64,
    closed: HashMap<ShardId, bool>,
}

#[derive(Debug, Default)]
pub struct Listing {
    state: Mutex<State>,
    wanted: Notify,
}

impl Listing {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Updates replace the whole map: a poisoned lock holds a whole one.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one DescribeStream answer.
    pub fn update(&self, shards: &[Shard]) {
        let closed = shards.iter().map(|s| (s.id.clone(), s.closed)).collect();
        let mut state = self.lock();
        state.generation += 1;
        state.closed = closed;
    }

    /// The newest listing's generation and what it says of `shard`.
    pub fn lookup(&self, shard: &ShardId) -> (u64, Listed) {
        let state = self.lock();
        let listed = match state.closed.get(shard) {
            Some(true) => Listed::Closed,
            Some(false) => Listed::Open,
            None => Listed::Absent,
        };
        (state.generation, listed)
    }

    /// Asks discovery to describe the stream again soon.
    pub fn request(&self) {
        self.wanted.notify_one();
    }

    /// Resolves when a reader asked for a new listing.
    pub async fn requested(&self) {
        self.wanted.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listing_replaces_the_last_and_bumps_the_generation() {
        let listing = Listing::default();
        let shard = |id: &str, closed| Shard {
            id: ShardId::new(id),
            parent: None,
            closed,
        };
        assert_eq!(listing.lookup(&ShardId::new("a")), (0, Listed::Absent));
        listing.update(&[shard("a", false), shard("b", true)]);
        assert_eq!(listing.lookup(&ShardId::new("a")), (1, Listed::Open));
        assert_eq!(listing.lookup(&ShardId::new("b")), (1, Listed::Closed));
        listing.update(&[shard("a", true)]);
        assert_eq!(listing.lookup(&ShardId::new("a")), (2, Listed::Closed));
        assert_eq!(listing.lookup(&ShardId::new("b")), (2, Listed::Absent));
    }
}
