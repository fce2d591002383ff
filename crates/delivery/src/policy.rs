//! Knative DeliverySpec semantics: how often, how patiently and how long to
//! try a sink before an event goes to the dead-letter sink.

use std::str::FromStr;
use std::time::Duration;

use dynamodb_source_backoff::{Backoff, Growth, Jitter};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{value:?} is not an ISO-8601 duration such as PT0.2S or PT1M: {reason}")]
    Duration { value: String, reason: String },
    #[error("{0:?} is not a backoff policy: expected exponential or linear")]
    Backoff(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackoffPolicy {
    #[default]
    Exponential,
    Linear,
}

impl FromStr for BackoffPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exponential" => Ok(BackoffPolicy::Exponential),
            "linear" => Ok(BackoffPolicy::Linear),
            other => Err(PolicyError::Backoff(other.to_owned())),
        }
    }
}

/// Parses an ISO-8601 duration (`PT0.2S`, `PT1M30S`, `P1D`).
pub fn parse_duration(value: &str) -> Result<Duration, PolicyError> {
    let err = |reason: &str| PolicyError::Duration {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    // The parser accepts trailing garbage; be strict about the alphabet.
    if !value.starts_with('P')
        || !value
            .chars()
            .all(|c| c.is_ascii_digit() || "PTYMWDHS.,".contains(c))
    {
        return Err(err("expected P[n]Y[n]M[n]DT[n]H[n]M[n]S"));
    }
    iso8601::duration(value)
        .map(Duration::from)
        .map_err(|e| err(&e))
}

/// When and how often to retry a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Retries before an event goes to the dead-letter sink; `None`: the default.
    /// Without a dead-letter sink retries never stop: nothing is dropped.
    pub retry: Option<u32>,
    pub backoff_policy: BackoffPolicy,
    pub backoff_delay: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// No wait between attempts is ever longer than this.
    pub max_backoff: Duration,
    /// Records older than this when an attempt would start are dead-lettered
    /// as expired instead (`DELIVERY_MAX_RECORD_AGE`); `None`: no limit.
    pub max_record_age: Option<Duration>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry: None,
            backoff_policy: BackoffPolicy::Exponential,
            backoff_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
            max_record_age: None,
        }
    }
}

impl DeliveryPolicy {
    /// Retries before dead-lettering when none are configured.
    pub const DEFAULT_RETRY: u32 = 5;

    pub fn retries_before_dead_letter(&self) -> u32 {
        self.retry.unwrap_or(Self::DEFAULT_RETRY)
    }

    /// The schedule of waits between attempts: Knative's policy, spread by
    /// ±20% so that many shards retrying one sink do not do it in lockstep.
    fn schedule(&self) -> Backoff {
        let growth = match self.backoff_policy {
            BackoffPolicy::Exponential => Growth::Exponential,
            BackoffPolicy::Linear => Growth::Linear,
        };
        Backoff::new(
            growth,
            self.backoff_delay,
            self.max_backoff,
            Jitter::Spread(0.2),
        )
    }

    /// The wait before retry number `retry` (1-based), without jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.schedule().nominal(retry)
    }

    /// The wait before retry `retry`, with jitter; a server's `Retry-After`
    /// is honoured as given (up to the maximum backoff).
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_backoff);
        }
        self.schedule().wait(retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule_follows_knative_policies() {
        let exp = DeliveryPolicy::default();
        let delays: Vec<_> = (1..=4).map(|n| exp.backoff(n).as_millis()).collect();
        assert_eq!(delays, vec![200, 400, 800, 1600]);
        let linear = DeliveryPolicy {
            backoff_policy: BackoffPolicy::Linear,
            ..DeliveryPolicy::default()
        };
        let delays: Vec<_> = (1..=4).map(|n| linear.backoff(n).as_millis()).collect();
        assert_eq!(delays, vec![200, 400, 600, 800]);
    }

    #[test]
    fn backoff_is_bounded() {
        let exp = DeliveryPolicy::default();
        assert_eq!(exp.backoff(100), Duration::from_secs(300));
        for n in 1..50 {
            assert!(exp.wait(n, None) <= Duration::from_secs(300));
        }
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let exp = DeliveryPolicy::default();
        for _ in 0..100 {
            let wait = exp.wait(3, None).as_millis();
            assert!((640..=960).contains(&wait), "{wait}");
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let exp = DeliveryPolicy::default();
        assert_eq!(
            exp.wait(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            exp.wait(1, Some(Duration::from_secs(9999))),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn iso8601_durations_parse() {
        assert_eq!(parse_duration("PT0.2S"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("PT1M30S"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("200ms").is_err());
        assert!(parse_duration("PT1Sx").is_err());
    }
}
