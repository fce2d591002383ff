//! What the lease coordinator counts.

use dynamodb_source_stream::label_enum;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

label_enum! {
    /// How a shard lease changed hands.
    pub enum Change {
        /// Taken: new, or released by its holder.
        Taken => "taken",
        /// Taken after it expired: its holder died or was cut off.
        TakenOver => "taken_over",
        /// Passed to this replica after it asked (balancing).
        Received => "received",
        /// Passed to the replica that asked for it.
        Given => "given",
        /// Lost: taken by another replica, deleted, or not renewed in time.
        Lost => "lost",
        /// Released at shutdown, or deleted once its shard was read to the end.
        Released => "released",
        /// A hand-over this replica asked for.
        Asked => "asked",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ChangeLabels {
    pub change: Change,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseMetrics {
    pub held: Gauge,
    pub changes: Family<ChangeLabels, Counter>,
}

impl LeaseMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynamodb_source_shard_leases_held",
            "Shard leases this replica holds",
            self.held.clone(),
        );
        registry.register(
            "dynamodb_source_shard_lease_changes",
            "Shard leases taken, taken over after expiry, received, given, lost, released and asked for",
            self.changes.clone(),
        );
    }

    pub(super) fn count(&self, change: Change) {
        self.changes.get_or_create(&ChangeLabels { change }).inc();
    }
}
