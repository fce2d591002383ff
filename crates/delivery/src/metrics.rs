//! What delivery counts: events by final result, attempts by outcome,
//! dead letters by reason, and how long delivery takes.

use std::sync::{Arc, OnceLock};

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
    /// The series every delivered event counts in, found once: a family
    /// looks a series up under a lock, by hashing its labels, at every use.
    hot: Arc<HotSeries>,
}

/// Series of [`DeliveryMetrics`]' families, each made on its first use, so
/// a series appears when it first counts, as with the family alone.
#[derive(Debug)]
struct HotSeries {
    delivered: OnceLock<Counter>,
    /// Attempts acknowledged, by status code from 200 to 299.
    acknowledged: [OnceLock<Counter>; 100],
}

impl Default for HotSeries {
    fn default() -> Self {
        HotSeries {
            delivered: OnceLock::new(),
            acknowledged: std::array::from_fn(|_| OnceLock::new()),
        }
    }
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
            hot: Arc::default(),
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
        match result {
            EventResult::Delivered => self
                .hot
                .delivered
                .get_or_init(|| self.events.get_or_create(&ResultLabels { result }).clone())
                .inc(),
            _ => self.events.get_or_create(&ResultLabels { result }).inc(),
        };
    }

    /// Counts an attempt.
    pub fn attempt(&self, outcome: AttemptOutcome, code: Option<u16>) {
        let labels = || AttemptLabels {
            outcome,
            code: StatusLabel(code),
        };
        let hot = match (outcome, code) {
            (AttemptOutcome::Acknowledged, Some(code)) => code
                .checked_sub(200)
                .and_then(|i| self.hot.acknowledged.get(usize::from(i))),
            _ => None,
        };
        match hot {
            Some(series) => series
                .get_or_init(|| self.attempts.get_or_create(&labels()).clone())
                .inc(),
            None => self.attempts.get_or_create(&labels()).inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(metrics: &DeliveryMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn series_found_once_count_in_the_families_and_appear_on_first_use() {
        let metrics = DeliveryMetrics::default();
        let before = exposition(&metrics);
        assert!(!before.contains("result=\"delivered\""), "{before}");
        assert!(!before.contains("outcome=\"acknowledged\""), "{before}");
        let other = metrics.clone();
        metrics.event(EventResult::Delivered);
        other.event(EventResult::Delivered);
        metrics.event(EventResult::Filtered);
        metrics.attempt(AttemptOutcome::Acknowledged, Some(202));
        other.attempt(AttemptOutcome::Acknowledged, Some(202));
        metrics.attempt(AttemptOutcome::Acknowledged, Some(200));
        metrics.attempt(AttemptOutcome::Acknowledged, Some(302));
        metrics.attempt(AttemptOutcome::Retryable, None);
        let text = exposition(&metrics);
        for line in [
            "dynamodb_source_events_total{result=\"delivered\"} 2",
            "dynamodb_source_events_total{result=\"filtered\"} 1",
            "dynamodb_source_delivery_attempts_total{outcome=\"acknowledged\",code=\"202\"} 2",
            "dynamodb_source_delivery_attempts_total{outcome=\"acknowledged\",code=\"200\"} 1",
            "dynamodb_source_delivery_attempts_total{outcome=\"acknowledged\",code=\"302\"} 1",
            "dynamodb_source_delivery_attempts_total{outcome=\"retryable\",code=\"none\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
