//! The README's first command, `make demo`, works on this machine: moto, a demo
//! table, the adapter and the event display, five changes shown as CloudEvents.

use std::process::Command;

#[test]
fn the_demo_shows_every_change_as_a_cloud_event() {
    let out = Command::new(crate::support::repo_path("scripts/demo"))
        .env("DYNAMODB_SOURCE_BIN", crate::support::adapter::BINARY)
        .current_dir(crate::support::repo_path(""))
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("done: 5 events delivered"), "{stderr}");
    for operation in ["INSERT", "MODIFY", "REMOVE"] {
        assert!(
            stdout.contains(&format!("dynamodboperation: {operation}")),
            "{operation} shown:\n{stdout}"
        );
    }
    assert_eq!(
        stdout
            .matches("type: com.amazon.dynamodb.stream_record")
            .count(),
        5,
        "{stdout}"
    );
}
