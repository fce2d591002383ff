//! Connections to the sink, shared by every shard's deliveries and bounded
//! in number.
//!
//! Each send holds one connection (HTTP/1.1 carries one request at a time),
//! so the bound is also the most events in flight across all shards. Shards
//! once kept connections of their own, up to their parallelism each: 300
//! shards opened 6,000 connections to one sink, and their buffers (28 KB
//! each as measured then, about 50 KB since; see below) were nearly all of
//! the adapter's memory. Sharing them lets a busy shard use what idle ones
//! do not, and the bound keeps memory and the sink's connection count
//! independent of how many shards the table has.
//!
//! The wait for a connection is fair (first come, first served), so shards
//! take turns when the bound is reached. The most recently used idle
//! connection is taken first, so the ones left idle age and are closed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections to the sink at most, by default: 12,800 events/s at a 10 ms
/// sink, and about 6 MB of buffers (hyper's read and header buffers and its
/// request channel, about 50 KB a connection). 256 kept a 300-shard table
/// above 32 MiB for 3-6 MiB more, for the few tables that are both that
/// large and busy enough to need more than 12,800 events/s behind a slow
/// sink; those raise `spec.delivery.maxConnections`.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// An idle connection is closed after this long unused.
const IDLE_CONNECTION: Duration = Duration::from_secs(30);

/// A pool of `C`: the delivery's connections to the sink and, opened on
/// first use, to the dead-letter sink.
pub(crate) struct ConnectionPool<C> {
    permits: Arc<Semaphore>,
    /// Idle connections, the most recently used last.
    idle: Mutex<VecDeque<(C, Instant)>>,
}

/// A connection taken from the pool; [`ConnectionPool::give_back`] returns it.
pub(crate) struct Checkout<C> {
    pub connections: C,
    /// `None` only if the semaphore were closed, which it never is.
    _permit: Option<OwnedSemaphorePermit>,
}

impl<C> ConnectionPool<C> {
    pub(crate) fn new(max: usize) -> Self {
        ConnectionPool {
            permits: Arc::new(Semaphore::new(max.max(1))),
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// A connection, once fewer than the bound are in use: an idle one, or
    /// one from `open` (which connects on its first request).
    pub(crate) async fn take(&self, open: impl FnOnce() -> C) -> Checkout<C> {
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.checkout(permit, open)
    }

    /// A connection if one may be used now, without waiting, and without
    /// passing anyone in the queue (permits given back go to waiters first).
    pub(crate) fn try_take(&self, open: impl FnOnce() -> C) -> Option<Checkout<C>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.checkout(Some(permit), open))
    }

    /// The most recently used idle connection, or a new one, under `permit`.
    fn checkout(
        &self,
        permit: Option<OwnedSemaphorePermit>,
        open: impl FnOnce() -> C,
    ) -> Checkout<C> {
        let idle = self.lock().pop_back().map(|(connections, _)| connections);
        Checkout {
            connections: idle.unwrap_or_else(open),
            _permit: permit,
        }
    }

    /// Returns a connection for the next send to use, and closes those
    /// left unused for too long.
    pub(crate) fn give_back(&self, checkout: Checkout<C>) {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.push_back((checkout.connections, now));
        expire(&mut idle, now);
    }

    /// Closes connections unused for too long. Shards with nothing in
    /// flight call it, and idle shards are woken at least once per idle
    /// poll, so a pool nobody sends on still closes its connections (sends
    /// close them as they give theirs back).
    pub(crate) fn close_idle(&self) {
        expire(&mut self.lock(), Instant::now());
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(C, Instant)>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn expire<C>(idle: &mut VecDeque<(C, Instant)>, now: Instant) {
    while let Some((_, used)) = idle.front() {
        if now.duration_since(*used) < IDLE_CONNECTION {
            break;
        }
        idle.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bound_holds_and_a_returned_connection_is_used_again() {
        let pool = ConnectionPool::new(2);
        let a = pool.take(|| "a").await;
        let b = pool.take(|| "b").await;
        let third = pool.take(|| "c");
        tokio::pin!(third);
        assert!(
            futures::poll!(third.as_mut()).is_pending(),
            "a third connection waits while two are in use"
        );
        pool.give_back(a);
        let third = third.await;
        assert_eq!(third.connections, "a", "the idle one is taken, none opened");
        pool.give_back(b);
        pool.give_back(third);
        assert_eq!(
            pool.take(|| "new").await.connections,
            "a",
            "the most recently used first"
        );
    }

    #[tokio::test]
    async fn taking_without_waiting_never_passes_a_shard_in_the_queue() {
        let pool = ConnectionPool::new(1);
        let first = pool
            .try_take(|| "a")
            .expect("a free connection is taken at once");
        assert!(pool.try_take(|| "b").is_none(), "none is free");
        let waiting = pool.take(|| "c");
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        pool.give_back(first);
        assert!(
            pool.try_take(|| "d").is_none(),
            "the connection given back is the waiting shard's"
        );
        assert_eq!(waiting.await.connections, "a");
    }

    #[test]
    fn connections_unused_for_long_are_closed() {
        let now = Instant::now();
        let Some(long_ago) = now.checked_sub(IDLE_CONNECTION + Duration::from_secs(1)) else {
            return;
        };
        let mut idle = VecDeque::from([("old", long_ago), ("recent", now)]);
        expire(&mut idle, now);
        assert_eq!(idle.iter().map(|(c, _)| *c).collect::<Vec<_>>(), ["recent"]);
    }
}
