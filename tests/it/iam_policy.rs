//! The IAM policy the README documents (`docs/iam-policy.json`, included verbatim) is
//! exactly what the code calls: every DynamoDB (Streams) SDK operation the sources make,
//! `client.<operation>()`, needs its `dynamodb:<Operation>` action in the policy, and the
//! policy grants nothing the code does not call.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::repo_path;
use serde_json::Value;

/// Methods of an SDK client that are not API operations.
const NOT_OPERATIONS: &[&str] = &["clone", "config", "as_ref"];

/// The actions the policy allows.
fn policy_actions(policy: &Value) -> BTreeSet<String> {
    let statements = match &policy["Statement"] {
        Value::Array(statements) => statements.clone(),
        single => vec![single.clone()],
    };
    let mut actions = BTreeSet::new();
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        match &statement["Action"] {
            Value::String(action) => {
                actions.insert(action.clone());
            }
            Value::Array(list) => actions.extend(
                list.iter()
                    .map(|a| a.as_str().expect("an action").to_owned()),
            ),
            other => panic!("unexpected Action {other}"),
        }
    }
    actions
}

/// `dynamodb:<Operation>` for every `client.<operation>(` (whitespace and line breaks
/// allowed around the dot, as in a method chain), comments skipped.
fn sdk_calls(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut calls = BTreeSet::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("client") {
        let start = from + found;
        let mut at = start + "client".len();
        from = at;
        if start > 0 && is_ident(bytes[start - 1]) || at < bytes.len() && is_ident(bytes[at]) {
            continue;
        }
        let skip_space = |mut i: usize| {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        };
        at = skip_space(at);
        if bytes.get(at) != Some(&b'.') {
            continue;
        }
        at = skip_space(at + 1);
        let name_start = at;
        while at < bytes.len() && is_ident(bytes[at]) {
            at += 1;
        }
        let name = &code[name_start..at];
        if name.is_empty() || bytes.get(skip_space(at)) != Some(&b'(') {
            continue;
        }
        if NOT_OPERATIONS.contains(&name) {
            continue;
        }
        let operation: String = name
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        calls.insert(format!("dynamodb:{operation}"));
    }
    calls
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every non-test source file that uses a DynamoDB SDK crate.
fn sdk_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&repo_path("src"), &mut files);
    for entry in std::fs::read_dir(repo_path("crates")).expect("crates/") {
        let src = entry.expect("entry").path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    files.retain(|f| {
        std::fs::read_to_string(f)
            .expect("read")
            .contains("aws_sdk_dynamodb")
    });
    files.sort();
    files
}

#[test]
fn the_scanner_finds_operations_in_method_chains_and_skips_the_rest() {
    let source = "
        let page = self
            .client
            .describe_table() // a call the policy lacks
            .send();
        let other = client.clone();
        // client.delete_table()
        let x = my_client.put_item();
        client . get_records ( );
    ";
    assert_eq!(
        sdk_calls(source),
        BTreeSet::from([
            "dynamodb:DescribeTable".to_owned(),
            "dynamodb:GetRecords".to_owned()
        ])
    );
}

#[test]
fn the_documented_policy_allows_exactly_the_operations_the_code_calls() {
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("docs/iam-policy.json")).expect("docs/iam-policy.json"),
    )
    .expect("docs/iam-policy.json is JSON");
    let allowed = policy_actions(&policy);

    let files = sdk_sources();
    let client = repo_path("crates/stream/src/client.rs");
    assert!(files.contains(&client), "{files:?}");
    let mut called = BTreeSet::new();
    for file in &files {
        let calls = sdk_calls(&std::fs::read_to_string(file).expect("read"));
        for call in &calls {
            assert!(
                allowed.contains(call),
                "{} calls {call}, which docs/iam-policy.json (and so the README) does not allow",
                file.display()
            );
        }
        called.extend(calls);
    }
    let expected: BTreeSet<String> = [
        "dynamodb:ListStreams",
        "dynamodb:DescribeStream",
        "dynamodb:GetShardIterator",
        "dynamodb:GetRecords",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(called, expected, "the operations the code calls");
    assert_eq!(
        allowed, called,
        "the policy is the least: no action the code does not call"
    );
}

#[test]
fn the_readme_shows_the_policy_file_verbatim() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let policy = std::fs::read_to_string(repo_path("docs/iam-policy.json")).expect("policy");
    assert!(
        readme.contains(&format!("```json\n{policy}```")),
        "README.md must include docs/iam-policy.json verbatim in a json code block"
    );
}
