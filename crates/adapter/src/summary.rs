//! The summary of how the adapter keeps up with its stream, for the
//! controller's `status.lag` and `KeepingUp` condition (see
//! [`dynamodb_source_api::summary`]).
//!
//! [`Tracker`] is pure: fed the adapter's counters at each tick, it works out
//! what changed since the previous one (a delivery, a throttle, a trim) and
//! since when a condition has held. [`write_loop`] feeds it from the metrics
//! and saves the result next to the checkpoint, once per interval: the
//! summary costs one write per interval, however busy the stream.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dynamodb_source_api::Report;
use dynamodb_source_api::summary::{BEHIND_LAG_SECONDS, LastReplay, StreamSummary};
use dynamodb_source_delivery::metrics::{DeliveryMetrics, EventResult, ResultLabels};
use dynamodb_source_stream::checkpoint::CheckpointStore;
use dynamodb_source_stream::metrics::{CallLabels, CallResult, StreamMetrics};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::progress::Progress;

/// The adapter's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Readings {
    /// Unix seconds.
    pub now: i64,
    pub max_iterator_age: f64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub throttles: u64,
    pub trimmed: u64,
    pub in_flight: i64,
    pub shards_read: i64,
}

/// Turns successive readings into summaries.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    previous: Option<Readings>,
    summary: StreamSummary,
}

impl Tracker {
    pub(crate) fn observe(&mut self, now: Readings) -> StreamSummary {
        let summary = &mut self.summary;
        summary.updated_at = now.now;
        summary.iterator_age_seconds = now.max_iterator_age;
        summary.records_delivered = now.delivered;
        summary.dead_lettered = now.dead_lettered;
        summary.shards_read = u64::try_from(now.shards_read).unwrap_or(0);
        summary.behind_since = if now.max_iterator_age > BEHIND_LAG_SECONDS {
            summary.behind_since.or(Some(now.now))
        } else {
            None
        };
        if let Some(before) = self.previous {
            if now.delivered > before.delivered {
                summary.last_delivery_at = Some(now.now);
            }
            if now.throttles > before.throttles {
                summary.last_throttled_at = Some(now.now);
            }
            if now.trimmed > before.trimmed {
                summary.last_trimmed_at = Some(now.now);
            }
            // Events waited through the whole interval and none was acknowledged.
            let stuck =
                now.in_flight > 0 && before.in_flight > 0 && now.delivered == before.delivered;
            summary.sink_failing_since = if stuck {
                summary.sink_failing_since.or(Some(before.now))
            } else {
                None
            };
        }
        self.previous = Some(now);
        summary.clone()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn readings(stream: &StreamMetrics, delivery: &DeliveryMetrics) -> Readings {
    let events = |result| {
        delivery
            .events
            .get_or_create(&ResultLabels { result })
            .get()
    };
    Readings {
        now: unix_now(),
        max_iterator_age: stream.max_iterator_age(),
        delivered: events(EventResult::Delivered),
        dead_lettered: events(EventResult::DeadLettered),
        throttles: stream
            .get_records
            .get_or_create(&CallLabels {
                result: CallResult::Throttled,
            })
            .get(),
        trimmed: stream.trimmed.get(),
        in_flight: delivery.in_flight.get(),
        shards_read: stream.shards_read.get(),
    }
}

/// Saves a summary every `interval` until `stop`; a failed save is logged
/// and the next tick writes a newer one.
pub(crate) async fn write_loop(
    store: Arc<dyn CheckpointStore>,
    progress: Arc<Progress>,
    stream: StreamMetrics,
    delivery: DeliveryMetrics,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tracker = Tracker::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        let mut summary = tracker.observe(readings(&stream, &delivery));
        summary.last_replay = progress.last_replay().map(|r| LastReplay {
            token: r.token,
            from: r.from,
            applied_at: r.applied_at,
        });
        if let Err(e) = store.save_summary(&summary).await {
            warn!(error = %Report(&e), "saving the summary failed; the next one is saved at the next interval");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now: i64) -> Readings {
        Readings {
            now,
            ..Readings::default()
        }
    }

    #[test]
    fn a_delivery_throttle_or_trim_is_dated_at_the_tick_that_saw_it() {
        let mut tracker = Tracker::default();
        let first = tracker.observe(Readings {
            delivered: 5,
            ..at(100)
        });
        assert_eq!(first.last_delivery_at, None, "nothing to compare with yet");
        let second = tracker.observe(Readings {
            delivered: 8,
            throttles: 1,
            ..at(130)
        });
        assert_eq!(second.records_delivered, 8);
        assert_eq!(second.last_delivery_at, Some(130));
        assert_eq!(second.last_throttled_at, Some(130));
        assert_eq!(second.last_trimmed_at, None);
        let third = tracker.observe(Readings {
            delivered: 8,
            throttles: 1,
            trimmed: 1,
            ..at(160)
        });
        assert_eq!(third.last_delivery_at, Some(130), "kept until the next one");
        assert_eq!(third.last_throttled_at, Some(130));
        assert_eq!(third.last_trimmed_at, Some(160));
    }

    #[test]
    fn behind_and_sink_failing_hold_since_they_began_and_clear_at_once() {
        let mut tracker = Tracker::default();
        let waiting = |now, delivered, age| Readings {
            in_flight: 3,
            delivered,
            max_iterator_age: age,
            ..at(now)
        };
        tracker.observe(waiting(0, 10, 10.0));
        let stuck = tracker.observe(waiting(30, 10, 400.0));
        assert_eq!(
            stuck.sink_failing_since,
            Some(0),
            "since the interval began"
        );
        assert_eq!(stuck.behind_since, Some(30));
        let still = tracker.observe(waiting(60, 10, 500.0));
        assert_eq!(still.sink_failing_since, Some(0));
        assert_eq!(still.behind_since, Some(30));
        let moving = tracker.observe(waiting(90, 11, 20.0));
        assert_eq!(moving.sink_failing_since, None);
        assert_eq!(moving.behind_since, None);
        let idle = tracker.observe(Readings {
            delivered: 11,
            ..at(120)
        });
        assert_eq!(idle.sink_failing_since, None, "nothing waits: not failing");
    }
}
