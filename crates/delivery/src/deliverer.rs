//! Delivering one event: retried until the sink or the dead-letter sink has
//! it. Nothing is dropped: without a dead-letter sink, retries never stop.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloudevents::{AttributesReader, Event};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::connection::Connection;
use crate::event::{EventError, EventFactory, RecordEvent};
use crate::metrics::{
    AttemptOutcome, DeadLetterReason, DeliveryMetrics, EventResult, ReasonLabels,
};
use crate::policy::DeliveryPolicy;
use crate::sink::{Attempt, Sink};
use dynamodb_source_api::{Report, StreamArn};
use dynamodb_source_stream::StreamRecord;

/// How an event left the adapter's hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    DeadLettered,
    /// Shutdown came first; the event was not acknowledged and will be read again.
    Cancelled,
}

/// Why an event goes to the dead-letter sink, carried on it as Knative does.
struct Failure {
    reason: DeadLetterReason,
    status: Option<u16>,
    body: String,
}

/// A record's event ready to be sent as its HTTP request. Shard tasks
/// prepare a batch while the previous one is delivered, so encoding stays
/// off the path between one acknowledgement and the next request.
#[derive(Debug)]
pub struct Prepared {
    event: RecordEvent,
    /// The event itself, kept only when a dead-letter sink may need it;
    /// boxed, as it is larger than the rest and every held record would
    /// carry the room for it.
    spare: Option<Box<Event>>,
    /// When the record was written (the event's `time`), for the record-age limit.
    created: Option<SystemTime>,
}

impl Prepared {
    /// The event's subject as written in its request: the item key.
    pub fn subject(&self) -> Option<&[u8]> {
        self.event.subject()
    }
}

/// A pause the sink asked a whole shard for: a `Retry-After` on one event's
/// answer (429, 503) means the sink wants less, so the shard starts no new
/// sends until it has passed, whichever key the answer was for.
#[derive(Debug, Default)]
pub struct Pacing {
    until: Mutex<Option<Instant>>,
}

impl Pacing {
    /// Holds new sends back for `wait` from now (never shortens a longer hold).
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none_or(|current| current < until) {
            *held = Some(until);
        }
    }

    /// When new sends may start again, if that is still ahead.
    pub fn held_until(&self) -> Option<Instant> {
        let mut held = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match *held {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                *held = None;
                None
            }
            None => None,
        }
    }
}

/// A task's own connections to the sink and, opened on first use, to the
/// dead-letter sink. Each shard task has its own, so deliveries never wait
/// for one another.
pub struct Connections {
    sink: Connection,
    dead_letter: Option<Connection>,
}

#[derive(Debug, Clone)]
pub struct Deliverer {
    factory: EventFactory,
    sink: Sink,
    dead_letter: Option<Sink>,
    policy: DeliveryPolicy,
    metrics: DeliveryMetrics,
}

impl Deliverer {
    pub fn new(
        factory: EventFactory,
        sink: Sink,
        dead_letter: Option<Sink>,
        policy: DeliveryPolicy,
        metrics: DeliveryMetrics,
    ) -> Self {
        Deliverer {
            factory,
            sink,
            dead_letter,
            policy,
            metrics,
        }
    }

    /// Connections for one task to deliver with.
    pub fn connections(&self) -> Connections {
        Connections {
            sink: self.sink.connection(),
            dead_letter: None,
        }
    }

    pub fn has_dead_letter_sink(&self) -> bool {
        self.dead_letter.is_some()
    }

    fn count_attempt(&self, attempt: &Attempt) {
        let (outcome, code) = match attempt {
            Attempt::Acknowledged(status) => (AttemptOutcome::Acknowledged, Some(*status)),
            Attempt::Retryable { status, .. } => (AttemptOutcome::Retryable, *status),
            Attempt::Rejected { status, .. } => (AttemptOutcome::Rejected, Some(*status)),
        };
        self.metrics.attempt(outcome, code);
    }

