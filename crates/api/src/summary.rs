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

    #[test]
    fn a_summary_with_fields_it_does_not_know_still_reads() {
        let summary: StreamSummary =
            serde_json::from_str(r#"{"updatedAt": 10, "iteratorAgeSeconds": 1.5, "later": true}"#)
                .expect("reads");
        assert_eq!(summary.updated_at, 10);
        assert_eq!(summary.records_delivered, 0);
    }
}
