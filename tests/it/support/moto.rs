//! moto's DynamoDB and DynamoDB Streams server on loopback, and a client for
//! writing items and reading the stream's ground truth.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

use super::{eventually, free_port, repo_path, venv};

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (run `make venv` first)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        let url = format!("{}/moto-api/", moto.endpoint);
        eventually("moto to answer", Duration::from_secs(30), async || {
            reqwest_get_ok(&url).await.then_some(())
        })
        .await;
        moto
    }

    /// Runs tests/peers/dynamodb.py with the given arguments and returns its stdout.
    pub fn python(&self, args: &[&str]) -> String {
        let out = Command::new(venv().join("bin/python"))
            .arg(repo_path("tests/peers/dynamodb.py"))
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "dynamodb.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates a table with a stream of `view_type`; returns its ARN.
    pub fn create_table(&self, table: &str, view_type: &str) -> String {
        self.python(&["create", table, view_type])
    }

    pub async fn streams_client(&self) -> aws_sdk_dynamodbstreams::Client {
        let config = aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodbstreams::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .credentials_provider(aws_sdk_dynamodbstreams::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        aws_sdk_dynamodbstreams::Client::from_conf(config)
    }

    /// Every record the table's stream holds, in order (moto keeps one shard).
    pub async fn stream_records(&self, table: &str) -> Vec<Record> {
        let client = self.streams_client().await;
        let streams = client
            .list_streams()
            .table_name(table)
            .send()
            .await
            .expect("ListStreams");
        let stream_arn = streams.streams()[0]
            .stream_arn()
            .expect("stream arn")
            .to_owned();
        let description = client
            .describe_stream()
            .stream_arn(&stream_arn)
            .send()
            .await
            .expect("DescribeStream");
        let mut records = Vec::new();
        for shard in description
            .stream_description()
            .expect("description")
            .shards()
        {
            let mut iterator = client
                .get_shard_iterator()
                .stream_arn(&stream_arn)
                .shard_id(shard.shard_id().expect("shard id"))
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator()
                .map(str::to_owned);
            while let Some(it) = iterator {
                let page = client
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .expect("GetRecords");
                if page.records().is_empty() {
                    break;
                }
                records.extend(page.records().iter().cloned());
                iterator = page.next_shard_iterator().map(str::to_owned);
            }
        }
        records
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn reqwest_get_ok(url: &str) -> bool {
    let client = reqwest::Client::new();
    matches!(
        client.get(url).timeout(Duration::from_secs(2)).send().await,
        Ok(response) if response.status().is_success()
    )
}