    /// Makes the event of `record` for the sink, straight from the record
    /// ([`EventFactory::record_event`]). With a dead-letter sink the event is
    /// also built as a CloudEvent, which a dead letter carries.
    pub fn prepare_record(
        &self,
        record: &StreamRecord,
        stream: &StreamArn,
    ) -> Result<Prepared, EventError> {
        let event = self.factory.record_event(record, stream)?;
        let spare = match self.dead_letter {
            // The data as rendered once, copied rather than rendered again.
            Some(_) => Some(Box::new(
                self.factory.build_with(record, event.body().to_vec())?,
            )),
            None => None,
        };
        Ok(Prepared {
            event,
            spare,
            created: record
                .approximate_creation
                .and_then(|t| SystemTime::try_from(t).ok()),
        })
    }

    /// The events this deliverer sends are made by.
    pub fn factory(&self) -> &EventFactory {
        &self.factory
    }

    /// One attempt with `event` on the task's connection to the sink.
    async fn attempt(&self, connections: &mut Connections, event: &RecordEvent) -> Attempt {
        let mut headers = self.factory.headers(event, self.sink.headers_added());
        self.sink.add_headers(&mut headers);
        self.sink
            .send(
                &mut connections.sink,
                headers,
                event.body().clone(),
                self.policy.timeout,
            )
            .await
    }

    /// Delivers a prepared event to the sink, or to the dead-letter sink when
    /// the sink refuses it or retries are exhausted.
    ///
    /// The event is borrowed, so it can be sent again after a restart of
    /// its delivery; whoever prepared it frees it once it settled.
    ///
    /// A `Retry-After` in an answer also holds back `pacing`'s other sends.
    pub async fn send(
        &self,
        connections: &mut Connections,
        prepared: &Prepared,
        pacing: &Pacing,
        cancel: &CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        let Prepared {
            event,
            spare,
            created,
        } = prepared;
        let mut retry = 0u32;
        let failure = loop {
            if let Some(age) = self.expired(*created) {
                break Failure {
                    reason: DeadLetterReason::Expired,
                    status: None,
                    body: format!(
                        "the record is {}s old, older than the {}s DELIVERY_MAX_RECORD_AGE allows",
                        age.as_secs(),
                        self.policy.max_record_age.unwrap_or_default().as_secs()
                    ),
                };
            }
            let attempt = self.attempt(connections, event).await;
            self.count_attempt(&attempt);
            match attempt {
                Attempt::Acknowledged(_) => {
                    self.metrics
                        .latency
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.event(EventResult::Delivered);
                    return Outcome::Delivered;
                }
                Attempt::Rejected { status, body } => {
                    warn!(id = %event.id(), status, %body, "the sink rejected the event");
                    let failure = Failure {
                        reason: DeadLetterReason::Rejected,
                        status: Some(status),
                        body,
                    };
                    if self.dead_letter.is_some() {
                        break failure;
                    }
                    // No dead-letter sink: keep the shard waiting rather than lose the event.
                    retry = retry.saturating_add(1);
                    error!(
                        id = %event.id(),
                        retry,
                        "no dead-letter sink configured; retrying a rejected event so it is not lost"
                    );
                    if !self.pause(retry, None, cancel).await {
                        return Outcome::Cancelled;
                    }
                }
                Attempt::Retryable {
                    status,
                    retry_after,
                    reason,
                } => {
                    retry = retry.saturating_add(1);
                    if self.dead_letter.is_some()
                        && retry > self.policy.retries_before_dead_letter()
                    {
                        break Failure {
                            reason: DeadLetterReason::RetriesExhausted,
                            status,
                            body: reason,
                        };
                    }
                    warn!(id = %event.id(), retry, %reason, "delivery failed, retrying");
                    if let Some(after) = retry_after {
                        pacing.hold(after.min(self.policy.max_backoff));
                    }
                    if !self.pause(retry, retry_after, cancel).await {
                        return Outcome::Cancelled;
                    }
                }
            }
        };
        match spare {
            Some(event) => {
                self.dead_letter(connections, Event::clone(event), failure, cancel)
                    .await
            }
            // Without a dead-letter sink only an expired record leaves the
            // loop: it is logged in full, counted, and passed over.
            None => {
                error!(
                    id = %event.id(),
                    reason = %failure.body,
                    data = %String::from_utf8_lossy(event.body()),
                    "no dead-letter sink configured: the expired record is logged in full and skipped"
                );
                self.metrics.event(EventResult::Expired);
                Outcome::DeadLettered
            }
        }
    }

