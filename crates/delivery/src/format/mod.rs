//! The three shapes of an event's `data`.
//!
//! - [`aws`]: the record as the Streams API and Lambda present it.
//! - [`plain`]: the same with attribute values as plain JSON.
//! - [`triggermesh`]: byte for byte what TriggerMesh's adapter sent.

pub mod aws;
pub mod plain;
pub mod triggermesh;

use dynamodb_source_api::{PayloadFormat, StreamArn};
use dynamodb_source_stream::{AttributeValue, Image, Item, StreamRecord};

/// A record whose content cannot be rendered in the chosen format.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("attribute {path} holds {value:?}, which is not a number JSON can carry")]
    Number { path: String, value: String },
    #[error("{image} is not an item image of typed attribute values")]
    Image {
        image: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("serializing the record")]
    Json(#[source] serde_json::Error),
}

/// Renders a record's `data` in the given format.
pub fn render(
    format: PayloadFormat,
    record: &StreamRecord,
    stream: &StreamArn,
) -> Result<Vec<u8>, FormatError> {
    match format {
        PayloadFormat::Aws => aws::render(record, stream),
        PayloadFormat::Plain => plain::render(record, stream),
        PayloadFormat::TriggerMesh => triggermesh::render(record),
    }
}

/// One attribute value in the API's typed JSON, e.g. `{"N":"1"}`.
pub fn typed_json(value: &AttributeValue) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A record's images as attribute values, for the formats that reshape them.
pub(crate) fn parsed_images(record: &StreamRecord) -> Result<[Option<Item>; 2], FormatError> {
    let parse = |image: Option<&Image>, name: &'static str| {
        image
            .map(|image| image.parse())
            .transpose()
            .map_err(|source| FormatError::Image {
                image: name,
                source,
            })
    };
    Ok([
        parse(record.new_image.as_ref(), "NewImage")?,
        parse(record.old_image.as_ref(), "OldImage")?,
    ])
}
