//! The source's status, computed from what the controller observed. Pure: the
//! reconciler gathers observations, this decides what they mean.

use dynamodb_source_api::EVENT_TYPE;
use dynamodb_source_api::resource::{
    AWSDynamoDBSourceStatus, CeAttribute, Condition, ConditionStatus, ReplayStatus, Severity,
};
use dynamodb_source_api::summary::{
    self, FALLING_BEHIND_FOR_SECONDS, SINK_FAILING_FOR_SECONDS, STALE_AFTER_SECONDS, StreamSummary,
    TRIMMED_REPORTED_FOR_SECONDS,
};

pub(crate) const READY: &str = "Ready";
pub(crate) const SINK_PROVIDED: &str = "SinkProvided";
pub(crate) const DEPLOYED: &str = "Deployed";
pub(crate) const KEEPING_UP: &str = "KeepingUp";

/// A reason and message for a condition that is not true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// CamelCase, e.g. `SinkNotFound` or a pod's waiting reason.
    pub reason: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(reason: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What became of the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SinkObservation {
    Resolved(String),
    Failed(Problem),
}

/// What became of the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdapterObservation {
    /// The spec cannot be deployed (invalid ARN, missing Secret, no sink...).
    NotDeployed(Problem),
    /// The Deployment exists; `available` per its Available condition.
    Deployed {
        available: bool,
        /// Why it is not available yet, from pods' waiting reasons or the Deployment.
        waiting: Option<Problem>,
        /// Its pods, as its status counts them.
        replicas: Replicas,
    },
}

/// The adapter Deployment's pods, from its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Replicas {
    /// Pods it has (`status.replicas`), terminating ones aside.
    pub current: i32,
    /// Pods that are ready (`status.readyReplicas`).
    pub ready: i32,
}

/// Everything status depends on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observations {
    pub generation: Option<i64>,
    pub source: String,
    pub sink: SinkObservation,
    pub adapter: AdapterObservation,
    /// `spec.replicas`, defaulted: 0 is a suspended source.
    pub desired_replicas: i32,
    /// The label selector of the adapter's pods.
    pub selector: String,
    /// The adapter's summary from its checkpoint object, if it wrote one.
    pub summary: Option<StreamSummary>,
    /// Now, in Unix seconds, to judge the summary's age by.
    pub now: i64,
}

/// Whether the adapter keeps up, from its summary: the first of these that
/// holds is the reason it does not (data lost first, then the sink, then the
/// stream). Throttling alone is no problem: it is reported when the source is
/// also behind, as the likely cause.
fn keeping_up(summary: Option<&StreamSummary>, now: i64) -> Condition {
    let unknown = |reason: &str, message: String| Condition {
        kind: KEEPING_UP.to_owned(),
        status: ConditionStatus::Unknown,
        severity: Some(Severity::Info),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: None,
    };
    let Some(s) = summary else {
        return unknown(
            "NoSummary",
            "the adapter has not reported its progress yet".to_owned(),
        );
    };
    let age = now - s.updated_at;
    if age > STALE_AFTER_SECONDS {
        return unknown(
            "SummaryStale",
            format!(
                "the adapter last reported its progress {} ago",
                summary::short_duration(age as f64)
            ),
        );
    }
    let lag = summary::short_duration(s.iterator_age_seconds);
    let held_for = |since: Option<i64>, at_least: i64| since.is_some_and(|t| now - t >= at_least);
    let recent = |at: Option<i64>, within: i64| at.is_some_and(|t| now - t <= within);
    let falling_behind = held_for(s.behind_since, FALLING_BEHIND_FOR_SECONDS);
    let problem = if recent(s.last_trimmed_at, TRIMMED_REPORTED_FOR_SECONDS) {
        Some(Problem::new(
            "TrimmedData",
            "records were trimmed from the stream (older than 24 hours) before they were read, and are lost",
        ))
    } else if held_for(s.sink_failing_since, SINK_FAILING_FOR_SECONDS) {
        Some(Problem::new(
            "SinkFailing",
            format!(
                "the sink has acknowledged no event for {} while events wait; lag {lag}",
                summary::short_duration(s.sink_failing_since.map_or(0, |since| now - since) as f64)
            ),
        ))
    } else if falling_behind && recent(s.last_throttled_at, FALLING_BEHIND_FOR_SECONDS) {
        Some(Problem::new(
            "Throttled",
            format!(
                "reading the stream is throttled and the source is {lag} behind (GetRecords is limited per shard)"
            ),
        ))
    } else if falling_behind {
        Some(Problem::new(
            "FallingBehind",
            format!(
                "the source has been more than {} behind the stream for {}; lag {lag}",
                summary::short_duration(summary::BEHIND_LAG_SECONDS),
                summary::short_duration(s.behind_since.map_or(0, |since| now - since) as f64)
            ),
        ))
    } else {
        None
    };
    let outcome = match &problem {
        None => Ok((
            "CaughtUp",
            format!(
                "lag {lag}, {} shards read, {} records delivered and {} dead-lettered since the adapter started",
                s.shards_read, s.records_delivered, s.dead_lettered
            ),
        )),
        Some(problem) => Err(problem),
    };
    condition(KEEPING_UP, outcome, Severity::Warning)
}

