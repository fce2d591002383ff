//! The source's status, computed from what the controller observed. Pure: the
//! reconciler gathers observations, this decides what they mean.

use dynamodb_source_api::EVENT_TYPE;
use dynamodb_source_api::resource::{
    AWSDynamoDBSourceStatus, CeAttribute, Condition, ConditionStatus, Severity,
};

pub(crate) const READY: &str = "Ready";
pub(crate) const SINK_PROVIDED: &str = "SinkProvided";
pub(crate) const DEPLOYED: &str = "Deployed";

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
    },
}

/// Everything status depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observations {
    pub generation: Option<i64>,
    pub source: String,
    pub sink: SinkObservation,
    pub adapter: AdapterObservation,
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

/// The status to write. Ready is true only when the sink is resolved and the
/// adapter is available; otherwise it carries the first problem's reason.
pub(crate) fn compute(
    observed: &Observations,
    previous: Option<&AWSDynamoDBSourceStatus>,
    now: &str,
) -> AWSDynamoDBSourceStatus {
    let sink = match &observed.sink {
        SinkObservation::Resolved(uri) => Ok(("SinkResolved", format!("events are sent to {uri}"))),
        SinkObservation::Failed(problem) => Err(problem),
    };
    let adapter_problem;
    let deployed = match &observed.adapter {
        AdapterObservation::NotDeployed(problem) => Err(problem),
        AdapterObservation::Deployed {
            available: true, ..
        } => Ok(("AdapterAvailable", "the adapter is running".to_owned())),
        AdapterObservation::Deployed {
            available: false,
            waiting,
        } => {
            adapter_problem = waiting.clone().unwrap_or_else(|| {
                Problem::new("AdapterUnavailable", "the adapter is not available yet")
            });
            Err(&adapter_problem)
        }
    };
    let ready = match (&sink, &deployed) {
        (Ok(_), Ok(_)) => Ok(("Ready", "the source delivers events".to_owned())),
        (Err(problem), _) | (_, Err(problem)) => Err(*problem),
    };
    let conditions = vec![
        stamp(condition(READY, ready, Severity::Error), previous, now),
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
    AWSDynamoDBSourceStatus {
        observed_generation: observed.generation,
        conditions,
        sink_uri: match &observed.sink {
            SinkObservation::Resolved(uri) => Some(uri.clone()),
            SinkObservation::Failed(_) => None,
        },
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
        }
    }

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
}
