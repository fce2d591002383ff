//! The adapter's summary of how it keeps up with its stream: written by the
//! adapter next to its checkpoint (the same ConfigMap, its own data key), read
//! by the controller for `status.lag` and the `KeepingUp` condition. It
//! travels through the object the adapter already writes, so the controller
//! never scrapes pods.
//!
//! The checkpoint document refuses unknown fields (a newer format must not be
//! misread); the summary is a separate key so that it can grow without
//! touching that format, and a reader ignores fields it does not know.

use serde::{Deserialize, Serialize};

/// The ConfigMap data key of the summary (JSON).
pub const SUMMARY_KEY: &str = "summary.json";

/// With shard Leases, each replica writes its own summary under
/// `summary-POD_NAME.json` (one object, no replica overwrites another's);
/// the controller combines every summary key.
pub const REPLICA_SUMMARY_PREFIX: &str = "summary-";

/// The data key of the summary of replica `pod`.
pub fn replica_summary_key(pod: &str) -> String {
    format!("{REPLICA_SUMMARY_PREFIX}{pod}.json")
}

/// Lag above this is "behind"; behind for [`FALLING_BEHIND_FOR`] is falling behind.
pub const BEHIND_LAG_SECONDS: f64 = 300.0;

/// How long the lag must stay above [`BEHIND_LAG_SECONDS`] before the source
/// is reported as falling behind: a burst that is worked off is not.
pub const FALLING_BEHIND_FOR_SECONDS: i64 = 300;

/// How long deliveries may go unacknowledged while events wait before the
/// sink is reported as failing.
pub const SINK_FAILING_FOR_SECONDS: i64 = 60;

/// How long after the stream trimmed records the source still reports it.
pub const TRIMMED_REPORTED_FOR_SECONDS: i64 = 3600;

/// A summary older than this says nothing about now (the adapter stopped
/// writing it: stopped, crashed, or cut off from the API server).
pub const STALE_AFTER_SECONDS: i64 = 300;

/// What the adapter reports. Times are Unix seconds; counts are since the
/// adapter process started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamSummary {
    /// When the adapter wrote this summary.
    pub updated_at: i64,
    /// The largest iterator age of the shards being read: how old the newest
    /// record read was when it was read (0 when every shard is caught up).
    pub iterator_age_seconds: f64,
    /// Since when the iterator age has stayed above [`BEHIND_LAG_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_since: Option<i64>,
    /// Records the sink acknowledged.
    #[serde(default)]
    pub records_delivered: u64,
    /// When the last acknowledgement was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<i64>,
    /// Shards with a reader now.
    #[serde(default)]
    pub shards_read: u64,
    /// Records that went to the dead-letter sink.
    #[serde(default)]
    pub dead_lettered: u64,
    /// When a GetRecords call was last throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_throttled_at: Option<i64>,
    /// When records were last found trimmed before they were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trimmed_at: Option<i64>,
    /// Since when events have waited for the sink without any acknowledgement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_failing_since: Option<i64>,
    /// The last replay the checkpoint recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay: Option<LastReplay>,
}

impl StreamSummary {
    /// Whether this summary says something about `now` (written at most
    /// [`STALE_AFTER_SECONDS`] before it).
    pub fn is_fresh(&self, now: i64) -> bool {
        now - self.updated_at <= STALE_AFTER_SECONDS
    }

    /// The summary of a source whose replicas each wrote their own: the source
    /// is as far behind as its furthest-behind replica, and has delivered what
    /// they all delivered. `None` when there is no summary at all.
    ///
    /// Summaries that are stale at `now` are left out (a replica that stopped
    /// says nothing about the others); when none is fresh, the newest one alone
    /// is the answer, so that its staleness is still reported.
    ///
    /// Combined: `updatedAt`, `lastDeliveryAt`, `lastThrottledAt` and
    /// `lastTrimmedAt` are the latest; `iteratorAgeSeconds` the largest;
    /// `behindSince` and `sinkFailingSince` the earliest of those set; counts
    /// (`recordsDelivered`, `deadLettered`, `shardsRead`) the sums; `lastReplay`
    /// the one applied last.
    pub fn combine(
        summaries: impl IntoIterator<Item = StreamSummary>,
        now: i64,
    ) -> Option<StreamSummary> {
        let (fresh, stale): (Vec<_>, Vec<_>) = summaries.into_iter().partition(|s| s.is_fresh(now));
        if fresh.is_empty() {
            return stale.into_iter().max_by_key(|s| s.updated_at);
        }
        let latest = |a: Option<i64>, b: Option<i64>| a.max(b);
        let earliest = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        fresh.into_iter().reduce(|a, b| StreamSummary {
            updated_at: a.updated_at.max(b.updated_at),
            iterator_age_seconds: a.iterator_age_seconds.max(b.iterator_age_seconds),
            behind_since: earliest(a.behind_since, b.behind_since),
            records_delivered: a.records_delivered.saturating_add(b.records_delivered),
            last_delivery_at: latest(a.last_delivery_at, b.last_delivery_at),
            shards_read: a.shards_read.saturating_add(b.shards_read),
            dead_lettered: a.dead_lettered.saturating_add(b.dead_lettered),
            last_throttled_at: latest(a.last_throttled_at, b.last_throttled_at),
            last_trimmed_at: latest(a.last_trimmed_at, b.last_trimmed_at),
            sink_failing_since: earliest(a.sink_failing_since, b.sink_failing_since),
            last_replay: match (a.last_replay, b.last_replay) {
                (Some(a), Some(b)) => Some(if b.applied_at > a.applied_at { b } else { a }),
                (a, b) => a.or(b),
            },
        })
    }
}

