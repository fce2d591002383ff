//! The AWS SDK configuration: region, endpoint override, the standard
//! credential chain, and an optional role assumed through STS.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodbstreams::config::SharedCredentialsProvider;
use aws_smithy_http_client::tls;
use url::Url;

/// The SDK's own connect timeout, kept when the attempt timeout is set.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// How long one API call may wait for its answer. The SDK sets none: a call
/// over a connection that a NAT or load balancer dropped without a word would
/// then wait forever, and its shard with it. Stream calls answer in well under
/// a second; a timed-out attempt is retried like any transient failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the SDK configuration. The HTTPS client uses rustls with the ring
/// provider, the one crypto backend in this build.
pub(crate) async fn sdk_config(
    region: &str,
    endpoint: Option<&Url>,
    assume_role_arn: Option<&str>,
) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .http_client(http_client);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    let base = loader.load().await;
    match assume_role_arn {
        Some(role) => {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("dynamodb-source")
                .configure(&base)
                .build()
                .await;
            base.into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build()
        }
        None => base,
    }
}
