//! Knative's CloudEvent overrides (`K_CE_OVERRIDES`): extra extension attributes.

use std::collections::BTreeMap;
use std::str::FromStr;

use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::binary;

/// Attributes the CloudEvents spec defines; overrides may not replace them.
const RESERVED: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error("not JSON of the form {{\"extensions\":{{\"name\":\"value\"}}}}")]
    Json(#[source] serde_json::Error),
    #[error("extension {0:?} would override a required CloudEvents attribute")]
    Reserved(String),
    #[error(
        "extension name {0:?} must be 1 to 20 lower-case letters or digits (CloudEvents naming)"
    )]
    Name(String),
}

/// Extension attributes added to every event, after the source's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CeOverrides {
    extensions: BTreeMap<String, String>,
    /// The same as binary-mode headers, made once rather than per event.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl CeOverrides {
    pub fn extensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The extensions as binary-mode headers.
    pub(crate) fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    pub fn new(extensions: BTreeMap<String, String>) -> Result<Self, OverridesError> {
        let mut headers = Vec::with_capacity(extensions.len());
        for (name, value) in &extensions {
            if RESERVED.contains(&name.as_str()) {
                return Err(OverridesError::Reserved(name.clone()));
            }
            let valid = (1..=20).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(OverridesError::Name(name.clone()));
            }
            let header =
                binary::extension_header(name).map_err(|_| OverridesError::Name(name.clone()))?;
            headers.push((header, binary::text_value(value)));
        }
        Ok(CeOverrides {
            extensions,
            headers,
        })
    }
}

impl FromStr for CeOverrides {
    type Err = OverridesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            extensions: BTreeMap<String, String>,
        }
        let wire: Wire = serde_json::from_str(s).map_err(OverridesError::Json)?;
        CeOverrides::new(wire.extensions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knative_overrides_parse() {
        let overrides: CeOverrides = r#"{"extensions":{"team":"orders","env":"prod"}}"#
            .parse()
            .expect("valid");
        assert_eq!(
            overrides.extensions().collect::<Vec<_>>(),
            vec![("env", "prod"), ("team", "orders")]
        );
    }

    #[test]
    fn overriding_a_required_attribute_is_rejected() {
        let err = r#"{"extensions":{"type":"x"}}"#
            .parse::<CeOverrides>()
            .expect_err("type is required");
        assert!(
            matches!(&err, OverridesError::Reserved(name) if name == "type"),
            "{err}"
        );
    }

    #[test]
    fn invalid_names_and_json_are_rejected() {
        assert!(matches!(
            r#"{"extensions":{"Team":"x"}}"#.parse::<CeOverrides>(),
            Err(OverridesError::Name(_))
        ));
        assert!(matches!(
            "{extensions".parse::<CeOverrides>(),
            Err(OverridesError::Json(_))
        ));
    }
}
