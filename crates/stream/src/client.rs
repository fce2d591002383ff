//! The DynamoDB Streams API, reduced to the four calls the documented IAM
//! policy grants (ListStreams, DescribeStream, GetShardIterator, GetRecords),
//! with errors sorted by what the reader must do about them.

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::config::http::HttpResponse;
use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{self as sdk, ShardIteratorType};
use dynamodb_source_api::{StreamArn, TableName};

use crate::capture::CaptureBody;
use crate::ids::{SequenceNumber, ShardId};
use crate::lineage::{Shard, StartAt};
use crate::wire::Page;

/// What a call failed with, kept whole: the SDK's error (with its own causes:
/// the service's code and message, or the network failure), or a description
/// of an answer this client could not use.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with a call, in the terms that decide the reaction; the
/// cause says why.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The iterator is older than 15 minutes: get a new one from the last position.
    #[error("the shard iterator expired")]
    ExpiredIterator(#[source] Cause),
    /// Too many requests: back off and try again.
    #[error("throttled")]
    Throttled(#[source] Cause),
    /// The position asked for is older than the stream's 24-hour retention.
    #[error("records were trimmed before they could be read")]
    TrimmedData(#[source] Cause),
    /// The stream or shard does not exist (any more).
    #[error("not found")]
    NotFound(#[source] Cause),
    /// A server or network failure that may pass.
    #[error("transient failure")]
    Transient(#[source] Cause),
    /// Anything else, e.g. missing permissions.
    #[error("the call failed")]
    Other(#[source] Cause),
}

impl StreamError {
    fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let server_failure = err
            .raw_response()
            .is_some_and(|response| response.status().as_u16() >= 500);
        let code = err.code().map(str::to_owned);
        let transport = matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
        );
        let cause: Cause = Box::new(err);
        match code.as_deref() {
            Some("ExpiredIteratorException") => StreamError::ExpiredIterator(cause),
            Some("TrimmedDataAccessException") => StreamError::TrimmedData(cause),
            Some("ResourceNotFoundException") => StreamError::NotFound(cause),
            Some(
                "LimitExceededException"
                | "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded",
            ) => StreamError::Throttled(cause),
            Some("InternalServerError" | "ServiceUnavailable") => StreamError::Transient(cause),
            _ if server_failure || transport => StreamError::Transient(cause),
            _ => StreamError::Other(cause),
        }
    }
}

/// Whether a stream delivers new records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    Enabling,
    Enabled,
    Disabling,
    Disabled,
    Unknown(String),
}

/// A stream as DescribeStream reports it, all pages put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub status: StreamStatus,
    pub shards: Vec<Shard>,
}

/// A GetRecords answer whose body is not the JSON the API documents.
#[derive(Debug, thiserror::Error)]
#[error("the GetRecords answer is not the expected JSON")]
struct UnexpectedAnswer(#[source] serde_json::Error);

/// The Streams API client this product uses.
#[derive(Debug, Clone)]
pub struct StreamClient {
    client: Client,
}

impl StreamClient {
    pub fn new(client: Client) -> Self {
        StreamClient { client }
    }

    /// The table's newest stream, from ListStreams filtered by table name.
    ///
    /// A table keeps listing old streams for 24 hours after a new one is
    /// enabled; labels are creation timestamps, so the greatest is current.
    pub async fn current_stream(
        &self,
        table: &TableName,
    ) -> Result<Option<StreamArn>, StreamError> {
        let mut newest: Option<(String, String)> = None;
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client
                .list_streams()
                .table_name(table.as_str())
                .set_exclusive_start_stream_arn(start.take())
                .send()
                .await
                .map_err(StreamError::from_sdk)?;
            for stream in page.streams() {
                if stream.table_name().is_some_and(|t| t != table.as_str()) {
                    continue;
                }
                let (Some(arn), label) = (stream.stream_arn(), stream.stream_label()) else {
                    continue;
                };
                let label = label.unwrap_or_default().to_owned();
                if newest.as_ref().is_none_or(|(best, _)| label > *best) {
                    newest = Some((label, arn.to_owned()));
                }
            }
            match page.last_evaluated_stream_arn() {
                Some(next) => start = Some(next.to_owned()),
                None => break,
            }
        }
        newest
            .map(|(_, arn)| {
                arn.parse::<StreamArn>().map_err(|e| {
                    StreamError::Other(
                        format!("ListStreams returned an unusable stream ARN: {e}").into(),
                    )
                })
            })
            .transpose()
    }

    /// The stream's status and every shard, following DescribeStream's pages.
    pub async fn describe(&self, stream: &StreamArn) -> Result<StreamInfo, StreamError> {
        let mut shards = Vec::new();
        let mut status;
        let mut start: Option<String> = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(stream.to_string())
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(StreamError::from_sdk)?;
            let Some(description) = page.stream_description() else {
                return Err(StreamError::Other(
                    format!("DescribeStream of {stream} returned no description").into(),
                ));
            };
            status = match description.stream_status() {
                Some(sdk::StreamStatus::Enabled) => StreamStatus::Enabled,
                Some(sdk::StreamStatus::Enabling) => StreamStatus::Enabling,
                Some(sdk::StreamStatus::Disabled) => StreamStatus::Disabled,
                Some(sdk::StreamStatus::Disabling) => StreamStatus::Disabling,
                Some(other) => StreamStatus::Unknown(other.as_str().to_owned()),
                None => StreamStatus::Unknown(String::new()),
            };
            for shard in description.shards() {
                let Some(id) = shard.shard_id() else { continue };
                shards.push(Shard {
                    id: ShardId::new(id),
                    parent: shard.parent_shard_id().map(ShardId::new),
                    closed: shard
                        .sequence_number_range()
                        .and_then(|range| range.ending_sequence_number())
                        .is_some(),
                });
            }
            match description.last_evaluated_shard_id() {
                Some(next) => start = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(StreamInfo { status, shards })
    }

    pub async fn iterator(
        &self,
        stream: &StreamArn,
        shard: &ShardId,
        start: &StartAt,
    ) -> Result<String, StreamError> {
        let (kind, sequence): (ShardIteratorType, Option<&SequenceNumber>) = match start {
            StartAt::TrimHorizon => (ShardIteratorType::TrimHorizon, None),
            StartAt::Latest => (ShardIteratorType::Latest, None),
            StartAt::After(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq)),
        };
        let out = self
            .client
            .get_shard_iterator()
            .stream_arn(stream.to_string())
            .shard_id(shard.as_str())
            .shard_iterator_type(kind)
            .set_sequence_number(sequence.map(|s| s.as_str().to_owned()))
            .send()
            .await
            .map_err(StreamError::from_sdk)?;
        out.shard_iterator().map(str::to_owned).ok_or_else(|| {
            StreamError::NotFound(
                format!("GetShardIterator returned no iterator for shard {shard}").into(),
            )
        })
    }

    /// At most `limit` records from `iterator` (see [`crate::read_size`]),
    /// parsed and checked by [`crate::wire`].
    pub async fn records(&self, iterator: &str, limit: i32) -> Result<Page, StreamError> {
        let capture = CaptureBody::default();
        self.client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .customize()
            .interceptor(capture.clone())
            .send()
            .await
            .map_err(StreamError::from_sdk)?;
        let body = capture.take().ok_or_else(|| {
            StreamError::Transient("GetRecords succeeded but its answer was not kept".into())
        })?;
        Page::parse(&body).map_err(|e| StreamError::Transient(Box::new(UnexpectedAnswer(e))))
    }
}
