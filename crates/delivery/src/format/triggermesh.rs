//! Byte for byte what TriggerMesh's adapter sent as `data`.
//!
//! TriggerMesh marshalled the Go SDK v1 `dynamodbstreams.Record` with Go's
//! `encoding/json`: exported field names in struct order (PascalCase), every
//! absent pointer, slice or map as `null`, map keys sorted, `[]byte` as padded
//! base64, timestamps as RFC 3339 in UTC with the SDK's millisecond rounding,
//! and `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u` sequences. Consumers
//! migrating from TriggerMesh may parse exactly that, so it is reproduced here.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynamodb_source_stream::{AttributeValue, Item, StreamRecord};

use super::{FormatError, parsed_images};

/// A JSON writer with Go's `encoding/json` string escaping.
struct GoJson {
    out: String,
}

impl GoJson {
    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn key(&mut self, first: bool, name: &str) {
        if !first {
            self.out.push(',');
        }
        self.string(name);
        self.out.push(':');
    }

    fn opt_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw("null"),
        }
    }

    fn strings(&mut self, list: &[String]) {
        self.out.push('[');
        for (i, s) in list.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(s);
        }
        self.out.push(']');
    }

    /// A Go `dynamodb.AttributeValue`: all ten fields, unset ones `null`.
    fn value(&mut self, value: &AttributeValue) {
        let fields = ["B", "BOOL", "BS", "L", "M", "N", "NS", "NULL", "S", "SS"];
        self.out.push('{');
        for (i, field) in fields.into_iter().enumerate() {
            self.key(i == 0, field);
            match (field, value) {
                ("B", AttributeValue::B(b)) => self.string(&STANDARD.encode(b)),
                ("BOOL", AttributeValue::Bool(b)) => self.raw(if *b { "true" } else { "false" }),
                ("BS", AttributeValue::Bs(bs)) => {
                    let encoded: Vec<String> = bs.iter().map(|b| STANDARD.encode(b)).collect();
                    self.strings(&encoded)
                }
                ("L", AttributeValue::L(l)) => {
                    self.out.push('[');
                    for (i, v) in l.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        self.value(v);
                    }
                    self.out.push(']');
                }
                ("M", AttributeValue::M(m)) => self.item(Some(m)),
                ("N", AttributeValue::N(n)) => self.string(n),
                ("NS", AttributeValue::Ns(ns)) => self.strings(ns),
                ("NULL", AttributeValue::Null(b)) => self.raw(if *b { "true" } else { "false" }),
                ("S", AttributeValue::S(s)) => self.string(s),
                ("SS", AttributeValue::Ss(ss)) => self.strings(ss),
                _ => self.raw("null"),
            }
        }
        self.out.push('}');
    }

    fn item(&mut self, item: Option<&Item>) {
        let Some(item) = item else {
            self.raw("null");
            return;
        };
        self.out.push('{');
        // BTreeMap order is byte order, as Go sorts map keys.
        for (i, (name, value)) in item.iter().enumerate() {
            self.key(i == 0, name);
            self.value(value);
        }
        self.out.push('}');
    }
}

/// Go's `time.Time` JSON form of the SDK's parsed timestamp: RFC 3339, UTC,
/// fraction rounded to milliseconds and trailing zeros dropped.
fn go_time(time: &aws_smithy_types::DateTime) -> Option<String> {
    let millis = (f64::from(time.subsec_nanos()) / 1e6).round() as u32;
    let (secs, millis) = if millis >= 1000 {
        (time.secs() + 1, 0)
    } else {
        (time.secs(), millis)
    };
    let whole = aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .ok()?;
    let base = whole.strip_suffix('Z')?;
    if millis == 0 {
        Some(format!("{base}Z"))
    } else {
        let fraction = format!("{millis:03}");
        Some(format!("{base}.{}Z", fraction.trim_end_matches('0')))
    }
}

pub fn render(record: &StreamRecord) -> Result<Vec<u8>, FormatError> {
    let [new_image, old_image] = parsed_images(record)?;
    let mut json = GoJson {
        out: String::with_capacity(512),
    };
    json.raw("{");
    json.key(true, "AwsRegion");
    json.opt_string(record.aws_region.as_deref());
    json.key(false, "Dynamodb");
    json.raw("{");
    json.key(true, "ApproximateCreationDateTime");
    json.opt_string(
        record
            .approximate_creation
            .as_ref()
            .and_then(go_time)
            .as_deref(),
    );
    json.key(false, "Keys");
    json.item(record.keys.as_ref());
    json.key(false, "NewImage");
    json.item(new_image.as_ref());
    json.key(false, "OldImage");
    json.item(old_image.as_ref());
    json.key(false, "SequenceNumber");
    json.string(record.sequence_number.as_str());
    json.key(false, "SizeBytes");
    match record.size_bytes {
        Some(size) => json.raw(&size.to_string()),
        None => json.raw("null"),
    }
    json.key(false, "StreamViewType");
    json.opt_string(record.stream_view_type.as_deref());
    json.raw("}");
    json.key(false, "EventID");
    json.string(&record.event_id);
    json.key(false, "EventName");
    json.string(record.event_name.as_str());
    json.key(false, "EventSource");
    json.opt_string(record.event_source.as_deref());
    json.key(false, "EventVersion");
    json.opt_string(record.event_version.as_deref());
    json.key(false, "UserIdentity");
    match &record.user_identity {
        Some(identity) => {
            json.raw("{");
            json.key(true, "PrincipalId");
            json.opt_string(identity.principal_id.as_deref());
            json.key(false, "Type");
            json.opt_string(identity.kind.as_deref());
            json.raw("}");
        }
        None => json.raw("null"),
    }
    json.raw("}");
    Ok(json.out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_go_does() {
        let mut json = GoJson { out: String::new() };
        json.string("a<b>&\"\\\n\u{1}\u{2028}é");
        assert_eq!(json.out, r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#);
    }

    #[test]
    fn times_are_rfc3339_utc_with_millisecond_rounding() {
        let whole = aws_smithy_types::DateTime::from_secs(1_700_000_000);
        assert_eq!(go_time(&whole).as_deref(), Some("2023-11-14T22:13:20Z"));
        let fractional =
            aws_smithy_types::DateTime::from_secs_and_nanos(1_700_000_000, 120_400_000);
        assert_eq!(
            go_time(&fractional).as_deref(),
            Some("2023-11-14T22:13:20.12Z")
        );
    }
}
