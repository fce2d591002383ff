//! Conformance of `spec.filter.patterns` with Lambda event filtering for
//! DynamoDB: every example of AWS's documentation (Lambda's "Using event
//! filtering with a DynamoDB event source" and the comparison operators of
//! "Control which events Lambda sends to your function"), with the match the
//! documentation states, and a near miss for each, so that a rule that
//! matched everything would fail here.

use dynamodb_source_api::FilterPatterns;
use serde_json::{Value, json};

/// The documentation's example record: a table with the primary key
/// `CustomerName` and the attributes `AccountManager` and `PaymentTerms`.
fn customer_record() -> Value {
    json!({
        "eventID": "1",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "dynamodb": {
            "ApproximateCreationDateTime": 1678831218,
            "Keys": {"CustomerName": {"S": "AnyCompany Industries"}},
            "NewImage": {
                "AccountManager": {"S": "Pat Candella"},
                "PaymentTerms": {"S": "60 days"},
                "CustomerName": {"S": "AnyCompany Industries"}
            },
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_IMAGE"
        }
    })
}

/// A record whose new image holds `attributes` (typed values).
fn with_new_image(attributes: Value) -> Value {
    json!({
        "eventID": "2",
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": attributes,
            "SequenceNumber": "222",
            "SizeBytes": 40,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

/// A pattern on the new image's attributes.
fn on_new_image(rules: Value) -> Value {
    json!({"dynamodb": {"NewImage": rules}})
}

struct Case {
    what: &'static str,
    pattern: Value,
    record: Value,
    matches: bool,
}

fn case(what: &'static str, pattern: Value, record: Value, matches: bool) -> Case {
    Case {
        what,
        pattern,
        record,
        matches,
    }
}

fn cases() -> Vec<Case> {
    let customer = customer_record();
    let mut other_customer = customer_record();
    other_customer["dynamodb"]["Keys"]["CustomerName"]["S"] = json!("Example Corp");
    other_customer["dynamodb"]["NewImage"]["AccountManager"]["S"] = json!("Jane Doe");
    vec![
        // Filtering with table keys.
        case(
            "key equals",
            json!({"dynamodb": {"Keys": {"CustomerName": {"S": ["AnyCompany Industries"]}}}}),
            customer.clone(),
            true,
        ),
        case(
            "key equals, other key",
            json!({"dynamodb": {"Keys": {"CustomerName": {"S": ["AnyCompany Industries"]}}}}),
            other_customer.clone(),
            false,
        ),
        // Filtering with table attributes: one of two account managers.
        case(
            "attribute is one of two values",
            json!({"dynamodb": {"NewImage": {"AccountManager": {"S": ["Pat Candella", "Shirley Rodriguez"]}}}}),
            customer.clone(),
            true,
        ),
        case(
            "attribute is one of two values, neither",
            json!({"dynamodb": {"NewImage": {"AccountManager": {"S": ["Pat Candella", "Shirley Rodriguez"]}}}}),
            other_customer.clone(),
            false,
        ),
        // Filtering with Boolean expressions: both conditions (AND).
        case(
            "two attributes (and)",
            json!({"dynamodb": {"NewImage": {
                "AccountManager": {"S": ["Pat Candella"]},
                "PaymentTerms": {"S": ["60 days"]}
            }}}),
            customer.clone(),
            true,
        ),
        case(
            "two attributes (and), one differs",
            json!({"dynamodb": {"NewImage": {
                "AccountManager": {"S": ["Pat Candella"]},
                "PaymentTerms": {"S": ["30 days"]}
            }}}),
            customer.clone(),
            false,
        ),
        // Using the Exists operator: it works on leaf nodes only, so on a typed
        // value's type key, not on the attribute name (whose value is an object).
        case(
            "exists on the attribute name (not a leaf)",
            json!({"dynamodb": {"NewImage": {"AccountManager": [{"exists": true}]}}}),
            customer.clone(),
            false,
        ),
        case(
            "exists on the type key (a leaf)",
            json!({"dynamodb": {"NewImage": {"AccountManager": {"S": [{"exists": true}]}}}}),
            customer.clone(),
            true,
        ),
        case(
            "exists on an attribute the image lacks",
            json!({"dynamodb": {"NewImage": {"Discount": {"N": [{"exists": true}]}}}}),
            customer.clone(),
            false,
        ),
        case(
            "does not exist, attribute absent",
            json!({"dynamodb": {"NewImage": {"Discount": {"N": [{"exists": false}]}}}}),
            customer.clone(),
            true,
        ),
        case(
            "does not exist, attribute present",
            json!({"dynamodb": {"NewImage": {"AccountManager": {"S": [{"exists": false}]}}}}),
            customer.clone(),
            false,
        ),
        // Multi-level filtering: the key Id's N value is 101 (numbers are text).
        case(
            "key number as text",
            json!({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}}),
            with_new_image(json!({"Message": {"S": "New item!"}, "Id": {"N": "101"}})),
            true,
        ),
        case(
            "key number as text, other key",
            json!({"dynamodb": {"Keys": {"Id": {"N": ["102"]}}}}),
            with_new_image(json!({"Message": {"S": "New item!"}, "Id": {"N": "101"}})),
            false,
        ),
        // Event name and a boolean attribute (the CDK's DynamoDB example).
        case(
            "event name and BOOL attribute",
            json!({"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"id": {"BOOL": [true]}}}}),
            with_new_image(json!({"id": {"BOOL": true}})),
            true,
        ),
        case(
            "event name and BOOL attribute, false",
            json!({"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"id": {"BOOL": [true]}}}}),
            with_new_image(json!({"id": {"BOOL": false}})),
            false,
        ),
        // The JSON syntax table for DynamoDB, one row at a time.
        case(
            "null: UserID is null",
            on_new_image(json!({"UserID": {"NULL": [true]}})),
            with_new_image(json!({"UserID": {"NULL": true}})),
            true,
        ),
        case(
            "null: UserID is null, the boolean written as text",
            on_new_image(json!({"UserID": {"NULL": ["true"]}})),
            with_new_image(json!({"UserID": {"NULL": true}})),
            true,
        ),
        case(
            "BOOL written as text",
            on_new_image(json!({"Active": {"BOOL": ["false"]}})),
            with_new_image(json!({"Active": {"BOOL": true}})),
            false,
        ),
        case(
            "null: UserID is a string",
            on_new_image(json!({"UserID": {"NULL": [true]}})),
            with_new_image(json!({"UserID": {"S": "u-1"}})),
            false,
        ),
        case(
            "empty: LastName is empty",
            on_new_image(json!({"LastName": {"S": [""]}})),
            with_new_image(json!({"LastName": {"S": ""}})),
            true,
        ),
        case(
            "empty: LastName is not empty",
            on_new_image(json!({"LastName": {"S": [""]}})),
            with_new_image(json!({"LastName": {"S": "Doe"}})),
            false,
        ),
        case(
            "equals: Name is Alice",
            on_new_image(json!({"Name": {"S": ["Alice"]}})),
            with_new_image(json!({"Name": {"S": "Alice"}})),
            true,
        ),
        case(
            "equals is case-sensitive",
            on_new_image(json!({"Name": {"S": ["Alice"]}})),
            with_new_image(json!({"Name": {"S": "alice"}})),
            false,
        ),
        case(
            "equals ignoring case: Name is alice",
            on_new_image(json!({"Name": {"S": [{"equals-ignore-case": "alice"}]}})),
            with_new_image(json!({"Name": {"S": "ALICE"}})),
            true,
        ),
        case(
            "equals ignoring case, other name",
            on_new_image(json!({"Name": {"S": [{"equals-ignore-case": "alice"}]}})),
            with_new_image(json!({"Name": {"S": "Alicia"}})),
            false,
        ),
        case(
            "and: Location is New York and Day is Monday",
            on_new_image(json!({"Location": {"S": ["New York"]}, "Day": {"S": ["Monday"]}})),
            with_new_image(json!({"Location": {"S": "New York"}, "Day": {"S": "Monday"}})),
            true,
        ),
        case(
            "and: only Location matches",
            on_new_image(json!({"Location": {"S": ["New York"]}, "Day": {"S": ["Monday"]}})),
            with_new_image(json!({"Location": {"S": "New York"}, "Day": {"S": "Tuesday"}})),
            false,
        ),
        case(
            "or: PaymentType is Credit or Debit",
            on_new_image(json!({"PaymentType": {"S": ["Credit", "Debit"]}})),
            with_new_image(json!({"PaymentType": {"S": "Debit"}})),
            true,
        ),
        case(
            "or: PaymentType is Cash",
            on_new_image(json!({"PaymentType": {"S": ["Credit", "Debit"]}})),
            with_new_image(json!({"PaymentType": {"S": "Cash"}})),
            false,
        ),
        case(
            "or over properties: Location is New York or Day is Monday",
            on_new_image(json!({"$or": [
                {"Location": {"S": ["New York"]}},
                {"Day": {"S": ["Monday"]}}
            ]})),
            with_new_image(json!({"Location": {"S": "Boston"}, "Day": {"S": "Monday"}})),
            true,
        ),
        case(
            "or over properties: neither",
            on_new_image(json!({"$or": [
                {"Location": {"S": ["New York"]}},
                {"Day": {"S": ["Monday"]}}
            ]})),
            with_new_image(json!({"Location": {"S": "Boston"}, "Day": {"S": "Friday"}})),
            false,
        ),
        case(
            "not: Weather is anything but Raining",
            on_new_image(json!({"Weather": {"S": [{"anything-but": ["Raining"]}]}})),
            with_new_image(json!({"Weather": {"S": "Sunny"}})),
            true,
        ),
        case(
            "not: Weather is Raining",
            on_new_image(json!({"Weather": {"S": [{"anything-but": ["Raining"]}]}})),
            with_new_image(json!({"Weather": {"S": "Raining"}})),
            false,
        ),
        case(
            "not, by prefix: Weather does not begin with Rain",
            on_new_image(json!({"Weather": {"S": [{"anything-but": {"prefix": "Rain"}}]}})),
            with_new_image(json!({"Weather": {"S": "Snowing"}})),
            true,
        ),
        case(
            "not, by prefix: Weather begins with Rain",
            on_new_image(json!({"Weather": {"S": [{"anything-but": {"prefix": "Rain"}}]}})),
            with_new_image(json!({"Weather": {"S": "Rainy"}})),
            false,
        ),
        case(
            "numeric equals: Price is 100",
            on_new_image(json!({"Price": {"N": [{"numeric": ["=", 100]}]}})),
            with_new_image(json!({"Price": {"N": "100"}})),
            true,
        ),
        case(
            "numeric equals: Price is 100.5",
            on_new_image(json!({"Price": {"N": [{"numeric": ["=", 100]}]}})),
            with_new_image(json!({"Price": {"N": "100.5"}})),
            false,
        ),
        case(
            "numeric range: Price above 10, at most 20 (upper bound)",
            on_new_image(json!({"Price": {"N": [{"numeric": [">", 10, "<=", 20]}]}})),
            with_new_image(json!({"Price": {"N": "20"}})),
            true,
        ),
        case(
            "numeric range: Price 10 (lower bound excluded)",
            on_new_image(json!({"Price": {"N": [{"numeric": [">", 10, "<=", 20]}]}})),
            with_new_image(json!({"Price": {"N": "10"}})),
            false,
        ),
        case(
            "numeric range: Price 20.01",
            on_new_image(json!({"Price": {"N": [{"numeric": [">", 10, "<=", 20]}]}})),
            with_new_image(json!({"Price": {"N": "20.01"}})),
            false,
        ),
        case(
            "exists: ProductName exists",
            on_new_image(json!({"ProductName": {"S": [{"exists": true}]}})),
            with_new_image(json!({"ProductName": {"S": "Widget"}})),
            true,
        ),
        case(
            "exists: ProductName absent",
            on_new_image(json!({"ProductName": {"S": [{"exists": true}]}})),
            with_new_image(json!({"Name": {"S": "Widget"}})),
            false,
        ),
        case(
            "does not exist: ProductName absent",
            on_new_image(json!({"ProductName": {"S": [{"exists": false}]}})),
            with_new_image(json!({"Name": {"S": "Widget"}})),
            true,
        ),
        case(
            "does not exist: ProductName present",
            on_new_image(json!({"ProductName": {"S": [{"exists": false}]}})),
            with_new_image(json!({"ProductName": {"S": "Widget"}})),
            false,
        ),
        case(
            "begins with: Region is in the US",
            on_new_image(json!({"Region": {"S": [{"prefix": "us-"}]}})),
            with_new_image(json!({"Region": {"S": "us-west-2"}})),
            true,
        ),
        case(
            "begins with: Region is in Europe",
            on_new_image(json!({"Region": {"S": [{"prefix": "us-"}]}})),
            with_new_image(json!({"Region": {"S": "eu-west-1"}})),
            false,
        ),
        case(
            "ends with: FileName is a .png",
            on_new_image(json!({"FileName": {"S": [{"suffix": ".png"}]}})),
            with_new_image(json!({"FileName": {"S": "photo.png"}})),
            true,
        ),
        case(
            "ends with: FileName is a .jpg",
            on_new_image(json!({"FileName": {"S": [{"suffix": ".png"}]}})),
            with_new_image(json!({"FileName": {"S": "photo.jpg"}})),
            false,
        ),
        // The general syntax table's rules on plain fields of the record.
        case(
            "null on a plain field",
            json!({"UserID": [null]}),
            json!({"UserID": null}),
            true,
        ),
        case(
            "null does not match the empty string",
            json!({"UserID": [null]}),
            json!({"UserID": ""}),
            false,
        ),
        case(
            "empty string does not match null",
            json!({"LastName": [""]}),
            json!({"LastName": null}),
            false,
        ),
        case(
            "exact number",
            json!({"dynamodb": {"SizeBytes": [26]}}),
            customer.clone(),
            true,
        ),
        case(
            "numbers compare as written: an integer is not a fraction",
            json!({"dynamodb": {"SizeBytes": [26.0]}}),
            customer.clone(),
            false,
        ),
    ]
}

#[test]
fn every_documented_example_matches_as_documented() {
    let mut wrong = Vec::new();
    let all = cases();
    for case in &all {
        let patterns = FilterPatterns::parse(std::slice::from_ref(&case.pattern))
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        if patterns.admits(&case.record) != case.matches {
            wrong.push(case.what);
        }
    }
    assert!(wrong.is_empty(), "not as documented: {wrong:?}");
    assert!(all.len() >= 50, "the table lost rows: {}", all.len());
}

#[test]
fn the_documented_string_form_is_the_same_pattern() {
    // FilterCriteria carries each pattern as a string of JSON.
    let written = "{ \"dynamodb\" : { \"Keys\" : { \"CustomerName\" : { \"S\" : [ \"AnyCompany Industries\" ] } } } }";
    let patterns = FilterPatterns::parse(&[Value::String(written.to_owned())]).expect("valid");
    assert!(patterns.admits(&customer_record()));
}
