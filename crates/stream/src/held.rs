//! A bound on the records the adapter holds at once, all shards together.
//!
//! Every readable shard is read, so memory cannot be bounded by how many
//! shards are read; it is bounded by records instead. A shard takes permits
//! before GetRecords, for as many records as the call may return, gives back
//! what the answer did not use, and holds one permit per record until the
//! record is settled (acknowledged, dead-lettered or passed over) and its
//! memory freed. An idle shard therefore holds nothing but its iterator, and
//! when the budget is spent, shards wait for permits in turn (the semaphore
//! is fair), so none waits for long behind the others.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::read_size::MIN_SHARE;

/// Records held by default: about 2 KB each once encoded (a 1 KB record
/// with both images), so a few megabytes in all.
pub const DEFAULT_RECORDS_HELD: usize = 2000;

#[derive(Debug, Clone)]
pub struct RecordsHeld {
    permits: Arc<Semaphore>,
    total: usize,
}

impl RecordsHeld {
    pub fn new(total: usize) -> Self {
        let total = total.max(MIN_SHARE);
        RecordsHeld {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Permits for up to `want` records. When the whole request is not
    /// available it waits in turn for a smaller one, so a shard asking for
    /// many never waits behind a budget that others hold for long.
    pub async fn acquire(&self, want: usize) -> Held {
        let want = want.clamp(1, self.total);
        let granted = match self.permits.try_acquire_many(count(want)) {
            Ok(permit) => {
                permit.forget();
                want
            }
            Err(_) => {
                let smaller = want.min(MIN_SHARE);
                match self.permits.acquire_many(count(smaller)).await {
                    Ok(permit) => {
                        permit.forget();
                        smaller
                    }
                    // Never closed: the budget lives as long as the readers.
                    Err(_) => 0,
                }
            }
        };
        Held {
            permits: self.permits.clone(),
            count: granted,
        }
    }

    /// Permits not held by anyone now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Permits held for some records; they go back when released or dropped.
#[derive(Debug)]
pub struct Held {
    permits: Arc<Semaphore>,
    count: usize,
}

impl Held {
    pub fn count(&self) -> usize {
        self.count
    }

    /// Gives back `n` permits (at most as many as held).
    pub fn release(&mut self, n: usize) {
        let n = n.min(self.count);
        if n > 0 {
            self.count -= n;
            self.permits.add_permits(n);
        }
    }

    /// Keeps permits for `n` records and gives back the rest.
    pub fn keep(&mut self, n: usize) {
        self.release(self.count.saturating_sub(n));
    }

    /// Moves up to `n` permits into a holder of their own, so they go back
    /// with whatever that holder travels with.
    pub fn split(&mut self, n: usize) -> Held {
        let n = n.min(self.count);
        self.count -= n;
        Held {
            permits: self.permits.clone(),
            count: n,
        }
    }

    /// Takes over `other`'s permits.
    pub fn absorb(&mut self, mut other: Held) {
        self.count += std::mem::take(&mut other.count);
    }

    /// Holds nothing, from `budget`.
    pub fn none(budget: &RecordsHeld) -> Held {
        Held {
            permits: budget.permits.clone(),
            count: 0,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = self.count;
        self.release(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_come_back_when_records_settle_or_holders_drop() {
        let budget = RecordsHeld::new(100);
        let mut read = budget.acquire(80).await;
        assert_eq!(read.count(), 80);
        read.keep(30);
        assert_eq!(budget.available(), 70, "what the answer did not use");
        let mut window = Held::none(&budget);
        window.absorb(read);
        window.release(10);
        assert_eq!(budget.available(), 80);
        let spent = window.split(5);
        assert_eq!((window.count(), spent.count()), (15, 5));
        assert_eq!(budget.available(), 80, "split permits are still held");
        drop(spent);
        assert_eq!(budget.available(), 85);
        drop(window);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn a_large_request_waits_only_for_a_small_share_when_the_budget_is_short() {
        let budget = RecordsHeld::new(100);
        let held = budget.acquire(40).await;
        let more = tokio::time::timeout(std::time::Duration::from_secs(5), budget.acquire(90))
            .await
            .expect("a smaller share is granted at once when available");
        assert_eq!(more.count(), MIN_SHARE);
        drop((held, more));
        assert_eq!(budget.available(), 100);
    }
}
