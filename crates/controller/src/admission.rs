//! What the validating admission webhook decides about an `AWSDynamoDBSource`.
//!
//! The CRD's schema checks every field it can: filter patterns are the
//! exception, because a pattern may be written as a string holding JSON
//! (as in AWS's documentation) and neither the structural schema nor CEL can
//! parse that. The webhook parses them with the adapter's own parser, so a
//! source the adapter would refuse is refused at `kubectl apply`, with the
//! path of the bad operator. The reconciler reports the same problem as a
//! status condition, for clusters where the webhook is not installed.
//!
//! Pure: a request in, a response out.

use dynamodb_source_api::{FilterPatterns, Report};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use serde_json::Value;

/// How a review ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    Denied,
}

/// Allows the request unless it writes filter patterns that do not parse.
///
/// An update that leaves the patterns as they were is allowed even when they
/// do not parse: such an object was stored before the webhook was installed,
/// and denying it would keep its labels from changing and its finalizer from
/// being removed. Its status already names the problem.
pub(crate) fn review(request: &AdmissionRequest<DynamicObject>) -> (AdmissionResponse, Verdict) {
    let allowed = || (AdmissionResponse::from(request), Verdict::Allowed);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return allowed();
    }
    let Some(object) = &request.object else {
        return allowed();
    };
    if object.metadata.deletion_timestamp.is_some() {
        return allowed();
    }
    let patterns = patterns_of(object);
    if request.operation == Operation::Update
        && request.old_object.as_ref().map(patterns_of) == Some(patterns)
    {
        return allowed();
    }
    match FilterPatterns::parse(patterns) {
        Ok(_) => allowed(),
        Err(e) => {
            let field = format!("spec.filter.patterns[{}]", e.index);
            let problem = Report(&e).to_string();
            // kubectl shows the causes, each after its field; other clients the message.
            let mut response = AdmissionResponse::from(request).deny(format!("{field}: {problem}"));
            response.result.code = 422;
            response.result.reason = "Invalid".to_owned();
            response.result.details = Some(StatusDetails {
                name: object.metadata.name.clone().unwrap_or_default(),
                group: request.kind.group.clone(),
                kind: request.kind.kind.clone(),
                uid: object.metadata.uid.clone().unwrap_or_default(),
                causes: vec![StatusCause {
                    reason: "FieldValueInvalid".to_owned(),
                    message: problem,
                    field,
                }],
                retry_after_seconds: 0,
            });
            (response, Verdict::Denied)
        }
    }
}

/// `spec.filter.patterns`, or none.
fn patterns_of(object: &DynamicObject) -> &[Value] {
    object
        .data
        .pointer("/spec/filter/patterns")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;
    use serde_json::json;

    fn request(
        operation: &str,
        patterns: Option<Value>,
        old_patterns: Option<Value>,
    ) -> AdmissionRequest<DynamicObject> {
        let object = |patterns: Option<Value>| {
            let mut spec = json!({"arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"});
            if let Some(patterns) = patterns {
                spec["filter"] = json!({ "patterns": patterns });
            }
            json!({
                "apiVersion": "sources.triggermesh.io/v1alpha1",
                "kind": "AWSDynamoDBSource",
                "metadata": {"name": "orders", "namespace": "shop"},
                "spec": spec,
            })
        };
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "sources.triggermesh.io", "version": "v1alpha1", "kind": "AWSDynamoDBSource"},
                "resource": {"group": "sources.triggermesh.io", "version": "v1alpha1", "resource": "awsdynamodbsources"},
                "name": "orders",
                "namespace": "shop",
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": object(patterns),
                "oldObject": if operation == "UPDATE" { object(old_patterns) } else { Value::Null },
                "dryRun": false,
            }
        }))
        .expect("an AdmissionReview");
        review.try_into().expect("a request")
    }

    #[test]
    fn a_source_without_patterns_is_allowed() {
        let (response, verdict) = review(&request("CREATE", None, None));
        assert!(response.allowed);
        assert_eq!(verdict, Verdict::Allowed);
        assert_eq!(response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    }

    #[test]
    fn patterns_that_parse_are_allowed_as_objects_and_as_strings() {
        let patterns = json!([
            {"dynamodb": {"NewImage": {"Price": {"N": [{"numeric": [">", 100]}]}}}},
            "{\"eventName\": [\"INSERT\"]}"
        ]);
        let (response, verdict) = review(&request("CREATE", Some(patterns), None));
        assert!(response.allowed, "{:?}", response.result);
        assert_eq!(verdict, Verdict::Allowed);
    }

    #[test]
    fn a_string_that_is_not_json_is_denied_with_its_index() {
        let patterns = json!([{"eventName": ["INSERT"]}, "{\"eventName\": [\"INSERT\""]);
        let (response, verdict) = review(&request("CREATE", Some(patterns), None));
        assert!(!response.allowed);
        assert_eq!(verdict, Verdict::Denied);
        assert_eq!(response.result.code, 422);
        assert_eq!(response.result.reason, "Invalid");
        assert!(
            response
                .result
                .message
                .starts_with("spec.filter.patterns[1]: filter pattern 1"),
            "{}",
            response.result.message
        );
        assert!(response.result.message.contains("must hold JSON"));
        let details = response.result.details.expect("details");
        assert_eq!(details.causes[0].field, "spec.filter.patterns[1]");
        assert!(details.causes[0].message.starts_with("filter pattern 1 ("));
        assert_eq!(details.name, "orders");
    }

    #[test]
    fn an_unknown_operator_is_denied_with_its_path() {
        let patterns =
            json!(["{\"dynamodb\": {\"Keys\": {\"id\": {\"S\": [{\"startswith\": \"a\"}]}}}}"]);
        let (response, _) = review(&request("CREATE", Some(patterns), None));
        assert!(!response.allowed);
        assert!(
            response.result.message.contains("at dynamodb.Keys.id.S[0]"),
            "{}",
            response.result.message
        );
        assert!(response.result.message.contains("\"startswith\""));
    }

    #[test]
    fn an_update_that_keeps_bad_patterns_is_allowed_one_that_writes_them_is_not() {
        let bad = json!([{"eventName": [{"prefx": "IN"}]}]);
        let (kept, _) = review(&request("UPDATE", Some(bad.clone()), Some(bad.clone())));
        assert!(
            kept.allowed,
            "an object stored before the webhook keeps working"
        );
        let (written, _) = review(&request("UPDATE", Some(bad), Some(json!([]))));
        assert!(!written.allowed);
    }

    #[test]
    fn an_object_being_deleted_is_allowed() {
        let mut request = request("UPDATE", Some(json!(["not json"])), Some(json!([])));
        let mut object = request.object.take().expect("an object");
        object.metadata = serde_json::from_value(json!({
            "name": "orders",
            "deletionTimestamp": "2026-11-30T06:00:00Z",
        }))
        .expect("metadata");
        request.object = Some(object);
        assert!(review(&request).0.allowed);
    }

    #[test]
    fn a_denial_serializes_as_an_admission_review_the_api_server_reads() {
        let (response, _) = review(&request("CREATE", Some(json!(["not json"])), None));
        let review = serde_json::to_value(response.into_review()).expect("JSON");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["allowed"], false);
        assert_eq!(review["response"]["status"]["code"], 422);
        assert_eq!(
            review["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
    }
}
