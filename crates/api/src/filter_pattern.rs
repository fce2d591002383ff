//! Lambda FilterCriteria event patterns, as `spec.filter.patterns` and the
//! adapter's `FILTER_PATTERNS` carry them.
//!
//! A pattern is parsed once, at the boundary (the custom resource, the
//! environment), into a typed tree, so a bad operator is reported with its
//! path where it was written, and matching a record cannot fail.
//!
//! # Semantics
//! Those of Lambda event filtering, which follows EventBridge event patterns:
//! - A pattern is a JSON object; every field it names must match (AND). A field
//!   is either an object of further fields or an array of rules, any of which
//!   may match (OR). `"$or": [p1, p2, ...]` matches when one of its patterns does.
//! - Rules look at *leaf* values: strings, numbers, booleans and null. Arrays in
//!   the record are looked through (a rule matches when one element does); an
//!   object is not a leaf, so `{"exists": true}` on a field holding an object
//!   does not match and `{"exists": false}` does (as Lambda documents for
//!   DynamoDB's typed attribute values: name the type key, `{"S": [...]}`).
//! - Exact values compare as written: strings character by character, numbers by
//!   their JSON form (`300` is not `300.0`), `null` only null, `""` only the empty
//!   string.
//! - `numeric` compares numbers, and also the text of DynamoDB numbers, which
//!   the record carries as strings under an `N` (or `NS`) key. Under `BOOL` and
//!   `NULL`, whose values are booleans, `"true"` and `"false"` written as text
//!   match them too.
//!
//! A list of patterns passes a record when any pattern matches it; an empty
//! list passes everything.
//!
//! # Caveats
//! Numbers are read as `f64`: a number written with a fraction compares equal
//! to the same value written with an exponent (`300.0` and `3.0e2`), and
//! numeric ranges are exact to about 15 significant digits.

use std::fmt;

use serde_json::{Map, Number, Value};