    /// How old a record written at `created` is, when that is past the
    /// record-age limit.
    fn expired(&self, created: Option<SystemTime>) -> Option<Duration> {
        let limit = self.policy.max_record_age?;
        let age = SystemTime::now().duration_since(created?).ok()?;
        (age > limit).then_some(age)
    }

    /// Sends an event that could not even be built from its record.
    pub async fn dead_letter_malformed(
        &self,
        connections: &mut Connections,
        event: Event,
        reason: &str,
        cancel: &CancellationToken,
    ) -> Outcome {
        self.dead_letter(
            connections,
            event,
            Failure {
                reason: DeadLetterReason::Malformed,
                status: None,
                body: reason.to_owned(),
            },
            cancel,
        )
        .await
    }

    /// Waits before retry `retry`; false when shutdown interrupted the wait.
    async fn pause(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        let wait = self.policy.wait(retry, retry_after);
        debug!(?wait, retry, "waiting before the next attempt");
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = cancel.cancelled() => false,
        }
    }

    async fn dead_letter(
        &self,
        connections: &mut Connections,
        mut event: Event,
        failure: Failure,
        cancel: &CancellationToken,
    ) -> Outcome {
        let Some(dead_letter) = &self.dead_letter else {
            return Outcome::Cancelled;
        };
        // The error attributes Knative puts on dead-lettered events.
        event.set_extension("knativeerrordest", self.sink.url().as_str());
        if let Some(status) = failure.status {
            event.set_extension("knativeerrorcode", status.to_string());
        }
        event.set_extension("knativeerrordata", STANDARD.encode(failure.body.as_bytes()));
        let id = event.id().to_owned();
        // Encoded once, as for the sink: every attempt sends the same bytes.
        let encoded = dead_letter.prepare(event);
        let connection = connections
            .dead_letter
            .get_or_insert_with(|| dead_letter.connection());
        let mut retry = 0u32;
        loop {
            let attempt = match &encoded {
                Ok(encoded) => {
                    dead_letter
                        .send(
                            connection,
                            encoded.headers().clone(),
                            encoded.body().clone(),
                            self.policy.timeout,
                        )
                        .await
                }
                Err(error) => Attempt::Rejected {
                    status: 0,
                    body: Report(error).to_string(),
                },
            };
            match attempt {
                Attempt::Acknowledged(_) => {
                    self.metrics
                        .dead_lettered
                        .get_or_create(&ReasonLabels {
                            reason: failure.reason,
                        })
                        .inc();
                    self.metrics.event(EventResult::DeadLettered);
                    warn!(id = id.as_str(), reason = ?failure.reason, "event sent to the dead-letter sink");
                    return Outcome::DeadLettered;
                }
                Attempt::Retryable {
                    retry_after,
                    reason,
                    ..
                } => {
                    retry = retry.saturating_add(1);
                    error!(id = id.as_str(), retry, %reason, "the dead-letter sink failed; retrying");
                    if !self.pause(retry, retry_after, cancel).await {
                        return Outcome::Cancelled;
                    }
                }
                Attempt::Rejected { status, body } => {
                    retry = retry.saturating_add(1);
                    error!(id = id.as_str(), retry, status, %body, "the dead-letter sink rejected the event; retrying");
                    if !self.pause(retry, None, cancel).await {
                        return Outcome::Cancelled;
                    }
                }
            }
        }
    }
}
