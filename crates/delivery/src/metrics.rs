//! What delivery counts: events by final result, attempts by outcome,
//! dead letters by reason, and how long delivery takes.

use dynamodb_source_stream::label_enum;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

label_enum! {
    pub enum EventResult {
        /// The sink acknowledged it.
        Delivered => "delivered",
        /// The dead-letter sink acknowledged it.
        DeadLettered => "dead_lettered",
        /// Malformed with no dead-letter sink: logged and skipped.
        Dropped => "dropped",
        /// Excluded by the source's event-name filter.
        Filtered => "filtered",
        /// Older than `DELIVERY_MAX_RECORD_AGE`, with no dead-letter sink:
        /// logged in full and passed over.
        Expired => "expired",
    }
}

label_enum! {
    pub enum AttemptOutcome {
        Acknowledged => "acknowledged",
        Retryable => "retryable",
        Rejected => "rejected",
    }
}

label_enum! {
    pub enum DeadLetterReason {
        Rejected => "rejected",
        RetriesExhausted => "retries_exhausted",
        Malformed => "malformed",
        /// Older than `DELIVERY_MAX_RECORD_AGE` when an attempt would start.
        Expired => "expired",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: EventResult,
}

/// The HTTP status of an attempt, or none for a network failure or timeout.
/// A number rather than its text, so counting an attempt allocates nothing.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct StatusLabel(pub Option<u16>);

impl prometheus_client::encoding::EncodeLabelValue for StatusLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(code) => std::fmt::Write::write_fmt(encoder, format_args!("{code}")),
            None => std::fmt::Write::write_str(encoder, "none"),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub outcome: AttemptOutcome,
    pub code: StatusLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: DeadLetterReason,
}

#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    pub events: Family<ResultLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub dead_lettered: Family<ReasonLabels, Counter>,
    pub latency: Histogram,
    /// Events sent and not yet acknowledged or dead-lettered, all shards together.
    pub in_flight: Gauge,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        DeliveryMetrics {
            events: Family::default(),
            attempts: Family::default(),
            dead_lettered: Family::default(),
            in_flight: Gauge::default(),
            latency: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ]),
        }
    }
}

impl DeliveryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynamodb_source_events",
            "Stream records by final result (delivered, dead_lettered, dropped, filtered)",
            self.events.clone(),
        );
        registry.register(
            "dynamodb_source_delivery_attempts",
            "HTTP delivery attempts to the sink by outcome and status code",
            self.attempts.clone(),
        );
        registry.register(
            "dynamodb_source_dead_lettered",
            "Events sent to the dead-letter sink, by reason",
            self.dead_lettered.clone(),
        );
        registry.register(
            "dynamodb_source_delivery_duration_seconds",
            "Time from the first attempt to the sink's acknowledgement, retries included",
            self.latency.clone(),
        );
        registry.register(
            "dynamodb_source_events_in_flight",
            "Events being delivered now (sent or waiting to be retried), all shards together",
            self.in_flight.clone(),
        );
    }

    pub fn event(&self, result: EventResult) {
        self.events.get_or_create(&ResultLabels { result }).inc();
    }
}
