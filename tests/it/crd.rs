//! `config/crd/` is the output of `dynamodb-source crd`, never edited by hand.

use std::process::Command;

#[test]
fn checked_in_crd_matches_the_generated_one() {
    let out = Command::new(crate::support::adapter::BINARY)
        .arg("crd")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked_in = std::fs::read_to_string(crate::support::repo_path(
        "config/crd/awsdynamodbsources.yaml",
    ))
    .expect("config/crd/awsdynamodbsources.yaml exists");
    assert!(
        String::from_utf8_lossy(&out.stdout) == checked_in,
        "config/crd/awsdynamodbsources.yaml is stale: run `make crd`"
    );
}
