//! How many records one GetRecords call asks for.
//!
//! What the adapter holds in memory is records: each shard being read holds
//! up to two batches (one being delivered, one read ahead). A fixed size per
//! call makes memory grow with the number of shards read at once, so by
//! default a budget of records is shared among them instead: one shard asks
//! for 200 at a time, eight ask for 50 each (the floor).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The API's own cap on one GetRecords call.
pub(crate) const API_MAX: usize = 1000;
/// Records held across all shards by default.
pub const DEFAULT_BUDGET: usize = 400;
/// Below this a read costs more in calls than it saves in memory, and a busy
/// shard (about 1,000 writes per second at most) could outrun its reader
/// against the real service's 10-50 ms per call.
pub(crate) const MIN_SHARE: usize = 50;

#[derive(Debug, Clone)]
pub enum ReadSize {
    /// Every call asks for this many (`RECORDS_PER_READ`).
    Fixed(u16),
    /// A budget of records shared by the shards being read.
    Shared(Arc<Budget>),
}

#[derive(Debug)]
pub struct Budget {
    records: usize,
    readers: AtomicUsize,
}

/// One shard's claim on the budget, for as long as it reads.
#[derive(Debug)]
pub struct Share {
    size: ReadSize,
}

impl ReadSize {
    pub fn shared(records: usize) -> Self {
        ReadSize::Shared(Arc::new(Budget {
            records,
            readers: AtomicUsize::new(0),
        }))
    }

    /// Counts one more shard reading until the share is dropped.
    pub fn join(&self) -> Share {
        if let ReadSize::Shared(budget) = self {
            budget.readers.fetch_add(1, Ordering::Relaxed);
        }
        Share { size: self.clone() }
    }
}

impl Default for ReadSize {
    fn default() -> Self {
        ReadSize::shared(DEFAULT_BUDGET)
    }
}

impl Share {
    /// The `Limit` of the next call: each shard holds two batches at most.
    pub fn limit(&self) -> i32 {
        let n = match &self.size {
            ReadSize::Fixed(n) => usize::from(*n).clamp(1, API_MAX),
            ReadSize::Shared(budget) => {
                let readers = budget.readers.load(Ordering::Relaxed).max(1);
                (budget.records / (2 * readers)).clamp(MIN_SHARE, API_MAX)
            }
        };
        i32::try_from(n).unwrap_or(1000)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let ReadSize::Shared(budget) = &self.size {
            budget.readers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_budget_shrinks_each_share_as_shards_join_and_grows_back() {
        let size = ReadSize::shared(1000);
        let first = size.join();
        assert_eq!(first.limit(), 500);
        let others: Vec<Share> = (0..7).map(|_| size.join()).collect();
        assert_eq!(first.limit(), 62);
        drop(others);
        assert_eq!(first.limit(), 500);
    }

    #[test]
    fn shares_stay_within_the_api_and_a_useful_minimum() {
        let size = ReadSize::shared(1_000_000);
        assert_eq!(size.join().limit(), 1000);
        let size = ReadSize::shared(10);
        assert_eq!(size.join().limit(), MIN_SHARE as i32);
    }

    #[test]
    fn a_fixed_size_ignores_how_many_shards_read() {
        let size = ReadSize::Fixed(200);
        let _many: Vec<Share> = (0..50).map(|_| size.join()).collect();
        assert_eq!(size.join().limit(), 200);
        assert_eq!(ReadSize::Fixed(1).join().limit(), 1);
    }
}
