//! The record as the DynamoDB Streams API and Lambda present it.

use dynamodb_source_api::StreamArn;
use dynamodb_source_stream::StreamRecord;
use serde::Serialize;

use super::FormatError;

/// Seconds since the epoch, whole when the API gave whole seconds, as Lambda shows it.
pub(crate) fn epoch_seconds(time: &aws_smithy_types::DateTime) -> serde_json::Number {
    if time.subsec_nanos() == 0 {
        serde_json::Number::from(time.secs())
    } else {
        serde_json::Number::from_f64(time.as_secs_f64()).unwrap_or_else(|| time.secs().into())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Dynamodb<'a, K: Serialize, I: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_creation_date_time: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<K>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_image: Option<I>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_image: Option<I>,
    sequence_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_view_type: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
}

/// The envelope shared by the AWS and Plain formats; `K` renders the item
/// key, `I` an item image.
#[derive(Serialize)]
pub(crate) struct Envelope<'a, K: Serialize, I: Serialize> {
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "eventVersion", skip_serializing_if = "Option::is_none")]
    event_version: Option<&'a str>,
    #[serde(rename = "eventSource", skip_serializing_if = "Option::is_none")]
    event_source: Option<&'a str>,
    #[serde(rename = "awsRegion", skip_serializing_if = "Option::is_none")]
    aws_region: Option<&'a str>,
    dynamodb: Dynamodb<'a, K, I>,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: Arn<'a>,
    #[serde(rename = "userIdentity", skip_serializing_if = "Option::is_none")]
    user_identity: Option<Identity<'a>>,
}

/// The item key and images of a record, as a format renders them.
pub(crate) struct Images<K, I> {
    pub keys: Option<K>,
    pub new_image: Option<I>,
    pub old_image: Option<I>,
}

/// A stream's ARN written as JSON text straight from its parts, rather than
/// into a String first for every record.
struct Arn<'a>(&'a StreamArn);

impl Serialize for Arn<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

pub(crate) fn envelope<'a, K: Serialize, I: Serialize>(
    record: &'a StreamRecord,
    stream: &'a StreamArn,
    images: Images<K, I>,
) -> Envelope<'a, K, I> {
    Envelope {
        event_id: &record.event_id,
        event_name: record.event_name.as_str(),
        event_version: record.event_version.as_deref(),
        event_source: record.event_source.as_deref(),
        aws_region: record.aws_region.as_deref(),
        dynamodb: Dynamodb {
            approximate_creation_date_time: record.approximate_creation.as_ref().map(epoch_seconds),
            keys: images.keys,
            new_image: images.new_image,
            old_image: images.old_image,
            sequence_number: record.sequence_number.as_str(),
            size_bytes: record.size_bytes,
            stream_view_type: record.stream_view_type.as_deref(),
        },
        event_source_arn: Arn(stream),
        user_identity: record.user_identity.as_ref().map(|identity| Identity {
            principal_id: identity.principal_id.as_deref(),
            kind: identity.kind.as_deref(),
        }),
    }
}

/// The record as a JSON value, as [`render`] writes it (the images as the API
/// sent them): what filter patterns look at.
pub fn to_value(
    record: &StreamRecord,
    stream: &StreamArn,
) -> Result<serde_json::Value, FormatError> {
    let images = Images {
        keys: record.keys.as_ref(),
        new_image: record.new_image.as_ref().map(|image| image.json()),
        old_image: record.old_image.as_ref().map(|image| image.json()),
    };
    serde_json::to_value(envelope(record, stream, images)).map_err(FormatError::Json)
}

/// What the envelope around the images takes, about: the rest of a record
/// rendered, with room for a long table name and key.
const ENVELOPE: usize = 768;

/// The images go out as the API sent them ([`dynamodb_source_stream::Image`]).
pub fn render(record: &StreamRecord, stream: &StreamArn) -> Result<Vec<u8>, FormatError> {
    let images = Images {
        keys: record.keys.as_ref(),
        new_image: record.new_image.as_ref().map(|image| image.json()),
        old_image: record.old_image.as_ref().map(|image| image.json()),
    };
    // Sized once: grown by doubling, a 2.4 KB event took five reallocations
    // and kept 4 KB for as long as it was held.
    let size = ENVELOPE
        + [&images.new_image, &images.old_image]
            .into_iter()
            .flatten()
            .map(|image| image.get().len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    serde_json::to_writer(&mut out, &envelope(record, stream, images))
        .map_err(FormatError::Json)?;
    Ok(out)
}
