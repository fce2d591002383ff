//! The AWS envelope with attribute values as plain JSON: strings, numbers,
//! booleans, null, arrays and objects. Numbers are copied digit for digit, so
//! a 38-digit DynamoDB number reaches the consumer exactly.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_api::StreamArn;
use dynamodb_source_stream::{AttributeValue, Item, StreamRecord};
use serde::Serialize;
use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

use super::aws::{Images, envelope};
use super::{FormatError, parsed_images};

/// Whether `text` is a number in JSON's grammar (DynamoDB's own form always is).
pub(crate) fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == bytes.len()
}

struct Number<'a>(&'a str);

impl Serialize for Number<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !is_json_number(self.0) {
            return Err(S::Error::custom(format!("not a JSON number: {:?}", self.0)));
        }
        let raw = RawValue::from_string(self.0.to_owned()).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

struct Plain<'a>(&'a AttributeValue);

struct PlainItem<'a>(&'a Item);

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            AttributeValue::S(s) => serializer.serialize_str(s),
            AttributeValue::N(n) => Number(n).serialize(serializer),
            AttributeValue::B(b) => serializer.serialize_str(&STANDARD.encode(b)),
            AttributeValue::Ss(ss) => ss.serialize(serializer),
            AttributeValue::Ns(ns) => {
                let mut seq = serializer.serialize_seq(Some(ns.len()))?;
                for n in ns {
                    seq.serialize_element(&Number(n))?;
                }
                seq.end()
            }
            AttributeValue::Bs(bs) => {
                let mut seq = serializer.serialize_seq(Some(bs.len()))?;
                for b in bs {
                    seq.serialize_element(&STANDARD.encode(b))?;
                }
                seq.end()
            }
            AttributeValue::M(m) => PlainItem(m).serialize(serializer),
            AttributeValue::L(l) => {
                let mut seq = serializer.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(&Plain(v))?;
                }
                seq.end()
            }
            AttributeValue::Null(_) => serializer.serialize_unit(),
            AttributeValue::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl Serialize for PlainItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, &Plain(value))?;
        }
        map.end()
    }
}

/// The first number that JSON cannot carry, for a precise error.
fn first_bad_number(images: &[(&str, Option<&Item>)]) -> Option<(String, String)> {
    fn walk(path: String, value: &AttributeValue) -> Option<(String, String)> {
        match value {
            AttributeValue::N(n) if !is_json_number(n) => Some((path, n.clone())),
            AttributeValue::Ns(ns) => ns
                .iter()
                .find(|n| !is_json_number(n))
                .map(|n| (path, n.clone())),
            AttributeValue::M(m) => m.iter().find_map(|(k, v)| walk(format!("{path}.{k}"), v)),
            AttributeValue::L(l) => l
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(format!("{path}[{i}]"), v)),
            _ => None,
        }
    }
    images
        .iter()
        .filter_map(|(name, image)| image.map(|i| (name, i)))
        .find_map(|(name, image)| {
            image
                .iter()
                .find_map(|(k, v)| walk(format!("{name}.{k}"), v))
        })
}

pub fn render(record: &StreamRecord, stream: &StreamArn) -> Result<Vec<u8>, FormatError> {
    let [new_image, old_image] = parsed_images(record)?;
    if let Some((path, value)) = first_bad_number(&[
        ("Keys", record.keys.as_ref()),
        ("NewImage", new_image.as_ref()),
        ("OldImage", old_image.as_ref()),
    ]) {
        return Err(FormatError::Number { path, value });
    }
    let images = Images {
        keys: record.keys.as_ref().map(PlainItem),
        new_image: new_image.as_ref().map(PlainItem),
        old_image: old_image.as_ref().map(PlainItem),
    };
    serde_json::to_vec(&envelope(record, stream, images)).map_err(FormatError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_number_grammar() {
        for ok in [
            "0",
            "-0",
            "1",
            "12345678901234567890123456789012345678",
            "1.5",
            "-0.25",
            "1E+40",
            "3e-7",
            "1.0E10",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", ".5", "1.", "+1", "1e", "NaN", "Infinity", "1 ", "0x10",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }
}