fn condition(
    kind: &str,
    outcome: Result<(&'static str, String), &Problem>,
    severity_if_false: Severity,
) -> Condition {
    match outcome {
        Ok((reason, message)) => Condition {
            kind: kind.to_owned(),
            status: ConditionStatus::True,
            severity: Some(Severity::Info),
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_transition_time: None,
        },
        Err(problem) => Condition {
            kind: kind.to_owned(),
            status: ConditionStatus::False,
            severity: Some(severity_if_false),
            reason: Some(problem.reason.clone()),
            message: Some(problem.message.clone()),
            last_transition_time: None,
        },
    }
}

/// Keeps a condition's transition time when its status did not change.
fn stamp(
    mut condition: Condition,
    previous: Option<&AWSDynamoDBSourceStatus>,
    now: &str,
) -> Condition {
    let before = previous.and_then(|p| p.conditions.iter().find(|c| c.kind == condition.kind));
    condition.last_transition_time = match before {
        Some(before) if before.status == condition.status => before
            .last_transition_time
            .clone()
            .or_else(|| Some(now.to_owned())),
        _ => Some(now.to_owned()),
    };
    condition
}

/// The reason of Ready and KeepingUp for a source with `spec.replicas: 0`.
pub(crate) const SUSPENDED: &str = "Suspended";

/// The status to write. Ready is true only when the sink is resolved and the
/// adapter is available; otherwise it carries the first problem's reason. A
/// deployed source scaled to zero is suspended: not Ready (it delivers
/// nothing), but nothing is wrong with it either (reason `Suspended`, severity
/// Info), and whether it keeps up is unknown.
pub(crate) fn compute(
    observed: &Observations,
    previous: Option<&AWSDynamoDBSourceStatus>,
    now: &str,
) -> AWSDynamoDBSourceStatus {
    let sink = match &observed.sink {
        SinkObservation::Resolved(uri) => Ok(("SinkResolved", format!("events are sent to {uri}"))),
        SinkObservation::Failed(problem) => Err(problem),
    };
    let suspended = observed.desired_replicas == 0;
    let suspension = Problem::new(
        SUSPENDED,
        "spec.replicas is 0: no adapter runs and no event is delivered; its progress is kept for when it is scaled up",
    );
    let adapter_problem;
    let deployed = match &observed.adapter {
        AdapterObservation::NotDeployed(problem) => Err(problem),
        AdapterObservation::Deployed { .. } if suspended => Ok((
            SUSPENDED,
            "the adapter is deployed with 0 replicas (spec.replicas)".to_owned(),
        )),
        AdapterObservation::Deployed {
            available: true,
            replicas,
            ..
        } => Ok((
            "AdapterAvailable",
            format!(
                "the adapter is running, {} of {} replicas ready",
                replicas.ready, observed.desired_replicas
            ),
        )),
        AdapterObservation::Deployed {
            available: false,
            waiting,
            ..
        } => {
            adapter_problem = waiting.clone().unwrap_or_else(|| {
                Problem::new("AdapterUnavailable", "the adapter is not available yet")
            });
            Err(&adapter_problem)
        }
    };
    // Suspension is asked for, not a failure: severity Info.
    let (ready, ready_severity) = match (&sink, &deployed) {
        (Ok(_), Ok(_)) if suspended => (Err(&suspension), Severity::Info),
        (Ok(_), Ok(_)) => (
            Ok(("Ready", "the source delivers events".to_owned())),
            Severity::Error,
        ),
        (Err(problem), _) | (_, Err(problem)) => (Err(*problem), Severity::Error),
    };
    // Only a deployed adapter keeps up or not; an undeployed source has no lag.
    let deployed_now = matches!(observed.adapter, AdapterObservation::Deployed { .. });
    let running = deployed_now && !suspended;
    let lag = observed
        .summary
        .as_ref()
        .filter(|s| running && s.is_fresh(observed.now))
        .map(|s| summary::short_duration(s.iterator_age_seconds));
    let mut conditions = vec![
        stamp(condition(READY, ready, ready_severity), previous, now),
        stamp(
            condition(SINK_PROVIDED, sink.clone(), Severity::Error),
            previous,
            now,
        ),
        stamp(
            condition(DEPLOYED, deployed.clone(), Severity::Error),
            previous,
            now,
        ),
    ];
    if running {
        conditions.push(stamp(
            keeping_up(observed.summary.as_ref(), observed.now),
            previous,
            now,
        ));
    } else if deployed_now {
        conditions.push(stamp(
            Condition {
                kind: KEEPING_UP.to_owned(),
                status: ConditionStatus::Unknown,
                severity: Some(Severity::Info),
                reason: Some(SUSPENDED.to_owned()),
                message: Some("no adapter runs (spec.replicas is 0)".to_owned()),
                last_transition_time: None,
            },
            previous,
            now,
        ));
    }
    let replicas = match &observed.adapter {
        AdapterObservation::Deployed { replicas, .. } => Some(*replicas),
        AdapterObservation::NotDeployed(_) => None,
    };
    AWSDynamoDBSourceStatus {
        observed_generation: observed.generation,
        conditions,
        sink_uri: match &observed.sink {
            SinkObservation::Resolved(uri) => Some(uri.clone()),
            SinkObservation::Failed(_) => None,
        },
        lag,
        replicas: replicas.map(|r| r.current),
        ready_replicas: replicas.map(|r| r.ready),
        selector: Some(observed.selector.clone()),
        // What the adapter recorded; kept while it reports nothing newer.
        last_replay: observed
            .summary
            .as_ref()
            .and_then(|s| s.last_replay.as_ref())
            .map(|r| ReplayStatus {
                token: r.token.clone(),
                from: r.from.clone(),
                applied_at: chrono::DateTime::from_timestamp(r.applied_at, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            })
            .or_else(|| previous.and_then(|p| p.last_replay.clone())),
        ce_attributes: vec![CeAttribute {
            kind: EVENT_TYPE.to_owned(),
            source: observed.source.clone(),
        }],
    }
}

/// The Ready condition of a status, for events and metrics.
pub(crate) fn ready(status: &AWSDynamoDBSourceStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.kind == READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(sink: SinkObservation, adapter: AdapterObservation) -> Observations {
        Observations {
            generation: Some(3),
            source: "arn:aws:dynamodb:us-west-2:123456789012:table/orders".to_owned(),
            sink,
            adapter,
            desired_replicas: 1,
            selector: "app.kubernetes.io/instance=orders,app.kubernetes.io/name=dynamodb-source"
                .to_owned(),
            summary: None,
            now: 1_700_000_000,
        }
    }

    const ONE: Replicas = Replicas {
        current: 1,
        ready: 1,
    };

    fn get<'a>(status: &'a AWSDynamoDBSourceStatus, kind: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.kind == kind)
            .expect("condition")
    }

    #[test]
    fn ready_only_when_sink_resolved_and_adapter_available() {
        let status = compute(
            &observed(
                SinkObservation::Resolved("http://sink.default.svc.cluster.local".into()),
                AdapterObservation::Deployed {
                    available: true,
                    waiting: None,
                    replicas: ONE,
                },
            ),
            None,
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(get(&status, READY).status, ConditionStatus::True);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(
            status.sink_uri.as_deref(),
            Some("http://sink.default.svc.cluster.local")
        );
        assert_eq!(
            status.ce_attributes[0].kind,
            "com.amazon.dynamodb.stream_record"
        );
        assert!(
            status.conditions.iter().all(|c| c.severity.is_some()),
            "severity never empty"
        );
    }

    #[test]
    fn a_sink_problem_makes_ready_false_with_its_reason() {
        let status = compute(
            &observed(
                SinkObservation::Failed(Problem::new(
                    "SinkNotFound",
                    "Service default/missing not found",
                )),
                AdapterObservation::NotDeployed(Problem::new(
                    "SinkNotFound",
                    "waiting for the sink",
                )),
            ),
            None,
            "2024-01-01T00:00:00Z",
        );
        let ready = get(&status, READY);
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason.as_deref(), Some("SinkNotFound"));
        assert_eq!(ready.severity, Some(Severity::Error));
        assert_eq!(status.sink_uri, None);
    }

    #[test]
    fn an_unavailable_adapter_reports_the_pods_waiting_reason() {
        let status = compute(
            &observed(
                SinkObservation::Resolved("http://x".into()),
                AdapterObservation::Deployed {
                    available: false,
                    waiting: Some(Problem::new(
                        "ImagePullBackOff",
                        "adapter: Back-off pulling image",
                    )),
                    replicas: ONE,
                },
            ),
            None,
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(
            get(&status, DEPLOYED).reason.as_deref(),
            Some("ImagePullBackOff")
        );
        assert_eq!(
            get(&status, READY).reason.as_deref(),
            Some("ImagePullBackOff")
        );
        assert_eq!(get(&status, SINK_PROVIDED).status, ConditionStatus::True);
    }

    #[test]
    fn transition_time_changes_only_when_status_changes() {
        let ok = observed(
            SinkObservation::Resolved("http://x".into()),
            AdapterObservation::Deployed {
                available: true,
                waiting: None,
                replicas: ONE,
            },
        );
        let first = compute(&ok, None, "2024-01-01T00:00:00Z");
        let again = compute(&ok, Some(&first), "2024-01-02T00:00:00Z");
        assert_eq!(
            get(&again, READY).last_transition_time.as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
        let broken = observed(
            SinkObservation::Failed(Problem::new("SinkNotFound", "gone")),
            AdapterObservation::Deployed {
                available: true,
                waiting: None,
                replicas: ONE,
            },
        );
        let after = compute(&broken, Some(&again), "2024-01-03T00:00:00Z");
        assert_eq!(
            get(&after, READY).last_transition_time.as_deref(),
            Some("2024-01-03T00:00:00Z")
        );
        assert_eq!(
            get(&after, DEPLOYED).last_transition_time.as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
    }

    const NOW: i64 = 1_700_000_000;

    fn fresh() -> StreamSummary {
        StreamSummary {
            updated_at: NOW - 10,
            iterator_age_seconds: 2.0,
            records_delivered: 40,
            shards_read: 2,
            ..StreamSummary::default()
        }
    }

    fn keeping_up_of(summary: Option<StreamSummary>) -> (ConditionStatus, String, Option<String>) {
        let mut observations = observed(
            SinkObservation::Resolved("http://sink.default.svc.cluster.local".into()),
            AdapterObservation::Deployed {
                available: true,
                waiting: None,
                replicas: ONE,
            },
        );
        observations.summary = summary;
        observations.now = NOW;
        let status = compute(&observations, None, "2024-01-01T00:00:00Z");
        let condition = get(&status, KEEPING_UP);
        assert_eq!(
            get(&status, READY).status,
            ConditionStatus::True,
            "KeepingUp does not change Ready"
        );
        (
            condition.status,
            condition.reason.clone().unwrap_or_default(),
            status.lag,
        )
    }

    #[test]
    fn keeping_up_reasons_in_order_of_what_they_cost() {
        let cases = [
            (
                "no summary yet",
                None,
                ConditionStatus::Unknown,
                "NoSummary",
                None,
            ),
            (
                "a stale summary",
                Some(StreamSummary {
                    updated_at: NOW - 600,
                    ..fresh()
                }),
                ConditionStatus::Unknown,
                "SummaryStale",
                None,
            ),
            (
                "caught up",
                Some(fresh()),
                ConditionStatus::True,
                "CaughtUp",
                Some("2s"),
            ),
            (
                "throttled once while caught up",
                Some(StreamSummary {
                    last_throttled_at: Some(NOW - 20),
                    ..fresh()
                }),
                ConditionStatus::True,
                "CaughtUp",
                Some("2s"),
            ),
            (
                "behind, but not for long",
                Some(StreamSummary {
                    iterator_age_seconds: 900.0,
                    behind_since: Some(NOW - 120),
                    ..fresh()
                }),
                ConditionStatus::True,
                "CaughtUp",
                Some("15m0s"),
            ),
            (
                "behind for minutes",
                Some(StreamSummary {
                    iterator_age_seconds: 900.0,
                    behind_since: Some(NOW - 400),
                    ..fresh()
                }),
                ConditionStatus::False,
                "FallingBehind",
                Some("15m0s"),
            ),
            (
                "behind for minutes, and throttled",
                Some(StreamSummary {
                    iterator_age_seconds: 900.0,
                    behind_since: Some(NOW - 400),
                    last_throttled_at: Some(NOW - 30),
                    ..fresh()
                }),
                ConditionStatus::False,
                "Throttled",
                Some("15m0s"),
            ),
            (
                "the sink failing for a minute, and behind",
                Some(StreamSummary {
                    iterator_age_seconds: 900.0,
                    behind_since: Some(NOW - 400),
                    sink_failing_since: Some(NOW - 90),
                    ..fresh()
                }),
                ConditionStatus::False,
                "SinkFailing",
                Some("15m0s"),
            ),
            (
                "the sink failing for seconds only",
                Some(StreamSummary {
                    sink_failing_since: Some(NOW - 20),
                    ..fresh()
                }),
                ConditionStatus::True,
                "CaughtUp",
                Some("2s"),
            ),
            (
                "trimmed data, whatever else",
                Some(StreamSummary {
                    last_trimmed_at: Some(NOW - 1800),
                    sink_failing_since: Some(NOW - 90),
                    ..fresh()
                }),
                ConditionStatus::False,
                "TrimmedData",
                Some("2s"),
            ),
            (
                "trimmed long ago",
                Some(StreamSummary {
                    last_trimmed_at: Some(NOW - 7200),
                    ..fresh()
                }),
                ConditionStatus::True,
                "CaughtUp",
                Some("2s"),
            ),
        ];
        for (what, summary, status, reason, lag) in cases {
            assert_eq!(
                keeping_up_of(summary),
                (status, reason.to_owned(), lag.map(str::to_owned)),
                "{what}"
            );
        }
    }

    #[test]
    fn an_undeployed_source_has_no_lag_and_no_keeping_up() {
        let mut observations = observed(
            SinkObservation::Resolved("http://sink.default.svc.cluster.local".into()),
            AdapterObservation::NotDeployed(Problem::new("InvalidARN", "spec.arn: bad")),
        );
        observations.summary = Some(fresh());
        observations.now = NOW;
        let status = compute(&observations, None, "2024-01-01T00:00:00Z");
        assert!(status.conditions.iter().all(|c| c.kind != KEEPING_UP));
        assert_eq!(status.lag, None);
    }

    fn suspended(adapter: AdapterObservation) -> AWSDynamoDBSourceStatus {
        let mut observations = observed(
            SinkObservation::Resolved("http://sink.default.svc.cluster.local".into()),
            adapter,
        );
        observations.desired_replicas = 0;
        observations.summary = Some(fresh());
        observations.now = NOW;
        compute(&observations, None, "2024-01-01T00:00:00Z")
    }

    #[test]
    fn zero_replicas_is_a_suspension_not_a_failure() {
        // Scaled down: the Deployment is available with no pod.
        let status = suspended(AdapterObservation::Deployed {
            available: true,
            waiting: None,
            replicas: Replicas::default(),
        });
        let ready = get(&status, READY);
        assert_eq!(
            (ready.status, ready.reason.as_deref(), ready.severity),
            (
                ConditionStatus::False,
                Some(SUSPENDED),
                Some(Severity::Info)
            )
        );
        assert!(
            ready
                .message
                .as_deref()
                .is_some_and(|m| m.contains("spec.replicas is 0")),
            "{ready:?}"
        );
        let deployed = get(&status, DEPLOYED);
        assert_eq!(
            (deployed.status, deployed.reason.as_deref()),
            (ConditionStatus::True, Some(SUSPENDED))
        );
        let keeping_up = get(&status, KEEPING_UP);
        assert_eq!(
            (keeping_up.status, keeping_up.reason.as_deref()),
            (ConditionStatus::Unknown, Some(SUSPENDED))
        );
        assert_eq!(status.lag, None, "a summary from before says nothing now");
        assert_eq!((status.replicas, status.ready_replicas), (Some(0), Some(0)));

        // While the last pod stops (the Deployment unavailable on the way
        // down): suspended still, no adapter problem reported.
        let stopping = suspended(AdapterObservation::Deployed {
            available: false,
            waiting: Some(Problem::new("AdapterUnavailable", "scaling down")),
            replicas: ONE,
        });
        assert_eq!(get(&stopping, READY).reason.as_deref(), Some(SUSPENDED));
        assert_eq!(get(&stopping, DEPLOYED).status, ConditionStatus::True);
    }

    #[test]
    fn a_real_problem_still_wins_over_a_suspension() {
        let mut observations = observed(
            SinkObservation::Failed(Problem::new("SinkNotFound", "gone")),
            AdapterObservation::Deployed {
                available: true,
                waiting: None,
                replicas: Replicas::default(),
            },
        );
        observations.desired_replicas = 0;
        let status = compute(&observations, None, "2024-01-01T00:00:00Z");
        let ready = get(&status, READY);
        assert_eq!(
            (ready.reason.as_deref(), ready.severity),
            (Some("SinkNotFound"), Some(Severity::Error))
        );
    }

    #[test]
    fn replicas_and_the_selector_are_reported_for_the_scale_subresource() {
        let mut observations = observed(
            SinkObservation::Resolved("http://x".into()),
            AdapterObservation::Deployed {
                available: false,
                waiting: None,
                replicas: Replicas {
                    current: 3,
                    ready: 2,
                },
            },
        );
        observations.desired_replicas = 3;
        let status = compute(&observations, None, "2024-01-01T00:00:00Z");
        assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(2)));
        assert_eq!(
            status.selector.as_deref(),
            Some("app.kubernetes.io/instance=orders,app.kubernetes.io/name=dynamodb-source")
        );
        observations.adapter = AdapterObservation::Deployed {
            available: true,
            waiting: None,
            replicas: Replicas {
                current: 3,
                ready: 3,
            },
        };
        let available = compute(&observations, None, "2024-01-01T00:00:00Z");
        assert!(
            get(&available, DEPLOYED)
                .message
                .as_deref()
                .is_some_and(|m| m.contains("3 of 3 replicas ready")),
            "{:?}",
            get(&available, DEPLOYED)
        );

        // Not deployed: no pods to count, the selector all the same.
        let undeployed = compute(
            &observed(
                SinkObservation::Resolved("http://x".into()),
                AdapterObservation::NotDeployed(Problem::new("InvalidARN", "bad")),
            ),
            None,
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(
            (undeployed.replicas, undeployed.ready_replicas),
            (None, None)
        );
        assert!(undeployed.selector.is_some());
    }
}
