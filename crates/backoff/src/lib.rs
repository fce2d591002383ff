//! Waits between retries: one type for every retry loop of the product
//! (reading a shard, discovering shards, saving checkpoints, probing the
//! sink, polling an idle shard, reconciling a source, delivering an event),
//! so each is tested once here rather than written six times.
//!
//! A [`Backoff`] is an endless iterator of waits: the first is `base`, each
//! next one grows (doubling, or by `base` again) up to `max`, spread by the
//! chosen [`Jitter`] so that many retrying loops do not move in lockstep.
//! [`Backoff::reset`] starts over after a success.

use std::time::Duration;

use rand::Rng;

/// How the waits grow from one attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// `base`, `2 base`, `4 base`, ...
    Exponential,
    /// `base`, `2 base`, `3 base`, ...
    Linear,
}

/// How a wait is spread around its nominal value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the nominal wait.
    None,
    /// Uniformly within `fraction` of the nominal wait either way (0.2: ±20%).
    Spread(f64),
    /// Uniformly between half the nominal wait and all of it: never longer
    /// than the nominal wait, and on average three quarters of it.
    Half,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackoffError {
    #[error("a backoff's base {base:?} must be positive and at most its maximum {max:?}")]
    Bounds { base: Duration, max: Duration },
    #[error("a jitter spread must be between 0 and 1, not {0}")]
    Spread(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    growth: Growth,
    jitter: Jitter,
    /// Waits handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    /// Checks its arguments, as linkerd's `ExponentialBackoff::try_new` does.
    pub fn try_new(
        growth: Growth,
        base: Duration,
        max: Duration,
        jitter: Jitter,
    ) -> Result<Backoff, BackoffError> {
        if base.is_zero() || base > max {
            return Err(BackoffError::Bounds { base, max });
        }
        if let Jitter::Spread(fraction) = jitter
            && !(0.0..=1.0).contains(&fraction)
        {
            return Err(BackoffError::Spread(fraction.to_string()));
        }
        Ok(Backoff {
            base,
            max,
            growth,
            jitter,
            attempt: 0,
        })
    }

    /// For settings parsed elsewhere and the product's own constants: a
    /// `max` below `base` is raised to it rather than refused, and a zero
    /// `base` gives zero waits.
    pub fn new(growth: Growth, base: Duration, max: Duration, jitter: Jitter) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            growth,
            jitter,
            attempt: 0,
        }
        .with_jitter(jitter)
    }

    /// Doubling from `base` to `max`, each wait between half and all of its
    /// nominal value.
    pub fn exponential(base: Duration, max: Duration) -> Backoff {
        Backoff::new(Growth::Exponential, base, max, Jitter::Half)
    }

    pub fn with_jitter(mut self, jitter: Jitter) -> Backoff {
        self.jitter = match jitter {
            Jitter::Spread(fraction) => Jitter::Spread(fraction.clamp(0.0, 1.0)),
            other => other,
        };
        self
    }

    /// The nominal wait before retry `retry` (1 for the first), before
    /// jitter, never above `max`.
    pub fn nominal(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        let wait = match self.growth {
            Growth::Exponential => self
                .base
                .saturating_mul(2u32.saturating_pow((retry - 1).min(31))),
            Growth::Linear => self.base.saturating_mul(retry),
        };
        wait.min(self.max)
    }

    /// The wait before retry `retry`, with jitter; never above `max`.
    pub fn wait(&self, retry: u32) -> Duration {
        let nominal = self.nominal(retry);
        let spread = match self.jitter {
            Jitter::None => return nominal,
            Jitter::Spread(fraction) => rand::rng().random_range(1.0 - fraction..=1.0 + fraction),
            Jitter::Half => rand::rng().random_range(0.5..=1.0),
        };
        nominal.mul_f64(spread).min(self.max)
    }

    /// The next wait (the iterator's next item, which always exists).
    pub fn next_wait(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.wait(self.attempt)
    }

    /// Starts over from `base`, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Waits handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    /// Never ends: a loop that gives up decides so itself.
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_wait())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_doubles_to_its_cap_and_linear_adds() {
        let exp = Backoff::try_new(Growth::Exponential, 200 * MS, 300 * 1000 * MS, Jitter::None)
            .expect("valid");
        let waits: Vec<_> = exp.clone().take(4).map(|d| d.as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600]);
        assert_eq!(exp.nominal(100), Duration::from_secs(300));
        assert_eq!(exp.nominal(u32::MAX), Duration::from_secs(300));
        let linear =
            Backoff::try_new(Growth::Linear, 200 * MS, 700 * MS, Jitter::None).expect("valid");
        let waits: Vec<_> = linear.take(5).map(|d| d.as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 600, 700, 700]);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_under_the_cap() {
        let spread = Backoff::try_new(
            Growth::Exponential,
            200 * MS,
            Duration::from_secs(300),
            Jitter::Spread(0.2),
        )
        .expect("valid");
        for _ in 0..200 {
            let wait = spread.wait(3).as_millis();
            assert!((640..=960).contains(&wait), "{wait}");
        }
        let half = Backoff::exponential(100 * MS, 2000 * MS);
        for _ in 0..200 {
            let first = half.wait(1);
            assert!(first >= 50 * MS && first <= 100 * MS, "{first:?}");
            assert!(half.wait(30) <= 2000 * MS);
            assert!(half.wait(30) >= 1000 * MS);
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff =
            Backoff::exponential(100 * MS, Duration::from_secs(20)).with_jitter(Jitter::None);
        for _ in 0..10 {
            backoff.next();
        }
        assert_eq!(backoff.attempts(), 10);
        assert_eq!(backoff.next(), Some(Duration::from_secs(20)));
        backoff.reset();
        assert_eq!(backoff.next(), Some(100 * MS));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Backoff::try_new(Growth::Linear, Duration::ZERO, MS, Jitter::None).is_err());
        assert!(Backoff::try_new(Growth::Linear, 2 * MS, MS, Jitter::None).is_err());
        assert!(Backoff::try_new(Growth::Linear, MS, MS, Jitter::Spread(1.5)).is_err());
        assert!(Backoff::try_new(Growth::Linear, MS, MS, Jitter::Spread(0.0)).is_ok());
    }
}