/// Whether `key` is a data key a summary is written under: [`SUMMARY_KEY`]
/// (one adapter) or [`replica_summary_key`] (each replica with shard Leases).
pub fn is_summary_key(key: &str) -> bool {
    key == SUMMARY_KEY
        || key
            .strip_prefix(REPLICA_SUMMARY_PREFIX)
            .and_then(|rest| rest.strip_suffix(".json"))
            .is_some_and(|pod| !pod.is_empty())
}

/// A replay the adapter applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastReplay {
    pub token: String,
    /// `TRIM_HORIZON` or the RFC 3339 time replayed from.
    pub from: String,
    /// Unix seconds.
    pub applied_at: i64,
}

/// A duration as Kubernetes tools show one: `0s`, `45s`, `3m20s`, `2h5m0s`.
pub fn short_duration(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    let (hours, minutes, secs) = (total / 3600, total % 3600 / 60, total % 60);
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, _) => format!("{minutes}m{secs}s"),
        _ => format!("{hours}h{minutes}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_shows_them() {
        assert_eq!(short_duration(0.0), "0s");
        assert_eq!(short_duration(0.4), "0s");
        assert_eq!(short_duration(45.0), "45s");
        assert_eq!(short_duration(200.0), "3m20s");
        assert_eq!(short_duration(7500.0), "2h5m0s");
        assert_eq!(short_duration(f64::NAN), "0s");
    }

    const NOW: i64 = 1_700_000_000;

    fn at(updated_at: i64) -> StreamSummary {
        StreamSummary {
            updated_at,
            ..StreamSummary::default()
        }
    }

    fn replay(token: &str, applied_at: i64) -> Option<LastReplay> {
        Some(LastReplay {
            token: token.to_owned(),
            from: "TRIM_HORIZON".to_owned(),
            applied_at,
        })
    }

    #[test]
    fn replicas_combine_into_the_furthest_behind_and_the_sum_of_their_work() {
        let a = StreamSummary {
            updated_at: NOW - 20,
            iterator_age_seconds: 400.0,
            behind_since: Some(NOW - 600),
            records_delivered: 10,
            last_delivery_at: Some(NOW - 25),
            shards_read: 2,
            dead_lettered: 1,
            last_throttled_at: Some(NOW - 100),
            last_trimmed_at: None,
            sink_failing_since: Some(NOW - 90),
            last_replay: replay("old", NOW - 5000),
        };
        let b = StreamSummary {
            updated_at: NOW - 5,
            iterator_age_seconds: 3.0,
            behind_since: None,
            records_delivered: 32,
            last_delivery_at: Some(NOW - 6),
            shards_read: 3,
            dead_lettered: 0,
            last_throttled_at: Some(NOW - 300),
            last_trimmed_at: Some(NOW - 1000),
            sink_failing_since: Some(NOW - 30),
            last_replay: replay("new", NOW - 100),
        };
        let combined = StreamSummary::combine([a.clone(), b.clone()], NOW).expect("combined");
        assert_eq!(
            combined,
            StreamSummary {
                updated_at: NOW - 5,
                iterator_age_seconds: 400.0,
                behind_since: Some(NOW - 600),
                records_delivered: 42,
                last_delivery_at: Some(NOW - 6),
                shards_read: 5,
                dead_lettered: 1,
                last_throttled_at: Some(NOW - 100),
                last_trimmed_at: Some(NOW - 1000),
                sink_failing_since: Some(NOW - 90),
                last_replay: replay("new", NOW - 100),
            }
        );
        assert_eq!(
            StreamSummary::combine([b, a], NOW),
            Some(combined),
            "the order of the keys does not matter"
        );
    }

    #[test]
    fn one_summary_combines_into_itself_and_none_into_nothing() {
        let one = StreamSummary {
            iterator_age_seconds: 1.5,
            records_delivered: 7,
            behind_since: Some(NOW - 40),
            ..at(NOW - 1)
        };
        assert_eq!(StreamSummary::combine([one.clone()], NOW), Some(one));
        assert_eq!(StreamSummary::combine([], NOW), None);
    }

    #[test]
    fn stale_summaries_are_left_out_unless_none_is_fresh() {
        let gone = StreamSummary {
            iterator_age_seconds: 9000.0,
            records_delivered: 1000,
            ..at(NOW - STALE_AFTER_SECONDS - 1)
        };
        let live = StreamSummary {
            iterator_age_seconds: 2.0,
            records_delivered: 5,
            ..at(NOW - STALE_AFTER_SECONDS)
        };
        assert_eq!(
            StreamSummary::combine([gone.clone(), live.clone()], NOW),
            Some(live),
            "a replica that stopped says nothing about the others"
        );
        let older = at(NOW - 4000);
        assert_eq!(
            StreamSummary::combine([older, gone.clone()], NOW),
            Some(gone),
            "the newest stale one alone, so the staleness is reported"
        );
    }

    #[test]
    fn summary_keys_are_the_single_one_and_one_per_replica() {
        assert!(is_summary_key(SUMMARY_KEY));
        assert!(is_summary_key(&replica_summary_key("orders-7d9f-abcde")));
        for other in [
            "checkpoint.json",
            "summary-.json",
            "summary-a.txt",
            "summaryx.json",
        ] {
            assert!(!is_summary_key(other), "{other}");
        }
    }

    #[test]
    fn a_summary_with_fields_it_does_not_know_still_reads() {
        let summary: StreamSummary =
            serde_json::from_str(r#"{"updatedAt": 10, "iteratorAgeSeconds": 1.5, "later": true}"#)
                .expect("reads");
        assert_eq!(summary.updated_at, 10);
        assert_eq!(summary.records_delivered, 0);
    }
}