/// Why one pattern of a list cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("filter pattern {index} ({pattern}){}", at(path))]
pub struct PatternError {
    /// The pattern's place in its list, from 0.
    pub index: usize,
    /// The pattern as written (compact JSON, shortened when long).
    pub pattern: String,
    /// Where in the pattern the problem is, e.g. `dynamodb.NewImage.Price.N[0].numeric`.
    pub path: String,
    #[source]
    pub problem: Problem,
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// What is wrong with a pattern.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("a pattern written as a string must hold JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("a pattern is a JSON object (or a string holding one), not {0}")]
    NotAnObject(&'static str),
    #[error("a field's rule is an object of fields or an array of values and operators, not {0}")]
    NotARule(&'static str),
    #[error("an array of rules may not be empty")]
    EmptyRule,
    #[error("\"$or\" takes a non-empty array of pattern objects")]
    BadOr,
    #[error("an operator is an object with exactly one key, this one has {0}")]
    OperatorKeys(usize),
    #[error(
        "unknown operator {0:?}: expected prefix, suffix, equals-ignore-case, anything-but, numeric or exists"
    )]
    UnknownOperator(String),
    #[error("{operator} takes {expected}")]
    OperatorValue {
        operator: &'static str,
        expected: &'static str,
    },
    #[error(
        "numeric takes [\"=\", N], or one or two comparisons [\">\" or \">=\", N] and [\"<\" or \"<=\", N]: {0}"
    )]
    Numeric(&'static str),
    #[error("the list of patterns is not a JSON array of patterns")]
    NotAList(#[source] serde_json::Error),
}

impl Problem {
    fn at(self, path: &Path) -> Located {
        Located {
            path: path.to_string(),
            problem: self,
        }
    }
}

/// A problem and where it is, before the pattern's index is known.
struct Located {
    path: String,
    problem: Problem,
}

/// The path to a part of a pattern, for messages.
#[derive(Default, Clone)]
struct Path(Vec<Step>);

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

impl Path {
    fn key(&self, key: &str) -> Path {
        let mut path = self.clone();
        path.0.push(Step::Key(key.to_owned()));
        path
    }

    fn index(&self, index: usize) -> Path {
        let mut path = self.clone();
        path.0.push(Step::Index(index));
        path
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if n == 0 => f.write_str(key)?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Patterns of which any may pass a record; none means every record passes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterPatterns(Vec<Pattern>);

impl FilterPatterns {
    /// Each pattern is a JSON object or a string holding one, as Lambda's
    /// `FilterCriteria.Filters[].Pattern` and its console take them.
    pub fn parse(patterns: &[Value]) -> Result<FilterPatterns, PatternError> {
        patterns
            .iter()
            .enumerate()
            .map(|(index, written)| {
                Pattern::parse(written).map_err(|located| PatternError {
                    index,
                    pattern: shown(written),
                    path: located.path,
                    problem: located.problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(FilterPatterns)
    }

    /// A JSON array of patterns, as the adapter's `FILTER_PATTERNS` holds them.
    pub fn parse_json_list(text: &str) -> Result<FilterPatterns, PatternError> {
        let list: Vec<Value> = serde_json::from_str(text).map_err(|e| PatternError {
            index: 0,
            pattern: shown(&Value::String(text.to_owned())),
            path: String::new(),
            problem: Problem::NotAList(e),
        })?;
        FilterPatterns::parse(&list)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `record` (the record as the `AWS` payload format presents it)
    /// passes: any pattern matches, or there are none.
    pub fn admits(&self, record: &Value) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(record))
    }
}

/// A pattern as written, for messages: compact, and cut after 200 characters.
fn shown(written: &Value) -> String {
    const MAX: usize = 200;
    let text = match written {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// One event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(Fields);

impl Pattern {
    fn parse(written: &Value) -> Result<Pattern, Located> {
        let root = Path::default();
        let parsed;
        let value = match written {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text)
                    .map_err(|e| Problem::NotJson(e).at(&root))?;
                &parsed
            }
            other => other,
        };
        match value {
            Value::Object(map) => Ok(Pattern(Fields::parse(map, &root)?)),
            other => Err(Problem::NotAnObject(kind(other)).at(&root)),
        }
    }

    /// Whether the pattern matches `record`.
    pub fn matches(&self, record: &Value) -> bool {
        self.0.matches(&[record])
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fields that must all match, and `$or` groups of which one must.
#[derive(Debug, Clone, PartialEq, Default)]
struct Fields {
    fields: Vec<(String, Node)>,
    any_of: Vec<Vec<Fields>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Nested(Fields),
    /// Rules of which any may match the field's leaf values.
    Rules(Vec<Rule>),
}

impl Fields {
    fn parse(map: &Map<String, Value>, path: &Path) -> Result<Fields, Located> {
        let mut fields = Fields::default();
        for (key, value) in map {
            let here = path.key(key);
            if key == "$or" {
                let Value::Array(alternatives) = value else {
                    return Err(Problem::BadOr.at(&here));
                };
                if alternatives.is_empty() {
                    return Err(Problem::BadOr.at(&here));
                }
                let group = alternatives
                    .iter()
                    .enumerate()
                    .map(|(n, alternative)| match alternative {
                        Value::Object(inner) => Fields::parse(inner, &here.index(n)),
                        _ => Err(Problem::BadOr.at(&here.index(n))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                fields.any_of.push(group);
                continue;
            }
            let node = match value {
                Value::Object(inner) => Node::Nested(Fields::parse(inner, &here)?),
                Value::Array(rules) if rules.is_empty() => {
                    return Err(Problem::EmptyRule.at(&here));
                }
                Value::Array(rules) => Node::Rules(
                    rules
                        .iter()
                        .enumerate()
                        .map(|(n, rule)| Rule::parse(rule, &here.index(n)))
                        .collect::<Result<_, _>>()?,
                ),
                other => return Err(Problem::NotARule(kind(other)).at(&here)),
            };
            fields.fields.push((key.clone(), node));
        }
        Ok(fields)
    }

    /// `nodes` are the record's values at this level (objects; arrays were
    /// looked through).
    fn matches(&self, nodes: &[&Value]) -> bool {
        self.fields.iter().all(|(key, node)| {
            let mut children = Vec::new();
            for value in nodes {
                if let Some(child) = value.as_object().and_then(|m| m.get(key)) {
                    flatten(child, &mut children);
                }
            }
            match node {
                Node::Nested(inner) => {
                    let objects: Vec<&Value> =
                        children.into_iter().filter(|v| v.is_object()).collect();
                    inner.matches(&objects)
                }
                Node::Rules(rules) => {
                    let leaves: Vec<&Value> =
                        children.into_iter().filter(|v| !v.is_object()).collect();
                    let typed = Typed::of(key);
                    rules.iter().any(|rule| rule.matches_field(&leaves, typed))
                }
            }
        }) && self
            .any_of
            .iter()
            .all(|group| group.iter().any(|alternative| alternative.matches(nodes)))
    }
}

/// What a DynamoDB type key says of the values under it, which the record
/// writes in JSON as text (numbers) or as booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typed {
    /// `N`, `NS`: numbers as text, which `numeric` compares as numbers.
    Number,
    /// `BOOL`, `NULL`: booleans, which a pattern may also write as the text
    /// `"true"` or `"false"`.
    Boolean,
    Other,
}

impl Typed {
    fn of(key: &str) -> Typed {
        match key {
            "N" | "NS" => Typed::Number,
            "BOOL" | "NULL" => Typed::Boolean,
            _ => Typed::Other,
        }
    }
}

/// Looks through arrays: their elements count as the field's values.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// A leaf value written in a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

impl Scalar {
    fn from_value(value: &Value) -> Option<Scalar> {
        match value {
            Value::Null => Some(Scalar::Null),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Number(n.clone())),
            Value::String(s) => Some(Scalar::String(s.clone())),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn equals(&self, leaf: &Value) -> bool {
        match (self, leaf) {
            (Scalar::Null, Value::Null) => true,
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Number(a), Value::Number(b)) => a == b,
            (Scalar::String(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

/// Text compared exactly or without regard to case.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    text: String,
    ignore_case: bool,
}

impl Text {
    fn fold(&self, s: &str) -> String {
        if self.ignore_case {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    }

    fn starts(&self, s: &str) -> bool {
        self.fold(s).starts_with(&self.fold(&self.text))
    }

    fn ends(&self, s: &str) -> bool {
        self.fold(s).ends_with(&self.fold(&self.text))
    }
}

/// One bound of a numeric range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound {
    value: f64,
    inclusive: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Exact(Scalar),
    Prefix(Text),
    Suffix(Text),
    EqualsIgnoreCase(String),
    AnythingBut(AnythingBut),
    Numeric {
        lower: Option<Bound>,
        upper: Option<Bound>,
    },
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    Values(Vec<Scalar>),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(Vec<String>),
}

impl Rule {
    fn parse(value: &Value, path: &Path) -> Result<Rule, Located> {
        let Value::Object(operator) = value else {
            return Scalar::from_value(value)
                .map(Rule::Exact)
                .ok_or_else(|| Problem::NotARule(kind(value)).at(path));
        };
        let mut entries = operator.iter();
        let (Some((name, argument)), None) = (entries.next(), entries.next()) else {
            return Err(Problem::OperatorKeys(operator.len()).at(path));
        };
        let here = path.key(name);
        let wrong = |operator: &'static str, expected: &'static str| {
            Problem::OperatorValue { operator, expected }.at(&here)
        };
        match name.as_str() {
            "prefix" => text_argument(argument)
                .map(Rule::Prefix)
                .ok_or_else(|| wrong("prefix", "a string or {\"equals-ignore-case\": string}")),
            "suffix" => text_argument(argument)
                .map(Rule::Suffix)
                .ok_or_else(|| wrong("suffix", "a string or {\"equals-ignore-case\": string}")),
            "equals-ignore-case" => argument
                .as_str()
                .map(|s| Rule::EqualsIgnoreCase(s.to_owned()))
                .ok_or_else(|| wrong("equals-ignore-case", "a string")),
            "exists" => argument
                .as_bool()
                .map(Rule::Exists)
                .ok_or_else(|| wrong("exists", "true or false")),
            "numeric" => numeric(argument, &here),
            "anything-but" => anything_but(argument)
                .map(Rule::AnythingBut)
                .ok_or_else(|| {
                    wrong(
                        "anything-but",
                        "a value, a non-empty array of values, or {\"prefix\"|\"suffix\": string} or {\"equals-ignore-case\": string or strings}",
                    )
                }),
            other => Err(Problem::UnknownOperator(other.to_owned()).at(&here)),
        }
    }

    /// Whether the rule matches a field whose leaf values are `leaves`.
    fn matches_field(&self, leaves: &[&Value], typed: Typed) -> bool {
        match self {
            Rule::Exists(exists) => leaves.is_empty() != *exists,
            rule => leaves.iter().any(|leaf| rule.matches(leaf, typed)),
        }
    }

    fn matches(&self, leaf: &Value, typed: Typed) -> bool {
        match self {
            Rule::Exact(scalar) => {
                scalar.equals(leaf)
                    || (typed == Typed::Boolean
                        && matches!((scalar, leaf), (Scalar::String(s), Value::Bool(b)) if s == if *b { "true" } else { "false" }))
            }
            Rule::Prefix(text) => leaf.as_str().is_some_and(|s| text.starts(s)),
            Rule::Suffix(text) => leaf.as_str().is_some_and(|s| text.ends(s)),
            Rule::EqualsIgnoreCase(text) => leaf
                .as_str()
                .is_some_and(|s| s.to_lowercase() == text.to_lowercase()),
            Rule::AnythingBut(AnythingBut::Values(values)) => {
                !values.iter().any(|v| v.equals(leaf))
            }
            Rule::AnythingBut(AnythingBut::Prefix(prefix)) => leaf
                .as_str()
                .is_some_and(|s| !s.starts_with(prefix.as_str())),
            Rule::AnythingBut(AnythingBut::Suffix(suffix)) => {
                leaf.as_str().is_some_and(|s| !s.ends_with(suffix.as_str()))
            }
            Rule::AnythingBut(AnythingBut::EqualsIgnoreCase(texts)) => leaf
                .as_str()
                .is_some_and(|s| !texts.iter().any(|t| t.to_lowercase() == s.to_lowercase())),
            Rule::Numeric { lower, upper } => {
                let number = match leaf {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) if typed == Typed::Number => {
                        s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
                    }
                    _ => None,
                };
                number.is_some_and(|n| {
                    lower.is_none_or(|b| {
                        if b.inclusive {
                            n >= b.value
                        } else {
                            n > b.value
                        }
                    }) && upper.is_none_or(|b| {
                        if b.inclusive {
                            n <= b.value
                        } else {
                            n < b.value
                        }
                    })
                })
            }
            Rule::Exists(_) => false,
        }
    }
}

fn text_argument(argument: &Value) -> Option<Text> {
    match argument {
        Value::String(text) => Some(Text {
            text: text.clone(),
            ignore_case: false,
        }),
        Value::Object(map) if map.len() == 1 => map
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .map(|text| Text {
                text: text.to_owned(),
                ignore_case: true,
            }),
        _ => None,
    }
}

fn anything_but(argument: &Value) -> Option<AnythingBut> {
    match argument {
        Value::Array(values) if !values.is_empty() => values
            .iter()
            .map(|v| match v {
                Value::String(_) | Value::Number(_) => Scalar::from_value(v),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(AnythingBut::Values),
        Value::String(_) | Value::Number(_) => {
            Scalar::from_value(argument).map(|s| AnythingBut::Values(vec![s]))
        }
        Value::Object(map) if map.len() == 1 => {
            let (name, inner) = map.iter().next()?;
            match (name.as_str(), inner) {
                ("prefix", Value::String(p)) => Some(AnythingBut::Prefix(p.clone())),
                ("suffix", Value::String(s)) => Some(AnythingBut::Suffix(s.clone())),
                ("equals-ignore-case", Value::String(s)) => {
                    Some(AnythingBut::EqualsIgnoreCase(vec![s.clone()]))
                }
                ("equals-ignore-case", Value::Array(list)) if !list.is_empty() => list
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(AnythingBut::EqualsIgnoreCase),
                _ => None,
            }
        }
        _ => None,
    }
}

fn numeric(argument: &Value, path: &Path) -> Result<Rule, Located> {
    let bad = |why: &'static str| Problem::Numeric(why).at(path);
    let Value::Array(items) = argument else {
        return Err(bad("not an array"));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(bad(
            "expected one or two pairs of a comparison and a number",
        ));
    }
    if items.len() > 2 && items.chunks(2).any(|pair| pair[0] == "=") {
        return Err(bad("\"=\" stands alone"));
    }
    let mut lower = None;
    let mut upper = None;
    for pair in items.chunks(2) {
        let Some(op) = pair[0].as_str() else {
            return Err(bad("a comparison is a string"));
        };
        let Some(value) = pair[1].as_f64().filter(|_| pair[1].is_number()) else {
            return Err(bad("the value compared with is a JSON number"));
        };
        let (slot, inclusive) = match op {
            "=" => {
                lower = Some(Bound {
                    value,
                    inclusive: true,
                });
                (&mut upper, true)
            }
            ">" => (&mut lower, false),
            ">=" => (&mut lower, true),
            "<" => (&mut upper, false),
            "<=" => (&mut upper, true),
            _ => return Err(bad("the comparisons are =, <, <=, > and >=")),
        };
        if slot.is_some() {
            return Err(bad("at most one lower and one upper bound"));
        }
        *slot = Some(Bound { value, inclusive });
    }
    Ok(Rule::Numeric { lower, upper })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn admits(pattern: Value, record: Value) -> bool {
        FilterPatterns::parse(&[pattern])
            .expect("valid pattern")
            .admits(&record)
    }

    fn error(pattern: Value) -> String {
        let error = FilterPatterns::parse(&[json!({"eventName": ["INSERT"]}), pattern])
            .expect_err("invalid pattern");
        crate::Report(&error).to_string()
    }

    #[test]
    fn a_pattern_as_a_string_is_parsed_as_json() {
        let patterns =
            FilterPatterns::parse(&[json!("{\"eventName\": [\"REMOVE\"]}")]).expect("valid");
        assert!(patterns.admits(&json!({"eventName": "REMOVE"})));
        assert!(!patterns.admits(&json!({"eventName": "INSERT"})));
    }

    #[test]
    fn any_pattern_of_the_list_passes_a_record_and_none_passes_all() {
        let patterns = FilterPatterns::parse(&[
            json!({"eventName": ["INSERT"]}),
            json!({"eventName": ["REMOVE"]}),
        ])
        .expect("valid");
        assert!(patterns.admits(&json!({"eventName": "REMOVE"})));
        assert!(!patterns.admits(&json!({"eventName": "MODIFY"})));
        assert!(FilterPatterns::default().admits(&json!({"eventName": "MODIFY"})));
    }

    #[test]
    fn rules_look_through_arrays_of_the_record() {
        let pattern = json!({"dynamodb": {"NewImage": {"tags": {"SS": ["red"]}}}});
        let record = |tags: Value| json!({"dynamodb": {"NewImage": {"tags": {"SS": tags}}}});
        assert!(admits(pattern.clone(), record(json!(["blue", "red"]))));
        assert!(!admits(pattern, record(json!(["blue"]))));
    }

    #[test]
    fn or_groups_need_one_alternative() {
        let pattern = json!({"$or": [{"a": [1]}, {"b": [2]}]});
        assert!(admits(pattern.clone(), json!({"a": 1, "b": 0})));
        assert!(admits(pattern.clone(), json!({"a": 0, "b": 2})));
        assert!(!admits(pattern, json!({"a": 0, "b": 0})));
    }

    #[test]
    fn numeric_ranges_compare_dynamodb_number_text_only_under_n() {
        let pattern = json!({"price": {"N": [{"numeric": [">=", 10, "<", 20]}]}});
        let record = |n: &str| json!({"price": {"N": n}});
        assert!(admits(pattern.clone(), record("10")));
        assert!(admits(pattern.clone(), record("19.99")));
        assert!(!admits(pattern.clone(), record("20")));
        assert!(!admits(pattern.clone(), record("9")));
        assert!(!admits(pattern, record("ten")));
        // Under S the same text is a string, which numeric does not compare.
        assert!(!admits(
            json!({"price": {"S": [{"numeric": [">", 0]}]}}),
            json!({"price": {"S": "15"}})
        ));
        assert!(admits(
            json!({"SizeBytes": [{"numeric": ["=", 26]}]}),
            json!({"SizeBytes": 26})
        ));
    }

    #[test]
    fn case_insensitive_prefix_suffix_and_anything_but() {
        let record = json!({"region": "US-East-1"});
        assert!(admits(
            json!({"region": [{"prefix": {"equals-ignore-case": "us-"}}]}),
            record.clone()
        ));
        assert!(!admits(
            json!({"region": [{"prefix": "us-"}]}),
            record.clone()
        ));
        assert!(admits(
            json!({"region": [{"suffix": "-1"}]}),
            record.clone()
        ));
        assert!(admits(
            json!({"region": [{"suffix": {"equals-ignore-case": "EAST-1"}}]}),
            record.clone()
        ));
        assert!(!admits(
            json!({"region": [{"anything-but": {"equals-ignore-case": ["us-east-1"]}}]}),
            record.clone()
        ));
        assert!(admits(
            json!({"region": [{"anything-but": {"suffix": "-2"}}]}),
            record
        ));
    }

    #[test]
    fn errors_name_the_pattern_and_the_path_of_the_bad_operator() {
        assert_eq!(
            error(json!({"dynamodb": {"NewImage": {"Price": {"N": [{"numerc": [">", 1]}]}}}})),
            "filter pattern 1 ({\"dynamodb\":{\"NewImage\":{\"Price\":{\"N\":[{\"numerc\":[\">\",1]}]}}}}) \
             at dynamodb.NewImage.Price.N[0].numerc: \
             unknown operator \"numerc\": expected prefix, suffix, equals-ignore-case, anything-but, numeric or exists"
        );
        assert!(
            error(json!({"a": [{"numeric": [">", "1"]}]})).contains(" at a[0].numeric: "),
            "numbers are JSON numbers"
        );
        assert!(error(json!({"a": [{"numeric": ["=", 1, "<", 2]}]})).contains("stands alone"));
        assert!(error(json!({"a": [{"numeric": [">", 1, ">=", 2]}]})).contains("one lower"));
        assert!(error(json!({"a": [{"prefix": 1}]})).contains("prefix takes a string"));
        assert!(error(json!({"a": [{"exists": "yes"}]})).contains("exists takes true or false"));
        assert!(error(json!({"a": [{"prefix": "x", "suffix": "y"}]})).contains("exactly one key"));
        assert!(error(json!({"a": []})).ends_with(" at a: an array of rules may not be empty"));
        assert!(error(json!({"a": "x"})).ends_with(" at a: a field's rule is an object of fields or an array of values and operators, not a string"));
        assert!(error(json!({"a": [[1]]})).contains(" at a[0]: "));
        assert!(error(json!({"$or": [{"a": [1]}, 2]})).contains(" at $or[1]: "));
        assert!(error(json!(["a"])).contains("not an array"));
        assert!(error(json!("{not json")).contains("must hold JSON"));
    }

    #[test]
    fn a_long_pattern_is_shortened_in_messages() {
        let long = "x".repeat(500);
        let message = error(json!({"a": [long], "b": [{"bad": 1}]}));
        assert!(message.len() < 600, "{message}");
        assert!(message.contains("..."));
    }

    #[test]
    fn the_environment_list_is_a_json_array() {
        assert_eq!(
            FilterPatterns::parse_json_list(r#"[{"a":[1]},"{\"b\":[2]}"]"#)
                .expect("valid")
                .len(),
            2
        );
        assert!(
            crate::Report(
                &FilterPatterns::parse_json_list(r#"{"a":[1]}"#).expect_err("not a list")
            )
            .to_string()
            .contains("not a JSON array")
        );
    }
}
