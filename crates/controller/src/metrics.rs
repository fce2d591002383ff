//! What the controller counts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VerdictLabels {
    pub verdict: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct ControllerMetrics {
    pub reconciliations: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    /// Admission reviews this replica answered, by verdict.
    pub admission_reviews: Family<VerdictLabels, Counter>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            reconciliations: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            leader: Gauge::default(),
            admission_reviews: Family::default(),
        }
    }
}

impl ControllerMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynamodb_source_controller_reconciliations",
            "Reconciliations of AWSDynamoDBSource objects",
            self.reconciliations.clone(),
        );
        registry.register(
            "dynamodb_source_controller_reconcile_failures",
            "Failed reconciliations by error kind",
            self.failures.clone(),
        );
        registry.register(
            "dynamodb_source_controller_reconcile_duration_seconds",
            "Time one reconciliation takes",
            self.duration.clone(),
        );
        registry.register(
            "dynamodb_source_controller_leader",
            "1 while this replica is the leader",
            self.leader.clone(),
        );
        registry.register(
            "dynamodb_source_controller_admission_reviews",
            "AWSDynamoDBSource admission reviews answered by the webhook, by verdict",
            self.admission_reviews.clone(),
        );
    }

    pub(crate) fn admission(&self, verdict: crate::admission::Verdict) {
        let verdict = match verdict {
            crate::admission::Verdict::Allowed => "allowed",
            crate::admission::Verdict::Denied => "denied",
        };
        self.admission_reviews
            .get_or_create(&VerdictLabels { verdict })
            .inc();
    }

    pub(crate) fn failure(&self, error: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }
}
