//! Replicas of one source share its shards through Kubernetes Leases, one
//! per shard (`coordination.k8s.io/v1`, in the source's namespace, owned by
//! the source): a replica reads a shard only while it holds its lease.
//!
//! # Safety: never two readers of one shard
//!
//! - A lease is taken only when nobody holds it: it does not exist (create:
//!   one creator wins), it was released (holder empty), or it expired. Every
//!   write is conditional on the `resourceVersion` read, so two takers cannot
//!   both win.
//! - Expiry is judged by the taker's own clock, never by comparing the
//!   holder's `renewTime` with it: a lease is expired when its
//!   `resourceVersion` has not changed for a whole lease duration since this
//!   replica first saw it. Clock offsets between nodes do not matter; only
//!   clock rates do.
//! - A holder stops reading a shard once [`Timing::deadline`] (two thirds of
//!   the duration) has passed since it *sent* its last successful renewal.
//!   That renewal was seen by any taker no earlier than it was sent, so the
//!   holder has stopped a third of a duration before anyone may take over.
//! - Balancing never takes a held lease: it asks the holder (an annotation);
//!   the holder stops reading, saves its checkpoint, and passes the lease to
//!   the asker in one write (and asks for none itself for two rounds, so
//!   that replicas starting together do not pass shards back and forth). At
//!   shutdown a replica saves, then releases its leases at once, so the
//!   others need not wait for them to expire.
//!
//! The checkpoint stays in the source's ConfigMap: each replica writes the
//! shards it holds into it ([`dynamodb_source_stream::merge`]), and reads the
//! others' progress (finished parents) from it.

mod balance;
mod coordinator;
mod metrics;
mod object;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dynamodb_source_stream::ShardId;
use tokio::sync::{mpsc, watch};

pub(crate) use coordinator::Coordinator;
pub(crate) use metrics::LeaseMetrics;
pub(crate) use object::Owner;

/// The times of one lease duration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often leases are renewed and balanced.
    pub round: Duration,
    /// How long after its last successful renewal a holder stops reading.
    pub deadline: Duration,
}

impl Timing {
    pub(crate) fn for_duration(duration: Duration) -> Timing {
        Timing {
            duration,
            round: duration / 4,
            deadline: duration * 2 / 3,
        }
    }
}
/// The shards whose lease this replica holds: the only ones whose progress
/// it writes into the shared checkpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldShards(Arc<RwLock<BTreeSet<ShardId>>>);

impl HeldShards {
    pub(crate) fn contains(&self, shard: &ShardId) -> bool {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(shard)
    }

    pub(super) fn set(&self, shards: BTreeSet<ShardId>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = shards;
    }
}

/// How a shard task that held a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Read to its end, or gone: the lease is deleted once that is saved.
    Done,
    /// Stopped (asked to hand over, or shutdown).
    Stopped,
}

/// The supervisor's side: which shards may be read, and what it tells the
/// coordinator.
pub(crate) struct Leases {
    /// The shards the lineage allows to read now.
    pub(super) readable: watch::Sender<BTreeSet<ShardId>>,
    /// The shards this replica may read: leases held and renewed in time.
    pub(super) allowed: watch::Receiver<BTreeSet<ShardId>>,
    pub(super) ended: mpsc::UnboundedSender<(ShardId, Ended)>,
}

impl Leases {
    /// The lineage allows these shards to be read now.
    pub(crate) fn readable(&self, shards: BTreeSet<ShardId>) {
        self.readable.send_if_modified(|current| {
            let changed = *current != shards;
            *current = shards;
            changed
        });
    }

    pub(crate) fn allowed(&self) -> watch::Receiver<BTreeSet<ShardId>> {
        self.allowed.clone()
    }

    pub(crate) fn ended(&self, shard: ShardId, how: Ended) {
        let _ = self.ended.send((shard, how));
    }
}
