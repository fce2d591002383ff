//! Bad settings stop the adapter at once with status 2 and one line naming them.

use std::process::Command;

use crate::support::adapter::BINARY;

const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(BINARY)
        .arg("adapter")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_bad_setting_exits_2_with_one_line_naming_it() {
    let base = [("K_SINK", "http://127.0.0.1:9/"), ("ARN", TABLE)];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ARN", TABLE)], "K_SINK"),
        (&[("K_SINK", "http://127.0.0.1:9/")], "ARN"),
        (
            &[("ARN", "arn:aws:dynamodb:us-east-1:123:table/orders")],
            "ARN",
        ),
        (&[("STARTING_POSITION", "EARLIEST")], "STARTING_POSITION"),
        (&[("PAYLOAD_FORMAT", "CSV")], "PAYLOAD_FORMAT"),
        (&[("EVENT_NAMES", "INSERT,UPSERT")], "EVENT_NAMES"),
        (
            &[(
                "FILTER_PATTERNS",
                r#"[{"eventName": [{"numerc": [">", 1]}]}]"#,
            )],
            "FILTER_PATTERNS",
        ),
        (
            &[("FILTER_PATTERNS", r#"{"eventName": ["INSERT"]}"#)],
            "FILTER_PATTERNS",
        ),
        (
            &[("K_CE_OVERRIDES", r#"{"extensions":{"source":"x"}}"#)],
            "K_CE_OVERRIDES",
        ),
        (&[("DELIVERY_RETRY", "many")], "DELIVERY_RETRY"),
        (
            &[("DELIVERY_BACKOFF_DELAY", "2s")],
            "DELIVERY_BACKOFF_DELAY",
        ),
        (
            &[("DELIVERY_BACKOFF_POLICY", "fibonacci")],
            "DELIVERY_BACKOFF_POLICY",
        ),
        (&[("DELIVERY_TIMEOUT", "soon")], "DELIVERY_TIMEOUT"),
        (&[("K_DEAD_LETTER_SINK", "not a url")], "K_DEAD_LETTER_SINK"),
        (&[("METRICS_PORT", "http")], "METRICS_PORT"),
        (&[("LOG_FORMAT", "yaml")], "LOG_FORMAT"),
        (&[("K_CA_CERTS", "not pem")], "K_CA_CERTS"),
        (&[("CHECKPOINT_INTERVAL", "1s")], "CHECKPOINT_INTERVAL"),
        (&[("SUMMARY_INTERVAL", "PT0S")], "SUMMARY_INTERVAL"),
    ];
    for (overrides, setting) in cases {
        let mut env: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| {
                !overrides.iter().any(|(o, _)| o == k)
                    && !(overrides.len() == 1
                        && (*setting == "K_SINK" || *setting == "ARN")
                        && *k == *setting)
            })
            .collect();
        env.extend(overrides.iter().copied());
        let (code, stderr) = run(&env);
        assert_eq!(code, Some(2), "{setting}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{setting}: one line: {stderr}"
        );
        assert!(
            stderr.contains(&format!("invalid setting {setting}:")),
            "{setting}: {stderr}"
        );
    }
}

#[test]
fn help_documents_every_setting() {
    let out = Command::new(BINARY)
        .args(["adapter", "--help"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "K_SINK",
        "ARN",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ASSUME_ROLE_ARN",
        "STARTING_POSITION",
        "CHECKPOINT_FILE",
        "PAYLOAD_FORMAT",
        "EVENT_NAMES",
        "FILTER_PATTERNS",
        "K_CE_OVERRIDES",
        "DELIVERY_RETRY",
        "DELIVERY_BACKOFF_POLICY",
        "DELIVERY_BACKOFF_DELAY",
        "DELIVERY_TIMEOUT",
        "K_DEAD_LETTER_SINK",
        "K_CA_CERTS",
        "METRICS_PORT",
        "LOG_FORMAT",
        "CHECKPOINT_CONFIGMAP",
        "CHECKPOINT_NAMESPACE",
        "SOURCE_NAME",
        "SOURCE_NAMESPACE",
        "SUMMARY_INTERVAL",
        "REPLAY_FROM",
        "REPLAY_TOKEN",
    ] {
        assert!(
            help.contains(&format!("env: {name}")),
            "--help lacks {name}:\n{help}"
        );
    }
}

#[test]
fn a_corrupt_checkpoint_is_a_clear_error_not_a_silent_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoint = dir.path().join("cp.json");
    std::fs::write(&checkpoint, "{\"version\":1,\"streamArn\":").expect("write");
    let port = crate::support::free_port().to_string();
    let (code, stderr) = run(&[
        ("K_SINK", "http://127.0.0.1:9/"),
        ("ARN", TABLE),
        ("CHECKPOINT_FILE", checkpoint.to_str().expect("utf-8")),
        ("METRICS_PORT", &port),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");
}
